-- capture_bad_values.sql: a value a binding cannot convert never makes the CRM's write fail. A capture trigger whose
-- keys are expressions (or whose binding has a filter) reads them apart from the write; on such a value (or a plain
-- time column whose day in the KPI time zone is out of range) it queues the
-- whole kind ('*' || kind) instead of its keys, the refresh then reports the error on the tables that kind feeds (the
-- others are refreshed), and once the row is fixed the next refresh rebuilds them exactly. Expected values are sums
-- of the rows written here.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(22);
SET client_min_messages = error;  -- the capture's and the failed refresh's WARNINGs
SET crm_kpi.timezone = 'UTC';

CREATE TABLE cu (id bigint, created timestamptz);
-- the CRM keeps customer ids as text, and the binding converts them
CREATE TABLE od (id bigint, cust text, st text, amt numeric NOT NULL, at timestamptz);
CREATE TABLE tk (id bigint, cust bigint, opened timestamptz);
SELECT crm_kpi.bind_source('customers', 'cu', '{"customer_id": "id", "created_at": "created"}');
SELECT crm_kpi.bind_source('orders', 'od', '{"order_id": "id", "customer_id": {"expr": "src.cust::bigint"},
                                              "status": "st", "amount": "amt", "ordered_at": "at"}');
SELECT crm_kpi.bind_source('tickets', 'tk', '{"ticket_id": "id", "customer_id": "cust", "opened_at": "opened"}');
INSERT INTO cu SELECT g, '2024-01-01' FROM generate_series(1, 3) g;
INSERT INTO od VALUES (1, '1', 'completed', 100, '2024-03-01 12:00+00');
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'the first refresh builds the tables');

CREATE TEMP VIEW queued AS SELECT target, day, customer_id FROM crm_kpi.change_queue;
CREATE FUNCTION pg_temp.revenue() RETURNS numeric LANGUAGE sql AS $$
    SELECT coalesce(sum(revenue), 0) FROM crm_kpi.sales_daily
$$;
CREATE FUNCTION pg_temp.errors() RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(DISTINCT split_part(last_error, ':', 1), ', '), 'none') || ' on '
           || count(*) FILTER (WHERE last_error IS NOT NULL) || ' tables, service_daily: '
           || coalesce((SELECT last_error FROM crm_kpi.status WHERE table_name = 'service_daily'), 'no error')
    FROM crm_kpi.status
$$;

-- A good row: its keys, read by the statement.
INSERT INTO od VALUES (2, '2', 'completed', 50, '2024-03-02 12:00+00');
SELECT set_eq('SELECT * FROM queued', $$VALUES ('orders', '2024-03-02'::date, 2::bigint)$$,
              'an expression key: the INSERT queues its (day, customer)');
SELECT crm_kpi.refresh();

-- A row whose customer id is no number: the write goes through, and the whole kind is queued.
SELECT lives_ok($$INSERT INTO od VALUES (3, 'oops', 'completed', 25, '2024-03-03 12:00+00')$$,
                'a customer id that is no number: the CRM''s INSERT succeeds');
SELECT is((SELECT count(*) FROM od WHERE cust = 'oops'), 1::bigint, 'and its row is written');
SELECT set_eq('SELECT * FROM queued', $$VALUES ('*orders', NULL::date, NULL::bigint)$$,
              'instead of its keys, everything the orders feed is queued as stale');

-- Good and bad rows in one statement: no key of the good ones is queued alone (the rebuild covers them).
DELETE FROM crm_kpi.change_queue;
SELECT lives_ok($$INSERT INTO od VALUES (4, '3', 'completed', 10, '2024-03-04 12:00+00'), (5, 'x1', 'completed', 5, '2024-03-04 13:00+00')$$,
                'a statement mixing good and bad rows succeeds');
SELECT set_eq('SELECT * FROM queued', $$VALUES ('*orders', NULL::date, NULL::bigint)$$,
              'and queues the kind, not the good row''s key');

-- A ticket written beside them: the refresh reports the orders' error and refreshes the service table.
INSERT INTO tk VALUES (1, 1, '2024-03-05 08:00+00');
SELECT is((SELECT split_part(error, ': ', 2) FROM crm_kpi.refresh()), '22P02',
          'the refresh fails to rebuild what the orders feed: invalid text representation');
SELECT is(pg_temp.errors(), '22P02 on 14 tables, service_daily: no error',
          'crm_kpi.status shows the error on the 14 tables the orders feed, none on service_daily');
SELECT is((SELECT sum(opened) FROM crm_kpi.service_daily), 1::numeric, 'the ticket is refreshed');
SELECT is(pg_temp.revenue(), 150::numeric, 'the sales tables keep their last exact values: 100 + 50');

-- Fixed (one row corrected, one deleted): the next refresh rebuilds them.
SELECT lives_ok($$UPDATE od SET cust = '3' WHERE cust = 'oops'$$, 'correcting the row succeeds (its old value still unreadable)');
DELETE FROM od WHERE cust = 'x1';
SELECT is((SELECT mode || ' ' || coalesce(error, 'ok') FROM crm_kpi.refresh()), 'rebuild ok', 'fixed: the refresh rebuilds them');
SELECT is(pg_temp.revenue(), 185::numeric, 'every good row counts: 100 + 50 + 25 + 10');
SELECT is(pg_temp.errors(), 'none on 0 tables, service_daily: no error', 'and no table shows an error');

-- A filter that fails on a row (division by zero) is caught the same way.
SELECT crm_kpi.bind_source('orders', 'od', '{"order_id": "id", "customer_id": {"expr": "src.cust::bigint"},
                                              "status": "st", "amount": "amt", "ordered_at": "at",
                                              "_filter": {"expr": "src.amt / src.id >= 0"}}');
SELECT crm_kpi.refresh();
DELETE FROM crm_kpi.change_queue;
SELECT lives_ok($$INSERT INTO od VALUES (0, '1', 'completed', 1, '2024-03-06 12:00+00')$$,
                'a filter that divides by zero on a row: the INSERT succeeds');
SELECT set_eq('SELECT * FROM queued', $$VALUES ('*orders', NULL::date, NULL::bigint)$$, 'and queues the kind');
DELETE FROM od WHERE id = 0;

-- A statement of more keys than one fetch (10,000): every distinct key is queued once.
SELECT crm_kpi.refresh();
INSERT INTO od SELECT 100 + g, (g % 12000)::text, 'completed', 1, '2024-04-01 00:00+00'::timestamptz + (g % 12000) * interval '1 minute'
FROM generate_series(1, 24000) g;
SELECT is((SELECT count(*) FROM queued), (SELECT count(DISTINCT (date_trunc('day', at AT TIME ZONE 'UTC'), cust)) FROM od WHERE id > 100),
          '24,000 rows of 12,000 customers: each distinct (day, customer) queued once');
SELECT is((SELECT coalesce(error, 'ok') FROM crm_kpi.refresh()), 'ok', 'and refreshed');
SELECT is((SELECT count(*) FROM crm_kpi.verify()), 0::bigint, 'verify: exact');

-- A plain column read straight from the rows (no statement): a time whose day in the KPI time zone is out of range.
SET crm_kpi.timezone = 'Asia/Tokyo';
SELECT crm_kpi.rebuild();
CREATE TABLE pd (id bigint, cust bigint, st text, amt numeric NOT NULL, at timestamptz);
SELECT crm_kpi.bind_source('orders', 'pd', '{"order_id": "id", "customer_id": "cust", "status": "st", "amount": "amt", "ordered_at": "at"}');
SELECT crm_kpi.refresh();
SELECT lives_ok($$INSERT INTO pd VALUES (1, 1, 'completed', 1, '294276-12-31 23:00+00')$$,
                'plain columns: a time whose day in Tokyo is beyond the last date: the INSERT succeeds');
SELECT set_eq('SELECT * FROM queued', $$VALUES ('*orders', NULL::date, NULL::bigint)$$, 'and queues the kind');

SELECT * FROM finish();
ROLLBACK;
