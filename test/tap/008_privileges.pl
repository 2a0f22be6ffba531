# 008_privileges.pl: crm_kpi in a database with a hostile user.
#
# Mallory, an ordinary role that can create in schema public, plants there
# functions, operators and aggregates that shadow pg_catalog's (a clone of
# every pg_catalog function the install script names, of the common
# operators, better matches than format(text, VARIADIC "any") and the like),
# each recording its call; the installing session has its own in pg_temp; the
# database's search_path puts public first (so every session, the refresh
# worker too, gets it). None of them is called by CREATE EXTENSION, binding,
# tracking, refresh, rebuild, verify, the reports and views, the capture
# triggers of a writer's statements, or the worker.
#
# The catalogue: every SECURITY DEFINER function pins a search_path of
# pg_catalog (and the extension's schema) with pg_temp last, and so does every
# function whose body is parsed when it runs (PL/pgSQL, SQL in a string);
# nothing is granted to PUBLIC that writes, but the four functions that check
# the caller owns the table. Only a table's owner can bind, unbind, track or
# untrack it (42501); a reader role made by grant_reader reads the KPI tables,
# their views and the status tables, and cannot write, refresh or bind. What
# reading a bound source runs is vetted: a table owner cannot make the
# superuser's refresh or the capture triggers run her code (through a bound
# view, a subquery of an expression, or a column changed to her type).
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use CrmKpiTest qw(poll_for);

my $node = PostgreSQL::Test::Cluster->new('hostile');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'crm_kpi'
crm_kpi.naptime = '200ms'
});
$node->start;

my $DB = 'hostile';
# The harness's own queries run with pg_catalog only: the database's path puts the traps first.
sub sq
{
	my ($sql, @opts) = @_;
	return $node->safe_psql($DB, "SET search_path = pg_catalog, pg_temp;\n$sql", @opts);
}
# Run $sql as $role (its session keeps the database's hostile search_path); returns (exit code, stdout, stderr).
sub as_role
{
	my ($role, $sql) = @_;
	my ($ret, $out, $err) = $node->psql($DB, "\\set VERBOSITY verbose\n$sql", extra_params => [ '-U', $role ]);
	return ($ret, $out, $err);
}
# How many times a planted function was called, ever (a sequence: not undone by a rollback).
sub trap_calls
{
	return sq('SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.trap_calls');
}
my $calls = 0;
my $since = '-infinity';
# Check that the traps were not called since the last check.
sub no_trap
{
	my ($what) = @_;
	my $now = trap_calls();
	my $ok = is($now, $calls, "$what: no planted function, operator or aggregate is called");
	diag(sq("SELECT string_agg(format('%s by %s in %s at %s', fn, called_by, backend, at), E'\\n' ORDER BY at) FROM public.trap_log "
		  . "WHERE at > '$since' AND backend NOT LIKE 'crm_kpi worker%'"))
	  unless $ok;
	$since = sq('SELECT clock_timestamp()');
	$calls = $now;
	return $ok;
}

$node->safe_psql('postgres', qq{
CREATE DATABASE $DB;
CREATE ROLE mallory LOGIN;    -- hostile: can create in public
CREATE ROLE app LOGIN;        -- owns a CRM table
CREATE ROLE clerk LOGIN;      -- writes to the CRM's tables
CREATE ROLE dash LOGIN;       -- a dashboard's reader
CREATE ROLE nobody LOGIN;     -- nothing granted
});
sq('GRANT CREATE ON SCHEMA public TO mallory, app');

# ====================================================================== the traps

# The names the extension's SQL calls, from its install script.
my $sharedir = `pg_config --sharedir`;
chomp $sharedir;
my ($version) = slurp_file('crm_kpi.control') =~ /^default_version\s*=\s*'([^']+)'/m;
my $script = slurp_file("$sharedir/extension/crm_kpi--$version.sql");
my %names = map { lc($_) => 1 } $script =~ /\b([a-z_][a-z0-9_]*)\s*\(/gi;
$names{$_} = 1 for qw(lower upper now coalesce format jsonb_typeof date_trunc quote_ident quote_literal to_jsonb
  string_agg array_agg count sum min max generate_series unnest current_setting set_config clock_timestamp);
my ($ret, $out, $err) = $node->psql($DB, slurp_file('test/fixtures/hostile_public.sql'),
	extra_params => [ '-U', 'mallory', '-v', 'names={' . join(',', sort keys %names) . '}' ], on_error_stop => 1);
is($ret, 0, 'mallory plants her traps in public') or diag($err);
my %planted = map { split /\|/ } split /\n/, sq('SELECT kind, count(*) FROM public.trap_planted GROUP BY kind');
cmp_ok($planted{function} // 0, '>=', 80, "clones of the pg_catalog functions the extension names ($planted{function})");
cmp_ok($planted{operator} // 0, '>=', 400, "clones of pg_catalog's operators ($planted{operator})");
is(sq(q{SELECT count(*) FROM public.trap_planted WHERE sig IN ('lower(text)', 'now()', 'jsonb_typeof(jsonb)',
    'date_trunc(text, timestamp with time zone)', 'quote_ident(text)', 'operator =(bigint, bigint)',
    'operator +(bigint, bigint)', 'operator ||(text, text)', 'operator =(text, text)', 'operator <(date, date)',
    'format(text, text)', 'concat_ws(text, text, text)', 'count(*)', 'string_agg(text, text)')}),
	'14', 'among them lower, now, jsonb_typeof, date_trunc, quote_ident, =, +, ||, <, format, concat_ws, count, string_agg');

# The traps work: a session with public first calls them.
($ret, $out, $err) = $node->psql($DB, "SET search_path = public, pg_catalog; SELECT lower('X'), 2::bigint + 3::bigint");
like($err, qr/crm_kpi trap called: lower\(text\).*crm_kpi trap called: operator \+\(bigint, bigint\)/s,
	'a query with public first in its path calls the traps');
cmp_ok(trap_calls(), '>=', 2, 'and they count their calls');
$calls = trap_calls();
$since = sq('SELECT clock_timestamp()');

# Casts between built-in types are not hers to make.
($ret, $out, $err) = as_role('mallory', 'CREATE CAST (text AS bigint) WITH FUNCTION public.lower(text)');
like($err, qr/ERROR:  42501: must be owner of type (text|bigint)/, 'mallory cannot add a cast between built-in types (42501)');

# From now on every session of the database, the worker's too, puts public first.
sq("ALTER DATABASE $DB SET search_path = public, pg_catalog");
is($node->safe_psql($DB, 'SHOW search_path'), 'public, pg_catalog', 'the database\'s search_path puts public first');

# ====================================================================== install, bind, track

# The installing session also has traps of its own in pg_temp.
($ret, $out, $err) = $node->psql($DB, q{
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE FUNCTION pg_temp.lower(text) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_catalog.nextval('public.trap_calls'); RAISE WARNING 'crm_kpi trap called: pg_temp.lower'; RETURN pg_catalog.lower($1); END $$;
CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_catalog.nextval('public.trap_calls'); RAISE WARNING 'crm_kpi trap called: pg_temp.now'; RETURN pg_catalog.now(); END $$;
CREATE FUNCTION pg_temp.format(text, text) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_catalog.nextval('public.trap_calls'); RAISE WARNING 'crm_kpi trap called: pg_temp.format'; RETURN pg_catalog.format($1, $2); END $$;
CREATE FUNCTION pg_temp.trap_int8eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql
    AS $$ BEGIN PERFORM pg_catalog.nextval('public.trap_calls'); RAISE WARNING 'crm_kpi trap called: pg_temp.='; RETURN pg_catalog.int8eq($1, $2); END $$;
CREATE OPERATOR pg_temp.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = pg_temp.trap_int8eq);
SET search_path = public, pg_temp, pg_catalog;

-- One transaction: the worker (started at its commit) must not refresh while
-- generate_sample_data rebuilds the tables' keys (they would deadlock).
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT crm_kpi.create_reference_schema('crm');
SELECT pg_catalog.count(*) FROM crm_kpi.generate_sample_data('crm', 300, 4, '2023-01-01', 365);

-- A CRM table of its own, bound with expressions and a filter.
CREATE TABLE public.shop_orders (id bigint PRIMARY KEY, client bigint NOT NULL, total numeric NOT NULL,
                                 state text NOT NULL, created timestamp NOT NULL);
SELECT crm_kpi.bind_source('orders', 'public.shop_orders', '{
  "order_id": "id", "customer_id": "client", "amount": "total",
  "status": {"expr": "CASE state WHEN ''paid'' THEN ''completed'' ELSE ''refunded'' END"},
  "ordered_at": {"expr": "created AT TIME ZONE ''UTC''"},
  "_filter": {"expr": "state <> ''draft'' AND total >= 0"}}');
SELECT pg_catalog.count(*) FROM crm_kpi.binding_problems('orders', 'public.shop_orders', '{"order_id": "id"}');
SELECT crm_kpi.source_query('orders') IS NOT NULL;

-- A tracked stage column.
CREATE TABLE public.contacts (id bigint PRIMARY KEY, stage text);
SELECT crm_kpi.track_lifecycle('public.contacts', 'id', 'stage');

SELECT crm_kpi.grant_reader('dash');
GRANT USAGE ON SCHEMA crm TO clerk;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA crm TO clerk;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON public.shop_orders, public.contacts TO clerk;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA crm TO clerk;
COMMIT;
});
is($ret, 0, 'CREATE EXTENSION, the reference schema, sample data, a binding and a tracked table in a hostile session')
  or diag($err);
unlike($err, qr/crm_kpi trap called/, 'no trap warned');
no_trap('CREATE EXTENSION, create_reference_schema, generate_sample_data, bind_source, track_lifecycle, grant_reader');

# ====================================================================== refresh, rebuild, verify, reports

($ret, $out, $err) = $node->psql($DB, q{
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT error FROM crm_kpi.refresh();
SELECT error FROM crm_kpi.rebuild();
SELECT pg_catalog.count(*) FROM crm_kpi.verify();
SELECT pg_catalog.count(*) FROM crm_kpi.report('2023-01-01', '2024-01-01', 'month');
SELECT pg_catalog.count(*) FROM crm_kpi.report('2023-01-01', '2024-01-01', 'week');
SELECT pg_catalog.count(*) FROM crm_kpi.report_by_rep('2023-01-01', '2024-01-01', 'quarter');
SELECT pg_catalog.count(*) FROM crm_kpi.report_by_channel('2023-01-01', '2024-01-01', 'month');
SELECT pg_catalog.count(*) FROM crm_kpi.rfm_report();
SELECT pg_catalog.count(*) FROM crm_kpi.early_warnings(10);
SELECT pg_catalog.count(*) FROM crm_kpi.stage_durations();
SELECT crm_kpi.reactivations('2023-01-01', '2024-01-01');
SELECT pg_catalog.count(*) FROM (SELECT crm_kpi.funnel(stage) FROM crm_kpi.customer_stats) f;
SELECT crm_kpi.period_start('2023-05-05 10:00+00', 'week'), crm_kpi.period_bounds('2023-05-01', 'month');
SELECT crm_kpi.wait_for_refresh('30 s');
SELECT pg_catalog.count(*) FROM crm_kpi.bindings;
SELECT pg_catalog.count(*) FROM crm_kpi.status;
SELECT table_name, needs_rebuild FROM crm_kpi.status;
});
is($ret, 0, 'refresh, rebuild, verify, reports in a session with public first') or diag($err);
no_trap('refresh, rebuild, verify, the reports, wait_for_refresh, status');

# Every view of the extension.
my @views = split /\n/, sq(q{SELECT c.oid::regclass FROM pg_class c WHERE c.relnamespace = 'crm_kpi'::regnamespace AND c.relkind = 'v' ORDER BY 1});
cmp_ok(scalar @views, '>=', 15, 'the extension has its views');
($ret, $out, $err) = $node->psql($DB, join("\n", '\set ON_ERROR_STOP 1', map { "SELECT pg_catalog.count(*) FROM $_;" } @views));
is($ret, 0, 'every view of the extension reads in a session with public first') or diag($err);
no_trap('every view of the extension (' . scalar(@views) . ')');

# ====================================================================== writers and the capture triggers

# Clerk's own statements schema-qualify their operators: the traps must come from crm_kpi or nowhere.
my $before_writes = sq('SELECT clock_timestamp()');
($ret, $out, $err) = as_role('clerk', q{
\set ON_ERROR_STOP 1
SHOW search_path;
INSERT INTO public.shop_orders VALUES (1, 5, 10.5, 'paid', '2023-05-05 10:00'), (2, 6, 3, 'draft', '2023-05-06 10:00'),
                                      (3, 7, 8, 'refund', '2023-05-07 10:00');
UPDATE public.shop_orders SET state = 'paid', created = '2023-06-01 09:00' WHERE id OPERATOR(pg_catalog.=) 3;
DELETE FROM public.shop_orders WHERE id OPERATOR(pg_catalog.=) 2;
INSERT INTO crm.orders (customer_id, amount, ordered_at) VALUES (3, 7, '2023-06-01 10:00+00');
UPDATE crm.orders SET ordered_at = '2023-07-02 10:00+00' WHERE order_id OPERATOR(pg_catalog.=) 1;
INSERT INTO crm.tickets (customer_id, opened_at) VALUES (3, '2023-09-09 09:09:09.123+00');
DELETE FROM crm.tickets WHERE opened_at OPERATOR(pg_catalog.=) '2023-09-09 09:09:09.123+00'::timestamptz;
COPY crm.survey_responses (customer_id, kind, score, answered_at) FROM STDIN;
4	nps	9	2023-08-08 08:00:00+00
5	csat	2	2023-08-09 08:00:00+00
\.
INSERT INTO public.contacts VALUES (1, 'prospect'), (2, 'customer');
UPDATE public.contacts SET stage = 'contacted' WHERE id OPERATOR(pg_catalog.=) 1;
UPDATE public.contacts SET stage = 'active' WHERE id OPERATOR(pg_catalog.=) 2;
TRUNCATE crm.marketing_spend;
});
is($ret, 0, 'a writer with public first in its path inserts, updates, deletes, copies and truncates') or diag($err);
like($out, qr/^public, pg_catalog$/m, 'the writer\'s search_path is public, pg_catalog');
no_trap('capture triggers and the lifecycle guard on INSERT, UPDATE, DELETE, COPY, TRUNCATE');
# (queued, or already taken by the worker)
is(sq(qq{SELECT EXISTS (SELECT FROM crm_kpi.change_queue)
                OR EXISTS (SELECT FROM crm_kpi.refresh_history WHERE stale_keys > 0 AND finished_at > '$before_writes')}),
	't', 'the writes were captured');
is(sq('SELECT count(*) FROM crm_kpi.lifecycle_history WHERE source = \'public.contacts\''), '4', 'and the stage moves recorded');

# ====================================================================== the worker

ok(poll_for($node, $DB, 'SET search_path = pg_catalog; SELECT count(*) FROM crm_kpi.status WHERE pending_keys > 0 OR needs_rebuild IS NOT NULL', '0', 60),
	'the worker (whose session has the database\'s search_path) refreshes the KPI tables');
is(sq(q{SELECT count(*) > 0 FROM crm_kpi.refresh_history WHERE mode = 'rebuild' AND started_at > (SELECT max(changed_at) FROM crm_kpi.lifecycle_history)}),
	't', 'with a rebuild, for the TRUNCATE');
no_trap('the refresh worker');
is(sq('SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.trap_calls_worker'), '0',
	'the refresh worker\'s own queries call none of the traps');
is(sq('SELECT count(*) FROM crm_kpi.verify()'), '0', 'the KPI tables are exact');
no_trap('verify() in the harness');

# ====================================================================== the catalogue

# The extension's functions with their language, SECURITY DEFINER, search_path setting.
my $FUNCTIONS = q{
WITH f AS (
    SELECT p.oid::regprocedure AS fn, l.lanname, p.prosecdef, p.prosqlbody IS NOT NULL AS atomic, p.provolatile, p.prokind,
           p.prorettype::regtype AS rettype,
           (SELECT substr(c, length('search_path=') + 1) FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%') AS path
    FROM pg_proc p
    JOIN pg_language l ON l.oid = p.prolang
    JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'crm_kpi'),
checked AS (
    SELECT f.*, f.path IS NOT NULL
                AND string_to_array(f.path, ', ') <@ ARRAY['pg_catalog', 'crm_kpi', 'pg_temp']
                AND (string_to_array(f.path, ', '))[cardinality(string_to_array(f.path, ', '))] = 'pg_temp' AS pinned
    FROM f)
};
is(sq($FUNCTIONS . q{SELECT string_agg(fn::text, ', ' ORDER BY fn::text) FROM checked WHERE prosecdef AND NOT pinned}), '',
	'every SECURITY DEFINER function pins search_path to pg_catalog (and crm_kpi) with pg_temp last');
is(sq($FUNCTIONS . q{SELECT string_agg(fn::text, ' | ' ORDER BY fn::text) FROM checked WHERE prosecdef}),
	'crm_kpi.bind_restored() | crm_kpi.capture_new_partitions() | crm_kpi.forget_dropped_tables() | '
	  . 'crm_kpi.keep_bindings_vetted() | crm_kpi.lifecycle_guard() | crm_kpi.watch_bindings() | crm_kpi.watch_rewrites()',
	'the SECURITY DEFINER functions are the triggers and event triggers only');
is(sq($FUNCTIONS . q{SELECT string_agg(fn::text, ', ' ORDER BY fn::text) FROM checked
    WHERE NOT pinned AND (lanname = 'plpgsql' OR (lanname = 'sql' AND NOT atomic))}), '',
	'every PL/pgSQL function and SQL function with a string body (parsed when called) pins its search_path');
is(sq($FUNCTIONS . q{SELECT string_agg(x, ',' ORDER BY x) FROM (
    SELECT DISTINCT lanname || CASE WHEN lanname = 'sql' THEN ':' || atomic ELSE '' END AS x FROM checked WHERE NOT pinned) s}),
	'c,internal,sql:true', 'the others are C functions and SQL functions parsed when created (BEGIN ATOMIC or RETURN)');
is(sq($FUNCTIONS . q{SELECT string_agg(fn::text, ', ' ORDER BY fn::text) FROM checked
    WHERE provolatile = 'v' AND prokind IN ('f', 'p')
      AND EXISTS (SELECT FROM aclexplode(coalesce((SELECT proacl FROM pg_proc WHERE oid = checked.fn),
                                                  acldefault('f', (SELECT proowner FROM pg_proc WHERE oid = checked.fn)))) a
                  WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')}),
	'crm_kpi.bind_source(text,regclass,jsonb), crm_kpi.track_lifecycle(regclass,name,name,text), '
	  . 'crm_kpi.unbind_source(text,regclass), crm_kpi.untrack_lifecycle(regclass)',
	'PUBLIC may execute no volatile function but the four that check the caller owns the table');
is(sq(q{SELECT string_agg(c.oid::regclass::text || ' ' || a.privilege_type, ', ' ORDER BY 1)
    FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) a
    WHERE c.relnamespace = 'crm_kpi'::regnamespace AND a.grantee = 0}), '',
	'PUBLIC has no privilege on any table, view or sequence of the extension');
is(sq(q{SELECT count(*) FROM pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
    WHERE n.nspname = 'crm_kpi' AND a.grantee = 0}), '0', 'nor on its schema');
is(sq(q{SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'crm_kpi'}), 'postgres',
	'the schema belongs to the superuser who installed it');

# ====================================================================== only the owner binds

sq(q{
GRANT USAGE ON SCHEMA crm_kpi TO app, mallory;   -- as an administrator would, to let them bind their tables
});
as_role('app', q{
CREATE TABLE public.app_orders (id bigint, cust bigint, amt numeric, st text, at timestamptz);
CREATE TABLE public.app_contacts (id bigint PRIMARY KEY, stage text);
});
my $APP_MAPPING = q{'{"order_id": "id", "customer_id": "cust", "amount": "amt", "status": "st", "ordered_at": "at"}'};
for my $t (
	[ "SELECT crm_kpi.bind_source('orders', 'public.app_orders', $APP_MAPPING)", 'bind a table of app\'s' ],
	[ "SELECT crm_kpi.bind_source('orders', 'public.shop_orders', $APP_MAPPING)", 'bind a table of the superuser\'s' ],
	[ "SELECT crm_kpi.unbind_source('orders', 'public.shop_orders')", 'unbind a table of the superuser\'s' ],
	[ "SELECT crm_kpi.track_lifecycle('public.app_contacts', 'id', 'stage')", 'track a table of app\'s' ],
	[ "SELECT crm_kpi.untrack_lifecycle('public.contacts')", 'untrack a table of the superuser\'s' ])
{
	($ret, $out, $err) = as_role('mallory', $t->[0]);
	like($err, qr/ERROR:  42501: must be owner of table/, "mallory cannot $t->[1] (42501, must be owner)");
}
for my $t (
	[ "INSERT INTO crm_kpi.source_bindings VALUES ('orders', 'public.app_orders', '{}', 'mallory', now())",
		'write a binding herself' ],
	[ "SELECT crm_kpi.capture_attach('orders', 'public.app_orders')", 'put capture triggers on a table' ],
	[ "SELECT crm_kpi.capture_loosen('crm.orders', 'crm_kpi_orders_ins')", 'loosen a capture trigger' ],
	[ "CREATE TABLE public.m_t (x int); CREATE TRIGGER t AFTER INSERT ON public.m_t FOR EACH STATEMENT EXECUTE FUNCTION crm_kpi.capture('orders')",
		'make a capture trigger of her own' ],
	[ "SELECT crm_kpi.refresh()", 'refresh' ],
	[ "SELECT crm_kpi.grant_reader('mallory')", 'make herself a reader' ])
{
	($ret, $out, $err) = as_role('mallory', $t->[0]);
	like($err, qr/ERROR:  42501:/, "mallory cannot $t->[1] (42501)");
}
no_trap('the refused calls');

# Vetting a binding's SQL reads no table its caller cannot read, and leaves no lock on one: the permission error
# ends the (sub)transaction, and with it the lock that parsing took, as running the query would.
for my $t (
	[ "SELECT crm_kpi.expression_problem('public.app_orders', 'amt')", 'an expression over it' ],
	[ "SELECT crm_kpi.query_function_problem('SELECT amt FROM public.app_orders', false)", 'a query of it' ],
	[ "SELECT crm_kpi.expression_problem('public.m_src', '(SELECT max(amt) FROM public.app_orders)')",
		'a subquery of it in an expression over her own table' ])
{
	($ret, $out, $err) = $node->psql($DB, qq{\\set VERBOSITY verbose
SET search_path = pg_catalog, pg_temp;  -- the harness's lock count calls none of her planted operators
CREATE TABLE IF NOT EXISTS public.m_src (x int);
BEGIN;
SAVEPOINT s;
$t->[0];
ROLLBACK TO s;
SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND relation = 'public.app_orders'::regclass;
COMMIT;}, extra_params => [ '-U', 'mallory' ], on_error_stop => 0);
	like($err, qr/ERROR:  42501: permission denied for table app_orders/,
		"mallory vets $t->[1], a table of app's she cannot read: 42501");
	is($out, '0', "and holds no lock on it after ($t->[1])");
}

# A table's owner binds and tracks her own table (the README: "Only the table's owner can bind or unbind it").
# The calls run as the extension's owner for her: the capture triggers go on her table, the binding is hers.
($ret, $out, $err) = as_role('app', "SELECT crm_kpi.bind_source('orders', 'public.app_orders', $APP_MAPPING)");
is($err, '', 'app binds her own table') or diag($err);
is(sq(q{SELECT bound_by || ' ' || owner FROM crm_kpi.bindings WHERE source = 'public.app_orders'::regclass}), 'app app',
	'the binding is app\'s: bound by her, of her table');
($ret, $out, $err) = as_role('app', "SELECT crm_kpi.track_lifecycle('public.app_contacts', 'id', 'stage')");
is($err, '', 'app tracks her own table') or diag($err);
# Her binding built into the KPI tables (by this refresh or the worker's: they take turns), the orders of a day
# counted; an order she then writes reaches them only if it was captured (nothing else is queued).
sq(q{SELECT crm_kpi.refresh()});
my $SALES_DAY = q{SELECT coalesce(sum(orders), 0) FROM crm_kpi.sales_daily WHERE day = '2024-03-01'};
my $day_orders = sq($SALES_DAY);
($ret, $out, $err) = as_role('app', q{
INSERT INTO public.app_orders VALUES (1, 1, 10, 'completed', '2024-03-01 12:00+00');
INSERT INTO public.app_contacts VALUES (1, 'prospect');
UPDATE public.app_contacts SET stage = 'contacted';
});
is($err, '', 'app writes to her bound and tracked tables') or diag($err);
sq(q{SELECT crm_kpi.refresh()});
is(sq($SALES_DAY), $day_orders + 1, 'her order is captured: the next refresh counts it in sales_daily');
is(sq(q{SELECT string_agg(to_stage::text, ',' ORDER BY id) FROM crm_kpi.lifecycle_history
        WHERE source = 'public.app_contacts'}), 'prospect,contacted', 'her stage changes are recorded');
# A caller is whoever calls, not the role that logged in: mallory's SECURITY DEFINER function that app
# calls binds nothing of app's.
as_role('mallory', q{
CREATE FUNCTION public.m_bind() RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog
    AS $$ SELECT crm_kpi.unbind_source('orders', 'public.app_orders') $$;
GRANT EXECUTE ON FUNCTION public.m_bind() TO app;
});
($ret, $out, $err) = as_role('app', 'SELECT public.m_bind()');
like($err, qr/ERROR:  42501: must be owner of table/, 'mallory\'s SECURITY DEFINER function, called by app, cannot unbind app\'s table');
# What a superuser's worker reads for an owner who is not a superuser is what she could read herself:
# no function whose result depends on who calls it, no table of another role, no view with security_invoker.
sq(q{GRANT USAGE ON SCHEMA crm TO app; GRANT SELECT ON crm.customers TO app;});
as_role('app', q{
CREATE TABLE public.app_orders2 (LIKE public.app_orders);
CREATE VIEW public.app_orders_inv WITH (security_invoker = true) AS SELECT * FROM public.app_orders;
CREATE VIEW public.app_orders_v AS SELECT * FROM public.app_orders;
});
for my $t (
	[ 'public.app_orders2', q{'{"order_id": "id", "customer_id": "cust", "amount": "amt", "ordered_at": "at",
	                           "status": {"expr": "current_setting(''data_directory'')"}}'},
		qr/it calls current_setting\(text\), which is not immutable: only a superuser may bind that/, 'a setting' ],
	[ 'public.app_orders2', q{'{"order_id": "id", "amount": "amt", "status": "st", "ordered_at": "at",
	                           "customer_id": {"expr": "(SELECT c.customer_id FROM crm.customers c WHERE c.customer_id = src.cust)"}}'},
		qr/it reads crm\.customers, which belongs to another role: only a superuser may bind that/, 'a table of another role she can read' ],
	[ 'public.app_orders_inv', $APP_MAPPING,
		qr/it reads view public\.app_orders_inv, which has security_invoker: only a superuser may bind that/, 'a view with security_invoker' ])
{
	($ret, $out, $err) = as_role('app', "SELECT crm_kpi.bind_source('orders', '$t->[0]', $t->[1])");
	like($err, qr/ERROR:  22023: cannot bind/, "app cannot bind $t->[3] (22023)");
	like($err, $t->[2], "... and the detail says why: $t->[3]");
}
($ret, $out, $err) = as_role('app', "SELECT crm_kpi.bind_source('orders', 'public.app_orders_v', $APP_MAPPING)");
is($err, '', 'app binds her own view') or diag($err);
($ret, $out, $err) = as_role('app', 'ALTER VIEW public.app_orders_v SET (security_invoker = true)');
like($err, qr/ERROR:  42501: crm_kpi reads public\.app_orders_v as the orders source/,
	'app cannot then give her bound view security_invoker (42501)');
# ... and unbinds and untracks them.
($ret, $out, $err) = as_role('app', q{
SELECT crm_kpi.unbind_source('orders', 'public.app_orders');
SELECT crm_kpi.unbind_source('orders', 'public.app_orders_v');
SELECT crm_kpi.untrack_lifecycle('public.app_contacts');
});
is($err, '', 'app unbinds and untracks her own tables') or diag($err);
is(sq(q{SELECT count(*) FROM pg_trigger WHERE tgrelid IN ('public.app_orders'::regclass, 'public.app_contacts'::regclass)}), 0,
	'their triggers are gone');
no_trap('app binding, tracking and unbinding her tables');

# ====================================================================== a table owner's code never runs as the refresher

# Mallory owns tables and views with code of hers that records when it runs as a superuser, and
# asks an administrator to bind them.
($ret, $out, $err) = as_role('mallory', q{
\set ON_ERROR_STOP 1
SET search_path = pg_catalog;
CREATE SEQUENCE public.evil_as_superuser;
GRANT USAGE, UPDATE ON SEQUENCE public.evil_as_superuser TO PUBLIC;
CREATE FUNCTION public.evil(x bigint) RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        PERFORM nextval('public.evil_as_superuser');
    END IF;
    RETURN x;
END $$;
CREATE TABLE public.m_costs (chan text, d date, eur numeric);
INSERT INTO public.m_costs VALUES ('radio', '2023-03-03', 5);
CREATE VIEW public.m_costs_evil AS SELECT chan, d, eur FROM public.m_costs WHERE public.evil(1) = 1;
CREATE VIEW public.m_costs_plain AS SELECT chan, d, eur FROM public.m_costs;
CREATE VIEW public.m_costs_file AS SELECT pg_catalog.pg_read_file('/etc/hostname') AS chan, d, eur FROM public.m_costs;
CREATE TYPE public.evil_id AS (v bigint);
CREATE FUNCTION public.evil_to_int8(public.evil_id) RETURNS bigint LANGUAGE sql SET search_path = pg_catalog
    RETURN public.evil(($1).v);
CREATE CAST (public.evil_id AS bigint) WITH FUNCTION public.evil_to_int8(public.evil_id) AS ASSIGNMENT;
CREATE DOMAIN public.evil_amount AS numeric CHECK (public.evil(1) = 1);
CREATE TABLE public.m_orders (id bigint, cust bigint, amt numeric, st text, at timestamptz);
CREATE TABLE public.m_orders_typed (id bigint, cust public.evil_id, amt numeric, st text, at timestamptz);
});
is($ret, 0, 'mallory makes her tables, views, type, cast and domain') or diag($err);
my $M_MAPPING = q{'{"order_id": "id", "customer_id": "cust", "amount": "amt", "status": "st", "ordered_at": "at"}'};
my $EVIL = 'SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.evil_as_superuser';
for my $t (
	[ q{SELECT crm_kpi.bind_source('marketing_spend', 'public.m_costs_evil', '{"channel": "chan", "day": "d", "amount": "eur"}')},
		'a view that calls her function', qr/it calls public\.evil\(bigint\), which is not a function of pg_catalog/ ],
	[ q{SELECT crm_kpi.bind_source('marketing_spend', 'public.m_costs_file', '{"channel": "chan", "day": "d", "amount": "eur"}')},
		'a view that reads a file with a function of PostgreSQL\'s', qr/it calls pg_read_file\(text\), which is volatile/ ],
	[ "SELECT crm_kpi.bind_source('orders', 'public.m_orders_typed', $M_MAPPING)",
		'a column of her type, converted by her cast', qr/it calls public\.evil_to_int8\(public\.evil_id\)/ ],
	[ q{SELECT crm_kpi.bind_source('orders', 'public.m_orders', '{"order_id": "id", "customer_id": "cust", "status": "st", "ordered_at": "at",
		"amount": {"expr": "(SELECT eur FROM public.m_costs_evil LIMIT 1)"}}')},
		'an expression whose subquery reads her view', qr/it calls public\.evil\(bigint\)/ ],
	[ q{SELECT crm_kpi.bind_source('orders', 'public.m_orders', '{"order_id": "id", "customer_id": "cust", "status": "st", "ordered_at": "at",
		"amount": {"expr": "CAST(amt AS public.evil_amount)"}}')},
		'an expression converting to her domain', qr/it converts to domain public\.evil_amount/ ])
{
	($ret, $out, $err) = $node->psql($DB, "\\set VERBOSITY verbose\nSET search_path = pg_catalog;\n$t->[0]");
	like($err, qr/ERROR:  22023: cannot bind/, "binding $t->[1] is refused (22023)");
	like($err, $t->[2], 'naming what reading it would run');
}
is(sq($EVIL), '0', 'her code never ran as a superuser while it was vetted');

# Bound once vetted, her tables and views cannot be changed so that reading them runs her code.
sq(qq{
SELECT crm_kpi.bind_source('marketing_spend', 'public.m_costs_plain', '{"channel": "chan", "day": "d", "amount": "eur"}');
SELECT crm_kpi.bind_source('orders', 'public.m_orders', $M_MAPPING);
});
for my $t (
	[ 'CREATE OR REPLACE VIEW public.m_costs_plain AS SELECT chan, d, eur FROM public.m_costs WHERE public.evil(1) = 1',
		'replace the bound view with one calling her function' ],
	[ "CREATE OR REPLACE VIEW public.m_costs_plain AS SELECT pg_catalog.pg_read_file('/etc/hostname') AS chan, d, eur FROM public.m_costs",
		'replace the bound view with one reading a file' ],
	[ 'ALTER TABLE public.m_orders ALTER COLUMN cust TYPE public.evil_id USING ROW(cust)::public.evil_id',
		'change a mapped column to her type, with her cast' ],
	[ 'ALTER TABLE public.m_costs ENABLE ROW LEVEL SECURITY', 'put row-level security under the bound view' ])
{
	($ret, $out, $err) = as_role('mallory', $t->[0]);
	like($err, qr/ERROR:  42501: crm_kpi reads public\.m_\w+ as the \w+ source: after this change, reading it would run code/,
		"mallory cannot $t->[1] while it is bound (42501)");
}
($ret, $out, $err) = as_role('mallory', 'ALTER TABLE public.m_orders ADD COLUMN note text');
is($err, '', 'other changes to a bound table are fine');
($ret, $out, $err) = as_role('mallory', q{
INSERT INTO public.m_orders VALUES (1, 5, 3, 'completed', '2023-04-04 10:00+00');
INSERT INTO public.m_costs VALUES ('radio', '2023-04-04', 7);
});
is($err, '', 'she writes to her bound table');
ok(poll_for($node, $DB, 'SET search_path = pg_catalog; SELECT count(*) FROM crm_kpi.status WHERE pending_keys > 0 OR needs_rebuild IS NOT NULL', '0', 60),
	'the worker refreshes');
sq('SELECT error FROM crm_kpi.rebuild()');
is(sq($EVIL), '0', 'her code never ran as a superuser: not in the capture triggers, the worker, a rebuild');
is(sq('SELECT count(*) FROM crm_kpi.verify()'), '0', 'and the KPI tables are exact');

# ====================================================================== the reader

my @kpi_tables = split /\n/, sq('SELECT table_name FROM crm_kpi.kpi_tables ORDER BY 1');
for my $t (map { "crm_kpi.$_" } @kpi_tables, qw(change_queue engine_state kpi_table_state refresh_history kpi_tables
	rfm_segments lifecycle_history source_bindings pending_bindings lifecycle_tracking))
{
	my @refused;
	my $col = sq("SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = '$t'::regclass AND attnum > 0 "
		  . "AND attidentity = '' AND attgenerated = '' ORDER BY attnum LIMIT 1");
	for my $w ("INSERT INTO $t DEFAULT VALUES", "UPDATE $t SET $col = $col", "DELETE FROM $t", "TRUNCATE $t")
	{
		($ret, $out, $err) = as_role('dash', $w);
		push @refused, $w if $err =~ /ERROR:  42501:/;
	}
	is(scalar @refused, 4, "the reader cannot INSERT, UPDATE, DELETE or TRUNCATE $t (42501)");
}
# No volatile function (refresh, rebuild, verify, bind, unbind, track, grant, the engine's steps, ...) is
# the reader's to execute, but the worker's status and the four that check the caller owns the table;
# trigger functions fire for everyone.
is(sq(q{SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text) FROM pg_proc p
    WHERE p.pronamespace = 'crm_kpi'::regnamespace AND p.provolatile = 'v' AND p.prokind = 'f'
      AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)
      AND has_function_privilege('dash', p.oid, 'EXECUTE')}),
	'crm_kpi.bind_source(text,regclass,jsonb), crm_kpi.track_lifecycle(regclass,name,name,text), '
	  . 'crm_kpi.unbind_source(text,regclass), crm_kpi.untrack_lifecycle(regclass), crm_kpi.worker_status()',
	'of the volatile functions the reader may execute only the worker\'s status and the four that check ownership');
my @refused;
for my $call ('SELECT crm_kpi.refresh()', 'SELECT crm_kpi.refresh(1)', 'SELECT crm_kpi.rebuild()',
	'SELECT pg_catalog.count(*) FROM crm_kpi.verify()', 'SELECT crm_kpi.request_refresh()',
	"SELECT crm_kpi.wait_for_refresh('1 s')", "SELECT crm_kpi.grant_reader('dash')",
	"SELECT crm_kpi.capture_attach('orders', 'crm_kpi.sales_daily')", "SELECT crm_kpi.capture_detach('orders', 'public.shop_orders')",
	"SELECT crm_kpi.create_reference_schema('dash_crm')", "SELECT crm_kpi.generate_sample_data('crm', 10)",
	"SELECT crm_kpi.bind_odoo('public')", "SELECT crm_kpi.advance_time('2030-01-01')",
	"SELECT crm_kpi.bind_source('orders', 'crm_kpi.sales_daily', $APP_MAPPING)",
	"SELECT crm_kpi.unbind_source('orders', 'public.shop_orders')",
	"SELECT crm_kpi.track_lifecycle('crm_kpi.sales_daily', 'day', 'channel')",
	"SELECT crm_kpi.untrack_lifecycle('public.contacts')")
{
	($ret, $out, $err) = as_role('dash', $call);
	push @refused, $call if $err =~ /ERROR:  42501:/;
}
is(scalar @refused, 17, 'the reader cannot refresh, rebuild, verify, wake the worker, grant, attach, bind, unbind, track (42501)')
  or diag(join("\n", @refused));
# What the reader reads: the KPI tables, the extension's views, the status tables.
is(sq(q{SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c
    WHERE c.relnamespace = 'crm_kpi'::regnamespace AND c.relkind IN ('r', 'v', 'S', 'p', 'm')
      AND has_table_privilege('dash', c.oid, 'SELECT')
      AND NOT (c.relkind = 'v' OR c.relname IN (SELECT table_name FROM crm_kpi.kpi_tables))}),
	'change_queue,engine_state,kpi_table_state,kpi_tables,lifecycle_history,refresh_history,rfm_segments',
	'besides the KPI tables and the views, the reader reads only the status tables (for crm_kpi.status)');
is(sq(q{SELECT count(*) FROM pg_class c, unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p
    WHERE c.relnamespace = 'crm_kpi'::regnamespace AND c.relkind IN ('r', 'v', 'S', 'p', 'm') AND has_table_privilege('dash', c.oid, p)}),
	'0', 'and has no other privilege on them');
($ret, $out, $err) = as_role('dash', 'SELECT pg_catalog.count(*) FROM crm_kpi.status; SELECT pg_catalog.count(*) FROM crm_kpi.sales_monthly');
is($err, '', 'the reader reads crm_kpi.status and the KPI views');
for my $t ('crm_kpi.source_bindings', 'crm_kpi.pending_bindings', 'crm_kpi.lifecycle_tracking', 'crm.orders', 'public.shop_orders')
{
	($ret, $out, $err) = as_role('dash', "SELECT pg_catalog.count(*) FROM $t");
	like($err, qr/ERROR:  42501:/, "the reader cannot read $t (42501)");
}
# ====================================================================== a schema crm_kpi made beforehand

# A role allowed to create schemas makes crm_kpi first, to own what the extension puts in it.
$node->safe_psql('postgres', 'CREATE DATABASE squat; GRANT CREATE ON DATABASE squat TO mallory');
$node->psql('squat', 'CREATE SCHEMA crm_kpi', extra_params => [ '-U', 'mallory' ]);
($ret, $out, $err) = $node->psql('squat', "\\set VERBOSITY verbose\nCREATE EXTENSION crm_kpi");
like($err, qr/ERROR:  42501: schema crm_kpi belongs to mallory, who is not a superuser/,
	'CREATE EXTENSION refuses a schema crm_kpi that a role other than a superuser made (42501)');
is($node->safe_psql('squat', q{SELECT count(*) FROM pg_extension WHERE extname = 'crm_kpi'}), '0', 'and installs nothing');
$node->safe_psql('squat', 'DROP SCHEMA crm_kpi; CREATE EXTENSION crm_kpi');
is($node->safe_psql('squat', q{SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'crm_kpi'}), 'postgres',
	'once it is dropped, CREATE EXTENSION makes the schema, the installer\'s');

# A role with nothing granted cannot even look into the schema.
($ret, $out, $err) = as_role('nobody', 'SELECT pg_catalog.count(*) FROM crm_kpi.status');
like($err, qr/ERROR:  42501: permission denied for schema crm_kpi/, 'a role granted nothing cannot use schema crm_kpi');
no_trap('the reader and the role granted nothing');

$node->stop;
done_testing();
