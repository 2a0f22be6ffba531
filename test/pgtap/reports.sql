-- reports.sql: crm_kpi.report() and its breakdowns against independent queries over the source tables.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(21);
SET client_min_messages = warning;
SET crm_kpi.timezone = 'UTC';
SELECT crm_kpi.create_reference_schema('crm');
SELECT count(*) FROM crm_kpi.generate_sample_data('crm', 2000, 7, current_date - 500, 500);
SELECT crm_kpi.refresh();

-- The months of the data, and the same figures computed straight from the sources.
CREATE TEMP TABLE months AS
SELECT g::date AS m, (g + interval '1 month')::date AS n
FROM generate_series(date_trunc('month', current_date - 500), date_trunc('month', current_date), interval '1 month') g;
CREATE TEMP TABLE raw AS
SELECT months.m,
       (SELECT count(*) FROM crm.orders o WHERE o.status = 'completed' AND o.ordered_at >= m AND o.ordered_at < n) AS orders,
       (SELECT coalesce(sum(amount), 0) FROM crm.orders o WHERE o.status = 'completed' AND o.ordered_at >= m AND o.ordered_at < n) AS revenue,
       (SELECT count(DISTINCT customer_id) FROM crm.orders o WHERE o.status = 'completed' AND o.ordered_at >= m AND o.ordered_at < n) AS buyers,
       (SELECT count(*) FROM (SELECT o.customer_id, min(o.ordered_at) AS f FROM crm.orders o JOIN crm.customers c USING (customer_id)
                              WHERE o.status = 'completed' GROUP BY 1) x WHERE f >= m AND f < n) AS new_customers,
       (SELECT 100.0 * (count(*) FILTER (WHERE score >= 9) - count(*) FILTER (WHERE score <= 6)) / nullif(count(*), 0)
        FROM crm.survey_responses s WHERE s.kind = 'nps' AND s.answered_at >= m AND s.answered_at < n) AS nps,
       (SELECT 100.0 * count(*) FILTER (WHERE status = 'won') / nullif(count(*), 0)
        FROM crm.opportunities p WHERE p.status IN ('won', 'lost') AND p.closed_at >= m AND p.closed_at < n) AS win_rate,
       (SELECT count(*) FROM crm.tickets t WHERE t.opened_at >= m AND t.opened_at < n) AS tickets,
       (SELECT 100.0 * count(resolved_at) / nullif(count(*), 0) FROM crm.tickets t WHERE t.opened_at >= m AND t.opened_at < n) AS resolution_rate,
       (SELECT sum(amount) FROM crm.marketing_spend s WHERE s.day >= m AND s.day < n) AS spend
FROM months;
CREATE TEMP TABLE rep AS SELECT * FROM crm_kpi.report(current_date - 500, current_date, 'month');

SELECT is((SELECT count(*) FROM rep), (SELECT count(*) FROM months), 'one row per month');
SELECT is((SELECT count(*) FROM rep r JOIN raw USING (orders, revenue) WHERE r.period = raw.m), (SELECT count(*) FROM months),
          'orders and revenue per month equal a count and sum over crm.orders');
SELECT is((SELECT count(*) FROM rep r JOIN raw ON raw.m = r.period AND raw.buyers = r.buyers), (SELECT count(*) FROM months),
          'buyers per month equal the distinct customers with a completed order');
SELECT is((SELECT count(*) FROM rep r JOIN raw ON raw.m = r.period AND raw.new_customers = r.new_customers), (SELECT count(*) FROM months),
          'new customers equal the customers whose first completed order is in the month');
SELECT is((SELECT count(*) FROM rep r JOIN raw ON raw.m = r.period AND raw.nps IS NOT DISTINCT FROM r.nps), (SELECT count(*) FROM months),
          'NPS equals % promoters - % detractors over the month''s answers');
SELECT is((SELECT count(*) FROM rep r JOIN raw ON raw.m = r.period AND raw.win_rate IS NOT DISTINCT FROM r.win_rate), (SELECT count(*) FROM months),
          'win rate equals won / (won + lost) of opportunities closed in the month');
SELECT is((SELECT count(*) FROM rep r JOIN raw ON raw.m = r.period AND raw.tickets = r.tickets_opened
           AND raw.resolution_rate IS NOT DISTINCT FROM r.resolution_rate), (SELECT count(*) FROM months),
          'tickets opened and resolution rate per month equal the raw counts');
SELECT is((SELECT count(*) FROM rep r JOIN raw ON raw.m = r.period AND raw.spend IS NOT DISTINCT FROM r.marketing_spend), (SELECT count(*) FROM months),
          'marketing spend per month equals the sum of the daily spend');
SELECT is((SELECT count(*) FROM rep r WHERE r.aov IS DISTINCT FROM r.revenue / nullif(r.orders, 0)), 0::bigint,
          'AOV is revenue / orders, NULL without orders');
SELECT is((SELECT count(*) FROM rep r JOIN crm_kpi.churn_rates c ON c.month = r.period
           WHERE r.customers_at_start = c.customers_at_start AND r.churned = c.churned),
          (SELECT count(*) FROM crm_kpi.churn_rates c WHERE c.month IN (SELECT m FROM months)),
          'churn per month agrees with crm_kpi.churn_monthly');
SELECT is((SELECT count(*) FROM rep WHERE churn_rate + retention_rate <> 100), 0::bigint, 'churn + retention = 100 every month');

-- Coarser and finer grains add up to the months.
SELECT is((SELECT sum(orders) FROM crm_kpi.report(current_date - 500, current_date, 'quarter')),
          (SELECT sum(orders) FROM crm_kpi.report(current_date - 500, current_date, 'month')), 'quarters add up to the months');
SELECT is((SELECT sum(revenue) FROM crm_kpi.report(date_trunc('month', current_date - 60)::date, (date_trunc('month', current_date - 30) - interval '1 day')::date, 'day')),
          (SELECT revenue FROM rep WHERE period = date_trunc('month', current_date - 60)::date), 'days add up to their month');
SELECT is((SELECT period FROM crm_kpi.report('2024-03-06', '2024-03-06', 'week')), '2024-03-04'::date, 'weeks start on Monday');
SELECT is((SELECT sum(orders) FROM crm_kpi.report_by_rep(current_date - 500, current_date)),
          (SELECT sum(orders) FROM rep)::numeric, 'per-rep orders add up to all orders');
SELECT is((SELECT sum(new_customers) FROM crm_kpi.report_by_channel(current_date - 500, current_date)),
          (SELECT sum(new_customers) FROM rep)::numeric, 'per-channel new customers add up to all new customers');
SELECT is((SELECT sum(customers)::bigint FROM crm_kpi.rfm_report()),
          (SELECT count(*) FROM crm.customers c WHERE EXISTS (SELECT FROM crm.orders o WHERE o.customer_id = c.customer_id
                                                            AND o.status = 'completed' AND o.ordered_at <= now())),
          'RFM segments partition the customers who have bought');
SELECT ok((SELECT bool_and(warning_ratio > 0) AND count(*) <= 5 FROM crm_kpi.early_warnings(5)), 'early warnings: at most the limit, each with its ratio');
-- early_warnings() reads the shortest gaps first: it must list what ranking every buyer's flag in customer_kpis lists.
SELECT is((SELECT count(*) FROM (VALUES (1), (7), (50), (100000)) l (n)
           CROSS JOIN (VALUES (NULL::text[]), ('{email}'), ('{(none),social,organic}')) c (channels)
           CROSS JOIN LATERAL (
               (SELECT customer_id, warning_ratio, segment FROM crm_kpi.early_warnings(l.n, c.channels)
                EXCEPT ALL
                SELECT customer_id, warning_ratio, segment
                FROM (SELECT k.customer_id, k.warning_ratio::float8 AS warning_ratio, k.segment
                      FROM crm_kpi.customer_kpis k
                      WHERE k.early_warning
                        AND (c.channels IS NULL OR coalesce(k.acquisition_channel, '(none)') = ANY (c.channels))
                      ORDER BY k.warning_ratio DESC, k.revenue DESC, k.customer_id LIMIT l.n) k)
               UNION ALL
               (SELECT customer_id, warning_ratio, segment
                FROM (SELECT k.customer_id, k.warning_ratio::float8 AS warning_ratio, k.segment
                      FROM crm_kpi.customer_kpis k
                      WHERE k.early_warning
                        AND (c.channels IS NULL OR coalesce(k.acquisition_channel, '(none)') = ANY (c.channels))
                      ORDER BY k.warning_ratio DESC, k.revenue DESC, k.customer_id LIMIT l.n) k
                EXCEPT ALL
                SELECT customer_id, warning_ratio, segment FROM crm_kpi.early_warnings(l.n, c.channels))) d),
          0::bigint, 'early_warnings(n, channels) lists the top n of the customers customer_kpis flags (n = 1, 7, 50, all)');

SELECT throws_ok($$SELECT * FROM crm_kpi.report('2024-01-01', '2024-02-01', 'fortnight')$$, '22023', NULL, 'an unknown grain is 22023');
SELECT throws_ok($$SELECT * FROM crm_kpi.report('2024-02-01', '2024-01-01')$$, '22000', NULL, 'a report that ends before it starts is 22000');

SELECT * FROM finish();
ROLLBACK;
