-- rfm_marginals.sql: the buyers per day of their last order (rfm_last_days, in crm_kpi.timezone) and per number of
-- completed orders (rfm_order_counts), which the RFM scales read: values worked out by hand after each write and
-- compared with the same counts taken from the orders, rows emptied by a write deleted, verify() empty, and a
-- rebuild giving the same rows.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(17);
SET client_min_messages = warning;
-- Tokyo days (UTC+9): 2024-03-01 23:30 UTC is 2024-03-02 in Tokyo.
SET crm_kpi.timezone = 'Asia/Tokyo';
SELECT crm_kpi.create_reference_schema('crm');

INSERT INTO crm.customers (customer_id, created_at, acquisition_channel)
SELECT i, '2023-12-01', CASE WHEN i % 2 = 0 THEN 'email' ELSE 'social' END FROM generate_series(1, 5) i;
-- c1: one order; c2: two (the last on 01-10); c3: one, on a Tokyo day after its UTC day; c4: only a cancelled order;
-- c5: none.
INSERT INTO crm.orders (order_id, customer_id, status, amount, ordered_at) VALUES
    (1, 1, 'completed', 10, '2024-01-10 03:00+00'),
    (2, 2, 'completed', 20, '2024-01-01 03:00+00'),
    (3, 2, 'completed', 30, '2024-01-10 05:00+00'),
    (4, 3, 'completed', 40, '2024-03-01 23:30+00'),
    (5, 4, 'cancelled', 50, '2024-02-01 03:00+00');
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'the first refresh builds the tables');

-- The same counts taken from the orders: each customer with a completed order once, under the Tokyo day of its last
-- one and under their number.
CREATE FUNCTION pg_temp.last_days() RETURNS TABLE (last_day date, buyers bigint) LANGUAGE sql AS $$
    SELECT (max(o.ordered_at) AT TIME ZONE 'Asia/Tokyo')::date, 1::bigint FROM crm.orders o
    WHERE o.status = 'completed' GROUP BY o.customer_id
$$;
CREATE FUNCTION pg_temp.order_counts() RETURNS TABLE (orders bigint, buyers bigint) LANGUAGE sql AS $$
    SELECT count(*), 1::bigint FROM crm.orders o WHERE o.status = 'completed' GROUP BY o.customer_id
$$;

SELECT results_eq('SELECT last_day, buyers FROM crm_kpi.rfm_last_days ORDER BY 1',
                  $$VALUES ('2024-01-10'::date, 2::bigint), ('2024-03-02', 1)$$,
                  'by hand: c1 and c2 last ordered on 01-10, c3 on 03-02 in Tokyo (03-01 in UTC); c4 bought nothing');
SELECT results_eq('SELECT orders, buyers FROM crm_kpi.rfm_order_counts ORDER BY 1',
                  $$VALUES (1::bigint, 2::bigint), (2, 1)$$,
                  'by hand: c1 and c3 have one completed order, c2 two');
SELECT results_eq('SELECT last_day, buyers FROM crm_kpi.rfm_last_days ORDER BY 1',
                  'SELECT last_day, sum(buyers)::bigint FROM pg_temp.last_days() GROUP BY 1 ORDER BY 1',
                  'rfm_last_days as the orders count it');

-- c1's order moves to c3's Tokyo day.
UPDATE crm.orders SET ordered_at = '2024-03-02 01:00+00' WHERE order_id = 1;
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL::text, 'refresh after moving an order');
SELECT results_eq('SELECT last_day, buyers FROM crm_kpi.rfm_last_days ORDER BY 1',
                  $$VALUES ('2024-01-10'::date, 1::bigint), ('2024-03-02', 2)$$,
                  'by hand: c1 moved from 01-10 to 03-02');

-- c2's last order is cancelled: c2 is left with one order, on 01-01; no buyer is left on 01-10 or with two orders.
UPDATE crm.orders SET status = 'cancelled' WHERE order_id = 3;
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL::text, 'refresh after cancelling an order');
SELECT results_eq('SELECT last_day, buyers FROM crm_kpi.rfm_last_days ORDER BY 1',
                  $$VALUES ('2024-01-01'::date, 1::bigint), ('2024-03-02', 2)$$,
                  'by hand: c2 now last ordered on 01-01, and the emptied day 01-10 is deleted');
SELECT results_eq('SELECT orders, buyers FROM crm_kpi.rfm_order_counts ORDER BY 1',
                  $$VALUES (1::bigint, 3::bigint)$$,
                  'by hand: three buyers of one order, and the emptied count 2 is deleted');

-- c3's order is deleted: c3 is no longer a buyer; c4's order completes.
DELETE FROM crm.orders WHERE order_id = 4;
UPDATE crm.orders SET status = 'completed' WHERE order_id = 5;
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL::text, 'refresh after a delete and a completion');
SELECT results_eq('SELECT last_day, buyers FROM crm_kpi.rfm_last_days ORDER BY 1',
                  $$VALUES ('2024-01-01'::date, 1::bigint), ('2024-02-01', 1), ('2024-03-02', 1)$$,
                  'by hand: c2 on 01-01, c4 on 02-01, c1 on 03-02');
SELECT results_eq('SELECT last_day, buyers FROM crm_kpi.rfm_last_days ORDER BY 1',
                  'SELECT last_day, sum(buyers)::bigint FROM pg_temp.last_days() GROUP BY 1 ORDER BY 1',
                  'rfm_last_days as the orders count it, after the writes');
SELECT results_eq('SELECT orders, buyers FROM crm_kpi.rfm_order_counts ORDER BY 1',
                  'SELECT orders, sum(buyers)::bigint FROM pg_temp.order_counts() GROUP BY 1 ORDER BY 1',
                  'rfm_order_counts as the orders count it, after the writes');
SELECT is((SELECT count(*) FROM crm_kpi.verify() WHERE table_name IN ('rfm_last_days', 'rfm_order_counts')), 0::bigint,
          'verify: both exact');

-- The scales read them: the recency scores of the days that occur, the frequency score of each count (n = 3,
-- score = 1 + floor(5 (rank - 1) / 3): days ranked 1, 2, 3 score 1, 2, 4; the one count ranks 1, scores 1).
SELECT is((SELECT format('%s %s %s %s', days, recency_scores, order_counts, frequency_scores) FROM crm_kpi.rfm_scales),
          '{2024-01-01,2024-02-01,2024-03-02} {1,2,4} {1} {1}', 'rfm_scales from the two tables');

-- A rebuild gives the same rows.
CREATE TEMP TABLE before AS
SELECT 'd' AS t, last_day::text AS k, buyers FROM crm_kpi.rfm_last_days
UNION ALL SELECT 'o', orders::text, buyers FROM crm_kpi.rfm_order_counts;
SELECT is((SELECT error FROM crm_kpi.rebuild()), NULL::text, 'rebuild');
SELECT bag_eq($$SELECT 'd' AS t, last_day::text AS k, buyers FROM crm_kpi.rfm_last_days
                UNION ALL SELECT 'o', orders::text, buyers FROM crm_kpi.rfm_order_counts$$,
              'SELECT * FROM before', 'the rebuilt rows are those the refreshes kept');
SELECT * FROM finish();
ROLLBACK;
