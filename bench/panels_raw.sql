-- panels_raw.sql: for every panel query of grafana/dashboards/*.json, the same panel computed
-- from the raw source tables of the reference schema "crm" (same columns, same rows), for the
-- panel benchmark (bench/panels.sh). Not a script: bench/panels_expand.pl reads it.
--
-- "-- panel <dashboard uid> <panel id> <refId>" starts the raw query of a panel's target; it is
-- expanded with the dashboard's variables and Grafana's macros exactly as the panel is. A
-- "-- none: <why>" line in place of a query says that no source holds what the panel shows.
-- "-- define <name>" starts a fragment that queries use as @name@ (fragments may use fragments).
--
-- The benchmark database runs with TimeZone = UTC, the crm_kpi.timezone of its KPI tables, so
-- ordered_at::date is the KPI day. Customer-level figures (stages, spells, first orders) are
-- taken at the KPI tables' instant, crm_kpi.engine_state.as_of, with the settings the tables
-- were built with, so that the two results can be compared; an analyst would write now().

-- define orders_sequenced
(SELECT o.order_id, o.customer_id, o.rep_id, o.amount, o.ordered_at, c.acquisition_channel AS channel,
        c.customer_id IS NOT NULL AS known,
        lag(o.ordered_at) OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS prev_at
 FROM crm.orders o LEFT JOIN crm.customers c USING (customer_id)
 WHERE o.status = 'completed')

-- define first_orders
(SELECT c.customer_id, c.created_at, c.acquisition_channel, f.first_at
 FROM crm.customers c
 LEFT JOIN (SELECT o.customer_id, min(o.ordered_at) AS first_at FROM crm.orders o
            WHERE o.status = 'completed' AND o.ordered_at <= (SELECT as_of FROM crm_kpi.engine_state)
            GROUP BY o.customer_id) f USING (customer_id))

-- define buyers
(SELECT c.customer_id, c.acquisition_channel, count(*) AS orders, sum(o.amount) AS revenue,
        min(o.ordered_at) AS first_at, max(o.ordered_at) AS last_at, crm_kpi.purchase_agg(o.amount, o.ordered_at) AS p
 FROM crm.orders o JOIN crm.customers c USING (customer_id)
 WHERE o.status = 'completed' AND o.ordered_at <= (SELECT as_of FROM crm_kpi.engine_state)
 GROUP BY c.customer_id, c.acquisition_channel)

-- define stages
(SELECT c.customer_id, c.acquisition_channel,
        crm_kpi.lifecycle_classify((SELECT as_of FROM crm_kpi.engine_state), i.n, b.orders, b.first_at, b.last_at) AS stage
 FROM crm.customers c
 LEFT JOIN @buyers@ b USING (customer_id)
 LEFT JOIN (SELECT customer_id, count(*) AS n FROM crm.interactions
            WHERE occurred_at <= (SELECT as_of FROM crm_kpi.engine_state) GROUP BY customer_id) i USING (customer_id))

-- define spells
(SELECT n.customer_id, n.spell, min(n.ordered_at) AS started_at,
        max(n.ordered_at) + (SELECT churn_after FROM crm_kpi.engine_state) AS ended_at
 FROM (SELECT s.*, count(*) FILTER (WHERE s.prev_at IS NULL
                                       OR s.prev_at + (SELECT churn_after FROM crm_kpi.engine_state) <= s.ordered_at)
                       OVER (PARTITION BY s.customer_id ORDER BY s.ordered_at, s.order_id) AS spell
       FROM @orders_sequenced@ s
       WHERE s.known AND s.ordered_at <= (SELECT as_of FROM crm_kpi.engine_state)) n
 GROUP BY n.customer_id, n.spell)

-- define churn_months
(WITH p AS MATERIALIZED (SELECT * FROM @spells@ x),
 m AS (SELECT g::date AS month, g::timestamptz AS s, (g + interval '1 month')::timestamptz AS n
       FROM generate_series(date_trunc('month', (SELECT min(started_at) FROM p)::timestamp),
                            date_trunc('month', (SELECT as_of FROM crm_kpi.engine_state)::timestamp), interval '1 month') g)
 SELECT m.month, x.*
 FROM m CROSS JOIN LATERAL (
     SELECT count(*) FILTER (WHERE p.started_at < m.s AND p.ended_at >= m.s) AS customers_at_start,
            count(*) FILTER (WHERE p.started_at < m.s AND p.ended_at >= m.s AND p.ended_at < m.n
                               AND p.ended_at <= (SELECT as_of FROM crm_kpi.engine_state)) AS churned,
            count(*) FILTER (WHERE p.spell = 1 AND p.started_at >= m.s AND p.started_at < m.n) AS new_customers,
            count(*) FILTER (WHERE p.spell > 1 AND p.started_at >= m.s AND p.started_at < m.n) AS reactivated
     FROM p) x)

-- define customers_at_start
(SELECT m.month,
        (SELECT count(DISTINCT o.customer_id) FROM crm.orders o
         WHERE o.status = 'completed' AND o.ordered_at < m.month::timestamptz
           AND o.ordered_at >= m.month::timestamptz - (SELECT churn_after FROM crm_kpi.engine_state)
           AND o.customer_id IN (SELECT customer_id FROM crm.customers)) AS customers_at_start
 FROM generate_series(date_trunc('month', (SELECT min(o.ordered_at) FROM crm.orders o JOIN crm.customers USING (customer_id)
                                           WHERE o.status = 'completed')::timestamp),
                      date_trunc('month', (SELECT as_of FROM crm_kpi.engine_state)::timestamp), interval '1 month') AS m (month))

-- define cohorts
(SELECT x.*, first_value(x.customers) OVER w AS cohort_size, first_value(x.revenue) OVER w AS cohort_revenue
 FROM (SELECT date_trunc('month', f.first_at)::date AS cohort_month, date_trunc('month', o.ordered_at)::date AS month,
              ((extract(year FROM o.ordered_at) - extract(year FROM f.first_at)) * 12
               + extract(month FROM o.ordered_at) - extract(month FROM f.first_at))::integer AS month_offset,
              count(DISTINCT o.customer_id) AS customers, sum(o.amount) AS revenue
       FROM crm.orders o JOIN @first_orders@ f USING (customer_id)
       WHERE o.status = 'completed' AND f.first_at IS NOT NULL
       GROUP BY 1, 2, 3) x
 WINDOW w AS (PARTITION BY x.cohort_month ORDER BY x.month))

-- define marketing
(SELECT x.month, x.channel, coalesce(sum(x.spend), 0) AS spend, sum(x.acquired) AS new_customers
 FROM (SELECT date_trunc('month', s.day)::date AS month, s.channel, s.amount AS spend, 0 AS acquired
       FROM crm.marketing_spend s
       UNION ALL
       SELECT date_trunc('month', f.first_at)::date, f.acquisition_channel, NULL, 1
       FROM @first_orders@ f WHERE f.first_at IS NOT NULL) x
 GROUP BY x.month, x.channel)

-- define tickets
(SELECT * FROM crm.tickets WHERE opened_at >= $__timeFrom()::date AND opened_at < $__timeTo()::date + 1)

-- define responses
(SELECT * FROM crm.survey_responses WHERE answered_at >= $__timeFrom()::date AND answered_at < $__timeTo()::date + 1)

-- define opportunity_events
(SELECT p.created_at::date AS day, p.rep_id, 1 AS created, 0 AS won, 0 AS lost, 0 AS won_amount, NULL::interval AS cycle
 FROM crm.opportunities p
 WHERE p.created_at >= $__timeFrom()::date AND p.created_at < $__timeTo()::date + 1
 UNION ALL
 SELECT p.closed_at::date, p.rep_id, 0, (p.status = 'won')::int, (p.status = 'lost')::int,
        CASE WHEN p.status = 'won' THEN p.amount ELSE 0 END, CASE WHEN p.status = 'won' THEN p.closed_at - p.created_at END
 FROM crm.opportunities p
 WHERE p.status IN ('won', 'lost') AND p.closed_at >= $__timeFrom()::date AND p.closed_at < $__timeTo()::date + 1)

-- ====================================================================== Executive overview

-- panel crm-kpi-overview 1 A
SELECT coalesce(sum(o.amount), 0) AS "Revenue", count(*) AS "Orders", sum(o.amount) / nullif(count(*), 0) AS "AOV",
       count(*) FILTER (WHERE o.known AND o.prev_at IS NULL) AS "New customers",
       count(*) FILTER (WHERE o.known AND o.prev_at + (SELECT churn_after FROM crm_kpi.engine_state) <= o.ordered_at)
           AS "Reactivated customers"
FROM @orders_sequenced@ o
WHERE o.ordered_at >= $__timeFrom()::date AND o.ordered_at < $__timeTo()::date + 1
  AND coalesce(o.channel, '(none)') IN (${channel:sqlstring}) AND ('__all' IN (${rep:sqlstring}) OR coalesce(o.rep_id::text, '(none)') IN (${rep:sqlstring}))

-- panel crm-kpi-overview 2 A
SELECT crm_kpi.nps(score) FILTER (WHERE kind = 'nps') AS "NPS", crm_kpi.csat(score) FILTER (WHERE kind = 'csat') AS "CSAT %"
FROM @responses@ r

-- panel crm-kpi-overview 3 A
SELECT count(*) AS "Tickets opened", 100.0 * count(resolved_at) / nullif(count(*), 0) AS "Resolution rate %",
       extract(epoch FROM crm_kpi.percentile_interval(crm_kpi.sketch_agg(first_response_at - opened_at), 0.5)) / 3600
           AS "Median first response (h)"
FROM @tickets@ t

-- panel crm-kpi-overview 4 A
SELECT count(*) FILTER (WHERE stage IN ('customer', 'active', 'loyal', 'at_risk')) AS "Active customers",
       count(*) FILTER (WHERE stage = 'at_risk') AS "At risk",
       count(*) FILTER (WHERE stage IN ('prospect', 'contacted')) AS "Leads"
FROM @stages@ s
WHERE coalesce(acquisition_channel, '(none)') IN (${channel:sqlstring})

-- panel crm-kpi-overview 5 A
SELECT $__timeGroupAlias(day, $__interval), sum(amount) AS "Revenue", count(*) AS "Orders"
FROM (SELECT o.ordered_at::date AS day, o.amount
      FROM crm.orders o LEFT JOIN crm.customers c USING (customer_id)
      WHERE o.status = 'completed' AND o.ordered_at >= $__timeFrom()::date AND o.ordered_at < $__timeTo()::date + 1
        AND coalesce(c.acquisition_channel, '(none)') IN (${channel:sqlstring})
        AND ('__all' IN (${rep:sqlstring}) OR coalesce(o.rep_id::text, '(none)') IN (${rep:sqlstring}))) o
GROUP BY 1
ORDER BY 1

-- panel crm-kpi-overview 6 A
SELECT month AS "time", 100 * churned::numeric / nullif(customers_at_start, 0) AS "Churn rate",
       100 - 100 * churned::numeric / nullif(customers_at_start, 0) AS "Retention rate"
FROM @churn_months@ c
WHERE month >= date_trunc('month', $__timeFrom()::date::timestamp)::date AND month <= $__timeTo()::date
ORDER BY 1

-- panel crm-kpi-overview 7 A
-- none: the panel shows the refresh state of the KPI tables, which no source table holds

-- ====================================================================== Sales and pipeline

-- panel crm-kpi-sales 1 A
SELECT date_trunc('$grain', o.ordered_at::date::timestamp)::date AS "time", coalesce(c.acquisition_channel, '(none)') AS metric,
       sum(o.amount) AS "Revenue"
FROM crm.orders o LEFT JOIN crm.customers c USING (customer_id)
WHERE o.status = 'completed' AND o.ordered_at >= $__timeFrom()::date AND o.ordered_at < $__timeTo()::date + 1
  AND coalesce(c.acquisition_channel, '(none)') IN (${channel:sqlstring}) AND ('__all' IN (${rep:sqlstring}) OR coalesce(o.rep_id::text, '(none)') IN (${rep:sqlstring}))
GROUP BY 1, 2
ORDER BY 1, 2

-- panel crm-kpi-sales 2 A
SELECT date_trunc('$grain', o.ordered_at::date::timestamp)::date AS "time", count(*) AS "Orders",
       sum(o.amount) / nullif(count(*), 0) AS "AOV"
FROM crm.orders o LEFT JOIN crm.customers c USING (customer_id)
WHERE o.status = 'completed' AND o.ordered_at >= $__timeFrom()::date AND o.ordered_at < $__timeTo()::date + 1
  AND coalesce(c.acquisition_channel, '(none)') IN (${channel:sqlstring}) AND ('__all' IN (${rep:sqlstring}) OR coalesce(o.rep_id::text, '(none)') IN (${rep:sqlstring}))
GROUP BY 1
ORDER BY 1

-- panel crm-kpi-sales 3 A
SELECT date_trunc('$grain', o.ordered_at::date::timestamp)::date AS "time",
       count(*) FILTER (WHERE o.known AND o.prev_at IS NULL) AS "New",
       count(*) FILTER (WHERE o.known AND o.prev_at + (SELECT churn_after FROM crm_kpi.engine_state) <= o.ordered_at) AS "Reactivated"
FROM @orders_sequenced@ o
WHERE o.ordered_at >= $__timeFrom()::date AND o.ordered_at < $__timeTo()::date + 1
  AND coalesce(o.channel, '(none)') IN (${channel:sqlstring}) AND ('__all' IN (${rep:sqlstring}) OR coalesce(o.rep_id::text, '(none)') IN (${rep:sqlstring}))
GROUP BY 1
ORDER BY 1

-- panel crm-kpi-sales 4 A
SELECT CASE WHEN o.rep_id IS NULL THEN 'No rep' ELSE 'Rep ' || o.rep_id END AS "Rep", sum(o.amount) AS "Revenue",
       count(*) AS "Orders", sum(o.amount) / nullif(count(*), 0) AS "AOV",
       count(*) FILTER (WHERE o.known AND o.prev_at IS NULL) AS "New customers"
FROM @orders_sequenced@ o
WHERE o.ordered_at >= $__timeFrom()::date AND o.ordered_at < $__timeTo()::date + 1
  AND coalesce(o.channel, '(none)') IN (${channel:sqlstring}) AND ('__all' IN (${rep:sqlstring}) OR coalesce(o.rep_id::text, '(none)') IN (${rep:sqlstring}))
GROUP BY o.rep_id
ORDER BY 2 DESC, 1

-- panel crm-kpi-sales 5 A
SELECT date_trunc('$grain', e.day::timestamp)::date AS "time", sum(e.created) AS "Created", sum(e.won) AS "Won",
       sum(e.lost) AS "Lost"
FROM @opportunity_events@ e
WHERE ('__all' IN (${rep:sqlstring}) OR coalesce(e.rep_id::text, '(none)') IN (${rep:sqlstring}))
GROUP BY 1
ORDER BY 1

-- panel crm-kpi-sales 6 A
SELECT date_trunc('$grain', e.day::timestamp)::date AS "time", 100.0 * sum(e.won) / nullif(sum(e.won) + sum(e.lost), 0) AS "Win rate",
       sum(e.won_amount) AS "Won amount"
FROM @opportunity_events@ e
WHERE ('__all' IN (${rep:sqlstring}) OR coalesce(e.rep_id::text, '(none)') IN (${rep:sqlstring}))
GROUP BY 1
ORDER BY 1

-- panel crm-kpi-sales 7 A
SELECT "time", crm_kpi.mean(cycle) / 86400 AS "Mean",
       extract(epoch FROM crm_kpi.percentile_interval(cycle, 0.5)) / 86400 AS "Median",
       extract(epoch FROM crm_kpi.percentile_interval(cycle, 0.9)) / 86400 AS "p90"
FROM (SELECT date_trunc('$grain', e.day::timestamp)::date AS "time", crm_kpi.sketch_agg(e.cycle) AS cycle
      FROM @opportunity_events@ e
      WHERE ('__all' IN (${rep:sqlstring}) OR coalesce(e.rep_id::text, '(none)') IN (${rep:sqlstring}))
      GROUP BY 1) p
ORDER BY 1

-- panel crm-kpi-sales 8 A
SELECT CASE WHEN e.rep_id IS NULL THEN 'No rep' ELSE 'Rep ' || e.rep_id END AS "Rep", sum(e.created) AS "Created",
       sum(e.won) AS "Won", sum(e.lost) AS "Lost", 100.0 * sum(e.won) / nullif(sum(e.won) + sum(e.lost), 0) AS "Win rate %",
       sum(e.won_amount) AS "Won amount",
       extract(epoch FROM crm_kpi.percentile_interval(crm_kpi.sketch_agg(e.cycle), 0.5)) / 86400 AS "Median cycle (days)"
FROM @opportunity_events@ e
WHERE ('__all' IN (${rep:sqlstring}) OR coalesce(e.rep_id::text, '(none)') IN (${rep:sqlstring}))
GROUP BY e.rep_id
ORDER BY "Won amount" DESC, 1

-- ====================================================================== Service

-- panel crm-kpi-service 1 A
SELECT count(*) AS "Opened", count(resolved_at) AS "Resolved", count(*) FILTER (WHERE first_response_at IS NULL) AS "Unanswered",
       100.0 * count(resolved_at) / nullif(count(*), 0) AS "Resolution rate %",
       100.0 * count(*) FILTER (WHERE resolved_at - opened_at <= (SELECT resolution_sla FROM crm_kpi.engine_state))
           / nullif(count(*), 0) AS "Resolved within SLA % of opened"
FROM @tickets@ t

-- panel crm-kpi-service 2 A
SELECT $__timeGroupAlias(day, $__interval), count(*) AS "Opened", count(resolved_at) AS "Resolved",
       count(*) FILTER (WHERE first_response_at IS NULL) AS "Unanswered", count(*) FILTER (WHERE is_complaint) AS "Complaints"
FROM (SELECT opened_at::date AS day, * FROM @tickets@ t) t
GROUP BY 1
ORDER BY 1

-- panel crm-kpi-service 3 A
SELECT date_trunc('$grain', opened_at::date::timestamp)::date AS "time",
       100.0 * count(resolved_at) / nullif(count(*), 0) AS "Resolution rate",
       100.0 * count(*) FILTER (WHERE resolved_at - opened_at <= (SELECT resolution_sla FROM crm_kpi.engine_state))
           / nullif(count(*), 0) AS "Resolved within SLA"
FROM @tickets@ t
GROUP BY 1
ORDER BY 1

-- panel crm-kpi-service 4 A
SELECT "time", crm_kpi.mean(fr) / 3600 AS "Mean",
       extract(epoch FROM crm_kpi.percentile_interval(fr, 0.5)) / 3600 AS "Median",
       extract(epoch FROM crm_kpi.percentile_interval(fr, 0.9)) / 3600 AS "p90",
       extract(epoch FROM crm_kpi.percentile_interval(fr, 0.99)) / 3600 AS "p99"
FROM (SELECT date_trunc('$grain', opened_at::date::timestamp)::date AS "time", crm_kpi.sketch_agg(first_response_at - opened_at) AS fr
      FROM @tickets@ t
      GROUP BY 1) s
ORDER BY 1

-- panel crm-kpi-service 5 A
SELECT "time", crm_kpi.mean(res) / 3600 AS "Mean",
       extract(epoch FROM crm_kpi.percentile_interval(res, 0.5)) / 3600 AS "Median",
       extract(epoch FROM crm_kpi.percentile_interval(res, 0.9)) / 3600 AS "p90"
FROM (SELECT date_trunc('$grain', opened_at::date::timestamp)::date AS "time", crm_kpi.sketch_agg(resolved_at - opened_at) AS res
      FROM @tickets@ t
      GROUP BY 1) s
ORDER BY 1

-- panel crm-kpi-service 6 A
SELECT date_trunc('$grain', opened_at::date::timestamp)::date AS "time",
       (sum(replies) FILTER (WHERE resolved_at IS NOT NULL))::numeric / nullif(count(resolved_at), 0) AS "Replies per resolved ticket"
FROM @tickets@ t
GROUP BY 1
ORDER BY 1

-- panel crm-kpi-service 7 A
SELECT s.month AS "time", s.complaints AS "Complaints", 100.0 * s.complaints / nullif(c.customers_at_start, 0) AS "Complaint rate %"
FROM (SELECT date_trunc('month', opened_at::date::timestamp)::date AS month, count(*) FILTER (WHERE is_complaint) AS complaints
      FROM @tickets@ t
      GROUP BY 1) s
LEFT JOIN @customers_at_start@ c ON c.month = s.month
ORDER BY 1

-- ====================================================================== Satisfaction

-- panel crm-kpi-satisfaction 1 A
SELECT crm_kpi.nps(score) FILTER (WHERE kind = 'nps') AS "NPS", crm_kpi.csat(score) FILTER (WHERE kind = 'csat') AS "CSAT %",
       crm_kpi.csat_mean(score) FILTER (WHERE kind = 'csat') AS "Mean CSAT score",
       count(*) FILTER (WHERE kind = 'nps') AS "NPS responses", count(*) FILTER (WHERE kind = 'csat') AS "CSAT responses"
FROM @responses@ r

-- panel crm-kpi-satisfaction 2 A
SELECT date_trunc('$grain', answered_at::date::timestamp)::date AS "time", crm_kpi.nps(score) FILTER (WHERE kind = 'nps') AS "NPS"
FROM @responses@ r
GROUP BY 1
ORDER BY 1

-- panel crm-kpi-satisfaction 3 A
SELECT date_trunc('$grain', answered_at::date::timestamp)::date AS "time",
       count(*) FILTER (WHERE kind = 'nps' AND score >= 9) AS "Promoters",
       count(*) FILTER (WHERE kind = 'nps' AND score BETWEEN 7 AND 8) AS "Passives",
       count(*) FILTER (WHERE kind = 'nps' AND score <= 6) AS "Detractors"
FROM @responses@ r
GROUP BY 1
ORDER BY 1

-- panel crm-kpi-satisfaction 4 A
SELECT date_trunc('$grain', answered_at::date::timestamp)::date AS "time", crm_kpi.csat(score) FILTER (WHERE kind = 'csat') AS "CSAT %",
       crm_kpi.csat_mean(score) FILTER (WHERE kind = 'csat') AS "Mean score"
FROM @responses@ r
GROUP BY 1
ORDER BY 1

-- panel crm-kpi-satisfaction 5 A
SELECT s.score::text AS "Score", count(r.score) AS "Responses"
FROM generate_series(1, 5) AS s (score)
LEFT JOIN crm.survey_responses r ON r.kind = 'csat' AND r.score = s.score
     AND r.answered_at >= $__timeFrom()::date AND r.answered_at < $__timeTo()::date + 1
GROUP BY s.score
ORDER BY s.score

-- ====================================================================== Customers and cohorts

-- panel crm-kpi-customers 1 A
SELECT count(*) AS "Buyers", 100.0 * count(*) FILTER (WHERE orders >= 2) / nullif(count(*), 0) AS "Repeat purchase rate %",
       avg(revenue) AS "Historical CLV"
FROM @buyers@ b
WHERE coalesce(acquisition_channel, '(none)') IN (${channel:sqlstring})

-- panel crm-kpi-customers 2 A
SELECT cohort_month AS "time",
       max(100 * customers::numeric / cohort_size) FILTER (WHERE month_offset = 0) AS "M0",
       max(100 * customers::numeric / cohort_size) FILTER (WHERE month_offset = 1) AS "M1",
       max(100 * customers::numeric / cohort_size) FILTER (WHERE month_offset = 2) AS "M2",
       max(100 * customers::numeric / cohort_size) FILTER (WHERE month_offset = 3) AS "M3",
       max(100 * customers::numeric / cohort_size) FILTER (WHERE month_offset = 4) AS "M4",
       max(100 * customers::numeric / cohort_size) FILTER (WHERE month_offset = 5) AS "M5",
       max(100 * customers::numeric / cohort_size) FILTER (WHERE month_offset = 6) AS "M6",
       max(100 * customers::numeric / cohort_size) FILTER (WHERE month_offset = 7) AS "M7",
       max(100 * customers::numeric / cohort_size) FILTER (WHERE month_offset = 8) AS "M8",
       max(100 * customers::numeric / cohort_size) FILTER (WHERE month_offset = 9) AS "M9",
       max(100 * customers::numeric / cohort_size) FILTER (WHERE month_offset = 10) AS "M10",
       max(100 * customers::numeric / cohort_size) FILTER (WHERE month_offset = 11) AS "M11",
       max(100 * customers::numeric / cohort_size) FILTER (WHERE month_offset = 12) AS "M12"
FROM @cohorts@ c
WHERE cohort_month >= date_trunc('month', $__timeFrom()::date::timestamp)::date AND cohort_month <= $__timeTo()::date
GROUP BY 1
ORDER BY 1

-- panel crm-kpi-customers 3 A
SELECT to_char(cohort_month, 'YYYY-MM') AS "Cohort", max(cohort_size) AS "Customers",
       max(100 * revenue / nullif(cohort_revenue, 0)) FILTER (WHERE month_offset = 1) AS "M1",
       max(100 * revenue / nullif(cohort_revenue, 0)) FILTER (WHERE month_offset = 2) AS "M2",
       max(100 * revenue / nullif(cohort_revenue, 0)) FILTER (WHERE month_offset = 3) AS "M3",
       max(100 * revenue / nullif(cohort_revenue, 0)) FILTER (WHERE month_offset = 4) AS "M4",
       max(100 * revenue / nullif(cohort_revenue, 0)) FILTER (WHERE month_offset = 5) AS "M5",
       max(100 * revenue / nullif(cohort_revenue, 0)) FILTER (WHERE month_offset = 6) AS "M6",
       max(100 * revenue / nullif(cohort_revenue, 0)) FILTER (WHERE month_offset = 7) AS "M7",
       max(100 * revenue / nullif(cohort_revenue, 0)) FILTER (WHERE month_offset = 8) AS "M8",
       max(100 * revenue / nullif(cohort_revenue, 0)) FILTER (WHERE month_offset = 9) AS "M9",
       max(100 * revenue / nullif(cohort_revenue, 0)) FILTER (WHERE month_offset = 10) AS "M10",
       max(100 * revenue / nullif(cohort_revenue, 0)) FILTER (WHERE month_offset = 11) AS "M11",
       max(100 * revenue / nullif(cohort_revenue, 0)) FILTER (WHERE month_offset = 12) AS "M12"
FROM @cohorts@ c
WHERE cohort_month >= date_trunc('month', $__timeFrom()::date::timestamp)::date AND cohort_month <= $__timeTo()::date
GROUP BY cohort_month
ORDER BY cohort_month

-- panel crm-kpi-customers 4 A
SELECT f.stage::text AS "Stage", f.reached AS "Reached", f.customers AS "Now in stage",
       f.conversion AS "Conversion from previous %"
FROM unnest((SELECT crm_kpi.funnel(stage) FROM @stages@ s WHERE coalesce(acquisition_channel, '(none)') IN (${channel:sqlstring}))) AS f
WHERE f.stage <= 'loyal'
ORDER BY f.stage

-- panel crm-kpi-customers 5 A
SELECT stage::text AS "Stage", count(*) AS "Customers"
FROM @stages@ s
WHERE coalesce(acquisition_channel, '(none)') IN (${channel:sqlstring})
GROUP BY stage
ORDER BY stage

-- panel crm-kpi-customers 6 A
WITH s AS MATERIALIZED (SELECT * FROM @first_orders@ f WHERE coalesce(acquisition_channel, '(none)') IN (${channel:sqlstring}))
SELECT p.day AS "time",
       (SELECT count(*) FROM s WHERE s.created_at < p.at AND (s.first_at IS NULL OR s.first_at >= p.at)) AS "Leads",
       a.active AS "Active",
       (SELECT count(*) FROM s WHERE s.first_at < p.at) - a.active AS "Churned"
FROM (SELECT d::date AS day, d::timestamptz AS at
      FROM generate_series(date_trunc('$grain', $__timeFrom()::date::timestamp), $__timeTo()::date::timestamp,
                           (CASE '$grain' WHEN 'quarter' THEN '3 months' ELSE '1 $grain' END)::interval) AS d) p
CROSS JOIN LATERAL (
    SELECT count(DISTINCT o.customer_id) AS active
    FROM crm.orders o
    WHERE o.status = 'completed' AND o.ordered_at < p.at AND o.ordered_at >= p.at - (SELECT churn_after FROM crm_kpi.engine_state)
      AND o.ordered_at <= (SELECT as_of FROM crm_kpi.engine_state) AND o.customer_id IN (SELECT customer_id FROM s)) a
ORDER BY 1

-- panel crm-kpi-customers 7 A
SELECT month AS "time", new_customers AS "New", reactivated AS "Reactivated", churned AS "Churned"
FROM @churn_months@ c
WHERE month >= date_trunc('month', $__timeFrom()::date::timestamp)::date AND month <= $__timeTo()::date
ORDER BY 1

-- panel crm-kpi-customers 8 A
SELECT g.segment AS "Segment", count(*) AS "Customers", sum(s.revenue) AS "Revenue", avg(s.orders) AS "Mean orders",
       avg(extract(epoch FROM (SELECT as_of FROM crm_kpi.engine_state) - s.last_at) / 86400) AS "Mean days since last order"
FROM (SELECT b.*, (1 + 5 * (rank() OVER (ORDER BY (b.last_at AT TIME ZONE (SELECT timezone FROM crm_kpi.engine_state))::date) - 1)
                      / count(*) OVER ())::integer AS recency_score,
             (1 + 5 * (rank() OVER (ORDER BY b.orders) - 1) / count(*) OVER ())::integer AS frequency_score
      FROM @buyers@ b) s
JOIN crm_kpi.rfm_segments g ON g.recency_scores @> s.recency_score AND g.frequency_scores @> s.frequency_score
WHERE coalesce(s.acquisition_channel, '(none)') IN (${channel:sqlstring})
GROUP BY g.segment
ORDER BY 2 DESC, 1

-- panel crm-kpi-customers 9 A
SELECT customer_id AS "Customer", stage::text AS "Stage", orders AS "Orders", revenue AS "Revenue",
       days AS "Days since last order", ratio AS "Ratio"
FROM (SELECT b.customer_id, b.acquisition_channel, b.orders, b.revenue, w.stage,
             extract(epoch FROM e.as_of - b.last_at) / 86400 AS days,
             CASE WHEN b.orders >= 2 THEN extract(epoch FROM e.as_of - b.last_at) / nullif(extract(epoch FROM crm_kpi.mean_gap(b.p)), 0)
                  ELSE extract(epoch FROM e.as_of - b.last_at) / extract(epoch FROM e.active_window) END AS ratio,
             CASE WHEN b.orders >= 2 THEN coalesce(current_setting('crm_kpi.warning_factor', true), '2')::numeric ELSE 1 END AS threshold
      FROM @buyers@ b CROSS JOIN crm_kpi.engine_state e
      CROSS JOIN LATERAL (SELECT crm_kpi.lifecycle_classify(e.as_of, 0, b.orders, b.first_at, b.last_at) AS stage) w) k
WHERE stage <> 'churned' AND ratio > threshold AND coalesce(acquisition_channel, '(none)') IN (${channel:sqlstring})
ORDER BY ratio DESC, revenue DESC, customer_id
LIMIT 50

-- ====================================================================== Marketing and CAC

-- panel crm-kpi-marketing 1 A
SELECT month AS "time", coalesce(channel, '(none)') AS metric, spend AS "Spend"
FROM @marketing@ m
WHERE month >= date_trunc('month', $__timeFrom()::date::timestamp)::date AND month <= $__timeTo()::date
  AND coalesce(channel, '(none)') IN (${channel:sqlstring})
ORDER BY 1, 2

-- panel crm-kpi-marketing 2 A
SELECT month AS "time", coalesce(channel, '(none)') AS metric, new_customers AS "New customers"
FROM @marketing@ m
WHERE month >= date_trunc('month', $__timeFrom()::date::timestamp)::date AND month <= $__timeTo()::date
  AND coalesce(channel, '(none)') IN (${channel:sqlstring})
ORDER BY 1, 2

-- panel crm-kpi-marketing 3 A
SELECT month AS "time", coalesce(channel, '(none)') AS metric, spend / nullif(new_customers, 0) AS "CAC"
FROM @marketing@ m
WHERE month >= date_trunc('month', $__timeFrom()::date::timestamp)::date AND month <= $__timeTo()::date
  AND coalesce(channel, '(none)') IN (${channel:sqlstring})
ORDER BY 1, 2

-- panel crm-kpi-marketing 4 A
SELECT coalesce(channel, '(none)') AS "Channel", sum(spend) AS "Spend", sum(new_customers) AS "New customers",
       sum(spend) / nullif(sum(new_customers), 0) AS "CAC"
FROM @marketing@ m
WHERE month >= date_trunc('month', $__timeFrom()::date::timestamp)::date AND month <= $__timeTo()::date
  AND coalesce(channel, '(none)') IN (${channel:sqlstring})
GROUP BY channel
ORDER BY 1

-- panel crm-kpi-marketing 5 A
SELECT m.month AS "time", m.spend / nullif(m.new_customers, 0) AS "Blended CAC",
       m.spend / nullif(m.new_customers, 0) / nullif(r.revenue / nullif(c.customers_at_start, 0), 0) AS "CAC payback (months)"
FROM (SELECT month, sum(spend) AS spend, sum(new_customers) AS new_customers
      FROM @marketing@ x
      WHERE month >= date_trunc('month', $__timeFrom()::date::timestamp)::date AND month <= $__timeTo()::date
        AND coalesce(channel, '(none)') IN (${channel:sqlstring})
      GROUP BY 1) m
LEFT JOIN @customers_at_start@ c ON c.month = m.month
LEFT JOIN (SELECT date_trunc('month', ordered_at)::date AS month, sum(amount) AS revenue
           FROM crm.orders
           WHERE status = 'completed' AND ordered_at >= date_trunc('month', $__timeFrom()::date::timestamp)
             AND ordered_at < $__timeTo()::date + 1
           GROUP BY 1) r ON r.month = m.month
ORDER BY 1

-- panel crm-kpi-marketing 6 A
SELECT v.month AS "time", v.clv AS "Predictive CLV", v.clv - k.cac AS "Net CLV"
FROM (SELECT c.month, sum(c.revenue) / nullif(sum(c.customers), 0)
                      / nullif((100 * r.churned::numeric / nullif(r.customers_at_start, 0)) / 100, 0) AS clv
      FROM @cohorts@ c JOIN @churn_months@ r ON r.month = c.month
      WHERE c.month >= date_trunc('month', $__timeFrom()::date::timestamp)::date AND c.month <= $__timeTo()::date
      GROUP BY c.month, r.churned, r.customers_at_start) v
LEFT JOIN (SELECT month, sum(spend) / nullif(sum(new_customers), 0) AS cac
           FROM @marketing@ x
           WHERE month >= date_trunc('month', $__timeFrom()::date::timestamp)::date AND month <= $__timeTo()::date
           GROUP BY 1) k ON k.month = v.month
ORDER BY 1

-- panel crm-kpi-marketing 7 A
SELECT date_trunc('month', c.created_at AT TIME ZONE 'UTC')::date AS "time", count(*) AS "Leads",
       100.0 * count(c.first_at) / count(*) AS "Converted %"
FROM @first_orders@ c
WHERE date_trunc('month', c.created_at AT TIME ZONE 'UTC')::date >= date_trunc('month', $__timeFrom()::date::timestamp)::date
  AND date_trunc('month', c.created_at AT TIME ZONE 'UTC')::date <= $__timeTo()::date
  AND coalesce(c.acquisition_channel, '(none)') IN (${channel:sqlstring})
GROUP BY 1
ORDER BY 1
