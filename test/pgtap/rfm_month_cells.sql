-- rfm_month_cells.sql: rfm_cells summed per month of the buyers' last order (in crm_kpi.timezone), which rfm_grid reads
-- for the months whose buyers all have one recency score: values worked out by hand after each write and compared
-- with the same sums taken from the orders, rows emptied by a write deleted, rfm_grid equal to the grid of
-- customer_kpis (which ranks every buyer), verify() empty, and a rebuild giving the same rows.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(16);
SET client_min_messages = warning;
-- Tokyo (UTC+9): 2024-01-31 20:00 UTC is 2024-02-01 in Tokyo, 2024-04-30 16:00 UTC is 2024-05-01.
SET crm_kpi.timezone = 'Asia/Tokyo';
SELECT crm_kpi.create_reference_schema('crm');

INSERT INTO crm.customers (customer_id, created_at, acquisition_channel)
SELECT i, '2023-12-01', CASE WHEN i IN (2, 4, 5, 6, 8, 10) THEN 'email' ELSE 'social' END FROM generate_series(1, 10) i;
-- Ten buyers, every order 10. Last orders (Tokyo days): c1 01-05 (3 orders), c2 01-20, c3 02-01 (01-31 in UTC; 2
-- orders), c4 and c5 02-10, c6 03-03 (2 orders), c7 03-25, c8 04-02 (4 orders), c9 and c10 04-15.
INSERT INTO crm.orders (order_id, customer_id, status, amount, ordered_at) VALUES
    (1, 1, 'completed', 10, '2023-12-10 03:00+00'), (2, 1, 'completed', 10, '2023-12-20 03:00+00'),
    (3, 1, 'completed', 10, '2024-01-05 03:00+00'),
    (4, 2, 'completed', 10, '2024-01-20 03:00+00'),
    (5, 3, 'completed', 10, '2024-01-02 03:00+00'), (6, 3, 'completed', 10, '2024-01-31 20:00+00'),
    (7, 4, 'completed', 10, '2024-02-10 03:00+00'),
    (8, 5, 'completed', 10, '2024-02-10 04:00+00'),
    (9, 6, 'completed', 10, '2024-02-20 03:00+00'), (10, 6, 'completed', 10, '2024-03-03 03:00+00'),
    (11, 7, 'completed', 10, '2024-03-25 03:00+00'),
    (12, 8, 'completed', 10, '2023-12-05 03:00+00'), (13, 8, 'completed', 10, '2024-01-15 03:00+00'),
    (14, 8, 'completed', 10, '2024-03-01 03:00+00'), (15, 8, 'completed', 10, '2024-04-02 03:00+00'),
    (16, 9, 'completed', 10, '2024-04-15 03:00+00'),
    (17, 10, 'completed', 10, '2024-04-15 05:00+00');
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'the first refresh builds the tables');

-- The same sums taken from the orders: each buyer once, under the Tokyo month of its last completed order, its count
-- of them and its channel.
CREATE FUNCTION pg_temp.month_cells() RETURNS TABLE (month date, orders bigint, channel text, buyers bigint,
                                                     revenue numeric, last_order_epoch numeric) LANGUAGE sql AS $$
    SELECT date_trunc('month', b.last_at AT TIME ZONE 'Asia/Tokyo')::date, b.n, c.acquisition_channel, count(*),
           sum(b.revenue), sum(extract(epoch FROM b.last_at))
    FROM (SELECT o.customer_id, max(o.ordered_at) AS last_at, count(*) AS n, sum(o.amount) AS revenue
          FROM crm.orders o WHERE o.status = 'completed' GROUP BY o.customer_id) b
    JOIN crm.customers c USING (customer_id)
    GROUP BY 1, 2, 3
$$;
-- The grid of customer_kpis, which scores each buyer by its rank among all of them.
CREATE FUNCTION pg_temp.ranked_grid() RETURNS TABLE (recency_score integer, frequency_score integer, segment text,
                                                     channel text, buyers bigint, revenue numeric, orders bigint,
                                                     days numeric) LANGUAGE sql AS $$
    SELECT k.recency_score, k.frequency_score, k.segment, k.acquisition_channel, count(*), sum(k.revenue),
           sum(k.orders)::bigint, round(sum(k.days_since_last_order)::numeric, 6)
    FROM crm_kpi.customer_kpis k WHERE k.orders > 0 GROUP BY 1, 2, 3, 4
$$;
CREATE VIEW pg_temp.grid AS
SELECT recency_score, frequency_score, segment, channel, buyers, revenue, orders, round(days_since_last_order, 6) AS days
FROM crm_kpi.rfm_grid;

SELECT results_eq('SELECT month, orders, channel, buyers, revenue FROM crm_kpi.rfm_month_cells ORDER BY 1, 2, 3',
                  $$VALUES ('2024-01-01'::date, 1::bigint, 'email', 1::bigint, 10::numeric),
                           ('2024-01-01', 3, 'social', 1, 30),
                           ('2024-02-01', 1, 'email', 2, 20),
                           ('2024-02-01', 2, 'social', 1, 20),
                           ('2024-03-01', 1, 'social', 1, 10),
                           ('2024-03-01', 2, 'email', 1, 20),
                           ('2024-04-01', 1, 'email', 1, 10),
                           ('2024-04-01', 1, 'social', 1, 10),
                           ('2024-04-01', 4, 'email', 1, 40)$$,
                  'by hand: c3 in February (its last order is on 02-01 in Tokyo), c4 and c5 in one cell');
SELECT results_eq('SELECT * FROM crm_kpi.rfm_month_cells ORDER BY 1, 2, 3',
                  'SELECT * FROM pg_temp.month_cells() ORDER BY 1, 2, 3',
                  'rfm_month_cells as the orders sum it (the last orders'' instants too)');
-- n = 10, a day's score is 1 + floor(5 x (buyers of earlier days) / 10): January 1 1, February 2 2 (c3; c4 and c5),
-- March 3 4, April 4 5 (c8; c9 and c10): January and February are read per month, March and April per day.
SELECT is((SELECT recency_scores::text FROM crm_kpi.rfm_scales), '{1,1,2,2,3,4,4,5}',
          'by hand: the recency scores of the eight days, which step up inside March and April only');
SELECT results_eq('SELECT * FROM pg_temp.grid ORDER BY 1, 2, 3, 4', 'SELECT * FROM pg_temp.ranked_grid() ORDER BY 1, 2, 3, 4',
                  'rfm_grid: the grid of customer_kpis, which ranks every buyer');

-- c2's only order moves to 03-10; one of c1's earlier orders is cancelled (c1 keeps its last order, 01-05, with 2);
-- c9's order is deleted; c3 orders again on 05-01 in Tokyo (04-30 in UTC).
UPDATE crm.orders SET ordered_at = '2024-03-10 03:00+00' WHERE order_id = 4;
UPDATE crm.orders SET status = 'cancelled' WHERE order_id = 1;
DELETE FROM crm.orders WHERE order_id = 16;
INSERT INTO crm.orders (order_id, customer_id, status, amount, ordered_at) VALUES
    (18, 3, 'completed', 10, '2024-04-30 16:00+00');
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL::text, 'refresh after the writes');
SELECT results_eq('SELECT month, orders, channel, buyers, revenue FROM crm_kpi.rfm_month_cells ORDER BY 1, 2, 3',
                  $$VALUES ('2024-01-01'::date, 2::bigint, 'social', 1::bigint, 20::numeric),
                           ('2024-02-01', 1, 'email', 2, 20),
                           ('2024-03-01', 1, 'email', 1, 10),
                           ('2024-03-01', 1, 'social', 1, 10),
                           ('2024-03-01', 2, 'email', 1, 20),
                           ('2024-04-01', 1, 'email', 1, 10),
                           ('2024-04-01', 4, 'email', 1, 40),
                           ('2024-05-01', 3, 'social', 1, 30)$$,
                  'by hand: the emptied cells (January 1 email, January 3, February 2, April 1 social) are deleted');
SELECT results_eq('SELECT * FROM crm_kpi.rfm_month_cells ORDER BY 1, 2, 3',
                  'SELECT * FROM pg_temp.month_cells() ORDER BY 1, 2, 3',
                  'rfm_month_cells as the orders sum it, after the writes');
SELECT results_eq('SELECT * FROM pg_temp.grid ORDER BY 1, 2, 3, 4', 'SELECT * FROM pg_temp.ranked_grid() ORDER BY 1, 2, 3, 4',
                  'rfm_grid: the grid of customer_kpis, after the writes');
SELECT is((SELECT count(*) FROM crm_kpi.verify() WHERE table_name IN ('rfm_cells', 'rfm_month_cells')), 0::bigint,
          'verify: rfm_cells and rfm_month_cells exact');

-- Every score in one month: the grid still equals the ranked one when all buyers' last orders fall in March (the
-- months are read per day), and when they fall on one day (the month is read whole).
UPDATE crm.orders SET ordered_at = '2024-03-01 03:00+00'::timestamptz + (order_id || ' hours')::interval
WHERE status = 'completed';
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL::text, 'refresh after moving every order into March');
SELECT results_eq('SELECT * FROM pg_temp.grid ORDER BY 1, 2, 3, 4', 'SELECT * FROM pg_temp.ranked_grid() ORDER BY 1, 2, 3, 4',
                  'rfm_grid: the grid of customer_kpis, every buyer in March');
UPDATE crm.orders SET ordered_at = '2024-03-01 03:00+00' WHERE status = 'completed';
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL::text, 'refresh after moving every order onto 03-01');
SELECT results_eq('SELECT * FROM pg_temp.grid ORDER BY 1, 2, 3, 4', 'SELECT * FROM pg_temp.ranked_grid() ORDER BY 1, 2, 3, 4',
                  'rfm_grid: the grid of customer_kpis, every buyer on one day');

-- A rebuild gives the same rows.
CREATE TEMP TABLE before AS SELECT * FROM crm_kpi.rfm_month_cells;
SELECT is((SELECT error FROM crm_kpi.rebuild()), NULL::text, 'rebuild');
SELECT bag_eq('SELECT * FROM crm_kpi.rfm_month_cells', 'SELECT * FROM before', 'the rebuilt rows are those the refreshes kept');
SELECT * FROM finish();
ROLLBACK;
