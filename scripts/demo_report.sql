-- demo_report.sql: the demo's KPI report, read from the KPI tables the refresh worker keeps
-- (monthly views that roll the daily rows up exactly, the churn table, per-customer stats).
\pset footer off
\echo
\echo 'Monthly KPIs (last 6 months), from the KPI tables'
WITH months AS (
    SELECT generate_series(date_trunc('month', (SELECT as_of FROM crm_kpi.engine_state) AT TIME ZONE
                                                (SELECT timezone FROM crm_kpi.engine_state)) - interval '5 months',
                           date_trunc('month', (SELECT as_of FROM crm_kpi.engine_state) AT TIME ZONE
                                                (SELECT timezone FROM crm_kpi.engine_state)),
                           interval '1 month')::date AS month),
sales AS (SELECT month, sum(orders) AS orders, sum(revenue) AS revenue, sum(new_customers) AS new_customers
          FROM crm_kpi.sales_monthly GROUP BY month),
pipeline AS (SELECT month, sum(won) AS won, sum(lost) AS lost FROM crm_kpi.pipeline_monthly GROUP BY month)
SELECT to_char(m.month, 'YYYY-MM') AS month,
       s.orders, round(s.revenue, 2) AS revenue, round(s.revenue / nullif(s.orders, 0), 2) AS aov,
       s.new_customers AS new,
       round(c.churn_rate, 1) AS churn_pct,
       round(crm_kpi.nps(sat.nps), 1) AS nps,
       round(crm_kpi.csat(sat.csat), 1) AS csat_pct,
       round(100.0 * p.won / nullif(p.won + p.lost, 0), 1) AS win_rate_pct,
       round(100.0 * sv.resolved / nullif(sv.opened, 0), 1) AS resolved_pct,
       date_trunc('minute', crm_kpi.percentile_interval(sv.first_response, 0.9)) AS p90_first_response
FROM months m
LEFT JOIN sales s USING (month)
LEFT JOIN crm_kpi.churn_rates c USING (month)
LEFT JOIN crm_kpi.satisfaction_monthly sat USING (month)
LEFT JOIN crm_kpi.service_monthly sv USING (month)
LEFT JOIN pipeline p USING (month)
ORDER BY m.month;

\echo
\echo 'Customer lifecycle now (crm_kpi.customer_stats)'
SELECT f.stage, f.customers, f.reached, round(f.conversion, 1) AS conversion_pct
FROM (SELECT unnest(crm_kpi.funnel(stage)) AS f FROM crm_kpi.customer_stats) x, LATERAL (SELECT (x.f).*) f;

\echo
\echo 'RFM segments (crm_kpi.customer_kpis)'
SELECT segment, count(*) AS customers, round(avg(revenue), 2) AS mean_revenue,
       count(*) FILTER (WHERE early_warning) AS early_warnings
FROM crm_kpi.customer_kpis WHERE segment IS NOT NULL
GROUP BY segment ORDER BY min(recency_score + frequency_score) DESC, segment;
