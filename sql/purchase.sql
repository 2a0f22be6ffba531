-- purchase: purchase summaries (orders, revenue, first/last order, mean gap), against hand values.
CREATE EXTENSION crm_kpi;
\i test/fixtures/errors.sql
\i test/fixtures/recv.sql
SET TimeZone = 'UTC';

CREATE TABLE orders (customer int, amount numeric, ordered_at timestamptz);
INSERT INTO orders VALUES
    (1, 100.00, '2024-01-01 10:00+00'), (1, 50.50, '2024-01-11 10:00+00'), (1, 0, '2024-01-31 10:00+00'),
    (2, 19.99,  '2024-02-15 08:30+00'),
    (3, 10, '2024-03-01 00:00+00'), (3, 30, '2024-03-02 12:00+00'), (3, NULL, '2024-05-01 00:00+00');
-- By hand: customer 1: 3 orders, revenue 150.50, AOV 50.1666..., first Jan 1, last Jan 31,
-- mean gap 30 days / 2 = 15 days; customer 2: 1 order, no gap; customer 3: 2 orders (the NULL
-- amount is ignored), revenue 40, gap 1 day 12 hours.

SELECT customer, s, crm_kpi.orders(s), crm_kpi.revenue(s), round(crm_kpi.aov(s), 10) AS aov,
       crm_kpi.first_order(s), crm_kpi.last_order(s), crm_kpi.mean_gap(s)
FROM (SELECT customer, crm_kpi.purchase_agg(amount, ordered_at) AS s FROM orders GROUP BY customer) x
ORDER BY customer;

-- Per customer and month, then rolled up: exactly the one-step summary (revenue not rounded).
CREATE TABLE purchase_monthly AS
SELECT customer, date_trunc('month', ordered_at) AS month, crm_kpi.purchase_agg(amount, ordered_at) AS s
FROM orders GROUP BY 1, 2;
SELECT customer, crm_kpi.rollup(s)::text = (SELECT crm_kpi.purchase_agg(amount, ordered_at)::text
                                          FROM orders o WHERE o.customer = m.customer) AS rollup_equals_one_step,
       crm_kpi.mean_gap(crm_kpi.rollup(s))
FROM purchase_monthly m GROUP BY customer ORDER BY customer;
-- Over everybody: 6 orders, revenue 150.50 + 19.99 + 40 = 210.49, AOV = 210.49 / 6.
SELECT crm_kpi.orders(s), crm_kpi.revenue(s), crm_kpi.aov(s) = 210.49 / 6 AS exact_aov
FROM (SELECT crm_kpi.rollup(s) AS s FROM purchase_monthly) x;

-- Text form: times in ISO 8601 UTC whatever the session's zone, and read back exactly.
SET TimeZone = 'America/New_York';
SELECT crm_kpi.purchase_agg(amount, ordered_at) FROM orders WHERE customer = 3;
SELECT s::text::crm_kpi.purchase_summary::text = s::text AS round_trip,
       crm_kpi.first_order(s::text::crm_kpi.purchase_summary) = '2024-03-01 00:00+00' AS same_instant
FROM (SELECT crm_kpi.purchase_agg(amount, ordered_at) AS s FROM orders WHERE customer = 3) x;
SET TimeZone = 'UTC';

-- Edge cases and bad input.
SELECT crm_kpi.purchase_agg(amount, ordered_at) IS NULL AS no_rows FROM orders WHERE false;
SELECT crm_kpi.purchase_agg(amount, ordered_at) IS NULL AS only_nulls FROM orders WHERE amount IS NULL;
SELECT pg_temp.sqlstate_of('SELECT crm_kpi.purchase_agg(-0.01, now())');
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.purchase_agg('NaN', now())$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.purchase_agg(1, 'infinity')$$);
SELECT t, pg_temp.sqlstate_of(format('SELECT %L::crm_kpi.purchase_summary', t))
FROM (VALUES ('purchase v1 orders=0 revenue=0 first=2024-01-01T00:00:00+00:00 last=2024-01-01T00:00:00+00:00'),
             ('purchase v1 orders=2 revenue=-1 first=2024-01-01T00:00:00+00:00 last=2024-01-01T00:00:00+00:00'),
             ('purchase v1 orders=2 revenue=1 first=2024-01-02T00:00:00+00:00 last=2024-01-01T00:00:00+00:00'),
             ('purchase v1 orders=1 revenue=1 first=2024-01-01T00:00:00+00:00 last=2024-01-02T00:00:00+00:00'),
             ('purchase v1 orders=2 revenue=Infinity first=2024-01-01T00:00:00+00:00 last=2024-01-02T00:00:00+00:00'),
             ('purchase v1 orders=2 revenue=1 first=-infinity last=2024-01-02T00:00:00+00:00'),
             ('purchase v1 orders=2 revenue=1 first=yesterday-ish last=2024-01-02T00:00:00+00:00'),
             ('purchase v1 orders=2 revenue=1 first=2024-01-01T00:00:00+00:00')) v(t);

-- Binary form: canonical bytes round-trip; corrupt ones are rejected with 22P03.
SELECT crm_kpi.purchase_summary_send('purchase v1 orders=2 revenue=1.5 first=2000-01-01T00:00:00+00:00 last=2000-01-01T00:00:01+00:00') AS bytes;
SELECT pg_temp.recv_as('crm_kpi.purchase_summary', '\x01040203312e35000000000000000040420f0000000000') AS received;
SELECT payload, pg_temp.recv_as('crm_kpi.purchase_summary', payload::bytea)
FROM (VALUES ('\x010402033d2e35000000000000000040420f0000000000'),   -- revenue text "=.5"
             ('\x0104020430312e35000000000000000040420f0000000000'), -- revenue "01.5" not canonical
             ('\x01040003312e35000000000000000040420f0000000000'),   -- no orders
             ('\x01040203312e35000000000000000040420f00000000'),     -- truncated
             ('\x01040203312e35404b4c00000000000000000000000000'),   -- first after last
             ('\x01040203312e35000000000000000040420f000000000000')  -- trailing byte
     ) v(payload);

-- Parallel plan equals serial.
CREATE TABLE orders_big AS
SELECT i % 1000 AS customer, (i % 97) * 1.25 AS amount, '2024-01-01'::timestamptz + i * interval '1 minute' AS ordered_at
FROM generate_series(1, 200000) i;
ANALYZE orders_big;
SELECT crm_kpi.purchase_agg(amount, ordered_at) AS s FROM orders_big \gset
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2; SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF) SELECT crm_kpi.purchase_agg(amount, ordered_at) FROM orders_big;
SELECT crm_kpi.purchase_agg(amount, ordered_at)::text = :'s' AS parallel_equal,
       crm_kpi.revenue(crm_kpi.purchase_agg(amount, ordered_at)) = sum(amount) AS revenue_is_sum,
       crm_kpi.orders(crm_kpi.purchase_agg(amount, ordered_at)) = count(*) AS orders_is_count
FROM orders_big;
RESET ALL;

DROP TABLE orders, purchase_monthly, orders_big;
DISCARD TEMP;
DROP EXTENSION crm_kpi;
