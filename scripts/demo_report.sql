-- demo_report.sql: the demo's KPI report over the sample data in schema crm, computed with
-- crm_kpi's aggregates (monthly summaries rolled up, as the KPI tables will store them).
\pset footer off
\echo
\echo 'Monthly KPIs (last 6 months of the sample data)'
WITH last_day AS (SELECT max(ordered_at) AS t FROM crm.orders),
months AS (
    SELECT generate_series(date_trunc('month', (SELECT t FROM last_day)) - interval '5 months',
                           date_trunc('month', (SELECT t FROM last_day)), interval '1 month') AS m),
sales AS (
    SELECT date_trunc('month', ordered_at) AS m, crm_kpi.purchase_agg(amount, ordered_at) AS s
    FROM crm.orders WHERE status = 'completed' GROUP BY 1),
surveys AS (
    SELECT date_trunc('month', answered_at) AS m,
           crm_kpi.nps_agg(score) FILTER (WHERE kind = 'nps') AS nps,
           crm_kpi.csat_agg(score) FILTER (WHERE kind = 'csat') AS csat
    FROM crm.survey_responses GROUP BY 1),
service AS (
    SELECT date_trunc('month', opened_at) AS m,
           crm_kpi.rate_agg(resolved_at IS NOT NULL) AS resolved,
           crm_kpi.sketch_agg(first_response_at - opened_at) AS first_response
    FROM crm.tickets GROUP BY 1),
pipeline AS (
    SELECT date_trunc('month', closed_at) AS m, crm_kpi.rate_agg(status = 'won') AS win
    FROM crm.opportunities WHERE status IN ('won', 'lost') GROUP BY 1)
SELECT to_char(months.m, 'YYYY-MM') AS month,
       crm_kpi.orders(sales.s) AS orders,
       round(crm_kpi.revenue(sales.s), 2) AS revenue,
       round(crm_kpi.aov(sales.s), 2) AS aov,
       round(crm_kpi.nps(surveys.nps), 1) AS nps,
       round(crm_kpi.csat(surveys.csat), 1) AS csat_pct,
       round(crm_kpi.rate(pipeline.win), 1) AS win_rate_pct,
       round(crm_kpi.rate(service.resolved), 1) AS resolved_pct,
       date_trunc('minute', crm_kpi.percentile_interval(service.first_response, 0.9)) AS p90_first_response
FROM months
LEFT JOIN sales USING (m) LEFT JOIN surveys USING (m) LEFT JOIN service USING (m) LEFT JOIN pipeline USING (m)
ORDER BY months.m;

\echo
\echo 'Customer lifecycle today (classified from interactions and completed orders)'
WITH last_day AS (SELECT max(ordered_at) AS t FROM crm.orders),
stages AS (
    SELECT crm_kpi.lifecycle_classify((SELECT t FROM last_day), coalesce(i.n, 0), p.s) AS stage
    FROM crm.customers c
    LEFT JOIN (SELECT customer_id, count(*) AS n FROM crm.interactions
               WHERE occurred_at <= (SELECT t FROM last_day) GROUP BY 1) i USING (customer_id)
    LEFT JOIN (SELECT customer_id, crm_kpi.purchase_agg(amount, ordered_at) AS s FROM crm.orders
               WHERE status = 'completed' GROUP BY 1) p USING (customer_id)
    WHERE c.created_at <= (SELECT t FROM last_day))
SELECT f.stage, f.customers, f.reached, round(f.conversion, 1) AS conversion_pct
FROM (SELECT unnest(crm_kpi.funnel(stage)) AS f FROM stages) x, LATERAL (SELECT (x.f).*) f;
