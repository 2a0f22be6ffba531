# CrmKpiTest.pm: helpers shared by the TAP tests: polling with a deadline
# (tests never sleep a fixed time waiting for the worker) and running a client
# program with its output captured.
package CrmKpiTest;

use strict;
use warnings;
use Exporter 'import';
use IPC::Run;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT_OK = qw(poll_for run_client);

# Poll until $query on $db of $node returns $expected, for at most $seconds; true when it did.
sub poll_for
{
	my ($node, $db, $query, $expected, $seconds) = @_;
	my $deadline = time + $seconds;
	my $got;
	while (1)
	{
		my ($ret, $out) = $node->psql($db, $query);
		$got = $out;
		return 1 if $ret == 0 && $out eq $expected;
		last if time > $deadline;
		usleep(50_000);
	}
	diag("after ${seconds}s, $query returned '$got', not '$expected'");
	return 0;
}

# Run a client program (connection options in @cmd); returns (success, stdout, stderr).
sub run_client
{
	my @cmd = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	return ($ok, $out, $err);
}

1;
