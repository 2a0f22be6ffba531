-- refresh_families.sql: one family of KPI tables that cannot be refreshed does not hold the others back. A value a
-- binding cannot read (a ticket's replies beyond integer), a mapped column dropped or renamed: the refresh keeps that
-- family's keys queued and its tables as they were, names the tables and the error (history, status, WARNING), and
-- refreshes the other families; once the data or the binding is fixed, the next refresh catches up and verify() is
-- empty. A TRUNCATE or DDL queues a rebuild of the tables its kind feeds only. The worker holds a family that failed
-- back until its retry time. Expected values are sums of the rows written here.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(38);
SET client_min_messages = error;  -- the failed refreshes' WARNINGs

CREATE TABLE cu (id bigint, created timestamptz, ch text);
CREATE TABLE od (id bigint, cust bigint, st text, amt numeric NOT NULL, at timestamptz);
CREATE TABLE tk (id bigint, cust bigint, opened timestamptz, resolved timestamptz, replies bigint);
SELECT crm_kpi.bind_source('customers', 'cu', '{"customer_id": "id", "created_at": "created", "acquisition_channel": "ch"}');
SELECT crm_kpi.bind_source('orders', 'od', '{"order_id": "id", "customer_id": "cust", "status": "st",
                                              "amount": "amt", "ordered_at": "at"}');
SELECT crm_kpi.bind_source('tickets', 'tk', '{"ticket_id": "id", "customer_id": "cust", "opened_at": "opened",
                                               "resolved_at": "resolved", "replies": "replies"}');
INSERT INTO cu VALUES (1, '2024-01-01', 'web'), (2, '2024-01-01', 'ads');
INSERT INTO od VALUES (1, 1, 'completed', 100, '2024-03-01 12:00+00');
INSERT INTO tk VALUES (1, 1, '2024-03-01 08:00+00', '2024-03-01 10:00+00', 3);
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'the first refresh builds the tables');

CREATE FUNCTION pg_temp.revenue() RETURNS numeric LANGUAGE sql AS $$
    SELECT coalesce(sum(revenue), 0) FROM crm_kpi.sales_daily
$$;
CREATE FUNCTION pg_temp.service() RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(sum(opened), 0) || ' opened, ' || coalesce(sum(replies_on_resolved), 0) || ' replies'
    FROM crm_kpi.service_daily
$$;
CREATE FUNCTION pg_temp.errors() RETURNS text LANGUAGE sql AS $$
    SELECT coalesce(string_agg(table_name || ' ' || split_part(last_error, ':', 1), ', ' ORDER BY table_name), 'none')
    FROM crm_kpi.status WHERE last_error IS NOT NULL
$$;
CREATE TEMP TABLE run AS SELECT * FROM crm_kpi.refresh_history WHERE false;

-- 1. A value the tickets' binding cannot read: 3,000,000,000 replies (replies is an integer in the contract).
INSERT INTO tk VALUES (2, 2, '2024-03-02 08:00+00', '2024-03-02 09:00+00', 3000000000);
INSERT INTO od VALUES (2, 2, 'completed', 50, '2024-03-02 12:00+00');
INSERT INTO run SELECT * FROM crm_kpi.refresh();
SELECT is((SELECT error FROM run), 'service_daily, service_months: 22003: integer out of range',
          'a ticket out of range: the refresh names the tables of the tickets and the error');
SELECT is(pg_temp.revenue(), 150::numeric, 'the order written beside it is refreshed: 100 + 50');
SELECT is(pg_temp.service(), '1 opened, 3 replies', 'service_daily keeps its last exact values');
SELECT is(pg_temp.errors(), 'service_daily 22003, service_months 22003',
          'crm_kpi.status shows the error on the tables of the tickets alone');
SELECT ok((SELECT pending_keys > 0 FROM crm_kpi.status WHERE table_name = 'service_daily')
          AND (SELECT pending_keys = 0 FROM crm_kpi.status WHERE table_name = 'sales_daily'),
          'its keys stay queued; none of the sales tables');
SELECT is((SELECT mode || ' ' || (error IS NOT NULL) FROM crm_kpi.refresh_history ORDER BY run_id DESC LIMIT 1), 'refresh true',
          'the run is recorded with its error');

-- The data fixed: the next refresh catches up.
UPDATE tk SET replies = 4 WHERE id = 2;
INSERT INTO run SELECT * FROM crm_kpi.refresh();
SELECT is((SELECT error FROM run OFFSET 1), NULL, 'fixed: the refresh succeeds');
SELECT is(pg_temp.service(), '2 opened, 7 replies', 'service_daily counts both tickets: 3 + 4 replies');
SELECT is(pg_temp.errors(), 'none', 'and no table shows an error');
SELECT is((SELECT count(*) FROM crm_kpi.verify()), 0::bigint, 'verify: exact');

-- 2. A mapped column of the tickets dropped: the service tables are rebuilt once the binding is fixed.
TRUNCATE run;
ALTER TABLE tk DROP COLUMN replies;
SELECT is((SELECT array_agg(DISTINCT target) FROM crm_kpi.change_queue), '{*tickets}', 'the drop queues a rebuild of the tickets'' tables');
INSERT INTO od VALUES (3, 1, 'completed', 25, '2024-03-03 12:00+00');
INSERT INTO run SELECT * FROM crm_kpi.refresh();
SELECT matches((SELECT error FROM run), '^service_daily, service_months: 42703: column .*replies.* does not exist$',
               'the refresh names the table and the missing column');
SELECT is(pg_temp.revenue(), 175::numeric, 'the order written after the drop is refreshed: 150 + 25');
SELECT is(pg_temp.service(), '2 opened, 7 replies', 'service_daily keeps its last exact values');
SELECT is(crm_kpi.rebuild_reason(), 'a bound tickets source was truncated, bound, unbound, or altered in what it reads: '
          'the next refresh rebuilds service_daily, service_months', 'the status says which tables wait for a rebuild');
SELECT is((SELECT string_agg(table_name, ',' ORDER BY table_name) FROM crm_kpi.status WHERE needs_rebuild = crm_kpi.rebuild_reason()),
          'service_daily,service_months',
          'and crm_kpi.status.needs_rebuild says it on those tables alone');
SELECT crm_kpi.bind_source('tickets', 'tk', '{"ticket_id": "id", "customer_id": "cust", "opened_at": "opened",
                                               "resolved_at": "resolved"}');
INSERT INTO run SELECT * FROM crm_kpi.refresh();
SELECT is((SELECT mode || ' ' || tables::text FROM run OFFSET 1), 'rebuild {"service_daily": 4, "service_months": 2}',
          'bound again without replies: the tables of the tickets alone are rebuilt (2 days and a month deleted and written again)');
SELECT is(pg_temp.service(), '2 opened, 0 replies', 'it counts the tickets without replies');
SELECT is(pg_temp.errors() || ', ' || (SELECT count(*) FROM crm_kpi.verify()), 'none, 0', 'no error; verify: exact');

-- 3. The orders' amount renamed: every table kept from the customers waits; the tickets' table goes on.
TRUNCATE run;
ALTER TABLE od RENAME COLUMN amt TO amount;
INSERT INTO tk VALUES (3, 2, '2024-03-04 08:00+00', NULL);
INSERT INTO od VALUES (4, 2, 'completed', 10, '2024-03-04 12:00+00');
INSERT INTO run SELECT * FROM crm_kpi.refresh();
SELECT is((SELECT split_part(error, ': 42703', 1) FROM run),
          (SELECT string_agg(table_name, ', ' ORDER BY position) FROM crm_kpi.kpi_tables
           WHERE table_name NOT IN ('pipeline_daily', 'pipeline_total_daily', 'service_daily', 'service_months',
                                    'satisfaction_daily', 'satisfaction_months')),
          'the refresh names every table kept from the customers');
SELECT is(pg_temp.service(), '3 opened, 0 replies', 'the ticket written beside it is refreshed');
SELECT is(pg_temp.revenue(), 175::numeric, 'sales_daily keeps its last exact values');
ALTER TABLE od RENAME COLUMN amount TO amt;
INSERT INTO run SELECT * FROM crm_kpi.refresh();
SELECT is((SELECT mode || ' ' || (error IS NULL) FROM run OFFSET 1), 'rebuild true', 'renamed back: the tables of the customers are rebuilt');
SELECT is(pg_temp.revenue(), 185::numeric, 'with the order written meanwhile: 175 + 10');
SELECT is(pg_temp.errors() || ', ' || (SELECT count(*) FROM crm_kpi.verify()), 'none, 0', 'no error; verify: exact');

-- 4. A TRUNCATE of the tickets rebuilds their tables alone, and drops the keys it covers.
TRUNCATE run;
INSERT INTO tk VALUES (4, 1, '2024-03-05 08:00+00', NULL);
TRUNCATE tk;
SELECT is((SELECT string_agg(DISTINCT target, ',') FROM crm_kpi.change_queue), '*tickets,tickets',
          'a ticket''s key, then the TRUNCATE''s rebuild, are queued');
INSERT INTO run SELECT * FROM crm_kpi.refresh();
SELECT is((SELECT mode || ' ' || tables::text FROM run), 'rebuild {"service_daily": 3, "service_months": 1}',
          'TRUNCATE of the tickets: their tables alone are rebuilt (3 days and a month deleted)');
SELECT is((SELECT batches || ' ' || stale_keys || ' ' || pending_after FROM run), '0 0 0',
          'and the ticket''s key went with it: no batch recomputed it, nothing is left');
SELECT is(pg_temp.service() || ', ' || pg_temp.revenue() || ', ' || (SELECT count(*) FROM crm_kpi.verify()), '0 opened, 0 replies, 185, 0',
          'no tickets, the sales as they were; verify: exact');

-- 5. The refresh worker holds back a family that failed: run_engine(hold_failed => true), as refresh() runs it from
-- the worker, leaves it alone until its retry_at (1 s after a failure, doubling with each failure in a row); a call
-- by hand retries it at once.
TRUNCATE run;
CREATE FUNCTION pg_temp.backoff() RETURNS text LANGUAGE sql AS $$
    SELECT failures || ' ' || coalesce(extract(epoch FROM retry_at - last_error_at)::integer::text, '-')
    FROM crm_kpi.status WHERE table_name = 'service_daily'
$$;
CREATE FUNCTION pg_temp.as_worker() RETURNS crm_kpi.refresh_history LANGUAGE sql AS $$
    SELECT * FROM crm_kpi.run_engine(false, NULL, NULL, true, true)
$$;
INSERT INTO tk VALUES (5, 1, '2024-03-06 08:00+00', '2024-03-06 09:00+00');
ALTER TABLE tk RENAME COLUMN resolved TO closed;
SELECT crm_kpi.refresh();
SELECT is(pg_temp.backoff(), '1 1', 'a failure: retry in 1 s');
SELECT crm_kpi.refresh();
SELECT is(pg_temp.backoff(), '2 2', 'called by hand, it is retried at once: the second failure in a row waits 2 s');
SELECT is((SELECT failures || ' ' || (retry_at IS NULL) FROM crm_kpi.status WHERE table_name = 'sales_daily'), '0 true',
          'a table that did not fail: no retry time');
INSERT INTO od VALUES (5, 1, 'completed', 15, '2024-03-06 12:00+00');
INSERT INTO run SELECT * FROM pg_temp.as_worker();
SELECT is((SELECT coalesce(error, 'no error') FROM run), 'no error', 'before its retry_at, the worker leaves it alone');
SELECT is(pg_temp.revenue() || ', ' || pg_temp.backoff(), '200, 2 2',
          'the order is refreshed (185 + 15); the failures and retry time of the tickets'' table are kept');
SELECT matches((SELECT last_error FROM crm_kpi.status WHERE table_name = 'service_daily'), '^42703: ',
               'and so is its error, its keys still queued');
UPDATE crm_kpi.kpi_table_state SET retry_at = now() - interval '1 second' WHERE table_name IN ('service_daily', 'service_months');
INSERT INTO run SELECT * FROM pg_temp.as_worker();
SELECT is((SELECT split_part(error, ': ', 1) FROM run OFFSET 1) || ', ' || pg_temp.backoff(), 'service_daily, service_months, 3 4',
          'once retry_at has passed, the worker tries it again: a third failure waits 4 s');
ALTER TABLE tk RENAME COLUMN closed TO resolved;
INSERT INTO run SELECT * FROM crm_kpi.refresh();
SELECT is((SELECT mode || ' ' || coalesce(error, 'ok') FROM run OFFSET 2) || ', ' || pg_temp.backoff() || ', ' || pg_temp.service(),
          'rebuild ok, 0 -, 1 opened, 0 replies', 'fixed: rebuilt, with no failure left and the ticket counted');

SELECT * FROM finish();
ROLLBACK;
