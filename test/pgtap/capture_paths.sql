-- capture_paths.sql: the keys a capture trigger queues are the same whether it reads them straight from the
-- transition rows (plain columns) or runs a statement (a key mapped to an expression, a filtered binding):
-- days in the KPI time zone (a zone name, a fixed-offset abbreviation), infinity, NULL keys, narrower
-- integer customer columns, partitions whose columns lie in another order.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(14);
SET client_min_messages = warning;
CREATE TEMP VIEW queued AS SELECT target, day, customer_id FROM crm_kpi.change_queue;

-- Customer ids in an int4 column, the time in timestamptz; a second table maps the customer to an expression.
CREATE TABLE plain_orders (id int, cust int4, state text, total numeric, at timestamptz);
CREATE TABLE expr_orders (id int, cust_text text, state text, total numeric, at timestamptz);
SELECT crm_kpi.bind_source('orders', 'plain_orders', '{"order_id": "id", "customer_id": "cust", "status": "state",
                                                       "amount": "total", "ordered_at": "at"}');
SELECT crm_kpi.bind_source('orders', 'expr_orders', '{"order_id": "id", "customer_id": {"expr": "src.cust_text::bigint"},
                                                      "status": "state", "amount": "total", "ordered_at": "at"}');

-- The rows both get, and the keys they make stale in each time zone (worked out by hand).
CREATE TEMP TABLE written (cust int, at timestamptz);
INSERT INTO written VALUES
    (7, '2024-03-01 03:00+00'),      -- 2024-02-29 22:00 in New York (EST, -5), 2024-03-01 in UTC
    (7, '2024-03-01 04:30+00'),      -- the same day again in New York: one key
    (8, '2024-07-01 03:59+00'),      -- 2024-06-30 23:59 in New York (EDT, -4), but 22:59 at EST's fixed -5
    (9, 'infinity'),
    (NULL, '2024-05-05 12:00+00'),   -- no customer: the day alone
    (10, NULL);                      -- no time: the customer alone

-- Write the rows into both tables, then compare what each queued with the expected keys.
CREATE FUNCTION pg_temp.write_both() RETURNS void LANGUAGE sql AS $$
    DELETE FROM crm_kpi.change_queue;
    DELETE FROM plain_orders WHERE at = 'infinity';
    DELETE FROM expr_orders WHERE at = 'infinity';
    DELETE FROM crm_kpi.change_queue;
    INSERT INTO plain_orders SELECT 1, cust, 'completed', 1, at FROM written;
    INSERT INTO expr_orders SELECT 1, cust::text, 'completed', 1, at FROM written;
$$;
CREATE FUNCTION pg_temp.drop_infinity() RETURNS void LANGUAGE sql AS $$
    DELETE FROM plain_orders WHERE at = 'infinity';
    DELETE FROM expr_orders WHERE at = 'infinity';
$$;

SET crm_kpi.timezone = 'America/New_York';
SELECT crm_kpi.rebuild();
SELECT pg_temp.write_both();
SELECT set_eq($$SELECT day, customer_id FROM queued$$,
              $$VALUES ('2024-02-29'::date, 7::bigint), ('2024-06-30', 8), ('infinity', 9), ('2024-05-05', NULL), (NULL, 10),
                       ('2024-02-29'::date, 7::bigint), ('2024-06-30', 8), ('infinity', 9), ('2024-05-05', NULL), (NULL, 10)$$,
              'a zone name: each table queues each distinct (day in New York, customer) once');
SELECT is((SELECT count(*) FROM queued), 10::bigint, 'five keys from each table, the repeated day and customer once');

-- A rebuild that fails (on a customer id that is no number, written with capture off) keeps the settings
-- the tables were built with.
ALTER TABLE expr_orders DISABLE TRIGGER USER;
INSERT INTO expr_orders VALUES (9, 'oops', 'completed', 1, '2024-01-01 12:00+00');
ALTER TABLE expr_orders ENABLE TRIGGER USER;
SET crm_kpi.timezone = 'EST';
SELECT is((SELECT left(error, 5) FROM crm_kpi.rebuild()), '22P02', 'a rebuild fails on a customer id that is no number');
ALTER TABLE expr_orders DISABLE TRIGGER USER;
DELETE FROM expr_orders WHERE cust_text = 'oops';
ALTER TABLE expr_orders ENABLE TRIGGER USER;
SELECT is((SELECT timezone || ': ' || crm_kpi.rebuild_reason() FROM crm_kpi.engine_state),
          'America/New_York: crm_kpi.timezone is EST, the tables use America/New_York',
          'and the tables keep their time zone, still needing a rebuild');
SELECT pg_temp.drop_infinity();
SELECT crm_kpi.rebuild();
SELECT pg_temp.write_both();
SELECT set_eq($$SELECT DISTINCT day, customer_id FROM queued$$,
              $$VALUES ('2024-02-29'::date, 7::bigint), ('2024-06-30', 8), ('infinity', 9), ('2024-05-05', NULL), (NULL, 10)$$,
              'a fixed-offset abbreviation (EST, -5 all year)');
SELECT is((SELECT count(*) FROM queued), 10::bigint, 'both tables queue the same keys');

SELECT pg_temp.drop_infinity();
SET crm_kpi.timezone = 'UTC';
SELECT crm_kpi.rebuild();
SELECT pg_temp.write_both();
SELECT set_eq($$SELECT DISTINCT day, customer_id FROM queued$$,
              $$VALUES ('2024-03-01'::date, 7::bigint), ('2024-07-01', 8), ('infinity', 9), ('2024-05-05', NULL), (NULL, 10)$$,
              'UTC');

-- UPDATE queues old and new keys; DELETE the old ones (the rows of each customer were written three times).
SELECT pg_temp.drop_infinity();
DELETE FROM crm_kpi.change_queue;
UPDATE plain_orders SET cust = 11, at = '2025-01-02 10:00+00' WHERE cust = 7;
SELECT bag_eq($$SELECT day, customer_id FROM queued$$, $$VALUES ('2024-03-01'::date, 7::bigint), ('2025-01-02', 11)$$,
              'an UPDATE queues the old and the new keys, each once');
DELETE FROM crm_kpi.change_queue;
DELETE FROM plain_orders WHERE cust = 8;
SELECT bag_eq($$SELECT day, customer_id FROM queued$$, $$VALUES ('2024-07-01'::date, 8::bigint)$$,
              'a DELETE queues the keys of its rows, once per statement and key');

-- A filtered binding queues only the rows the filter keeps.
SELECT crm_kpi.unbind_source('orders', 'expr_orders');
SELECT crm_kpi.bind_source('orders', 'expr_orders', '{"order_id": "id", "customer_id": {"expr": "src.cust_text::bigint"},
                                                      "status": "state", "amount": "total", "ordered_at": "at",
                                                      "_filter": {"expr": "src.state <> ''draft''"}}');
SELECT crm_kpi.rebuild();
DELETE FROM crm_kpi.change_queue;
INSERT INTO expr_orders VALUES (2, '20', 'draft', 1, '2024-01-01 12:00+00'), (3, '21', 'completed', 1, '2024-01-02 12:00+00');
SELECT set_eq($$SELECT day, customer_id FROM queued$$, $$VALUES ('2024-01-02'::date, 21::bigint)$$,
              'a filtered binding queues only the rows its filter keeps');

-- A partitioned source whose partition has its columns in another order (and a dropped one).
CREATE TABLE part_orders (id int, cust bigint, state text, total numeric, at timestamptz) PARTITION BY RANGE (at);
CREATE TABLE part_orders_a (junk int, at timestamptz, total numeric, state text, cust bigint, id int);
ALTER TABLE part_orders_a DROP COLUMN junk;
ALTER TABLE part_orders ATTACH PARTITION part_orders_a FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
SELECT crm_kpi.bind_source('orders', 'part_orders', '{"order_id": "id", "customer_id": "cust", "status": "state",
                                                      "amount": "total", "ordered_at": "at"}');
SELECT crm_kpi.rebuild();
DELETE FROM crm_kpi.change_queue;
INSERT INTO part_orders VALUES (1, 30, 'completed', 1, '2024-02-02 12:00+00');
INSERT INTO part_orders_a (id, cust, state, total, at) VALUES (1, 31, 'completed', 1, '2024-02-03 12:00+00');
SELECT set_eq($$SELECT day, customer_id FROM queued$$, $$VALUES ('2024-02-02'::date, 30::bigint), ('2024-02-03', 31)$$,
              'through the parent and straight into a partition with its columns in another order');

-- The queue is the extension's: a writer without any right on it still queues its keys.
CREATE ROLE crm_kpi_paths_writer;
GRANT INSERT, UPDATE, DELETE, SELECT ON plain_orders TO crm_kpi_paths_writer;
DELETE FROM crm_kpi.change_queue;
SET ROLE crm_kpi_paths_writer;
INSERT INTO plain_orders VALUES (5, 40, 'completed', 1, '2024-09-09 12:00+00');
SELECT throws_ok('SELECT * FROM crm_kpi.change_queue', '42501', NULL, 'the writer cannot read the queue');
RESET ROLE;
SELECT set_eq($$SELECT day, customer_id FROM queued$$, $$VALUES ('2024-09-09'::date, 40::bigint)$$,
              'but its write is queued');

-- The queue was emptied by hand above, so the tables are rebuilt: orders without a customer or a time
-- are counted as a recomputation counts them.
SELECT crm_kpi.rebuild();
SELECT is((SELECT count(*) FROM crm_kpi.verify()), 0::bigint, 'the KPI tables are exact');

SELECT * FROM finish();
ROLLBACK;
