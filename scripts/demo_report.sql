-- demo_report.sql: the demo's KPI report, read from the KPI tables the refresh worker keeps:
-- crm_kpi.report() per month, the lifecycle funnel, RFM segments, and crm_kpi.data_quality().
\pset footer off
\echo
\echo 'Monthly KPIs (last 6 months): crm_kpi.report()'
SELECT to_char(r.period, 'YYYY-MM') AS month, r.orders, round(r.revenue, 2) AS revenue, round(r.aov, 2) AS aov,
       r.new_customers AS new, round(r.churn_rate, 1) AS churn_pct, round(r.nps, 1) AS nps, round(r.csat, 1) AS csat_pct,
       round(r.win_rate, 1) AS win_rate_pct, round(r.resolution_rate, 1) AS resolved_pct,
       date_trunc('minute', r.first_response_p90) AS p90_first_response
FROM crm_kpi.engine_state e,
     crm_kpi.report((date_trunc('month', e.as_of AT TIME ZONE e.timezone) - interval '5 months')::date,
                    (e.as_of AT TIME ZONE e.timezone)::date, 'month') r
ORDER BY r.period;

\echo
\echo 'Customer lifecycle now (crm_kpi.customer_stats)'
SELECT f.stage, f.customers, f.reached, round(f.conversion, 1) AS conversion_pct
FROM (SELECT unnest(crm_kpi.funnel(stage)) AS f FROM crm_kpi.customer_stats) x, LATERAL (SELECT (x.f).*) f;

\echo
\echo 'RFM segments: crm_kpi.rfm_report()'
SELECT segment, customers, round(share, 1) AS share_pct, round(mean_revenue, 2) AS mean_revenue, early_warnings
FROM crm_kpi.rfm_report();

\echo
\echo 'Data quality: crm_kpi.data_quality()'
SELECT check_name, source, affected, total, round(pct, 1) AS pct FROM crm_kpi.data_quality();
