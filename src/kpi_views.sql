-- kpi_views.sql: week, month and quarter views over the daily KPI tables (exact rollups), and the rate views.

DO $$
DECLARE
    grain text;
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('sales', 'rep_id, channel',
         'sum(orders)::bigint AS orders, sum(revenue) AS revenue, sum(new_customers)::bigint AS new_customers, '
         'sum(reactivated_customers)::bigint AS reactivated_customers',
         'orders, revenue, new and reactivated customers per rep and channel'),
        ('pipeline', 'rep_id',
         'sum(created)::bigint AS created, sum(won)::bigint AS won, sum(lost)::bigint AS lost, '
         'sum(won_amount) AS won_amount, crm_kpi.rollup(sales_cycle) AS sales_cycle',
         'opportunities created, won and lost, won amount and the sales-cycle sketch per rep'),
        ('service', NULL,
         'sum(opened)::bigint AS opened, sum(unanswered)::bigint AS unanswered, sum(resolved)::bigint AS resolved, '
         'sum(resolved_within_sla)::bigint AS resolved_within_sla, crm_kpi.rollup(first_response) AS first_response, '
         'crm_kpi.rollup(resolution) AS resolution, sum(replies_on_resolved)::bigint AS replies_on_resolved, '
         'sum(complaints)::bigint AS complaints',
         'tickets opened, unanswered, resolved (within SLA), response and resolution sketches, replies, complaints'),
        ('satisfaction', NULL,
         'crm_kpi.rollup(nps) AS nps, crm_kpi.rollup(csat) AS csat',
         'the NPS and CSAT summaries')) AS v(family, dims, aggs, what)
    LOOP
        FOREACH grain IN ARRAY ARRAY['week', 'month', 'quarter'] LOOP
            EXECUTE format('CREATE VIEW crm_kpi.%I AS SELECT date_trunc(%L, day)::date AS %I%s, %s '
                           'FROM crm_kpi.%I GROUP BY 1%s',
                           t.family || '_' || grain || 'ly', grain, grain,
                           coalesce(', ' || t.dims, ''), t.aggs, t.family || '_daily',
                           coalesce(', ' || t.dims, ''));
            EXECUTE format('COMMENT ON VIEW crm_kpi.%I IS %L', t.family || '_' || grain || 'ly',
                           format('crm_kpi.%s_daily rolled up by %s (%s start on Monday): %s',
                                  t.family, grain, CASE grain WHEN 'week' THEN 'ISO weeks' ELSE grain || 's' END, t.what));
        END LOOP;
    END LOOP;
END $$;

CREATE VIEW crm_kpi.churn_rates AS
SELECT month, customers_at_start, churned, customers_at_start - churned AS retained, new_customers, reactivated,
       100 * churned::numeric / nullif(customers_at_start, 0) AS churn_rate,
       100 - 100 * churned::numeric / nullif(customers_at_start, 0) AS retention_rate
FROM crm_kpi.churn_monthly;
COMMENT ON VIEW crm_kpi.churn_rates IS
    'Monthly customer churn and retention rates (%): churned / customers at start, and its complement, so that the two add up to 100 exactly; NULL when no customer was active at the start';

CREATE VIEW crm_kpi.marketing_cac AS
SELECT month, channel, spend, new_customers, spend / nullif(new_customers, 0) AS cac
FROM crm_kpi.marketing_monthly;
COMMENT ON VIEW crm_kpi.marketing_cac IS
    'Monthly CAC per channel: spend / new customers acquired through the channel (NULL when none)';

CREATE VIEW crm_kpi.cohort_retention AS
SELECT c.cohort_month, c.month_offset, c.month, c.customers, z.customers AS cohort_size,
       100 * c.customers::numeric / nullif(z.customers, 0) AS retention,
       100 * c.revenue / nullif(z.revenue, 0) AS revenue_retention
FROM crm_kpi.cohort_monthly c
JOIN crm_kpi.cohort_monthly z ON z.cohort_month = c.cohort_month AND z.month_offset = 0;
COMMENT ON VIEW crm_kpi.cohort_retention IS
    'Cohort retention: for each cohort and month offset k, the % of the cohort with a completed order in month k, and revenue in month k as % of month 0 (net revenue retention)';
