-- refresh_rewrites.sql: a refresh rewrites only the KPI rows whose values changed. A stored row is matched with its
-- fresh version on its whole key, a null key column included (the day's pipeline without a rep, a customer's orders
-- without a rep): the rows beside a changed one keep their place (ctid) and are not counted as touched. A scratch
-- table a large batch filled is truncated at the end of the run. Values by hand.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(15);
SET client_min_messages = warning;

CREATE TABLE cu (id bigint, created timestamptz, ch text);
CREATE TABLE od (id bigint, cust bigint, rep bigint, st text, amt numeric, at timestamptz);
CREATE TABLE op (id bigint, cust bigint, rep bigint, st text, amt numeric, created timestamptz, closed timestamptz);
SELECT crm_kpi.bind_source('customers', 'cu', '{"customer_id": "id", "created_at": "created", "acquisition_channel": "ch"}');
SELECT crm_kpi.bind_source('orders', 'od', '{"order_id": "id", "customer_id": "cust", "rep_id": "rep", "status": "st",
                                              "amount": "amt", "ordered_at": "at"}');
SELECT crm_kpi.bind_source('opportunities', 'op', '{"opportunity_id": "id", "customer_id": "cust", "rep_id": "rep",
                                                     "status": "st", "amount": "amt", "created_at": "created",
                                                     "closed_at": "closed"}');

INSERT INTO cu VALUES (1, '2024-01-01', 'web');
-- customer 1 on 2024-03-05: an order without a rep, one of rep 7, one of rep 8
INSERT INTO od VALUES (1, 1, NULL, 'completed', 10, '2024-03-05 09:00+00'), (2, 1, 7, 'completed', 20, '2024-03-05 10:00+00'),
                      (3, 1, 8, 'completed', 40, '2024-03-05 11:00+00');
-- opportunities created on 2024-03-05: one without a rep, one of rep 7, one of rep 8
INSERT INTO op VALUES (1, 1, NULL, 'open', 100, '2024-03-05 09:00+00', NULL), (2, 1, 7, 'open', 200, '2024-03-05 10:00+00', NULL),
                      (3, 1, 8, 'open', 300, '2024-03-05 11:00+00', NULL);
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'the first refresh builds the tables');

CREATE TEMP TABLE before_pipeline AS SELECT rep_id, ctid AS at FROM crm_kpi.pipeline_daily WHERE day = '2024-03-05';
CREATE TEMP TABLE before_days AS SELECT rep_id, ctid AS at FROM crm_kpi.customer_days WHERE customer_id = 1;
SELECT is((SELECT count(*) FROM before_pipeline), 3::bigint, 'pipeline_daily: 2024-03-05 has three rows, one without a rep');

-- Rep 7's opportunity won on the same day: the day is recomputed; only rep 7's row changes (1 deleted + 1 inserted).
UPDATE op SET st = 'won', closed = '2024-03-05 18:00+00' WHERE id = 2;
SELECT is((SELECT tables ->> 'pipeline_daily' FROM crm_kpi.refresh()), '2', 'pipeline_daily: 2 rows touched, rep 7''s replaced');
SELECT is((SELECT format('%s %s %s %s', created, won, lost, won_amount) FROM crm_kpi.pipeline_daily
           WHERE day = '2024-03-05' AND rep_id = 7), '1 1 0 200', 'pipeline_daily: rep 7 created 1, won 1 for 200');
SELECT is((SELECT count(*) FROM crm_kpi.pipeline_daily p JOIN before_pipeline b
           ON b.rep_id IS NOT DISTINCT FROM p.rep_id AND b.at = p.ctid WHERE p.day = '2024-03-05'),
          2::bigint, 'pipeline_daily: the rows without a rep and of rep 8 stay where they were');
SELECT is((SELECT format('%s %s', created, won) FROM crm_kpi.pipeline_daily WHERE day = '2024-03-05' AND rep_id IS NULL),
          '1 0', 'pipeline_daily: the row without a rep still counts its opportunity');

-- Rep 8's order doubled: customer 1 is recomputed; of its days, only rep 8's changes.
UPDATE od SET amt = 80 WHERE id = 3;
SELECT is((SELECT tables ->> 'customer_days' FROM crm_kpi.refresh()), '2', 'customer_days: 2 rows touched, rep 8''s replaced');
SELECT is((SELECT revenue FROM crm_kpi.customer_days WHERE customer_id = 1 AND rep_id = 8), 80::numeric,
          'customer_days: rep 8''s revenue 80');
SELECT is((SELECT count(*) FROM crm_kpi.customer_days d JOIN before_days b
           ON b.rep_id IS NOT DISTINCT FROM d.rep_id AND b.at = d.ctid WHERE d.customer_id = 1),
          2::bigint, 'customer_days: the days without a rep and of rep 7 stay where they were');
SELECT is((SELECT format('%s %s', orders, revenue) FROM crm_kpi.sales_daily WHERE day = '2024-03-05' AND rep_id IS NULL),
          '1 10', 'sales_daily: the order without a rep, 10');

-- A refresh that finds a key stale but nothing changed rewrites nothing.
UPDATE od SET amt = 80 WHERE id = 3;
SELECT is((SELECT coalesce(tables ->> 'customer_days', '0') FROM crm_kpi.refresh()), '0',
          'customer_days: an update that changes no value touches no row');
SELECT is((SELECT count(*) FROM crm_kpi.verify()), 0::bigint, 'verify: exact');

-- A batch whose scratch rows fill more than 1 MB (20,000 days of one customer) leaves its scratch table truncated,
-- not full of dead rows for the next runs to scan; a small one after it leaves it small.
INSERT INTO cu VALUES (2, '1960-01-01', 'ads');
INSERT INTO od SELECT 100 + g, 2, NULL, 'completed', 1, timestamptz '2024-03-01 12:00+00' - g * interval '1 day'
FROM generate_series(1, 20000) g;
SELECT is((SELECT tables ->> 'customer_days' FROM crm_kpi.refresh()), '20000', 'customer_days: 20,000 days of customer 2 written');
SELECT is(pg_relation_size('crm_kpi.staged_customer_days'), 0::bigint, 'its scratch table is left with an empty file');
UPDATE od SET amt = 15 WHERE id = 1;
SELECT ok((SELECT tables ->> 'customer_days' FROM crm_kpi.refresh()) = '2'
          AND pg_relation_size('crm_kpi.staged_customer_days') BETWEEN 1 AND 65536,
          'then a day of customer 1 changed: 2 rows rewritten, its scratch table emptied by DELETE (one page)');

SELECT * FROM finish();
ROLLBACK;
