-- capture.sql: what the capture triggers record, for every kind of write, and what they leave alone.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(19);
SET client_min_messages = warning;
SET crm_kpi.timezone = 'UTC';
SELECT crm_kpi.create_reference_schema('crm');
INSERT INTO crm.customers (customer_id, created_at) VALUES (1, '2024-01-01'), (2, '2024-01-01'), (3, '2024-01-01');
SELECT crm_kpi.refresh();
CREATE TEMP VIEW queued AS SELECT target, day, customer_id FROM crm_kpi.change_queue;

SELECT is((SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'crm_kpi\_%' AND tgrelid = 'crm.orders'::regclass), 4::bigint,
          'a bound table has four capture triggers');

INSERT INTO crm.orders (customer_id, amount, ordered_at)
VALUES (1, 5, '2024-03-01 10:00+00'), (1, 6, '2024-03-01 11:00+00'), (2, 7, '2024-03-02 10:00+00');
SELECT set_eq('SELECT target, day, customer_id FROM queued',
              $$VALUES ('orders', '2024-03-01'::date, 1::bigint), ('orders', '2024-03-02', 2)$$,
              'an INSERT queues each distinct (day, customer) of its rows once');
SELECT crm_kpi.refresh();
SELECT is((SELECT count(*) FROM queued), 0::bigint, 'a refresh takes every queued key');

UPDATE crm.orders SET ordered_at = '2024-04-10 10:00+00', customer_id = 3 WHERE amount = 7;
SELECT set_eq('SELECT target, day, customer_id FROM queued',
              $$VALUES ('orders', '2024-03-02'::date, 2::bigint), ('orders', '2024-04-10', 3)$$,
              'an UPDATE of the date and the customer queues the old and the new keys');
SELECT crm_kpi.refresh();

DELETE FROM crm.orders WHERE amount = 5;
SELECT set_eq('SELECT target, day, customer_id FROM queued', $$VALUES ('orders', '2024-03-01'::date, 1::bigint)$$,
              'a DELETE queues the keys of the deleted rows');
SELECT crm_kpi.refresh();

COPY crm.orders (customer_id, amount, ordered_at) FROM STDIN;
2	9	2024-05-05 08:00:00+00
\.
SELECT set_eq('SELECT target, day, customer_id FROM queued', $$VALUES ('orders', '2024-05-05'::date, 2::bigint)$$,
              'COPY is captured like INSERT');
SELECT crm_kpi.refresh();

INSERT INTO crm.tickets (customer_id, opened_at) VALUES (1, '2024-06-01 09:00+00');
UPDATE crm.opportunities SET status = 'won' WHERE false;
SELECT set_eq('SELECT target, day, customer_id FROM queued', $$VALUES ('tickets', '2024-06-01'::date, NULL::bigint)$$,
              'a ticket queues its opening day; a statement that changes no row queues nothing');
SELECT crm_kpi.refresh();

-- A writer appends to the queue (that writers never wait for a refresh is the isolation spec refresh_writers).
INSERT INTO crm.orders (customer_id, amount, ordered_at) VALUES (3, 1, '2024-06-02 10:00+00');
SELECT ok(EXISTS (SELECT FROM pg_locks l WHERE l.pid = pg_backend_pid() AND l.relation = 'crm_kpi.change_queue'::regclass
                  AND l.mode = 'RowExclusiveLock'), 'it appends to the queue');
SELECT crm_kpi.refresh();

-- TRUNCATE makes everything of the source stale: the next refresh rebuilds the tables its kind feeds.
TRUNCATE crm.survey_responses;
SELECT set_eq('SELECT target FROM queued', $$VALUES ('*survey_responses')$$, 'TRUNCATE queues * followed by the kind');
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'and the next refresh rebuilds');

-- A partitioned source: writes through the parent and straight into a partition are captured.
CREATE TABLE part_orders (order_id bigint, customer_id bigint, rep_id bigint, status text, amount numeric, ordered_at timestamptz)
    PARTITION BY RANGE (ordered_at);
CREATE TABLE part_orders_2024 PARTITION OF part_orders FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
SELECT crm_kpi.bind_source('orders', 'part_orders', '{"order_id": "order_id", "customer_id": "customer_id", "rep_id": "rep_id",
                                                      "status": "status", "amount": "amount", "ordered_at": "ordered_at"}');
CREATE TABLE part_orders_2025 PARTITION OF part_orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
SELECT crm_kpi.refresh();
INSERT INTO part_orders VALUES (100, 1, NULL, 'completed', 3, '2024-07-01 10:00+00');
INSERT INTO part_orders_2025 VALUES (101, 2, NULL, 'completed', 4, '2025-07-01 10:00+00');
SELECT set_eq('SELECT target, day, customer_id FROM queued',
              $$VALUES ('orders', '2024-07-01'::date, 1::bigint), ('orders', '2025-07-01', 2)$$,
              'a partitioned source is captured through the parent and in a partition created after binding');
SELECT crm_kpi.refresh();
SELECT is((SELECT count(*) FROM crm_kpi.verify()), 0::bigint, 'the KPI tables are exact after all of it');

-- The event trigger that captures new partitions does not get in the way of a role that cannot read the bindings.
CREATE ROLE crm_kpi_capture_plain;
GRANT CREATE ON SCHEMA public TO crm_kpi_capture_plain;
SET ROLE crm_kpi_capture_plain;
SELECT lives_ok('CREATE TABLE public.plain_role_table (x int)', 'an ordinary role can still create tables');
RESET ROLE;
DROP TABLE public.plain_role_table;

-- The history is capped.
SET crm_kpi.history_limit = 3;
INSERT INTO crm.orders (customer_id, amount, ordered_at) VALUES (1, 1, '2024-08-01');
SELECT crm_kpi.refresh();
INSERT INTO crm.orders (customer_id, amount, ordered_at) VALUES (1, 1, '2024-08-02');
SELECT crm_kpi.refresh();
SELECT is((SELECT count(*) FROM crm_kpi.refresh_history), 3::bigint, 'refresh_history keeps crm_kpi.history_limit runs');

-- A statement of more rows than capture holds keys in memory (262,144) appends them a batch at a time, each batch's
-- distinct keys once: every key is queued, and memory does not grow with the rows.
DELETE FROM crm_kpi.change_queue;
CREATE TABLE bulk_orders (id bigint, cust bigint, st text, amt numeric NOT NULL, at timestamptz);
SELECT crm_kpi.bind_source('orders', 'bulk_orders', '{"order_id": "id", "customer_id": "cust", "status": "st",
                                                       "amount": "amt", "ordered_at": "at"}');
SELECT crm_kpi.refresh();
CREATE TEMP TABLE orders_before AS SELECT sum(orders) AS n FROM crm_kpi.sales_daily;
INSERT INTO bulk_orders SELECT g, 1 + g % 3, 'completed', 1, '2024-09-01 12:00+00'::timestamptz + (g % 5) * interval '1 day'
FROM generate_series(1, 300000) g;
SELECT is((SELECT count(DISTINCT (day, customer_id)) || ' keys in ' || count(*) || ' rows' FROM queued),
          '15 keys in 30 rows', '300,000 rows of 3 customers on 5 days: their 15 keys, once in each of the 2 batches');
SELECT crm_kpi.refresh();
SELECT is((SELECT sum(orders) FROM crm_kpi.sales_daily) - (SELECT n FROM orders_before), 300000::numeric,
          'all 300,000 orders are counted');

-- Unbinding removes the triggers; DROP EXTENSION removes them all and leaves the CRM's rows.
SELECT crm_kpi.unbind_source('orders', 'part_orders');
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'crm_kpi\_%' AND tgrelid IN ('part_orders'::regclass, 'part_orders_2024'::regclass)),
          0::bigint, 'unbind_source removes the capture triggers');
DROP VIEW queued;
DROP EXTENSION crm_kpi;
SELECT is((SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'crm_kpi\_%'), 0::bigint, 'DROP EXTENSION removes every capture trigger');
SELECT is((SELECT count(*) FROM crm.orders), 6::bigint, 'and leaves the CRM''s rows');

SELECT * FROM finish();
ROLLBACK;
