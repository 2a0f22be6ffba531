-- watermark: crm_kpi.status.watermark is an instant before which every committed change is
-- reflected. A refresh that stops with keys pending (max_batches) moves it up to the oldest
-- pending key of each table, the time its change was queued, and past it where nothing waits.
CREATE EXTENSION crm_kpi;
SET client_min_messages = warning;
SELECT crm_kpi.create_reference_schema('crm');
SELECT count(*) AS tables FROM crm_kpi.generate_sample_data('crm', 50, 5, '2024-01-01', 60);
SELECT mode, error, pending_after FROM crm_kpi.refresh();

-- Orders of three customers in one transaction: their keys are queued at its start, now().
BEGIN;
INSERT INTO crm.orders (customer_id, amount, ordered_at)
VALUES (1, 10, now() - interval '1 day'), (2, 20, now() - interval '2 days'), (3, 30, now() - interval '3 days');
CREATE TEMP TABLE written AS SELECT now() AS queued_at;
COMMIT;
SELECT target, count(*), bool_and(queued_at = (SELECT queued_at FROM written)) AS queued_then
FROM crm_kpi.change_queue GROUP BY target;

-- One batch of one customer: the two others stay queued, as customer keys that keep the time
-- their orders were queued at.
SET crm_kpi.refresh_batch_size = 1;
SELECT stale_keys, pending_after, error FROM crm_kpi.refresh(1);
SELECT target, count(*), bool_and(queued_at = (SELECT queued_at FROM written)) AS queued_then
FROM crm_kpi.change_queue GROUP BY target;
-- Tables the pending customers change: watermark at their queue time (their orders committed
-- after it, and are not reflected yet). The others (pipeline, service, satisfaction): past it.
SELECT s.table_name, s.pending_keys,
       CASE WHEN s.watermark = w.queued_at THEN 'at the oldest pending key'
            WHEN s.watermark > w.queued_at THEN 'past the write'
            ELSE 'before the write' END AS watermark
FROM crm_kpi.status s, written w ORDER BY s.table_name;

-- The rest: nothing pending, every watermark past the write, and the tables exact.
RESET crm_kpi.refresh_batch_size;
SELECT stale_keys, pending_after, error FROM crm_kpi.refresh();
SELECT count(*) FILTER (WHERE s.watermark > w.queued_at) AS past_the_write, count(*) AS tables
FROM crm_kpi.status s, written w;
SELECT * FROM crm_kpi.verify();

-- The watermark assumes each batch sees every key committed before it: no refresh or rebuild under
-- REPEATABLE READ or SERIALIZABLE (the worker runs its batches in READ COMMITTED).
\i test/fixtures/errors.sql
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_temp.sqlstate_of('SELECT crm_kpi.refresh()');
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT pg_temp.sqlstate_of('SELECT crm_kpi.rebuild()');
ROLLBACK;
-- A rebuild is concurrent or not: NULL is neither.
SELECT pg_temp.sqlstate_of('SELECT crm_kpi.rebuild(NULL)');

DISCARD TEMP;
DROP SCHEMA crm CASCADE;
DROP EXTENSION crm_kpi;
