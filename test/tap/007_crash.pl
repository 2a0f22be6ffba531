# 007_crash.pl: crashes under a write load. Three writers insert, update and
# delete orders, tickets and survey responses of the reference schema (over
# sample data) while the refresh worker keeps the KPI tables; each seeded round
# injects one fault once the writers have committed a seeded number of units:
# kill -9 of the worker (caught inside a refresh batch: of the writers' keys, of
# every customer, or of a rebuild), kill -9 of a writer's backend (at any
# moment, or while it writes), or pg_ctl stop -m immediate with the worker
# inside a refresh batch, then a start. After each recovery the worker is back
# and drains the queue, crm_kpi.verify() is empty, every acknowledged write is
# in the sources (a unit the crash cut off is there whole or not at all), and
# the KPI totals equal raw sums over the sources. Round 0 injects no fault: a
# control for the rounds that do. Then a manual crm_kpi.refresh() against the
# worker, both ways round. The rounds and a summary are printed as it goes.
#
# A writer is a psql running a generated script of units (one statement, or a
# transaction of several); each unit also records itself in crash_test.acks,
# and psql echoes "ack N" once the server has acknowledged its commit. After a
# crash the units in crash_test.acks must be 1..m for each writer, m must be
# the last unit acknowledged or the one after it (in flight at the crash), and
# the writer's rows must be exactly those that replaying units 1..m gives.
#
# CRM_KPI_CRASH_SEED and CRM_KPI_CRASH_ROUNDS change the seed and the number of
# rounds, CRM_KPI_CRASH_KINDS (worker,writer,immediate) the faults injected.
# Every wait for the server or the worker is a poll with a deadline.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $SEED = $ENV{CRM_KPI_CRASH_SEED} // 20240909;
my $ROUNDS = $ENV{CRM_KPI_CRASH_ROUNDS} // 24;
my $WRITERS = 3;
my $CUSTOMERS = 600;
my $ID_BASE = 1_000_000_000_000;    # writer w owns ids from $ID_BASE * (w + 1) up
my $T0 = 1672531200;                 # 2023-01-01 00:00 UTC: writers date their rows from here ...
my $T1 = 1735689600;                 # ... to 2025-01-01 (the sample data's two years)
srand($SEED);
note("seed $SEED, $ROUNDS rounds, $WRITERS writers");

my $started = time;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'crm_kpi'
restart_after_crash = on
max_worker_processes = 16
log_statement = none
});
$node->start;

# Poll until $query on $db returns $expected, for at most $seconds (connection
# failures while the server restarts count as not yet); true when it did.
sub poll_for
{
	my ($db, $query, $expected, $seconds) = @_;
	my $deadline = time + $seconds;
	my $got = '';
	while (1)
	{
		my ($ret, $out) = $node->psql($db, $query);
		$got = $out;
		return 1 if $ret == 0 && $out eq $expected;
		last if time > $deadline;
		usleep(20_000);
	}
	diag("after ${seconds}s, $query returned '$got', not '$expected'");
	return 0;
}

# --- The database, the writers' bookkeeping, the probes ------------------------

$node->safe_psql('postgres', 'CREATE DATABASE crm');
# Small batches: a refresh of many customers is a run of short transactions.
$node->safe_psql('postgres', 'ALTER DATABASE crm SET crm_kpi.refresh_batch_size = 100');
$node->safe_psql('crm', qq{
CREATE EXTENSION crm_kpi;
SELECT count(*) FROM crm_kpi.generate_sample_data('crm', $CUSTOMERS, $SEED % 1000, '2023-01-01', 730);
CREATE SCHEMA crash_test;
-- The units each writer committed (written in the unit's own transaction).
CREATE TABLE crash_test.acks (writer integer, unit integer, round integer NOT NULL, PRIMARY KEY (writer, unit));
-- Polls a probe query until it returns something (its first column then, NULL
-- at the timeout): in the server, every millisecond, so that what it caught is
-- still going on when the caller strikes.
CREATE FUNCTION crash_test.catch(probe text, timeout interval) RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
    found text;
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        EXECUTE probe INTO found;
        IF found IS NOT NULL OR clock_timestamp() > deadline THEN
            RETURN found;
        END IF;
        PERFORM pg_sleep(0.001);
    END LOOP;
END \$\$;
-- Units committed in a round, all writers.
CREATE FUNCTION crash_test.progress(r integer) RETURNS bigint LANGUAGE sql
    RETURN (SELECT count(*) FROM crash_test.acks WHERE round = r);
});
ok(poll_for('crm', "SELECT crm_kpi.wait_for_refresh('60 s')", 't', 90), 'the worker fills the KPI tables of the sample data');
is($node->safe_psql('crm', 'SELECT count(*) FROM crm_kpi.verify()'), '0', 'verify() is empty before the first round');
my @customers = split /\n/, $node->safe_psql('crm', 'SELECT customer_id FROM crm.customers ORDER BY 1');
my @reps = split /\n/, $node->safe_psql('crm', 'SELECT rep_id FROM crm.sales_reps ORDER BY 1');
is(scalar @customers, $CUSTOMERS, "$CUSTOMERS sample customers");

# The refresh worker once it is inside a refresh batch: "pid activity".
my $WORKER_IN_BATCH = "SELECT crash_test.catch(\$\$SELECT pid || ' ' || query FROM pg_stat_activity "
  . "WHERE backend_type = 'crm_kpi worker' AND datname = current_database() "
  . "AND query ~ '^crm_kpi: refresh batch [0-9]+(:|\$)'\$\$, '%s')";

# KPI totals against raw sums over the sources, as one line of "kpi=raw" pairs.
my $TOTALS = q{
SELECT concat_ws(' ',
  'revenue', (SELECT coalesce(sum(revenue), 0) FROM crm_kpi.sales_daily) || '=' ||
             (SELECT coalesce(sum(amount), 0) FROM crm.orders WHERE status = 'completed'),
  'orders', (SELECT coalesce(sum(orders), 0) FROM crm_kpi.sales_daily) || '=' ||
            (SELECT count(*) FROM crm.orders WHERE status = 'completed'),
  'buyers', (SELECT count(*) FROM crm_kpi.customer_stats WHERE orders > 0) || '=' ||
            (SELECT count(DISTINCT customer_id) FROM crm.orders WHERE status = 'completed'),
  'tickets', (SELECT coalesce(sum(opened), 0) FROM crm_kpi.service_daily) || '=' || (SELECT count(*) FROM crm.tickets),
  'resolved', (SELECT coalesce(sum(resolved), 0) FROM crm_kpi.service_daily) || '=' ||
              (SELECT count(resolved_at) FROM crm.tickets),
  'unanswered', (SELECT coalesce(sum(unanswered), 0) FROM crm_kpi.service_daily) || '=' ||
                (SELECT count(*) - count(first_response_at) FROM crm.tickets),
  'nps', (SELECT coalesce(sum(crm_kpi.responses(nps)), 0) FROM crm_kpi.satisfaction_daily) || '=' ||
         (SELECT count(*) FROM crm.survey_responses WHERE kind = 'nps'),
  'promoters', (SELECT coalesce(sum(crm_kpi.promoters(nps)), 0) FROM crm_kpi.satisfaction_daily) || '=' ||
               (SELECT count(*) FROM crm.survey_responses WHERE kind = 'nps' AND score >= 9),
  'csat', (SELECT coalesce(sum(crm_kpi.responses(csat)), 0) FROM crm_kpi.satisfaction_daily) || '=' ||
          (SELECT count(*) FROM crm.survey_responses WHERE kind = 'csat'),
  'satisfied', (SELECT coalesce(sum(crm_kpi.satisfied(csat)), 0) FROM crm_kpi.satisfaction_daily) || '=' ||
               (SELECT count(*) FROM crm.survey_responses WHERE kind = 'csat' AND score >= 4))};

# The pairs of a $TOTALS line that differ ('' when none).
sub totals_differ
{
	my ($line) = @_;
	my %pairs = split / /, $line;
	return join(' ', map { "$_ $pairs{$_}" } grep { my ($k, $r) = split /=/, $pairs{$_}; $k ne $r } sort keys %pairs);
}
is(totals_differ($node->safe_psql('crm', $TOTALS)), '', 'the KPI totals equal the raw sums before the first round');

# --- The writers' model: what each writer's rows must be ----------------------

# Per writer: the rows it owns (id => [fields]), its next id, its next unit, and
# the units generated but not yet known committed (unit => [ops]).
my @model = map {
	{ orders => {}, tickets => {}, surveys => {}, next_id => $ID_BASE * ($_ + 1), next_unit => 1, pending => {} }
} 0 .. $WRITERS - 1;

sub pick { return $_[ int(rand(@_)) ] }
sub epoch { return $T0 + int(rand($T1 - $T0)) }
sub amount { return sprintf('%d.%02d', int(rand(2000)), int(rand(100))) }

# Apply one op to a model's rows. An op is [table, id, fields] (fields undef: delete).
sub apply_op
{
	my ($rows, $op) = @_;
	my ($table, $id, $fields) = @$op;
	if (defined $fields) { $rows->{$table}{$id} = $fields }
	else { delete $rows->{$table}{$id} }
}

# The ids of a writer's rows as its next units will find them, by table: a
# list to pick from and each id's place in it.
sub new_view
{
	my ($m) = @_;
	my %view;
	for my $table (qw(orders tickets surveys))
	{
		my @ids = sort { $a <=> $b } keys %{ $m->{$table} };
		$view{$table} = { ids => \@ids, at => { map { $ids[$_] => $_ } 0 .. $#ids } };
	}
	return \%view;
}

# Apply one op to a view.
sub view_apply
{
	my ($view, $op) = @_;
	my ($table, $id, $fields) = @$op;
	my $v = $view->{$table};
	if (defined $fields)
	{
		return if exists $v->{at}{$id};
		push @{ $v->{ids} }, $id;
		$v->{at}{$id} = $#{ $v->{ids} };
	}
	elsif (exists $v->{at}{$id})
	{
		my $i = delete $v->{at}{$id};
		my $last = pop @{ $v->{ids} };
		return if $last == $id;
		$v->{ids}[$i] = $last;
		$v->{at}{$last} = $i;
	}
}

# A random op on writer $m's rows as they will be after its pending ops ($view),
# with its SQL.
sub random_op
{
	my ($m, $view) = @_;
	my $r = rand();
	my ($table, $id, $fields);
	my $new = $r < 0.45;
	if ($new)
	{
		$table = pick(qw(orders orders orders tickets tickets surveys surveys));
		$id = $m->{next_id}++;
	}
	else
	{
		$table = pick(qw(orders orders orders tickets tickets surveys));
		my $ids = $view->{$table}{ids};
		return random_op($m, $view) unless @$ids;
		$id = pick(@$ids);
		if ($r > 0.85)
		{
			my $sql = {
				orders => "DELETE FROM crm.orders WHERE order_id = $id",
				tickets => "DELETE FROM crm.tickets WHERE ticket_id = $id",
				surveys => "DELETE FROM crm.survey_responses WHERE response_id = $id",
			}->{$table};
			return ([ $table, $id, undef ], $sql);
		}
	}
	my $customer = pick(@customers);
	my $sql;
	if ($table eq 'orders')
	{
		$fields = [ $customer, (rand() < 0.2 ? '' : pick(@reps)),
			pick(qw(completed completed completed completed refunded cancelled)), amount(), epoch() ];
		my ($c, $rep, $status, $amount, $at) = @$fields;
		$rep = $rep eq '' ? 'NULL' : $rep;
		$sql = $new
		  ? "INSERT INTO crm.orders (order_id, customer_id, rep_id, status, amount, ordered_at) "
		  . "VALUES ($id, $c, $rep, '$status', $amount, to_timestamp($at))"
		  : "UPDATE crm.orders SET customer_id = $c, rep_id = $rep, status = '$status', amount = $amount, "
		  . "ordered_at = to_timestamp($at) WHERE order_id = $id";
	}
	elsif ($table eq 'tickets')
	{
		my $opened = epoch();
		my $first = rand() < 0.25 ? '' : $opened + int(rand(3 * 86400));
		my $resolved = rand() < 0.3 ? '' : $opened + int(rand(10 * 86400));
		$fields = [ $customer, $opened, $first, $resolved, int(rand(8)), (rand() < 0.15 ? 't' : 'f') ];
		my @v = map { $_ eq '' ? 'NULL' : "to_timestamp($_)" } ($first, $resolved);
		my $complaint = $fields->[5] eq 't' ? 'true' : 'false';
		$sql = $new
		  ? "INSERT INTO crm.tickets (ticket_id, customer_id, opened_at, first_response_at, resolved_at, replies, "
		  . "is_complaint) VALUES ($id, $customer, to_timestamp($opened), $v[0], $v[1], $fields->[4], $complaint)"
		  : "UPDATE crm.tickets SET customer_id = $customer, opened_at = to_timestamp($opened), "
		  . "first_response_at = $v[0], resolved_at = $v[1], replies = $fields->[4], is_complaint = $complaint "
		  . "WHERE ticket_id = $id";
	}
	else
	{
		my $kind = rand() < 0.6 ? 'nps' : 'csat';
		$fields = [ $customer, $kind, ($kind eq 'nps' ? int(rand(11)) : 1 + int(rand(5))), epoch() ];
		$sql = $new
		  ? "INSERT INTO crm.survey_responses (response_id, customer_id, kind, score, answered_at) "
		  . "VALUES ($id, $customer, '$kind', $fields->[2], to_timestamp($fields->[3]))"
		  : "UPDATE crm.survey_responses SET customer_id = $customer, kind = '$kind', score = $fields->[2], "
		  . "answered_at = to_timestamp($fields->[3]) WHERE response_id = $id";
	}
	return ([ $table, $id, $fields ], $sql);
}

# The script of writer $w for round $round: $units units from its next unit on,
# each recorded in crash_test.acks by its own transaction and echoed once
# acknowledged, with a short pause between units (about 250 units a second).
sub writer_script
{
	my ($w, $round, $units) = @_;
	my $m = $model[$w];
	my $view = new_view($m);
	my $script = "SET application_name = 'crash_writer_$w';\n";
	for (1 .. $units)
	{
		my $unit = $m->{next_unit}++;
		my $ack = "INSERT INTO crash_test.acks VALUES ($w, $unit, $round)";
		my $kind = rand();
		my @ops;
		if ($kind < 0.8)
		{
			# One statement, autocommitted; the ack rides on it as a CTE.
			my ($op, $sql) = random_op($m, $view);
			view_apply($view, $op);
			push @ops, $op;
			$script .= "WITH ack AS ($ack) $sql;\n";
		}
		else
		{
			# A transaction of 2 to 4 statements, sometimes pausing inside.
			$script .= "BEGIN;\n";
			for (1 .. 2 + int(rand(3)))
			{
				my ($op, $sql) = random_op($m, $view);
				view_apply($view, $op);
				push @ops, $op;
				$script .= "$sql;\n";
				$script .= "SELECT pg_sleep(0.02) \\g /dev/null\n" if rand() < 0.3;
			}
			$script .= "$ack;\nCOMMIT;\n";
		}
		$m->{pending}{$unit} = \@ops;
		$script .= "\\echo ack $unit\n";
		$script .= sprintf("SELECT pg_sleep(0.00%d) \\g /dev/null\n", 2 + int(rand(4)));
	}
	return $script;
}

# Start writer $w's script; returns its harness, stdout and stderr refs.
sub start_writer
{
	my ($w, $script) = @_;
	my $file = $node->basedir . "/writer_$w.sql";
	open my $fh, '>', $file or die "$file: $!";
	print $fh $script;
	close $fh;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('crm'), '-f', $file ],
		'<', '/dev/null', '>', \$out, '2>', \$err, IPC::Run::timeout(120));
	return { h => $h, out => \$out, err => \$err };
}

# Rows of the writers as "id|fields" lines, by table, from the database.
my %DUMP = (
	orders => "SELECT order_id, customer_id, rep_id, status, amount, extract(epoch FROM ordered_at)::bigint "
	  . "FROM crm.orders WHERE order_id >= $ID_BASE ORDER BY 1",
	tickets => "SELECT ticket_id, customer_id, extract(epoch FROM opened_at)::bigint, "
	  . "extract(epoch FROM first_response_at)::bigint, extract(epoch FROM resolved_at)::bigint, replies, is_complaint "
	  . "FROM crm.tickets WHERE ticket_id >= $ID_BASE ORDER BY 1",
	surveys => "SELECT response_id, customer_id, kind, score, extract(epoch FROM answered_at)::bigint "
	  . "FROM crm.survey_responses WHERE response_id >= $ID_BASE ORDER BY 1");

# Rows of the writers as the model says they are, in the same form.
sub model_dump
{
	my ($table) = @_;
	my %all = map { %{ $_->{$table} } } @model;
	return join("\n", map { join('|', $_, @{ $all{$_} }) } sort { $a <=> $b } keys %all);
}

# Whether the writers' rows of a table are as the model says; diags the first difference.
sub same_rows
{
	my ($table) = @_;
	my @got = split /\n/, $node->safe_psql('crm', $DUMP{$table});
	my @want = split /\n/, model_dump($table);
	for my $i (0 .. ($#got > $#want ? $#got : $#want))
	{
		my ($g, $w) = ($got[$i] // '(none)', $want[$i] // '(none)');
		next if $g eq $w;
		diag("$table: the database has $g where the model has $w");
		return 0;
	}
	return 1;
}

# Show the first differences verify() finds.
sub diag_verify
{
	diag($node->safe_psql('crm',
			'SELECT table_name, key, column_name, maintained, fresh FROM crm_kpi.verify() LIMIT 12'));
}

# After a crash: take the units the server committed into the model. Returns
# (problems, units acknowledged, units in flight at the crash found committed).
sub settle_units
{
	my ($acked) = @_;
	my %server = map { my ($w, $n, $max) = split /\|/; ($w => [ $n, $max ]) }
	  split /\n/, $node->safe_psql('crm', 'SELECT writer, count(*), max(unit) FROM crash_test.acks GROUP BY 1');
	my @problems;
	my ($acks, $extra) = (0, 0);
	for my $w (0 .. $WRITERS - 1)
	{
		my $m = $model[$w];
		my ($n, $max) = @{ $server{$w} // [ 0, 0 ] };
		my $acked_to = $acked->[$w];    # last unit psql saw acknowledged (0: none yet)
		push @problems, "writer $w: committed units are not 1..$max ($n of them)" if $n != $max;
		push @problems, "writer $w: unit $acked_to was acknowledged, the server has units up to $max only"
		  if $max < $acked_to;
		push @problems, "writer $w: units up to $max committed, but only $acked_to acknowledged (one may be in flight)"
		  if $max > $acked_to + 1;
		$extra++ if $max == $acked_to + 1 && exists $m->{pending}{$max};
		for my $unit (sort { $a <=> $b } keys %{ $m->{pending} })
		{
			if ($unit <= $max) { apply_op($m, $_) for @{ $m->{pending}{$unit} }; $acks++ if $unit <= $acked_to }
		}
		$m->{pending} = {};
		$m->{next_unit} = $max + 1;
	}
	return (\@problems, $acks, $extra);
}

# --- The rounds ---------------------------------------------------------------

# The faults, as many of each kind, in a seeded order (CRM_KPI_CRASH_KINDS
# narrows them, to chase a failure).
my @kind_names = split /,/, ($ENV{CRM_KPI_CRASH_KINDS} // 'worker,writer,immediate');
my @kinds = map { $kind_names[ $_ % @kind_names ] } 0 .. $ROUNDS - 1;
for (my $i = $#kinds; $i > 0; $i--)
{
	my $j = int(rand($i + 1));
	@kinds[ $i, $j ] = @kinds[ $j, $i ];
}
my (%count, %variants, %inside);
my ($total_acks, $total_extra, $verified, $kept) = (0, 0, 0, 0);

# Round 0 injects nothing: the writers run short scripts to their end. Were a
# later round to fail, this one tells whether the crash is needed for it.
for my $round (0 .. $ROUNDS)
{
	my $kind = $round == 0 ? 'none' : $kinds[ $round - 1 ];
	my $round_started = time;
	my $threshold = $round == 0 ? 1 : 30 + int(rand(170));    # the fault comes once this many units committed
	my $variant = $kind eq 'writer' ? pick(qw(any writing)) : pick(qw(keys keys bulk rebuild));
	my $victim = int(rand($WRITERS));
	my @first = map { $_->{next_unit} } @model;
	my @writers = map { start_writer($_, writer_script($_, $round, $round == 0 ? 150 : 1500)) } 0 .. $WRITERS - 1;
	my $log_offset = -s $node->logfile;

	ok(poll_for('crm', "SELECT crash_test.progress($round) >= $threshold", 't', 60),
		"round $round: the writers commit $threshold units");
	my ($what, $killed, $in);
	if ($kind eq 'none')
	{
		$what = 'no fault';
		$variant = 'control';
	}
	elsif ($kind eq 'writer')
	{
		# At any moment, or once the victim is writing (its backend has a transaction id).
		my $app = "crash_writer_$victim";
		my $caught = $node->safe_psql('crm',
			$variant eq 'any'
			? "SELECT pid || ' ' || (backend_xid IS NOT NULL) || ' ' || state FROM pg_stat_activity "
			  . "WHERE application_name = '$app'"
			: "SELECT crash_test.catch(\$\$SELECT pid || ' true ' || state FROM pg_stat_activity "
			  . "WHERE application_name = '$app' AND backend_xid IS NOT NULL\$\$, '10 s')");
		my ($pid, $writing, $state) = split / /, $caught, 3;
		die "round $round: writer $victim has no backend to kill" unless $pid;
		kill 'KILL', $pid;
		$killed = $pid;
		$in = $writing eq 'true';
		$what = "kill -9 of writer $victim ($variant: $state" . ($in ? ', in a write transaction)' : ')');
	}
	else
	{
		# Something for the worker to refresh for a while: the writers' keys alone,
		# every customer (a run of batches), or a rebuild (a source bound again).
		if ($variant eq 'bulk')
		{
			$node->safe_psql('crm', 'UPDATE crm.customers SET name = name');
		}
		elsif ($variant eq 'rebuild')
		{
			$node->safe_psql('crm',
				"SELECT crm_kpi.bind_source('marketing_spend', 'crm.marketing_spend', "
				  . "(SELECT mapping FROM crm_kpi.source_bindings WHERE kind = 'marketing_spend'))");
		}
		my $caught = $node->safe_psql('crm', sprintf($WORKER_IN_BATCH, '10 s'));
		my ($pid, $activity) = split / /, $caught, 2;
		$in = defined $activity;
		if ($kind eq 'worker')
		{
			$pid ||= $node->safe_psql('crm', 'SELECT pid FROM crm_kpi.worker_status()');
			die "round $round: no refresh worker to kill" unless $pid;
			kill 'KILL', $pid;
			$killed = $pid;
			$what = "kill -9 of the worker ($variant)";
		}
		else
		{
			$node->stop('immediate');
			$node->start;
			$what = "immediate shutdown ($variant)";
		}
		$what .= $in ? " caught in '$activity'" : ' between batches';
	}

	# The writers end with the crash (their connections are gone), or with their
	# script: the last unit each saw acknowledged, and any error but the crash's.
	my @acked;
	my $writer_errors = '';
	for my $w (0 .. $WRITERS - 1)
	{
		my $wr = $writers[$w];
		eval { $wr->{h}->finish; 1 } or do { $wr->{h}->kill_kill; $writer_errors .= "writer $w timed out; " };
		my @acks = ${ $wr->{out} } =~ /^ack (\d+)$/mg;
		push @acked, @acks ? $acks[-1] : $first[$w] - 1;
		my @bad = grep { /\bERROR:/ } split /\n/, ${ $wr->{err} };
		$writer_errors .= "writer $w: @bad; " if @bad;
	}

	my $recovered = poll_for('crm', 'SELECT pid IS NOT NULL FROM crm_kpi.worker_status()', 't', 60)
	  && poll_for('crm', "SELECT crm_kpi.wait_for_refresh('60 s')", 't', 60);
	# What the killed process was running, as the postmaster logged it.
	if (defined $killed
		&& substr(slurp_file($node->logfile), $log_offset) =~
		/\(PID $killed\) was terminated by signal 9: Killed\n[^\n]*Failed process was running: ([^\n]*)/)
	{
		my $running = $1;
		$in = $running =~ /^crm_kpi: refresh batch \d+(:|$)/ if $kind eq 'worker';
		$running = substr($running, 0, 67) . '...' if length($running) > 70;
		$what .= ", running '$running'";
	}
	my $verify = $node->safe_psql('crm', 'SELECT count(*) FROM crm_kpi.verify()');
	diag_verify() if $verify ne '0';
	my ($problems, $acks, $extra) = settle_units(\@acked);
	my @differ = grep { !same_rows($_) } sort keys %DUMP;
	my $totals = totals_differ($node->safe_psql('crm', $TOTALS));
	if ($round > 0)
	{
		$total_acks += $acks;
		$total_extra += $extra;
		$count{$kind}++;
		$variants{$kind}{$variant}++;
		$inside{$kind}++ if $in;
		$verified++ if $recovered && $verify eq '0';
		$kept++ if !@$problems && !@differ;
	}
	note(sprintf('round %d: %s; %d units acknowledged, %d committed unacknowledged; verify() %s; %.1fs',
			$round, $what, $acks, $extra, $verify eq '0' ? 'empty' : "$verify rows", time - $round_started));

	ok($recovered, "round $round ($what): the worker is back and drains the queue");
	is($writer_errors, '', "round $round: the writers stopped only because of the crash");
	is($verify, '0', "round $round: verify() is empty");
	is(join('; ', @$problems), '', "round $round: every acknowledged unit is committed, and only whole units");
	is(join(' ', @differ), '', "round $round: the writers' rows are what their committed units wrote");
	is($totals, '', "round $round: the KPI totals equal raw sums over the sources");
}

# --- A manual refresh against the worker -----------------------------------------

# The worker waits for a manual refresh that is open (the engine's lock), and
# writers wait for neither.
my $manual = $node->background_psql('crm');
$node->safe_psql('crm',
	"INSERT INTO crm.orders (customer_id, amount, ordered_at) VALUES ($customers[0], 1000, '2024-06-01 12:00+00')");
is($manual->query_safe('BEGIN; SELECT mode || coalesce(error, \'\') FROM crm_kpi.refresh()'), 'refresh',
	'a manual refresh() runs, and stays open');
$node->safe_psql('crm',
	"INSERT INTO crm.orders (customer_id, amount, ordered_at) VALUES ($customers[1], 2000, '2024-06-02 12:00+00')");
$node->safe_psql('crm', 'SELECT crm_kpi.request_refresh()');
my $WORKER_WAITS = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
  . "WHERE a.backend_type = 'crm_kpi worker' AND a.datname = 'crm' AND l.locktype = 'advisory' AND NOT l.granted";
ok(poll_for('crm', $WORKER_WAITS, '1', 30), "the worker's refresh waits for the open manual refresh");
is($node->safe_psql('crm',
		"INSERT INTO crm.orders (customer_id, amount, ordered_at) VALUES ($customers[2], 3000, '2024-06-03 12:00+00') "
		  . "RETURNING amount"),
	'3000', 'a writer commits meanwhile without waiting');
$manual->query_safe('COMMIT');
ok(poll_for('crm', $WORKER_WAITS, '0', 30), 'once the manual refresh commits, the worker goes on');
is($node->safe_psql('crm', "SELECT crm_kpi.wait_for_refresh('60 s')"), 't', 'and applies the orders committed meanwhile');
is($node->safe_psql('crm', 'SELECT count(*) FROM crm_kpi.verify()'), '0', 'verify() is empty');
is(totals_differ($node->safe_psql('crm', $TOTALS)), '', 'the KPI totals equal the raw sums');

# The other way round: a manual refresh while the worker is inside a batch
# waits for that batch, and the two take turns until nothing is pending.
$node->safe_psql('crm', 'UPDATE crm.customers SET name = name');
my $busy = $node->safe_psql('crm', sprintf($WORKER_IN_BATCH, '30 s'));
isnt($busy, '', "caught the worker inside a refresh batch ($busy)");
is($manual->query_safe('SELECT mode || coalesce(error, \'\') FROM crm_kpi.refresh()'), 'refresh',
	'a manual refresh() meanwhile succeeds');
is($node->safe_psql('crm', "SELECT crm_kpi.wait_for_refresh('60 s')"), 't', 'nothing is left pending');
is($node->safe_psql('crm', 'SELECT count(*) FROM crm_kpi.verify()'), '0', 'verify() is empty');
is($node->safe_psql('crm', 'SELECT count(*) FROM crm_kpi.refresh_history WHERE error IS NOT NULL'), '0',
	'no refresh, manual or by the worker, recorded an error');
$manual->quit;

# --- Summary ----------------------------------------------------------------------

sub variants_of
{
	my ($kind) = @_;
	return join(', ', map { "$_ $variants{$kind}{$_}" } sort keys %{ $variants{$kind} // {} });
}
diag(sprintf('%d rounds in %.0fs (seed %d), verify() empty after %d of them:', $ROUNDS, time - $started, $SEED, $verified));
diag(sprintf('  kill -9 of the refresh worker: %d (%s), %d inside a refresh batch by the server log',
		$count{worker} // 0, variants_of('worker'), $inside{worker} // 0));
diag(sprintf('  kill -9 of a writing backend: %d (%s), %d with a write transaction open',
		$count{writer} // 0, variants_of('writer'), $inside{writer} // 0));
diag(sprintf('  pg_ctl stop -m immediate, then start: %d (%s), %d with the worker caught inside a refresh batch',
		$count{immediate} // 0, variants_of('immediate'), $inside{immediate} // 0));
diag(sprintf('  %d units acknowledged, %d more committed at the crash unacknowledged; all kept, whole, in %d rounds',
		$total_acks, $total_extra, $kept));
is($verified, $ROUNDS, 'verify() was empty after every round');

$node->stop;
done_testing();
