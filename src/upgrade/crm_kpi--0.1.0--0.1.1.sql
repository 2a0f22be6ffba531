-- crm_kpi 0.1.0 -> 0.1.1: RFM recency is scored by the day of the last order in crm_kpi.timezone (KPI_SPEC.md:
-- days since the last order), so that last orders on the same day score alike. The view keeps its columns:
-- views built on it stay. Vetting a binding's SQL raises insufficient_privilege for a table its caller cannot read.
\echo Use "ALTER EXTENSION crm_kpi UPDATE TO '0.1.1'" to load this file. \quit

CREATE OR REPLACE VIEW crm_kpi.customer_kpis AS
WITH e AS (SELECT as_of, active_window, timezone FROM crm_kpi.engine_state),
buyers AS (
    SELECT s.customer_id, (e.as_of - s.last_order_at) AS since_last,
           count(*) OVER () AS n,
           -- recency is in days: last orders on the same day (in the tables' time zone) rank alike
           rank() OVER (ORDER BY (s.last_order_at AT TIME ZONE e.timezone)::date) AS r_rank,
           rank() OVER (ORDER BY s.orders) AS f_rank,
           rank() OVER (ORDER BY s.revenue) AS m_rank
    FROM crm_kpi.customer_stats s CROSS JOIN e
    WHERE s.orders > 0),
scored AS (
    SELECT b.customer_id, b.since_last,
           (1 + 5 * (b.r_rank - 1) / b.n)::integer AS recency_score,
           (1 + 5 * (b.f_rank - 1) / b.n)::integer AS frequency_score,
           (1 + 5 * (b.m_rank - 1) / b.n)::integer AS monetary_score
    FROM buyers b)
SELECT s.customer_id, s.stage, s.acquisition_channel, s.orders, s.revenue, s.first_order_at, s.last_order_at, s.mean_gap,
       extract(epoch FROM sc.since_last) / 86400 AS days_since_last_order,
       sc.recency_score, sc.frequency_score, sc.monetary_score, g.segment,
       w.ratio AS warning_ratio,
       coalesce(w.ratio > w.threshold, false) AS early_warning
FROM crm_kpi.customer_stats s
CROSS JOIN e
LEFT JOIN scored sc ON sc.customer_id = s.customer_id
LEFT JOIN crm_kpi.rfm_segments g ON g.recency_scores @> sc.recency_score AND g.frequency_scores @> sc.frequency_score
LEFT JOIN LATERAL (
    SELECT CASE WHEN s.orders >= 2 THEN extract(epoch FROM sc.since_last) / nullif(extract(epoch FROM s.mean_gap), 0)
                ELSE extract(epoch FROM sc.since_last) / extract(epoch FROM e.active_window) END AS ratio,
           CASE WHEN s.orders >= 2 THEN coalesce(current_setting('crm_kpi.warning_factor', true), '2')::numeric ELSE 1 END AS threshold
    WHERE s.orders > 0 AND s.stage <> 'churned') w ON true;
COMMENT ON VIEW crm_kpi.customer_kpis IS
    'Per customer as of engine_state.as_of: stage, orders, revenue, first and last order, mean gap; RFM scores 1-5 by quintile of rank among buyers (5 best; equal values, equal scores; recency by the day of the last order in the tables'' time zone) and the segment of crm_kpi.rfm_segments; the churn early warning (days since the last order over the mean gap, flagged above crm_kpi.warning_factor; with one order, over crm_kpi.active_window, flagged above 1), for buyers not churned';

-- Vetting a binding's SQL raises insufficient_privilege for a table its caller cannot read (in the library).
COMMENT ON FUNCTION crm_kpi.expression_problem(regclass, text) IS
    'Why a binding''s SQL expression over a table is not allowed (NULL when it is): it must be one expression over the row, calling only non-volatile functions of pg_catalog. A table the caller cannot read (the source, or one a subquery reads) raises insufficient_privilege, as reading it would';
COMMENT ON FUNCTION crm_kpi.query_function_problem(text, boolean) IS
    'The first function (or operator''s) that a query, its views expanded and their row-level security policies applied, would call and a binding may not: one not of pg_catalog, a volatile one, or when immutable_only one that is not immutable; NULL when there is none. Raises the errors of parsing it, and insufficient_privilege for a table or view the caller cannot read, as running it would';
