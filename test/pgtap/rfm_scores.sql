-- rfm_scores.sql: RFM scores, segments and the churn early warning of crm_kpi.customer_kpis on ten buyers whose
-- figures are worked out by hand below (KPI_SPEC.md: quintile scores 1-5, 5 best, equal values equal scores;
-- recency in days; the warning above crm_kpi.warning_factor x the mean gap, or above the active window with one
-- order; the segments of the built-in grid).
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(22);
SET client_min_messages = warning;
-- Days are Tokyo days (UTC+9, no daylight saving time): 00:30 there is 15:30 UTC the day before.
SET crm_kpi.timezone = 'Asia/Tokyo';
SELECT crm_kpi.create_reference_schema('crm');

-- A Tokyo wall-clock time, k days before today (Tokyo).
CREATE FUNCTION pg_temp.tokyo(k integer, t time) RETURNS timestamptz LANGUAGE sql STABLE
RETURN (((now() AT TIME ZONE 'Asia/Tokyo')::date - k) + t) AT TIME ZONE 'Asia/Tokyo';

INSERT INTO crm.customers (customer_id, created_at, acquisition_channel)
SELECT i, now() - interval '400 days', CASE WHEN i % 2 = 0 THEN 'email' ELSE 'social' END FROM generate_series(1, 12) i;
-- Last orders: c4 and c5 on the same Tokyo day (70 days ago) at 00:30 and 23:30; c6 the next Tokyo day at 00:10,
-- which is the same UTC day as c5's 23:30. Earlier orders go back by a fixed gap per customer.
CREATE TEMP TABLE fixture (customer_id bigint, last_at timestamptz, orders integer, gap interval, amount numeric);
INSERT INTO fixture VALUES
    (1, pg_temp.tokyo(100, '12:00'), 1, NULL, 500),
    (2, pg_temp.tokyo(95, '12:00'), 1, NULL, 10),
    (3, pg_temp.tokyo(80, '12:00'), 1, NULL, 10),
    (4, pg_temp.tokyo(70, '00:30'), 2, '10 days', 10),
    (5, pg_temp.tokyo(70, '23:30'), 2, '40 days', 10),
    (6, pg_temp.tokyo(69, '00:10'), 3, '10 days', 10),
    (7, pg_temp.tokyo(50, '12:00'), 3, '10 days', 10),
    (8, pg_temp.tokyo(40, '12:00'), 3, '30 days', 10),
    (9, pg_temp.tokyo(30, '12:00'), 4, '20 days', 10),
    (10, pg_temp.tokyo(20, '12:00'), 6, '5 days', 10);
INSERT INTO crm.orders (customer_id, status, amount, ordered_at)
SELECT f.customer_id, 'completed', f.amount, f.last_at - k * coalesce(f.gap, '0')
FROM fixture f, generate_series(0, f.orders - 1) k;
-- c11 has only a cancelled order, c12 none: neither is a buyer.
INSERT INTO crm.orders (customer_id, status, amount, ordered_at) VALUES (11, 'cancelled', 99, pg_temp.tokyo(10, '12:00'));
SELECT crm_kpi.refresh();

-- By hand, n = 10 buyers, score = 1 + floor(5 (rank - 1) / 10):
-- recency, ranked by the Tokyo day of the last order, oldest first: c1 1, c2 2, c3 3, c4 and c5 4 (same day), c6 6,
--   c7 7, c8 8, c9 9, c10 10; scores 1 1 2 2 2 3 4 4 5 5. (Ranked by the instant, c5 would be 5th, score 3; ranked
--   by the UTC day, c5 and c6 would share 5th, score 3.)
-- frequency (orders 1 1 1 2 2 3 3 3 4 6): ranks 1 1 1 4 4 6 6 6 9 10; scores 1 1 1 2 2 3 3 3 5 5.
-- monetary (revenue 500 10 10 20 20 30 30 30 40 60): ranks 10 1 1 3 3 5 5 5 8 9; scores 5 1 1 2 2 3 3 3 4 5.
CREATE TEMP TABLE expected (customer_id bigint, r integer, f integer, m integer, segment text, warned boolean);
-- Segments of the built-in grid by (R, F); warnings: one order, days since over 90 days above 1 (c1: 100/90; c2:
-- 95/90; c3: 80/90 no); more, days since over the mean gap above 2 (c4 70/10, c5 70/40 no, c6 69/10, c7 50/10,
-- c8 40/30 no, c9 30/20 no, c10 20/5).
INSERT INTO expected VALUES
    (1, 1, 1, 5, 'lost', true), (2, 1, 1, 1, 'lost', true), (3, 2, 1, 1, 'hibernating', false),
    (4, 2, 2, 2, 'hibernating', true), (5, 2, 2, 2, 'hibernating', false), (6, 3, 3, 3, 'needs attention', true),
    (7, 4, 3, 3, 'potential', true), (8, 4, 3, 3, 'potential', false), (9, 5, 5, 4, 'champions', false),
    (10, 5, 5, 5, 'champions', true);

SELECT is((SELECT count(*) FROM crm_kpi.customer_kpis WHERE recency_score IS NOT NULL), 10::bigint,
          'the ten buyers are scored, the two customers without a completed order are not');
SELECT results_eq($$SELECT customer_id, recency_score FROM crm_kpi.customer_kpis WHERE customer_id <= 10 ORDER BY 1$$,
                  $$SELECT customer_id, r FROM expected ORDER BY 1$$,
                  'recency scores by the Tokyo day of the last order: equal days, equal scores');
SELECT is((SELECT recency_score FROM crm_kpi.customer_kpis WHERE customer_id = 5), 2,
          'c5, last order at 23:30 on the day c4 ordered at 00:30, scores as c4 (not 3 as by the instant or UTC day)');
SELECT isnt((SELECT recency_score FROM crm_kpi.customer_kpis WHERE customer_id = 6), 2,
            'c6, at 00:10 the next Tokyo day (the same UTC day as c5), ranks after them');
SELECT results_eq($$SELECT customer_id, frequency_score FROM crm_kpi.customer_kpis WHERE customer_id <= 10 ORDER BY 1$$,
                  $$SELECT customer_id, f FROM expected ORDER BY 1$$, 'frequency scores: equal order counts, equal scores');
SELECT results_eq($$SELECT customer_id, monetary_score FROM crm_kpi.customer_kpis WHERE customer_id <= 10 ORDER BY 1$$,
                  $$SELECT customer_id, m FROM expected ORDER BY 1$$, 'monetary scores: the highest revenue scores 5');
SELECT results_eq($$SELECT customer_id, segment FROM crm_kpi.customer_kpis WHERE customer_id <= 10 ORDER BY 1$$,
                  $$SELECT customer_id, segment FROM expected ORDER BY 1$$, 'each buyer in the segment of its (R, F) cell');
SELECT results_eq($$SELECT customer_id, early_warning FROM crm_kpi.customer_kpis WHERE customer_id <= 10 ORDER BY 1$$,
                  $$SELECT customer_id, warned FROM expected ORDER BY 1$$,
                  'early warning: over 2 x the mean gap, or over the active window with one order');
SELECT is((SELECT count(*) FROM crm_kpi.customer_kpis k JOIN fixture f USING (customer_id) CROSS JOIN crm_kpi.engine_state e
           WHERE abs(k.warning_ratio - extract(epoch FROM e.as_of - f.last_at)
                                      / extract(epoch FROM coalesce(f.gap, interval '90 days'))) < 1e-9),
          10::bigint, 'each ratio is the time since the last order over the gap (the active window with one order)');
SELECT results_eq($$SELECT customer_id FROM crm_kpi.early_warnings(3)$$, ARRAY[4::bigint, 6, 7],
                  'early_warnings() lists the highest ratios first (c4 70/10, c6 69/10, c7 50/10), up to the limit');
SELECT is((SELECT count(*) FROM crm_kpi.early_warnings(2147483647)), 6::bigint,
          'early_warnings(the largest integer): all six flagged customers');
SELECT throws_ok($$SELECT * FROM crm_kpi.early_warnings(-1)$$, '22023', 'max_rows must not be negative: -1',
                 'early_warnings(-1): a negative limit is an error');
SELECT results_eq($$SELECT customer_id FROM crm_kpi.early_warnings(10, '{email}')$$, ARRAY[4::bigint, 6, 10, 2],
                  'early_warnings() of the email customers (even ids): c4, c6, c10 (20/5), c2 (95/90)');
SELECT results_eq($$SELECT customer_id FROM crm_kpi.early_warnings(10, '{social,(none)}')$$, ARRAY[7::bigint, 1],
                  'early_warnings() of the social customers (odd ids) and those without a channel (none): c7, c1 (100/90)');
SELECT results_eq($$SELECT segment, customers, revenue FROM crm_kpi.rfm_report() WHERE customers > 0 ORDER BY 1$$,
                  $$SELECT segment, count(*), sum(x.revenue) FROM expected
                    JOIN (SELECT customer_id, sum(amount) AS revenue FROM crm.orders WHERE status = 'completed' GROUP BY 1) x
                    USING (customer_id) GROUP BY 1 ORDER BY 1$$,
                  'rfm_report(): the buyers and revenue of each segment');
SELECT is((SELECT count(*) FROM crm_kpi.rfm_report() WHERE customers = 0), 2::bigint,
          'rfm_report(): the segments without buyers (at risk, loyal) are listed with none');
-- By hand from the table above: early warnings lost 2 (c1, c2), hibernating 1 (c4), needs attention 1 (c6),
-- potential 1 (c7), champions 1 (c10); mean orders lost 1, hibernating 5/3, needs attention 3, potential 3, champions 5.
SELECT results_eq($$SELECT segment, early_warnings, round(mean_orders, 9) FROM crm_kpi.rfm_report() WHERE customers > 0 ORDER BY 1$$,
                  $$VALUES ('champions', 1::bigint, 5.000000000), ('hibernating', 1, 1.666666667), ('lost', 2, 1.000000000),
                           ('needs attention', 1, 3.000000000), ('potential', 1, 3.000000000)$$,
                  'rfm_report(): the early warnings and mean orders of each segment');
SELECT is((SELECT count(*) FROM crm_kpi.rfm_report() r
           JOIN (SELECT x.segment, avg(extract(epoch FROM e.as_of - f.last_at) / 86400) AS mean_days
                 FROM expected x JOIN fixture f USING (customer_id) CROSS JOIN crm_kpi.engine_state e GROUP BY 1) w
           USING (segment) WHERE abs(r.mean_days_since_last_order - w.mean_days) < 1e-9),
          5::bigint, 'rfm_report(): the mean days since the last order of each segment');

-- rfm_grid scores the same from the buyers per cell (day of the last order, orders, channel), without ranking them.
SELECT results_eq($$SELECT recency_score, frequency_score, segment, channel, buyers FROM crm_kpi.rfm_grid ORDER BY 1, 2, 3, 4$$,
                  $$SELECT r, f, segment, CASE WHEN customer_id % 2 = 0 THEN 'email' ELSE 'social' END, count(*)
                    FROM expected GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4$$,
                  'rfm_grid: the buyers per (R, F) cell, segment and channel');
SELECT is((SELECT count(*) FROM (SELECT g.segment, sum(g.days_since_last_order) / sum(g.buyers) AS mean_days
                                 FROM crm_kpi.rfm_grid g GROUP BY 1) m
           JOIN (SELECT x.segment, avg(extract(epoch FROM e.as_of - f.last_at) / 86400) AS mean_days
                 FROM expected x JOIN fixture f USING (customer_id) CROSS JOIN crm_kpi.engine_state e GROUP BY 1) w
           USING (segment) WHERE abs(m.mean_days - w.mean_days) < 1e-9),
          5::bigint, 'rfm_grid: the mean days since the last order of each segment');

-- Without c1 (its order deleted), n = 9 and score = 1 + floor(5 (rank - 1) / 9): recency ranks 1 2 3 3 5 6 7 8 9
-- score 1 1 2 2 3 3 4 4 5; frequency (orders 1 1 2 2 3 3 3 4 6) ranks 1 1 3 3 5 5 5 8 9 score 1 1 2 2 3 3 3 4 5.
DELETE FROM crm.orders WHERE customer_id = 1;
SELECT crm_kpi.refresh();
CREATE TEMP TABLE expected2 (customer_id bigint, r integer, f integer, segment text);
INSERT INTO expected2 VALUES
    (2, 1, 1, 'lost'), (3, 1, 1, 'lost'), (4, 2, 2, 'hibernating'), (5, 2, 2, 'hibernating'),
    (6, 3, 3, 'needs attention'), (7, 3, 3, 'needs attention'), (8, 4, 3, 'potential'), (9, 4, 4, 'champions'),
    (10, 5, 5, 'champions');
SELECT results_eq($$SELECT customer_id, recency_score, frequency_score, segment FROM crm_kpi.customer_kpis
                    WHERE recency_score IS NOT NULL ORDER BY 1$$,
                  $$SELECT customer_id, r, f, segment FROM expected2 ORDER BY 1$$,
                  'after c1''s order is deleted and refreshed: the nine buyers scored again');
SELECT results_eq($$SELECT recency_score, frequency_score, segment, channel, buyers FROM crm_kpi.rfm_grid ORDER BY 1, 2, 3, 4$$,
                  $$SELECT r, f, segment, CASE WHEN customer_id % 2 = 0 THEN 'email' ELSE 'social' END, count(*)
                    FROM expected2 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4$$,
                  'and rfm_grid too, its cells kept by the refresh');

SELECT * FROM finish();
ROLLBACK;
