# 003_worker.pl: the background workers. With the preload, a launcher keeps one
# refresh worker in each database that has the extension: started at server
# start and at CREATE EXTENSION, stopped by DROP EXTENSION and DROP DATABASE,
# reloading crm_kpi.naptime and crm_kpi.enabled on SIGHUP, surviving a failed
# refresh, a kill -9 and an immediate shutdown in the middle of a refresh
# without losing or doubling anything, and never running on a standby.
#
# Every wait for the worker is a poll with a deadline; the only fixed-length
# waits are the short windows in which something must NOT happen.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# The databases with a refresh worker, comma-separated in name order ('' when none).
my $WORKER_DBS = "SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '') FROM pg_stat_activity "
  . "WHERE backend_type = 'crm_kpi worker'";

# The pid of a database's refresh worker ('' when none runs).
sub worker_pid
{
	my ($node, $db) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'crm_kpi worker' AND datname = '$db'");
}

# Poll until $query on $db returns $expected, for at most $seconds; true when it did.
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

# Whether $query on $db keeps returning $expected through a window of $seconds
# (for what must not happen: no fixed sleep stands in for a wait on the worker).
sub stays
{
	my ($node, $db, $query, $expected, $seconds) = @_;
	my $deadline = time + $seconds;
	while (time <= $deadline)
	{
		my $got = $node->safe_psql($db, $query);
		if ($got ne $expected)
		{
			diag("$query returned '$got', not '$expected'");
			return 0;
		}
		usleep(100_000);
	}
	return 1;
}

# Wait until the worker of $db has finished one more round (refresh or
# naptime) that ended after this call; true when it did within $seconds.
sub next_round
{
	my ($node, $db, $seconds, $wake) = @_;
	my $since = $node->safe_psql($db, 'SELECT clock_timestamp()');
	$node->safe_psql($db, 'SELECT crm_kpi.request_refresh()') if $wake;
	return poll_for($node, $db, "SELECT last_run_at > '$since' FROM crm_kpi.worker_status()", 't', $seconds);
}

# The pid of $db's worker once it is inside a refresh batch, after running
# $change there; polled in the server itself (every 2 ms, at most 60 s), so
# that the batch is still running when the caller kills something.
sub change_and_catch_batch
{
	my ($node, $db, $change) = @_;
	return $node->safe_psql($db, qq{
$change;
CREATE FUNCTION pg_temp.batch_pid() RETURNS integer LANGUAGE plpgsql AS \$\$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '60 s';
    found integer;
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        SELECT pid INTO found FROM pg_stat_activity
        WHERE backend_type = 'crm_kpi worker' AND datname = current_database()
          AND query ~ '^crm_kpi: refresh batch [0-9]+';
        IF found IS NOT NULL OR clock_timestamp() > deadline THEN
            RETURN found;
        END IF;
        PERFORM pg_sleep(0.002);
    END LOOP;
END \$\$;
SELECT pg_temp.batch_pid();
});
}

# Revenue of completed orders on a day, from the KPI table and from the orders themselves.
sub revenue_both_ways
{
	my ($node, $db, $day) = @_;
	return $node->safe_psql($db, qq{
SELECT (SELECT coalesce(sum(revenue), 0) FROM crm_kpi.sales_daily WHERE day = '$day')
    || ' ' ||
       (SELECT coalesce(sum(amount), 0) FROM crm.orders
        WHERE status = 'completed'
          AND (ordered_at AT TIME ZONE (SELECT timezone FROM crm_kpi.engine_state))::date = '$day')});
}

# Whether sales_daily has the revenue of 2024-03-05 (UTC, the zone of the KPI tables here) that crm.orders sums to.
my $SALES_OK = "(SELECT sum(revenue) FROM crm_kpi.sales_daily WHERE day = '2024-03-05') = "
  . "(SELECT sum(amount) FROM crm.orders WHERE status = 'completed' "
  . "AND (ordered_at AT TIME ZONE 'UTC')::date = '2024-03-05')";
my $VERIFY = 'SELECT count(*) FROM crm_kpi.verify()';

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'crm_kpi'
restart_after_crash = on
max_worker_processes = 16
});
$node->start;

# --- One worker per database with the extension ---------------------------

for my $db (qw(db_a db_b db_none))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
}
$node->safe_psql('db_a', q{
CREATE EXTENSION crm_kpi;
SELECT crm_kpi.create_reference_schema('crm');
INSERT INTO crm.sales_reps (rep_id, name) VALUES (1, 'Ann');
INSERT INTO crm.customers (customer_id, created_at, acquisition_channel)
SELECT i, '2024-01-01 12:00+00', 'organic' FROM generate_series(1, 5) i;
INSERT INTO crm.orders (customer_id, rep_id, amount, ordered_at)
SELECT 1 + i % 5, 1, 10 * i, '2024-03-05 12:00+00' FROM generate_series(1, 10) i;
});
$node->safe_psql('db_b', 'CREATE EXTENSION crm_kpi');
$node->restart;

ok($node->poll_query_until('postgres', $WORKER_DBS, 'db_a,db_b'),
	'after a restart, a worker runs in each database with the extension, none in the others');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'crm_kpi launcher'"),
	'1', 'one launcher');
is($node->safe_psql('postgres',
		"SELECT application_name FROM pg_stat_activity WHERE backend_type = 'crm_kpi worker' AND datname = 'db_a'"),
	'crm_kpi worker', "the worker's application_name says what it is");
is($node->safe_psql('db_a',
		"SELECT w.pid = a.pid AND w.state IN ('idle', 'refreshing') FROM crm_kpi.worker_status() w, "
		  . "pg_stat_activity a WHERE a.backend_type = 'crm_kpi worker' AND a.datname = 'db_a'"),
	't', 'worker_status() names that worker and its state');

$node->safe_psql('postgres', 'CREATE DATABASE db_late');
$node->safe_psql('db_late', 'CREATE EXTENSION crm_kpi');
ok($node->poll_query_until('postgres', $WORKER_DBS, 'db_a,db_b,db_late'),
	'CREATE EXTENSION on a running server starts a worker there');
ok(stays($node, 'postgres', $WORKER_DBS, 'db_a,db_b,db_late', 1),
	'and still none in the databases without the extension');

# --- Freshness ----------------------------------------------------------

ok($node->poll_query_until('db_a', "SELECT $SALES_OK"), 'the worker fills the KPI tables of the reference schema');
$node->safe_psql('db_a', q{
INSERT INTO crm.orders (customer_id, rep_id, amount, ordered_at)
VALUES (2, 1, 1234.56, '2024-03-05 15:00+00'), (3, 1, 99.5, '2024-03-05 16:00+00'),
       (4, NULL, 7, '2024-03-05 17:00+00')});
is($node->safe_psql('db_a', 'SELECT crm_kpi.request_refresh()'), 't', 'request_refresh() finds a running worker');
is($node->safe_psql('db_a', "SELECT crm_kpi.wait_for_refresh('30 s')"), 't',
	'wait_for_refresh() returns true once the worker has applied the new orders');
my ($kpi, $orders) = split / /, revenue_both_ways($node, 'db_a', '2024-03-05');
is($kpi, $orders, "sales_daily has the day's revenue summed from crm.orders ($orders)");
is($node->safe_psql('db_a', $VERIFY), '0', 'verify() finds no difference');

# --- A database whose transactions default to REPEATABLE READ ----------------
# refresh() refuses anything but READ COMMITTED; the worker runs its batches in READ COMMITTED whatever the
# database's default, so it keeps refreshing.

$node->safe_psql('postgres', 'CREATE DATABASE db_rr');
$node->safe_psql('postgres', q{ALTER DATABASE db_rr SET default_transaction_isolation = 'repeatable read'});
$node->safe_psql('db_rr', q{
CREATE EXTENSION crm_kpi;
SELECT crm_kpi.create_reference_schema('crm');
INSERT INTO crm.customers (customer_id, created_at, acquisition_channel) VALUES (1, '2024-01-01 12:00+00', 'organic');
INSERT INTO crm.orders (customer_id, amount, ordered_at) VALUES (1, 500, '2024-03-06 15:00+00');
});
my ($rr_ret, $rr_out, $rr_err) = $node->psql('db_rr', 'SELECT crm_kpi.refresh()');
like($rr_err, qr/refreshed under READ COMMITTED only, not REPEATABLE READ/,
	'a session of a database defaulting to REPEATABLE READ cannot refresh');
ok($node->poll_query_until('db_rr', q{SELECT count(*) = 1 FROM crm_kpi.sales_daily WHERE day = '2024-03-06' AND revenue = 500}),
	'its worker builds the KPI tables all the same');
$node->safe_psql('db_rr', q{INSERT INTO crm.orders (customer_id, amount, ordered_at) VALUES (1, 20, '2024-03-07 15:00+00')});
ok($node->poll_query_until('db_rr', q{SELECT count(*) = 1 FROM crm_kpi.sales_daily WHERE day = '2024-03-07' AND revenue = 20}),
	'and keeps them fresh');
is($node->safe_psql('db_rr', q{SELECT count(*) FROM crm_kpi.status WHERE last_error IS NOT NULL}), '0', 'without an error');
$node->safe_psql('postgres', 'DROP DATABASE db_rr');
ok($node->poll_query_until('postgres', $WORKER_DBS, 'db_a,db_b,db_late'), 'its worker goes with the database');

# --- DROP EXTENSION and DROP DATABASE --------------------------------------

$node->safe_psql('db_b', 'DROP EXTENSION crm_kpi');
ok($node->poll_query_until('postgres', $WORKER_DBS, 'db_a,db_late'), "DROP EXTENSION stops that database's worker");
ok(stays($node, 'postgres', $WORKER_DBS, 'db_a,db_late', 1), 'and the launcher does not start it again');
$node->safe_psql('db_b', 'CREATE EXTENSION crm_kpi');
ok($node->poll_query_until('postgres', $WORKER_DBS, 'db_a,db_b,db_late'),
	'CREATE EXTENSION again brings the worker back');

isnt(worker_pid($node, 'db_late'), '', 'db_late has a running worker');
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE db_late');
is($ret, 0, 'DROP DATABASE of a database with a running worker succeeds');
is($err, '', 'without an error') or diag($err);
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_database WHERE datname = 'db_late'"), '0',
	'the database is gone');
ok($node->poll_query_until('postgres', $WORKER_DBS, 'db_a,db_b'), 'and so is its worker');

# --- SIGHUP: crm_kpi.naptime and crm_kpi.enabled -----------------------------

# With a naptime of an hour, the worker only runs when woken. Three wake-ups
# make sure it runs with that naptime whatever round the reload arrived in.
$node->safe_psql('db_a', "ALTER SYSTEM SET crm_kpi.naptime = '1h'; SELECT pg_reload_conf()");
ok($node->poll_query_until('db_a', 'SHOW crm_kpi.naptime', '1h'), 'the server reloaded naptime = 1h');
ok(next_round($node, 'db_a', 30, 1) && next_round($node, 'db_a', 30, 1) && next_round($node, 'db_a', 30, 1),
	'the worker runs when woken');

# Now a naptime of 200 ms: the worker must wake by itself, round after round.
$node->safe_psql('db_a', "ALTER SYSTEM SET crm_kpi.naptime = '200ms'; SELECT pg_reload_conf()");
ok($node->poll_query_until('db_a', 'SHOW crm_kpi.naptime', '200ms'), 'the server reloaded naptime = 200ms');
ok(next_round($node, 'db_a', 10, 0) && next_round($node, 'db_a', 10, 0) && next_round($node, 'db_a', 10, 0),
	'after the reload the worker wakes by itself every naptime (200 ms, not the hour it slept before)');

# A change queued without a wake-up (straight into the queue) is applied by the naptime alone.
$node->safe_psql('db_a', "INSERT INTO crm_kpi.change_queue (target, day) VALUES ('sales', '2024-03-06')");
ok(poll_for($node, 'db_a', 'SELECT count(*) FROM crm_kpi.change_queue', '0', 10),
	'a change nobody woke the worker for is applied within the naptime');

$node->safe_psql('db_a', 'ALTER SYSTEM SET crm_kpi.enabled = off; SELECT pg_reload_conf()');
ok($node->poll_query_until('db_a', 'SELECT state FROM crm_kpi.worker_status()', 'disabled'),
	"crm_kpi.enabled = off reloaded: the worker's state becomes 'disabled'");
is($node->safe_psql('db_a', 'SELECT crm_kpi.request_refresh()'), 'f', 'request_refresh() says no enabled worker runs');
my $committed = $node->safe_psql('db_a', q{
INSERT INTO crm.orders (customer_id, rep_id, amount, ordered_at) VALUES (5, 1, 500, '2024-03-05 18:00+00');
SELECT clock_timestamp()});
# Two more rounds of the disabled worker after the commit (which woke it): the change stays queued.
my $rounds_after = "SELECT state_change > '%s' FROM pg_stat_activity "
  . "WHERE backend_type = 'crm_kpi worker' AND datname = 'db_a'";
ok($node->poll_query_until('db_a', sprintf($rounds_after, $committed)), 'the disabled worker goes on waking up');
my $later = $node->safe_psql('db_a', 'SELECT clock_timestamp()');
ok($node->poll_query_until('db_a', sprintf($rounds_after, $later)), 'round after round');
is($node->safe_psql('db_a', "SELECT $SALES_OK, (SELECT sum(pending_keys) > 0 FROM crm_kpi.status)"), 'f|t',
	'but while disabled it applies nothing: the change stays pending');

# A restart while disabled: disabled workers wait in the databases with the
# extension, and none stays in the others (where it would keep, for example,
# CREATE DATABASE ... TEMPLATE from using them).
$node->restart;
ok(poll_for($node, 'postgres', $WORKER_DBS, 'db_a,db_b', 15),
	'after a restart with crm_kpi.enabled = off, workers wait only in the databases with the extension');
($ret, $out, $err) = $node->psql('postgres', 'CREATE DATABASE db_copy TEMPLATE db_none');
is($err, '', 'no worker keeps CREATE DATABASE from copying a database without the extension');
$node->safe_psql('postgres', 'DROP DATABASE IF EXISTS db_copy');
ok($node->poll_query_until('db_a', 'SELECT state FROM crm_kpi.worker_status()', 'disabled'),
	'the restarted worker is disabled');
is($node->safe_psql('db_a', "SELECT $SALES_OK"), 'f', 'and the change is still pending');

$node->safe_psql('db_a', 'ALTER SYSTEM SET crm_kpi.enabled = on; SELECT pg_reload_conf()');
ok($node->poll_query_until('db_a', "SELECT $SALES_OK"),
	'enabled again, the worker applies the pending change by itself');
is($node->safe_psql('db_a', "SELECT crm_kpi.wait_for_refresh('30 s')"), 't', 'nothing is left pending');
ok($node->poll_query_until('db_a', 'SELECT state FROM crm_kpi.worker_status()', 'idle'),
	'the worker is idle between rounds');
is($node->safe_psql('db_a', $VERIFY), '0', 'verify() finds no difference');

# --- A refresh that fails ---------------------------------------------------

# A survey table bound without the reference schema's CHECK: an NPS score of 11
# gets in, and the NPS aggregate refuses it at refresh. The satisfaction family
# waits, with its error; the others go on being refreshed.
$node->safe_psql('db_a', q{
CREATE TABLE public.my_survey (id bigint PRIMARY KEY, cust bigint NOT NULL, k text NOT NULL, s integer NOT NULL,
                               at timestamptz NOT NULL);
SELECT crm_kpi.bind_source('survey_responses', 'public.my_survey',
    '{"response_id": "id", "customer_id": "cust", "kind": "k", "score": "s", "answered_at": "at"}');
INSERT INTO public.my_survey VALUES (1, 1, 'nps', 9, '2024-03-07 10:00+00');
});
is($node->safe_psql('db_a', "SELECT crm_kpi.wait_for_refresh('30 s')"), 't', 'a bound survey table is taken in');
my $log_offset = -s $node->logfile;
$node->safe_psql('db_a', q{INSERT INTO public.my_survey VALUES (2, 2, 'nps', 11, '2024-03-07 11:00+00')});
ok($node->wait_for_log(qr/crm_kpi worker: refresh failed: satisfaction_daily, satisfaction_months: 22003: NPS score 11 is out of range/,
		$log_offset),
	'the failed refresh is in the server log with its table, SQLSTATE and message');
ok($node->poll_query_until('db_a',
		"SELECT string_agg(table_name, ',' ORDER BY table_name) FILTER (WHERE last_error LIKE '22003: NPS score 11 is out of range%') "
		  . "|| ' ' || count(*) FILTER (WHERE last_error IS NOT NULL) "
		  . "|| ' ' || bool_and(worker_last_error LIKE 'satisfaction_daily, satisfaction_months: 22003: NPS score 11 is out of range%') "
		  . "FROM crm_kpi.status",
		'satisfaction_daily,satisfaction_months 2 true'),
	'crm_kpi.status shows the error on the tables of the surveys alone (last_error), and in worker_last_error');
is($node->safe_psql('db_a', "SELECT crm_kpi.wait_for_refresh('2 s')"), 'f',
	'wait_for_refresh() returns false at its timeout while the refresh fails');
is($node->safe_psql('db_a',
		"SELECT failures >= 1 AND retry_at - last_error_at = interval '1 second' * 2 ^ (failures - 1) "
		  . "FROM crm_kpi.status WHERE table_name = 'satisfaction_daily'"), 't',
	'the worker leaves the failed family alone for 1 s, doubling with each failure in a row (failures, retry_at)');
isnt(worker_pid($node, 'db_a'), '', 'the worker is still there');
$node->safe_psql('db_a',
	q{INSERT INTO crm.orders (customer_id, rep_id, amount, ordered_at) VALUES (5, 1, 321, '2024-03-08 12:00+00')});
ok($node->poll_query_until('db_a', "SELECT revenue FROM crm_kpi.sales_daily WHERE day = '2024-03-08'", '321'),
	'an order written meanwhile is refreshed by the worker: the sales family goes on');
ok($node->poll_query_until('db_a', 'SELECT state FROM crm_kpi.worker_status()', 'idle'),
	'between its retries of the failed family the worker is idle: it does not spin on the keys it holds back');

$node->safe_psql('db_a', 'DELETE FROM public.my_survey WHERE s > 10');
is($node->safe_psql('db_a', "SELECT crm_kpi.wait_for_refresh('30 s')"), 't',
	'once the bad row is gone the worker carries on');
is($node->safe_psql('db_a', 'SELECT count(*) FROM crm_kpi.status WHERE last_error IS NOT NULL OR failures > 0 OR retry_at IS NOT NULL'), '0',
	"status's last_error, failures and retry_at are cleared");
ok($node->poll_query_until('db_a', 'SELECT state FROM crm_kpi.worker_status()', 'idle'), 'the worker is idle again');
is($node->safe_psql('db_a', $VERIFY), '0', 'verify() finds no difference');

# --- kill -9 of the worker in the middle of a refresh -----------------------

# Small batches make a refresh of many customers a long run of short transactions.
$node->safe_psql('postgres', 'CREATE DATABASE db_big');
$node->safe_psql('postgres', 'ALTER DATABASE db_big SET crm_kpi.refresh_batch_size = 500');
$node->safe_psql('db_big', q{
CREATE EXTENSION crm_kpi;
SELECT count(*) FROM crm_kpi.generate_sample_data('crm', 20000, 7, '2023-01-01', 730);
});
is($node->safe_psql('db_big', "SELECT crm_kpi.wait_for_refresh('120 s')"), 't',
	'the worker builds the KPI tables of 20000 customers');

my $killed = change_and_catch_batch($node, 'db_big',
	"UPDATE crm.customers SET name = coalesce(name, '') || '.'; UPDATE crm.orders SET amount = amount + 1");
isnt($killed, '', "caught the worker (pid $killed) inside a refresh batch");
kill 'KILL', $killed if $killed;
ok( $node->poll_query_until('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'crm_kpi worker' AND datname = 'db_big' "
		  . "AND pid <> '$killed'", '1'),
	'after crash recovery a new worker runs');
is($node->safe_psql('db_big', "SELECT crm_kpi.wait_for_refresh('120 s')"), 't', 'and finishes the refresh');
is($node->safe_psql('db_big', $VERIFY), '0', 'verify() finds no difference: nothing lost, nothing applied twice');
my $killed_line = qr/"crm_kpi worker" \(PID $killed\) was terminated by signal 9: Killed/;
like(slurp_file($node->logfile), qr/$killed_line\n.*Failed process was running: crm_kpi: refresh batch \d+/,
	'the log shows the worker killed in the middle of a refresh');
ok($node->log_contains(qr/all server processes terminated; reinitializing/),
	'and the server going through crash recovery');

# --- Immediate shutdown in the middle of a refresh -----------------------------

my $busy = change_and_catch_batch($node, 'db_big',
	"UPDATE crm.customers SET phone = coalesce(phone, '') || '1'; UPDATE crm.orders SET amount = amount + 1");
isnt($busy, '', 'caught the worker inside a refresh batch');
$node->stop('immediate');
$node->start;
ok($node->poll_query_until('postgres', $WORKER_DBS, 'db_a,db_b,db_big'), 'after the restart the workers run again');
is($node->safe_psql('db_big', "SELECT crm_kpi.wait_for_refresh('120 s')"), 't', 'and finish the refresh');
is($node->safe_psql('db_big', $VERIFY), '0', 'verify() finds no difference after the immediate shutdown');

# --- No worker on a standby ---------------------------------------------------

$node->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'backup', has_streaming => 1);
$standby->start;
my $CRM_KPI_BACKENDS =
  "SELECT count(*) FROM pg_stat_activity WHERE backend_type IN ('crm_kpi worker', 'crm_kpi launcher')";
isnt(worker_pid($node, 'db_a'), '', 'the primary has its worker');
$node->safe_psql('db_a', 'CREATE TABLE standby_marker AS SELECT 42 AS answer');
$node->wait_for_catchup($standby);
ok($standby->poll_query_until('db_a', 'SELECT answer FROM standby_marker', '42'), 'the standby replays the primary');
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'and is in recovery');
ok(stays($standby, 'postgres', $CRM_KPI_BACKENDS, '0', 2), 'no crm_kpi launcher nor worker runs on the standby');

$standby->promote;
ok($standby->poll_query_until('postgres', $WORKER_DBS, 'db_a,db_b,db_big'),
	'once promoted, the former standby starts its workers');
$standby->stop;

# --- The server logs -------------------------------------------------------------

$node->stop;

# Lines that report a PANIC, a crash or a process that exited badly (the
# logical replication launcher exits with code 1 at every shutdown), but for
# the kill -9 this test did on purpose.
sub crash_lines
{
	my ($node, $expected) = @_;
	return grep {
		/\bPANIC:|terminated\ by\ signal|server\ process\ .*\ exited|exited\ with\ exit\ code\ [^01]
		 |"crm_kpi[^"]*"\ \(PID\ \d+\)\ exited\ with\ exit\ code\ [^0]/x
		  && !/$expected/
	} split /\n/, slurp_file($node->logfile);
}
is(join("\n", crash_lines($node, qr/\(PID $killed\) was terminated by signal 9/)), '',
	'no crash in the primary log but the kill -9 the test did');
is(join("\n", crash_lines($standby, qr/(?!)/)), '', 'no crash in the standby log');
my ($before_promotion) = slurp_file($standby->logfile) =~ /\A(.*?)received promote request/s;
ok(defined $before_promotion, 'the standby log has its promotion');
is(join("\n", grep { /crm_kpi/ && !/statement: |STATEMENT: / } split /\n/, $before_promotion // ''),
	'', 'nothing from crm_kpi in the standby log before its promotion');

done_testing();
