-- quality.sql: the data-quality report (completeness, orphans, consistency, dates in the future or a century back), read from the KPI tables only.

CREATE FUNCTION crm_kpi.data_quality()
    RETURNS TABLE (check_name text, category text, source text, affected bigint, total bigint, pct numeric, detail text)
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH e AS (SELECT t.today, t.today_text,
                      'after the day of the last refresh (' || t.today_text || ')' AS after,
                      -- a century back: a date before it is most likely mistyped (year 1 for 2021, say)
                      (t.today - interval '100 years')::date AS cutoff,
                      'more than 100 years before the day of the last refresh (' || t.today_text || ')' AS before
               FROM (SELECT d.today, coalesce(d.today::text, 'none yet') AS today_text
                     FROM (SELECT (s.as_of AT TIME ZONE s.timezone)::date AS today FROM crm_kpi.engine_state s) d) t),
    cs AS (SELECT count(*) AS customers,
                  count(*) FILTER (WHERE s.acquisition_channel IS NULL) AS no_channel,
                  count(*) FILTER (WHERE s.created_at IS NULL) AS no_created,
                  count(*) FILTER (WHERE s.orders > 0) AS buyers,
                  count(*) FILTER (WHERE s.orders > 0 AND s.interactions = 0) AS silent_buyers,
                  count(*) FILTER (WHERE s.created_at > s.first_order_at) AS created_late,
                  coalesce(sum(s.orders), 0)::bigint AS orders, coalesce(sum(s.revenue), 0) AS revenue
           FROM crm_kpi.customer_stats s),
    sd AS (SELECT coalesce(sum(d.orders), 0)::bigint AS orders, coalesce(sum(d.revenue), 0) AS revenue,
                  coalesce(sum(d.orders) FILTER (WHERE d.rep_id IS NULL), 0)::bigint AS no_rep,
                  coalesce(sum(d.revenue) FILTER (WHERE d.rep_id IS NULL), 0) AS no_rep_revenue,
                  coalesce(sum(d.orders) FILTER (WHERE d.channel IS NULL), 0)::bigint AS no_channel,
                  coalesce(sum(d.revenue) FILTER (WHERE d.channel IS NULL), 0) AS no_channel_revenue,
                  coalesce(sum(d.orders) FILTER (WHERE d.day <= e.today), 0)::bigint AS to_date,
                  coalesce(sum(d.revenue) FILTER (WHERE d.day <= e.today), 0) AS to_date_revenue,
                  coalesce(sum(d.orders) FILTER (WHERE d.day > e.today), 0)::bigint AS future,
                  max(d.day) FILTER (WHERE d.day > e.today AND d.orders > 0) AS last_future,
                  coalesce(sum(d.orders) FILTER (WHERE d.day < e.cutoff), 0)::bigint AS ancient,
                  min(d.day) FILTER (WHERE d.day < e.cutoff AND d.orders > 0) AS first_ancient
           FROM crm_kpi.sales_daily d CROSS JOIN e),
    pd AS (SELECT coalesce(sum(d.created), 0)::bigint AS created,
                  coalesce(sum(d.created) FILTER (WHERE d.rep_id IS NULL), 0)::bigint AS no_rep,
                  coalesce(sum(d.won), 0)::bigint AS won,
                  coalesce(sum(crm_kpi.count(d.sales_cycle)), 0)::bigint AS won_with_cycle,
                  coalesce(sum(d.created) FILTER (WHERE d.day > e.today), 0)::bigint AS future,
                  max(d.day) FILTER (WHERE d.day > e.today AND d.created > 0) AS last_future,
                  coalesce(sum(d.created) FILTER (WHERE d.day < e.cutoff), 0)::bigint AS ancient,
                  min(d.day) FILTER (WHERE d.day < e.cutoff AND d.created > 0) AS first_ancient
           FROM crm_kpi.pipeline_daily d CROSS JOIN e),
    td AS (SELECT coalesce(sum(d.opened), 0)::bigint AS opened,
                  coalesce(sum(d.unanswered), 0)::bigint AS unanswered,
                  coalesce(sum(d.opened) FILTER (WHERE d.day > e.today), 0)::bigint AS future,
                  max(d.day) FILTER (WHERE d.day > e.today) AS last_future,
                  coalesce(sum(d.opened) FILTER (WHERE d.day < e.cutoff), 0)::bigint AS ancient,
                  min(d.day) FILTER (WHERE d.day < e.cutoff AND d.opened > 0) AS first_ancient
           FROM crm_kpi.service_daily d CROSS JOIN e),
    vd AS (SELECT coalesce(sum(coalesce(crm_kpi.responses(d.nps), 0) + coalesce(crm_kpi.responses(d.csat), 0)), 0)::bigint
                      AS responses,
                  coalesce(sum(coalesce(crm_kpi.responses(d.nps), 0) + coalesce(crm_kpi.responses(d.csat), 0))
                      FILTER (WHERE d.day > e.today), 0)::bigint AS future,
                  max(d.day) FILTER (WHERE d.day > e.today) AS last_future,
                  coalesce(sum(coalesce(crm_kpi.responses(d.nps), 0) + coalesce(crm_kpi.responses(d.csat), 0))
                      FILTER (WHERE d.day < e.cutoff), 0)::bigint AS ancient,
                  min(d.day) FILTER (WHERE d.day < e.cutoff) AS first_ancient
           FROM crm_kpi.satisfaction_daily d CROSS JOIN e),
    mc AS (SELECT m.channel, sum(m.spend) AS spend, sum(m.new_customers) AS acquired
           FROM crm_kpi.marketing_monthly m WHERE m.channel IS NOT NULL GROUP BY m.channel),
    mk AS (SELECT count(*) FILTER (WHERE mc.spend > 0) AS spending,
                  count(*) FILTER (WHERE mc.spend > 0 AND mc.acquired = 0) AS spend_no_customers,
                  string_agg(format('%s (spend: %s)', mc.channel, mc.spend), ', ' ORDER BY mc.channel)
                      FILTER (WHERE mc.spend > 0 AND mc.acquired = 0) AS spend_no_customers_list,
                  count(*) FILTER (WHERE mc.acquired > 0) AS acquiring,
                  count(*) FILTER (WHERE mc.acquired > 0 AND mc.spend = 0) AS customers_no_spend,
                  string_agg(format('%s (new customers: %s)', mc.channel, mc.acquired), ', ' ORDER BY mc.channel)
                      FILTER (WHERE mc.acquired > 0 AND mc.spend = 0) AS customers_no_spend_list
           FROM mc)
    SELECT c.check_name, c.category, c.source, c.affected, c.total, 100 * c.affected::numeric / nullif(c.total, 0), c.detail
    FROM cs, sd, pd, td, vd, mk, e, LATERAL (VALUES
        (1, 'customers without acquisition channel', 'completeness', 'customers', cs.no_channel, cs.customers,
         'customers whose acquisition_channel is NULL: their orders, new customers and CAC have no channel'),
        (2, 'customers without creation date', 'completeness', 'customers', cs.no_created, cs.customers,
         'customers whose created_at is NULL: they are in no lead cohort (lead-to-customer conversion)'),
        (3, 'completed orders without rep', 'completeness', 'orders', sd.no_rep, sd.orders,
         format('completed orders whose rep_id is NULL, %s of revenue %s', sd.no_rep_revenue, sd.revenue)),
        (4, 'completed orders without acquisition channel', 'completeness', 'orders', sd.no_channel, sd.orders,
         format('completed orders of customers without acquisition channel or not in the customers source, %s of revenue %s',
                sd.no_channel_revenue, sd.revenue)),
        (5, 'opportunities without rep', 'completeness', 'opportunities', pd.no_rep, pd.created,
         'opportunities (with a creation date) whose rep_id is NULL'),
        (6, 'won opportunities without creation date', 'completeness', 'opportunities', pd.won - pd.won_with_cycle, pd.won,
         'won opportunities whose created_at is NULL: no sales cycle, and not counted as created'),
        (7, 'tickets without first response', 'completeness', 'tickets', td.unanswered, td.opened,
         'tickets whose first_response_at is NULL (never answered, or not yet)'),
        (8, 'buyers without interaction', 'completeness', 'interactions', cs.silent_buyers, cs.buyers,
         'customers with a completed order up to the last refresh and no interaction logged'),
        (9, 'completed orders of unknown customers', 'orphans', 'orders', sd.to_date - cs.orders, sd.to_date,
         format('completed orders dated up to the day of the last refresh (%s) whose customer_id is not in the '
                'customers source, %s of revenue %s', e.today_text, sd.to_date_revenue - cs.revenue, sd.to_date_revenue)),
        (10, 'customers created after their first order', 'consistency', 'customers', cs.created_late, cs.buyers,
         'customers who have bought and whose created_at (lead created) is later than their first completed order'),
        (11, 'marketing channels without new customers', 'consistency', 'marketing_spend', mk.spend_no_customers, mk.spending,
         coalesce('channels with spend that acquired no customer (CAC undefined): ' || mk.spend_no_customers_list,
                  'every channel with spend acquired customers')),
        (12, 'acquisition channels without marketing spend', 'consistency', 'customers', mk.customers_no_spend, mk.acquiring,
         coalesce('channels of new customers with no spend (CAC 0): ' || mk.customers_no_spend_list,
                  'every channel that acquired customers has spend')),
        (13, 'completed orders dated in the future', 'timeliness', 'orders', sd.future, sd.orders,
         'completed orders dated ' || e.after || coalesce(', the latest on ' || sd.last_future, '')),
        (14, 'opportunities created in the future', 'timeliness', 'opportunities', pd.future, pd.created,
         'opportunities created ' || e.after || coalesce(', the latest on ' || pd.last_future, '')),
        (15, 'tickets opened in the future', 'timeliness', 'tickets', td.future, td.opened,
         'tickets opened ' || e.after || coalesce(', the latest on ' || td.last_future, '')),
        (16, 'survey responses answered in the future', 'timeliness', 'survey_responses', vd.future, vd.responses,
         'NPS and CSAT responses answered ' || e.after || coalesce(', the latest on ' || vd.last_future, '')),
        (17, 'completed orders dated over 100 years ago', 'timeliness', 'orders', sd.ancient, sd.orders,
         'completed orders dated ' || e.before || coalesce(', the earliest on ' || sd.first_ancient, '')),
        (18, 'opportunities created over 100 years ago', 'timeliness', 'opportunities', pd.ancient, pd.created,
         'opportunities created ' || e.before || coalesce(', the earliest on ' || pd.first_ancient, '')),
        (19, 'tickets opened over 100 years ago', 'timeliness', 'tickets', td.ancient, td.opened,
         'tickets opened ' || e.before || coalesce(', the earliest on ' || td.first_ancient, '')),
        (20, 'survey responses answered over 100 years ago', 'timeliness', 'survey_responses', vd.ancient, vd.responses,
         'NPS and CSAT responses answered ' || e.before || coalesce(', the earliest on ' || vd.first_ancient, ''))
    ) AS c (ord, check_name, category, source, affected, total, detail)
    ORDER BY c.ord;
END;
COMMENT ON FUNCTION crm_kpi.data_quality() IS
    'Data-quality checks read from the KPI tables (never the sources), one row each: rows affected out of total and their share (%, NULL when total is 0). Completeness (customers without channel or creation date, orders and opportunities without rep, orders without channel, won opportunities without creation date, unanswered tickets, buyers without interaction), orphans (completed orders whose customer is not in the customers source), consistency (customers created after their first order, channels with spend and no new customers or the reverse), timeliness (orders, opportunities, tickets, responses dated after the day of the last refresh, or more than 100 years before it: most likely mistyped). Exact as of the last finished refresh';
