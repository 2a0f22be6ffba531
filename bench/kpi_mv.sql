-- kpi_mv.sql: the materialized-view contenders: one plain materialized view per KPI
-- table that crm_kpi.rebuild() computes, the same columns and meaning as
-- src/kpi_fresh.sql over the reference schema (crm), with the default settings
-- (time zone UTC, churn_after 180 days, resolution_sla 72 hours, the lifecycle
-- defaults), and the same indexes as the KPI table it stands for.
-- The three time-dependent views (customers, spells, churn) take their instant
-- from crm_kpi.engine_state.as_of, as the KPI tables do, so that both sides can
-- be compared row for row; the views that read customers or spells read the
-- views, not the KPI tables. Created WITH NO DATA: bench.sh fills them.

CREATE MATERIALIZED VIEW bench.mv_sales_daily AS
SELECT (s.ordered_at AT TIME ZONE 'UTC')::date AS day, s.rep_id, cu.acquisition_channel AS channel,
       count(*) AS orders, coalesce(sum(s.amount), 0) AS revenue,
       count(*) FILTER (WHERE cu.customer_id IS NOT NULL AND s.prev_at IS NULL) AS new_customers,
       count(*) FILTER (WHERE cu.customer_id IS NOT NULL AND s.prev_at + interval '180 days' <= s.ordered_at)
           AS reactivated_customers
FROM (SELECT o.*, lag(o.ordered_at) OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS prev_at
      FROM crm.orders o WHERE o.status = 'completed') s
LEFT JOIN crm.customers cu ON cu.customer_id = s.customer_id
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_sales_channel_daily AS
SELECT day, channel, sum(orders)::bigint AS orders, sum(revenue) AS revenue,
       sum(new_customers)::bigint AS new_customers, sum(reactivated_customers)::bigint AS reactivated_customers
FROM bench.mv_sales_daily GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_pipeline_daily AS
SELECT e.day, e.rep_id, sum(e.created)::bigint AS created, sum(e.won)::bigint AS won, sum(e.lost)::bigint AS lost,
       coalesce(sum(e.won_amount), 0) AS won_amount, crm_kpi.sketch_agg(e.cycle) AS sales_cycle
FROM (SELECT (p.created_at AT TIME ZONE 'UTC')::date AS day, p.rep_id, 1 AS created, 0 AS won, 0 AS lost,
             NULL::numeric AS won_amount, NULL::interval AS cycle
      FROM crm.opportunities p WHERE p.created_at IS NOT NULL
      UNION ALL
      SELECT (p.closed_at AT TIME ZONE 'UTC')::date, p.rep_id, 0, (p.status = 'won')::int, (p.status = 'lost')::int,
             CASE WHEN p.status = 'won' THEN p.amount END,
             CASE WHEN p.status = 'won' THEN p.closed_at - p.created_at END
      FROM crm.opportunities p WHERE p.closed_at IS NOT NULL AND p.status IN ('won', 'lost')) e
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_pipeline_total_daily AS
SELECT day, sum(created)::bigint AS created, sum(won)::bigint AS won, sum(lost)::bigint AS lost,
       sum(won_amount) AS won_amount, crm_kpi.rollup(sales_cycle) AS sales_cycle
FROM bench.mv_pipeline_daily GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_service_daily AS
SELECT (t.opened_at AT TIME ZONE 'UTC')::date AS day, count(*) AS opened,
       count(*) FILTER (WHERE t.first_response_at IS NULL) AS unanswered, count(t.resolved_at) AS resolved,
       count(*) FILTER (WHERE t.resolved_at - t.opened_at <= interval '72 hours') AS resolved_within_sla,
       crm_kpi.sketch_agg(t.first_response_at - t.opened_at) AS first_response,
       crm_kpi.sketch_agg(t.resolved_at - t.opened_at) AS resolution,
       coalesce(sum(t.replies) FILTER (WHERE t.resolved_at IS NOT NULL), 0) AS replies_on_resolved,
       count(*) FILTER (WHERE t.is_complaint) AS complaints
FROM crm.tickets t WHERE t.opened_at IS NOT NULL
GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_service_months AS
SELECT date_trunc('month', d.day::timestamp)::date AS month, sum(d.opened)::bigint AS opened,
       sum(d.unanswered)::bigint AS unanswered, sum(d.resolved)::bigint AS resolved,
       sum(d.resolved_within_sla)::bigint AS resolved_within_sla, crm_kpi.rollup(d.first_response) AS first_response,
       crm_kpi.rollup(d.resolution) AS resolution, sum(d.replies_on_resolved)::bigint AS replies_on_resolved,
       sum(d.complaints)::bigint AS complaints
FROM bench.mv_service_daily d
GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_satisfaction_daily AS
SELECT (r.answered_at AT TIME ZONE 'UTC')::date AS day,
       crm_kpi.nps_agg(r.score) FILTER (WHERE r.kind = 'nps') AS nps,
       crm_kpi.csat_agg(r.score) FILTER (WHERE r.kind = 'csat') AS csat
FROM crm.survey_responses r WHERE r.answered_at IS NOT NULL
GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_satisfaction_months AS
SELECT date_trunc('month', d.day::timestamp)::date AS month, crm_kpi.rollup(d.nps) AS nps, crm_kpi.rollup(d.csat) AS csat
FROM bench.mv_satisfaction_daily d
GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_customer_stats AS
WITH st AS (SELECT as_of FROM crm_kpi.engine_state),
ord AS (SELECT o.customer_id, o.amount, o.ordered_at,
               lag(o.ordered_at) OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS prev_at
        FROM crm.orders o WHERE o.status = 'completed'),
agg AS (SELECT ord.customer_id,
               crm_kpi.purchase_agg(ord.amount, ord.ordered_at) FILTER (WHERE ord.ordered_at <= st.as_of) AS purchases,
               count(*) FILTER (WHERE ord.ordered_at <= st.as_of) AS orders,
               coalesce(sum(ord.amount) FILTER (WHERE ord.ordered_at <= st.as_of), 0) AS revenue,
               min(ord.ordered_at) FILTER (WHERE ord.ordered_at <= st.as_of) AS first_at,
               max(ord.ordered_at) FILTER (WHERE ord.ordered_at <= st.as_of) AS last_at,
               min(ord.ordered_at) FILTER (WHERE ord.ordered_at > st.as_of) AS next_at,
               (min(ord.ordered_at) AT TIME ZONE 'UTC')::date AS new_day,
               array_agg(DISTINCT (ord.ordered_at AT TIME ZONE 'UTC')::date)
                   FILTER (WHERE ord.prev_at + interval '180 days' <= ord.ordered_at) AS reactivation_days
        FROM ord, st GROUP BY ord.customer_id),
ia AS (SELECT i.customer_id, count(*) FILTER (WHERE i.occurred_at <= st.as_of) AS n,
              min(i.occurred_at) FILTER (WHERE i.occurred_at > st.as_of) AS next_at
       FROM crm.interactions i, st GROUP BY i.customer_id)
SELECT cu.customer_id, cu.created_at, cu.acquisition_channel, coalesce(ia.n, 0) AS interactions, a.purchases,
       coalesce(a.orders, 0) AS orders, coalesce(a.revenue, 0) AS revenue, a.first_at AS first_order_at,
       a.last_at AS last_order_at, crm_kpi.mean_gap(a.purchases) AS mean_gap,
       crm_kpi.lifecycle_classify(st.as_of, ia.n, a.orders, a.first_at, a.last_at) AS stage,
       least(a.next_at, CASE WHEN coalesce(ia.n, 0) = 0 THEN ia.next_at END,
             CASE WHEN a.last_at + interval '90 days' >= st.as_of THEN a.last_at + interval '90 days' END,
             CASE WHEN a.last_at + interval '180 days' >= st.as_of THEN a.last_at + interval '180 days' END,
             CASE WHEN a.orders >= 5 AND a.first_at + interval '365 days' >= st.as_of
                  THEN a.first_at + interval '365 days' END) AS stage_until,
       a.new_day, coalesce(a.reactivation_days, '{}') AS reactivation_days
FROM st, crm.customers cu
LEFT JOIN agg a ON a.customer_id = cu.customer_id
LEFT JOIN ia ON ia.customer_id = cu.customer_id
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_customer_spells AS
WITH st AS (SELECT as_of FROM crm_kpi.engine_state),
ord AS (SELECT o.customer_id, o.ordered_at, o.order_id,
               lag(o.ordered_at) OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS prev_at
        FROM crm.orders o, st
        WHERE o.status = 'completed' AND o.ordered_at <= st.as_of
          AND o.customer_id IN (SELECT c.customer_id FROM crm.customers c)),
numbered AS (SELECT ord.*,
                    count(*) FILTER (WHERE ord.prev_at IS NULL OR ord.prev_at + interval '180 days' <= ord.ordered_at)
                        OVER (PARTITION BY ord.customer_id ORDER BY ord.ordered_at, ord.order_id) AS spell
             FROM ord)
SELECT n.customer_id, n.spell::integer AS spell, min(n.ordered_at) AS started_at,
       max(n.ordered_at) + interval '180 days' AS ended_at
FROM numbered n GROUP BY n.customer_id, n.spell
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_cohort_monthly AS
SELECT x.month, x.cohort_month,
       ((extract(year FROM x.month) - extract(year FROM x.cohort_month)) * 12
        + extract(month FROM x.month) - extract(month FROM x.cohort_month))::integer AS month_offset,
       x.customers, x.revenue
FROM (SELECT date_trunc('month', o.ordered_at AT TIME ZONE 'UTC')::date AS month,
             date_trunc('month', cs.first_order_at AT TIME ZONE 'UTC')::date AS cohort_month,
             count(DISTINCT o.customer_id) AS customers, coalesce(sum(o.amount), 0) AS revenue
      FROM crm.orders o
      JOIN bench.mv_customer_stats cs ON cs.customer_id = o.customer_id AND cs.first_order_at IS NOT NULL
      WHERE o.status = 'completed' GROUP BY 1, 2) x
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_marketing_monthly AS
SELECT x.month, x.channel, coalesce(sum(x.spend), 0) AS spend, sum(x.acquired)::bigint AS new_customers
FROM (SELECT date_trunc('month', m.day)::date AS month, m.channel, m.amount AS spend, 0 AS acquired
      FROM crm.marketing_spend m WHERE m.day IS NOT NULL
      UNION ALL
      SELECT date_trunc('month', cs.first_order_at AT TIME ZONE 'UTC')::date, cs.acquisition_channel, NULL, 1
      FROM bench.mv_customer_stats cs WHERE cs.first_order_at IS NOT NULL) x
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_churn_monthly AS
WITH st AS (SELECT as_of FROM crm_kpi.engine_state),
bounds AS (SELECT date_trunc('month', min(p.started_at) AT TIME ZONE 'UTC')::date AS first_month,
                  date_trunc('month', st.as_of AT TIME ZONE 'UTC')::date AS last_month
           FROM bench.mv_customer_spells p, st GROUP BY st.as_of),
m AS (SELECT g::date AS month, (g::date::timestamp AT TIME ZONE 'UTC') AS s,
             ((g::date + interval '1 month')::timestamp AT TIME ZONE 'UTC') AS e
      FROM bounds, generate_series(bounds.first_month, bounds.last_month, interval '1 month') g)
SELECT m.month,
       (SELECT count(*) FROM bench.mv_customer_spells p WHERE p.started_at < m.s AND p.ended_at >= m.s)
           AS customers_at_start,
       (SELECT count(*) FROM bench.mv_customer_spells p, st
        WHERE p.started_at < m.s AND p.ended_at >= m.s AND p.ended_at < m.e AND p.ended_at <= st.as_of) AS churned,
       (SELECT count(*) FROM bench.mv_customer_spells p WHERE p.spell = 1 AND p.started_at >= m.s AND p.started_at < m.e)
           AS new_customers,
       (SELECT count(*) FROM bench.mv_customer_spells p WHERE p.spell > 1 AND p.started_at >= m.s AND p.started_at < m.e)
           AS reactivated
FROM m
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_customer_counts AS
SELECT s.acquisition_channel AS channel, s.stage, date_trunc('month', s.created_at AT TIME ZONE 'UTC')::date AS lead_month,
       count(*) AS customers, count(*) FILTER (WHERE s.orders >= 1) AS buyers,
       count(*) FILTER (WHERE s.orders >= 2) AS repeat_buyers,
       coalesce(sum(s.revenue) FILTER (WHERE s.orders >= 1), 0) AS buyer_revenue
FROM bench.mv_customer_stats s
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_customer_events_daily AS
WITH ev AS (
    SELECT s.acquisition_channel AS channel, x.at, x.kind
    FROM bench.mv_customer_stats s
    CROSS JOIN LATERAL (VALUES (s.created_at, 1), (s.first_order_at, 2),
                               (CASE WHEN s.first_order_at >= s.created_at THEN s.first_order_at
                                     WHEN s.first_order_at < s.created_at THEN s.created_at END, 3)) x (at, kind)
    UNION ALL
    SELECT s.acquisition_channel, x.at, x.kind
    FROM bench.mv_customer_spells p JOIN bench.mv_customer_stats s ON s.customer_id = p.customer_id
    CROSS JOIN LATERAL (VALUES (p.started_at, 4), (p.ended_at, 5)) x (at, kind))
SELECT (ev.at AT TIME ZONE 'UTC')::date AS day, ev.channel,
       count(*) FILTER (WHERE ev.kind = 1) AS created, count(*) FILTER (WHERE ev.kind = 2) AS first_bought,
       count(*) FILTER (WHERE ev.kind = 3) AS leads_ended, count(*) FILTER (WHERE ev.kind = 4) AS spells_started,
       count(*) FILTER (WHERE ev.kind = 5) AS spells_ended
FROM ev WHERE ev.at IS NOT NULL
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_rfm_cells AS
SELECT (s.last_order_at AT TIME ZONE 'UTC')::date AS last_day, s.orders, s.acquisition_channel AS channel,
       count(*) AS buyers, coalesce(sum(s.revenue), 0) AS revenue, sum(extract(epoch FROM s.last_order_at)) AS last_order_epoch
FROM bench.mv_customer_stats s
WHERE s.orders > 0
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_rfm_last_days AS
SELECT c.last_day, sum(c.buyers)::bigint AS buyers FROM bench.mv_rfm_cells c GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_rfm_order_counts AS
SELECT c.orders, sum(c.buyers)::bigint AS buyers FROM bench.mv_rfm_cells c GROUP BY 1
WITH NO DATA;

CREATE MATERIALIZED VIEW bench.mv_rfm_month_cells AS
SELECT date_trunc('month', c.last_day::timestamp)::date AS month, c.orders, c.channel, sum(c.buyers)::bigint AS buyers,
       sum(c.revenue) AS revenue, sum(c.last_order_epoch) AS last_order_epoch
FROM bench.mv_rfm_cells c GROUP BY 1, 2, 3
WITH NO DATA;

-- The KPI tables the views stand for, in refresh order (the order of crm_kpi.kpi_tables). The engine's
-- per-customer parts of sales_daily (customer_days) are how it keeps that table and cohort_monthly, not
-- KPIs: they have no view.
CREATE TABLE bench.kpi_mv AS
SELECT k.table_name, k.position, format('bench.%I', 'mv_' || k.table_name)::regclass AS mv
FROM crm_kpi.kpi_tables k
WHERE k.table_name <> 'customer_days';

-- Each view gets the indexes of its KPI table (unique constraints become unique indexes,
-- which REFRESH ... CONCURRENTLY needs).
DO $$
DECLARE
    d text;
BEGIN
    FOR d IN SELECT replace(replace(pg_get_indexdef(i.indexrelid), format(' ON crm_kpi.%s ', c.relname),
                                    format(' ON bench.mv_%s ', c.relname)),
                            format('INDEX %s ', ic.relname), format('INDEX mv_%s ', ic.relname))
             FROM bench.kpi_mv m JOIN pg_class c ON c.oid = format('crm_kpi.%I', m.table_name)::regclass
             JOIN pg_index i ON i.indrelid = c.oid JOIN pg_class ic ON ic.oid = i.indexrelid LOOP
        EXECUTE d;
    END LOOP;
END $$;
