# 001_preload.pl: crm_kpi loads both ways. With shared_preload_libraries the
# server starts and restarts cleanly and reserves the crm_kpi GUC prefix;
# without it, CREATE EXTENSION still works.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Lines in a server log at WARNING or worse, or that report a crash, but for
# the error this test provokes on purpose.
sub bad_log_lines
{
	my ($node) = @_;
	my $log = slurp_file($node->logfile);
	return grep { /\b(WARNING|ERROR|FATAL|PANIC):|terminated by signal|server process .* exited/ && !/no_such_setting/ }
	  split /\n/, $log;
}

my $pre = PostgreSQL::Test::Cluster->new('preloaded');
$pre->init;
$pre->append_conf('postgresql.conf', "shared_preload_libraries = 'crm_kpi'");
$pre->start;

is($pre->safe_psql('postgres', 'SHOW shared_preload_libraries'), 'crm_kpi', 'preload configured');
$pre->safe_psql('postgres', 'CREATE EXTENSION crm_kpi');
is($pre->safe_psql('postgres', 'SELECT crm_kpi.preloaded()'), 't', 'preloaded() is true with the preload');
is($pre->safe_psql('postgres',
		"SELECT crm_kpi.library_version() = extversion FROM pg_extension WHERE extname = 'crm_kpi'"),
	't', 'library and SQL versions agree');

# The prefix is reserved: a misspelt crm_kpi setting is an error, not a silent placeholder.
my ($ret, $out, $err) = $pre->psql('postgres', 'SET crm_kpi.no_such_setting = 1');
isnt($ret, 0, 'setting an unknown crm_kpi.* parameter fails');
like($err, qr/invalid configuration parameter name "crm_kpi\.no_such_setting"/, 'with a clear message');

$pre->restart;
is($pre->safe_psql('postgres', 'SELECT crm_kpi.preloaded()'), 't', 'still preloaded after a restart');
$pre->stop;
is(join("\n", bad_log_lines($pre)), '', 'no warning, error or crash in the preloaded server log');

my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION crm_kpi');
is($plain->safe_psql('postgres', 'SELECT crm_kpi.preloaded()'), 'f', 'preloaded() is false without the preload');
is($plain->safe_psql('postgres', 'SELECT crm_kpi.library_version() IS NOT NULL'), 't', 'the library loads on demand');
$plain->safe_psql('postgres', 'DROP EXTENSION crm_kpi');
is($plain->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relnamespace::regnamespace::text = 'crm_kpi'")
	  . $plain->safe_psql('postgres', "SELECT count(*) FROM pg_proc WHERE pronamespace::regnamespace::text = 'crm_kpi'"),
	'00', 'DROP EXTENSION removes every object of the extension');
$plain->stop;
is(join("\n", bad_log_lines($plain)), '', 'no warning, error or crash in the plain server log');

done_testing();
