# 009_dump_restore.pl: a database using crm_kpi survives pg_dump and a restore
# (pg_restore of the custom format, serial and parallel, and psql of the plain
# format) into a server whose refresh workers run: the bindings (of the
# reference schema, of a custom table, of a partitioned table and of a view),
# the lifecycle tracking and history and the edited RFM segments come back; the extension's configuration
# tables are the only ones dumped; the capture triggers are back on the
# restored tables, removable with the extension; the KPI tables, which are not
# dumped, are rebuilt by the worker (flagged in crm_kpi.status while it is
# paused) to exactly the values of the original, verify() empty; summaries and
# sketches stored in a table read back the same from pg_dump's text COPY and
# from COPY (FORMAT binary). ALTER EXTENSION crm_kpi UPDATE keeps everything,
# and the update chain from every earlier installable version is walked.
#
# Every wait for the worker is a poll with a deadline.
use strict;
use warnings;
use Cwd ();
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CrmKpiTest qw(poll_for run_client);

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'crm_kpi'
max_worker_processes = 16
crm_kpi.naptime = '200ms'
});
$node->start;
# An absolute path: the server reads and writes COPY files there.
my $tmp = Cwd::abs_path(PostgreSQL::Test::Utils::tempdir);

# One line per KPI table: its name and an md5 of its rows in a fixed order.
my $KPI_FINGERPRINT = q{
SELECT string_agg(t.table_name || ' ' || t.rows || ' ' || t.digest, E'\n' ORDER BY t.table_name)
FROM crm_kpi.kpi_tables k
CROSS JOIN LATERAL (
    SELECT k.table_name,
           (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM crm_kpi.%I', k.table_name), false, true, '')))[1]::text AS rows,
           (xpath('/row/d/text()', query_to_xml(format('SELECT md5(coalesce(string_agg(x::text, E''\n'' ORDER BY x::text), '''')) AS d FROM crm_kpi.%I x', k.table_name), false, true, '')))[1]::text AS digest
) t};
my $BINDINGS = q{SELECT string_agg(format('%s %s %s %s', kind, source, mapping, bound_by), E'\n' ORDER BY kind, source::text)
FROM crm_kpi.source_bindings};
my $LIFECYCLE = q{SELECT (SELECT string_agg(format('%s %s %s', source_table, key_column, stage_column), E'\n' ORDER BY source_table::text)
                          FROM crm_kpi.lifecycle_tracking)
                 || E'\n' || (SELECT string_agg(format('%s %s %s %s %s %s', id, source, customer_key, from_stage, to_stage, changed_at),
                                                E'\n' ORDER BY id) FROM crm_kpi.lifecycle_history)};
# The RFM segments, and the buyers of each (customer_kpis reads them).
my $RFM = q{SELECT string_agg(format('%s %s %s %s %s', segment, recency_scores, frequency_scores, meaning, builtin), E'\n' ORDER BY segment)
                   || E'\n' || (SELECT string_agg(format('%s %s', segment, customers), E'\n' ORDER BY segment) FROM crm_kpi.rfm_report())
            FROM crm_kpi.rfm_segments};
my $STORE = q{SELECT md5(string_agg(s::text, E'\n' ORDER BY s.id)) FROM public.kpi_store s};
my $STORE_BINARY = q{SELECT md5(string_agg(concat_ws(' ', s.id, crm_kpi.nps_summary_send(s.nps), crm_kpi.csat_summary_send(s.csat),
    crm_kpi.rate_summary_send(s.won), crm_kpi.purchase_summary_send(s.purchases), crm_kpi.sketch_send(s.amounts),
    crm_kpi.sketch_send(s.first_response), s.stage), E'\n' ORDER BY s.id)) FROM public.kpi_store s};
# Capture triggers on the tables of bound sources, with how they depend on crm_kpi.capture() ('a': removable with the extension).
my $CAPTURE_TRIGGERS = q{SELECT string_agg(format('%s %s %s', x.tgrelid::regclass, x.tgname, d.deptype), E'\n'
                                          ORDER BY x.tgrelid::regclass::text, x.tgname)
FROM pg_trigger x JOIN pg_depend d ON d.classid = 'pg_trigger'::regclass AND d.objid = x.oid AND d.refclassid = 'pg_proc'::regclass
WHERE x.tgfoid = 'crm_kpi.capture()'::regprocedure};

# ====================================================================== the original database

$node->safe_psql('postgres', 'CREATE DATABASE crm_orig');
# Sample data that ended long ago (800 days before today), so that no stage or
# churn changes with the seconds that pass between the original and a restore.
# One transaction: the worker (started at its commit) must not refresh while
# generate_sample_data rebuilds the tables' keys (they would deadlock).
$node->safe_psql('crm_orig', q{
SET client_min_messages = warning;
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT crm_kpi.create_reference_schema('crm');
SELECT count(*) FROM crm_kpi.generate_sample_data('crm', 400, 9, current_date - 1500, 700);

-- A custom orders table: local timestamps, a status to translate, drafts to leave out.
CREATE TABLE public.shop_orders (id bigint PRIMARY KEY, client bigint NOT NULL, total numeric NOT NULL,
                                 state text NOT NULL, created timestamp NOT NULL);
INSERT INTO public.shop_orders
SELECT i, 1 + i % 60, 10 + i * 1.5, (ARRAY['paid', 'paid', 'refund', 'draft'])[1 + i % 4],
       timestamp '2021-06-01' + i * interval '9 hours 7 minutes'
FROM generate_series(1, 300) i;
SELECT crm_kpi.bind_source('orders', 'public.shop_orders', '{
  "order_id": "id", "customer_id": "client", "amount": "total",
  "status": {"expr": "CASE state WHEN ''paid'' THEN ''completed'' ELSE ''refunded'' END"},
  "ordered_at": {"expr": "created AT TIME ZONE ''UTC''"},
  "_filter": {"expr": "state <> ''draft''"}}');

-- A partitioned tickets table (partitions get their own capture triggers).
CREATE TABLE public.help_tickets (id bigint, cust bigint NOT NULL, opened timestamptz NOT NULL, answered timestamptz,
                                  closed timestamptz) PARTITION BY RANGE (opened);
CREATE TABLE public.help_tickets_2021 PARTITION OF public.help_tickets FOR VALUES FROM ('2021-01-01') TO ('2022-01-01');
CREATE TABLE public.help_tickets_2022 PARTITION OF public.help_tickets FOR VALUES FROM ('2022-01-01') TO ('2023-01-01');
INSERT INTO public.help_tickets
SELECT i, 1 + i % 40, timestamptz '2021-03-01 08:00+00' + i * interval '1 day 3 hours',
       timestamptz '2021-03-01 08:00+00' + i * interval '1 day 3 hours' + (i % 13) * interval '47 minutes',
       CASE WHEN i % 5 > 0 THEN timestamptz '2021-03-01 08:00+00' + i * interval '1 day 3 hours' + (i % 7) * interval '9 hours' END
FROM generate_series(1, 400) i;
SELECT crm_kpi.bind_source('tickets', 'public.help_tickets', '{
  "ticket_id": "id", "customer_id": "cust", "opened_at": "opened", "first_response_at": "answered", "resolved_at": "closed"}');

-- A view bound as a source (views get no capture triggers).
CREATE TABLE public.ad_costs (chan text NOT NULL, d date NOT NULL, eur numeric NOT NULL);
INSERT INTO public.ad_costs SELECT 'podcast', date '2021-05-01' + i, 3 + i % 11 FROM generate_series(0, 200) i;
CREATE VIEW public.ad_costs_v AS SELECT chan, d, eur FROM public.ad_costs;
SELECT crm_kpi.bind_source('marketing_spend', 'public.ad_costs_v', '{"channel": "chan", "day": "d", "amount": "eur"}');

-- A tracked stage column, with a history.
CREATE TABLE public.contacts (id bigint PRIMARY KEY, stage crm_kpi.lifecycle_stage);
SELECT crm_kpi.track_lifecycle('public.contacts', 'id', 'stage');
INSERT INTO public.contacts VALUES (1, 'prospect'), (2, 'prospect'), (3, 'customer');
UPDATE public.contacts SET stage = 'contacted' WHERE id = 1;
UPDATE public.contacts SET stage = 'customer' WHERE id IN (1, 2);
UPDATE public.contacts SET stage = 'active' WHERE id = 3;

-- Summaries and sketches stored in a table of the user's.
CREATE TABLE public.kpi_store (id int PRIMARY KEY, nps crm_kpi.nps_summary, csat crm_kpi.csat_summary,
                               won crm_kpi.rate_summary, purchases crm_kpi.purchase_summary,
                               amounts crm_kpi.sketch, first_response crm_kpi.sketch, stage crm_kpi.lifecycle_stage);
INSERT INTO public.kpi_store
SELECT m.id,
       (SELECT crm_kpi.nps_agg(score) FROM crm.survey_responses WHERE kind = 'nps' AND extract(month FROM answered_at) = m.id),
       (SELECT crm_kpi.csat_agg(score) FROM crm.survey_responses WHERE kind = 'csat' AND extract(month FROM answered_at) = m.id),
       (SELECT crm_kpi.rate_agg(status = 'won') FROM crm.opportunities WHERE status <> 'open' AND extract(month FROM created_at) = m.id),
       (SELECT crm_kpi.purchase_agg(amount, ordered_at) FROM crm.orders WHERE status = 'completed' AND extract(month FROM ordered_at) = m.id),
       (SELECT crm_kpi.sketch_agg(amount::float8) FROM crm.orders WHERE extract(month FROM ordered_at) = m.id),
       (SELECT crm_kpi.sketch_agg(first_response_at - opened_at) FROM crm.tickets WHERE extract(month FROM opened_at) = m.id),
       (enum_range(NULL::crm_kpi.lifecycle_stage))[1 + m.id % 7]
FROM generate_series(1, 12) m (id);
INSERT INTO public.kpi_store (id) VALUES (13);  -- NULLs too

-- The RFM segments, edited: two built-in ones replaced by one over their cells, another one's meaning changed.
INSERT INTO crm_kpi.rfm_segments (segment, recency_scores, frequency_scores, meaning)
VALUES ('dormant', '[1,2]', '[1,2]', 'few orders, long ago');
UPDATE crm_kpi.rfm_segments SET meaning = 'our best customers' WHERE segment = 'champions';
COMMIT;
});
ok(poll_for($node, 'crm_orig', "SELECT crm_kpi.wait_for_refresh('60 s')", 't', 90), 'the worker fills the original KPI tables');
is($node->safe_psql('crm_orig', 'SELECT count(*) FROM crm_kpi.verify()'), '0', 'the original KPI tables are exact');
is($node->safe_psql('crm_orig', 'SELECT count(nps) > 6 AND count(csat) > 6 AND count(won) > 6 AND count(purchases) > 6 '
		  . 'AND count(amounts) > 6 AND count(first_response) > 6 FROM public.kpi_store'),
	't', 'the stored summaries and sketches are filled');
# Every type of the extension with a binary form has a column in the store.
is($node->safe_psql('crm_orig', q{
SELECT string_agg(t.typname, ',' ORDER BY t.typname) FROM pg_type t
WHERE t.typnamespace = 'crm_kpi'::regnamespace AND t.typtype IN ('b', 'e') AND t.typcategory <> 'A' AND t.typsend <> 0
  AND t.oid NOT IN (SELECT a.atttypid FROM pg_attribute a WHERE a.attrelid = 'public.kpi_store'::regclass)}),
	'', 'the store has a column of every summary, sketch and enum type of the extension');

my %orig = (
	kpi => $node->safe_psql('crm_orig', $KPI_FINGERPRINT),
	bindings => $node->safe_psql('crm_orig', $BINDINGS),
	lifecycle => $node->safe_psql('crm_orig', $LIFECYCLE),
	rfm => $node->safe_psql('crm_orig', $RFM),
	store => $node->safe_psql('crm_orig', $STORE),
	store_binary => $node->safe_psql('crm_orig', $STORE_BINARY),
	triggers => $node->safe_psql('crm_orig', $CAPTURE_TRIGGERS),
	orders => $node->safe_psql('crm_orig', 'SELECT count(*) FROM crm.orders'));
unlike($orig{kpi}, qr/ 0 d41d8cd98f00b204e9800998ecf8427e/, 'every original KPI table has rows') or diag($orig{kpi});
ok($orig{rfm} =~ /^dormant \[1,3\) \[1,3\) few orders, long ago f$/m && $orig{rfm} =~ /^champions \[4,6\) \[4,6\) our best customers f$/m
	  && $orig{rfm} =~ /^dormant [1-9]\d*$/m,
	'the original has its edited RFM segments, with buyers in the new one') or diag($orig{rfm});
unlike($orig{rfm}, qr/^(lost|hibernating) /m, 'and not the two built-in ones it replaced');
is(scalar(() = $orig{triggers} =~ / a$/mg), 4 * (7 + 1 + 3), 'the original has 4 capture triggers per captured table, partitions included')
  or diag($orig{triggers});

# ====================================================================== what pg_dump keeps

is($node->safe_psql('crm_orig', q{
SELECT string_agg(c::regclass::text, ',' ORDER BY c::regclass::text)
FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'crm_kpi'}),
	'crm_kpi.lifecycle_history,crm_kpi.lifecycle_history_id_seq,crm_kpi.lifecycle_tracking,crm_kpi.pending_bindings,crm_kpi.rfm_segments,crm_kpi.source_bindings',
	'the configuration pg_dump keeps: bindings (held ones too), lifecycle tracking and history, RFM segments; not the KPI tables, '
	  . 'engine_state, the queue or the refresh history, which a rebuild remakes');

my $dump = "$tmp/crm.dump";
my ($ok, $out, $err) = run_client('pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('crm_orig'));
ok($ok, 'pg_dump -Fc succeeds') or diag($err);
($ok, $out, $err) = run_client('pg_restore', '-l', $dump);
my @ext_data = sort map { /(?:TABLE DATA|SEQUENCE SET) crm_kpi (\S+)/ ? $1 : () } split /\n/, $out;
is(join(',', @ext_data), 'lifecycle_history,lifecycle_history_id_seq,lifecycle_tracking,pending_bindings,rfm_segments,source_bindings',
	'the dump holds data of those tables only, of all the extension\'s');
is(scalar(grep { /TRIGGER public help_tickets_202[12] crm_kpi_tickets_/ } split /\n/, $out), 8,
	"the dump holds the partitions' capture triggers");
is(scalar(grep { /TRIGGER crm_kpi hold_restored_binding/ } split /\n/, $out), 0,
	"but no trigger of the extension's own tables");

# ====================================================================== restored: checks shared by every restore

# Check a restored database, once the worker has caught up.
sub check_restored
{
	my ($db, $how) = @_;
	ok(poll_for($node, $db, 'SELECT count(*) FROM crm_kpi.status WHERE needs_rebuild IS NOT NULL OR pending_keys > 0', '0', 60),
		"$how: the worker rebuilds the KPI tables and nothing is left pending");
	is($node->safe_psql($db, "SELECT count(*) > 0 FROM crm_kpi.refresh_history WHERE mode = 'rebuild' AND rows_touched > 0"),
		't', "$how: by a rebuild");
	is($node->safe_psql($db, 'SELECT count(*) FROM crm_kpi.pending_bindings'), '0', "$how: no binding is left held");
	is($node->safe_psql($db, $BINDINGS), $orig{bindings}, "$how: the bindings are those of the original");
	is($node->safe_psql($db, $CAPTURE_TRIGGERS), $orig{triggers},
		"$how: the capture triggers are back, every one removable with the extension");
	is($node->safe_psql($db, 'SELECT bool_and(crm_kpi.capture_ok(kind, source)) FROM crm_kpi.source_bindings'), 't',
		"$how: every bound source is captured");
	is($node->safe_psql($db, $LIFECYCLE), $orig{lifecycle}, "$how: lifecycle tracking and history are those of the original");
	is($node->safe_psql($db, $RFM), $orig{rfm}, "$how: the edited RFM segments are those of the original, with the same buyers");
	is($node->safe_psql($db, 'SELECT count(*) FROM crm_kpi.verify()'), '0', "$how: verify() finds no difference");
	is($node->safe_psql($db, $KPI_FINGERPRINT), $orig{kpi}, "$how: every KPI table equals the original's");
	is($node->safe_psql($db, $STORE), $orig{store}, "$how: stored summaries and sketches read back the same (text)");
	is($node->safe_psql($db, $STORE_BINARY), $orig{store_binary}, "$how: and send the same bytes (binary)");
	return;
}

# ====================================================================== pg_restore, the worker paused

# With the workers paused the rebuild a restore needs stays visible in crm_kpi.status.
$node->safe_psql('postgres', 'ALTER SYSTEM SET crm_kpi.enabled = off; SELECT pg_reload_conf()');
ok(poll_for($node, 'postgres', 'SHOW crm_kpi.enabled', 'off', 30), 'workers paused');
$node->safe_psql('postgres', 'CREATE DATABASE crm_custom');
($ok, $out, $err) = run_client('pg_restore', '-d', $node->connstr('crm_custom'), $dump);
ok($ok, 'pg_restore of the custom format succeeds') or diag($err);
is($err, '', 'without an error or warning');
is($node->safe_psql('crm_custom', 'SELECT count(*) FROM crm.orders'), $orig{orders}, 'the CRM rows are restored');
is($node->safe_psql('crm_custom', 'SELECT count(*) FROM crm_kpi.pending_bindings'), '0',
	'every binding is bound once its capture triggers are restored');
is($node->safe_psql('crm_custom', 'SELECT count(DISTINCT needs_rebuild) = 1 AND bool_and(needs_rebuild IS NOT NULL) FROM crm_kpi.status'),
	't', 'crm_kpi.status says every KPI table needs a rebuild');
is($node->safe_psql('crm_custom', 'SELECT crm_kpi.rebuild_reason() IS NOT NULL'), 't', 'and rebuild_reason() says why');
is($node->safe_psql('crm_custom', 'SELECT count(*) FROM crm_kpi.customer_stats'), '0', 'the KPI tables are not in the dump');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET crm_kpi.enabled; SELECT pg_reload_conf()');
check_restored('crm_custom', 'pg_restore');
is($node->safe_psql('crm_custom', 'SELECT pid IS NOT NULL AND last_run_at IS NOT NULL FROM crm_kpi.worker_status()'), 't',
	'pg_restore: it was the worker that rebuilt them');

# The restored capture triggers work: new rows reach the KPI tables.
my $opened = $node->safe_psql('crm_custom', q{SELECT coalesce(sum(opened), 0) FROM crm_kpi.service_daily WHERE day = '2022-02-02'});
$node->safe_psql('crm_custom', q{
INSERT INTO public.shop_orders VALUES (100001, 7, 999.25, 'paid', '2021-09-09 09:00');
INSERT INTO public.help_tickets VALUES (100001, 7, '2022-02-02 10:00+00', '2022-02-02 11:00+00', NULL)});
ok(poll_for($node, 'crm_custom', q{SELECT 0 = (SELECT sum(revenue) FROM crm_kpi.sales_daily WHERE day = '2021-09-09')
    - (SELECT coalesce(sum(total), 0) FROM public.shop_orders WHERE state = 'paid' AND created::date = '2021-09-09')
    - (SELECT coalesce(sum(amount), 0) FROM crm.orders WHERE status = 'completed' AND (ordered_at AT TIME ZONE 'UTC')::date = '2021-09-09')},
	't', 30), 'pg_restore: a write to a restored source is captured and refreshed by the worker');
ok(poll_for($node, 'crm_custom', q{SELECT sum(opened) FROM crm_kpi.service_daily WHERE day = '2022-02-02'}, $opened + 1, 30),
	'pg_restore: so is a write to a partition of a restored partitioned source');
is($node->safe_psql('crm_custom', 'SELECT count(*) FROM crm_kpi.verify()'), '0', 'pg_restore: still exact');

# Binary COPY of the stored values from the original into the restored database.
$node->safe_psql('crm_orig', "COPY public.kpi_store TO '$tmp/kpi_store.bin' (FORMAT binary)");
$node->safe_psql('crm_custom', qq{
CREATE TABLE public.kpi_store_bin (LIKE public.kpi_store);
COPY public.kpi_store_bin FROM '$tmp/kpi_store.bin' (FORMAT binary)});
is($node->safe_psql('crm_custom', 'SELECT count(*) FROM public.kpi_store s FULL JOIN public.kpi_store_bin b ON b.id = s.id '
		  . 'WHERE s::text IS DISTINCT FROM b::text'),
	'0', 'COPY (FORMAT binary) of stored summaries and sketches reads back the same values');

# ALTER EXTENSION UPDATE to the version installed is a no-op that keeps everything.
my $ext_before = $node->safe_psql('crm_custom', q{SELECT extversion FROM pg_extension WHERE extname = 'crm_kpi'});
($ok, $out, $err) = run_client('psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('crm_custom'),
	'-c', 'ALTER EXTENSION crm_kpi UPDATE');
ok($ok, 'ALTER EXTENSION crm_kpi UPDATE succeeds on a restored database') or diag($err);
is($node->safe_psql('crm_custom', q{SELECT extversion FROM pg_extension WHERE extname = 'crm_kpi'}), $ext_before,
	'it keeps the version (the newest)');
is($node->safe_psql('crm_custom', 'SELECT count(*) FROM crm_kpi.verify()'), '0', 'and the KPI tables exact');

# DROP EXTENSION on a restored database removes the restored capture triggers and leaves the rows
# (once the user's own columns of the extension's types are gone, and the tracked table untracked).
$node->safe_psql('crm_custom', q{
SELECT crm_kpi.untrack_lifecycle('public.contacts');
DROP TABLE public.contacts, public.kpi_store, public.kpi_store_bin});
($ok, $out, $err) = run_client('psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('crm_custom'),
	'-c', 'DROP EXTENSION crm_kpi');
ok($ok, 'DROP EXTENSION (without CASCADE) works on the restored database') or diag($err);
is($node->safe_psql('crm_custom', "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'crm\\_kpi\\_%'"), '0',
	'every restored capture trigger went with it');
is($node->safe_psql('crm_custom', 'SELECT count(*) FROM crm.orders'), $orig{orders}, 'and the CRM rows stayed');
$node->safe_psql('postgres', 'DROP DATABASE crm_custom');

# ====================================================================== pg_restore -j 2, the worker running

for my $round (1 .. 2)
{
	$node->safe_psql('postgres', "CREATE DATABASE crm_parallel_$round");
	($ok, $out, $err) = run_client('pg_restore', '-j', '2', '-d', $node->connstr("crm_parallel_$round"), $dump);
	ok($ok && $err eq '', "pg_restore -j 2 (round $round) succeeds without an error or warning") or diag($err);
	check_restored("crm_parallel_$round", "pg_restore -j 2 (round $round)");
	$node->safe_psql('postgres', "DROP DATABASE crm_parallel_$round");
}

# ====================================================================== plain format through psql, the worker running

$node->safe_psql('postgres', 'CREATE DATABASE crm_plain');
my $plain = "$tmp/crm.sql";
($ok, $out, $err) = run_client('pg_dump', '-Fp', '-f', $plain, '-d', $node->connstr('crm_orig'));
ok($ok, 'pg_dump of the plain format succeeds') or diag($err);
($ok, $out, $err) = run_client('psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('crm_plain'), '-f', $plain);
ok($ok, 'psql restores the plain dump (ON_ERROR_STOP)') or diag($err);
is($err, '', 'without an error or warning');
check_restored('crm_plain', 'psql');
$node->safe_psql('postgres', 'DROP DATABASE crm_plain');

# ====================================================================== upgrades

# Every version the server can install can be updated to the default one.
my $default = $node->safe_psql('crm_orig', q{SELECT default_version FROM pg_available_extensions WHERE name = 'crm_kpi'});
is($node->safe_psql('crm_orig', qq{
SELECT coalesce(string_agg(source, ','), '') FROM pg_extension_update_paths('crm_kpi')
WHERE target = '$default' AND source <> '$default' AND path IS NULL}),
	'', "every known version has an update path to $default");
my @earlier = split /\n/, $node->safe_psql('crm_orig', qq{
SELECT version FROM pg_available_extension_versions WHERE name = 'crm_kpi' AND version <> '$default' ORDER BY version});
# The extension's objects, each with a digest of its definition: a function's; a view's query; a table's or
# view's columns (name, type, not null, default), storage options, constraints, indexes and triggers; its comment
# and grants.
my $fresh_catalog = q{
SELECT string_agg(o, E'\n' ORDER BY o) FROM (
    SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
           || CASE WHEN p.prokind IN ('f', 'p') THEN ' ' || md5(pg_get_functiondef(p.oid)) ELSE '' END
           || CASE WHEN c.relkind IN ('v', 'm') THEN ' query ' || md5(pg_get_viewdef(c.oid)) ELSE '' END
           || CASE WHEN c.relkind IN ('r', 'p', 'v', 'm', 'c') THEN ' ' || md5(concat_ws(E'\n',
                  (SELECT string_agg(format('%s %s %s %s', a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                            pg_get_expr(ad.adbin, ad.adrelid)), ', ' ORDER BY a.attnum)
                   FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
                  array_to_string(c.reloptions, ', '),
                  (SELECT string_agg(k.conname || ' ' || pg_get_constraintdef(k.oid), ', ' ORDER BY k.conname)
                   FROM pg_constraint k WHERE k.conrelid = c.oid),
                  (SELECT string_agg(pg_get_indexdef(i.indexrelid), ', ' ORDER BY 1) FROM pg_index i WHERE i.indrelid = c.oid),
                  (SELECT string_agg(pg_get_triggerdef(t.oid), ', ' ORDER BY 1) FROM pg_trigger t
                   WHERE t.tgrelid = c.oid AND NOT t.tgisinternal))) ELSE '' END
           || coalesce(' comment ' || md5(ds.description), '')
           || coalesce(' grants ' || p.proacl::text, '') || coalesce(' grants ' || c.relacl::text, '') AS o
    FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'crm_kpi'
    LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
    LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
    LEFT JOIN pg_description ds ON ds.classoid = d.classid AND ds.objoid = d.objid AND ds.objsubid = 0
    WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e') x};
SKIP:
{
	skip("no earlier version of crm_kpi is installable ($default is the only one): the update chain is empty", 1)
	  unless @earlier;
	my $want = $node->safe_psql('crm_orig', $fresh_catalog);
	for my $v (@earlier)
	{
		my $db = 'crm_from_' . ($v =~ s/\W/_/gr);
		$node->safe_psql('postgres', "CREATE DATABASE $db");
		$node->safe_psql($db, qq{
SET client_min_messages = warning;
BEGIN;
CREATE EXTENSION crm_kpi VERSION '$v';
SELECT crm_kpi.create_reference_schema('crm');
SELECT count(*) FROM crm_kpi.generate_sample_data('crm', 200, 9, current_date - 1500, 700);
CREATE TABLE public.kpi_store AS
SELECT 1 AS id, (SELECT crm_kpi.nps_agg(score) FROM crm.survey_responses WHERE kind = 'nps') AS nps,
       (SELECT crm_kpi.sketch_agg(amount::float8) FROM crm.orders) AS amounts;
COMMIT;
SELECT crm_kpi.wait_for_refresh('60 s')});
		my $store = $node->safe_psql($db, 'SELECT s::text FROM public.kpi_store s');
		my $kpi = $node->safe_psql($db, $KPI_FINGERPRINT);
		$node->safe_psql($db, 'ALTER EXTENSION crm_kpi UPDATE');
		is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'crm_kpi'}), $default,
			"$v: ALTER EXTENSION crm_kpi UPDATE reaches $default");
		is($node->safe_psql($db, $fresh_catalog), $want, "$v: the updated objects are those of a fresh install");
		is($node->safe_psql($db, 'SELECT s::text FROM public.kpi_store s'), $store, "$v: stored values read back the same");
		# (a KPI table the update adds is checked by verify() below)
		my %had = map { (split / /)[0] => 1 } split /\n/, $kpi;
		is(join("\n", grep { $had{ (split / /)[0] } } split /\n/, $node->safe_psql($db, $KPI_FINGERPRINT)), $kpi,
			"$v: the KPI tables are kept");
		is($node->safe_psql($db, 'SELECT count(*) FROM crm_kpi.verify()'), '0', "$v: and exact");
		$node->safe_psql('postgres', "DROP DATABASE $db");
	}
}

$node->stop;
done_testing();
