-- crm_kpi 0.1.1 -> 0.1.2: fresh_churn_monthly() counts many months in one pass over the spells, so that an order
-- dated far in the past (a typing error such as year 1) no longer makes a refresh or verify() scan the spells once
-- for each of its tens of thousands of months. rfm_report() takes its sizes from rfm_grid instead of ranking every
-- buyer, and counts early warnings with early_warnings(), which computes rfm_scales once, not once per candidate. data_quality() flags rows dated more
-- than 100 years before the last refresh.
\echo Use "ALTER EXTENSION crm_kpi UPDATE TO '0.1.2'" to load this file. \quit

CREATE OR REPLACE FUNCTION crm_kpi.fresh_churn_monthly(months date[] DEFAULT NULL) RETURNS SETOF crm_kpi.churn_monthly
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    IF months IS NOT NULL AND cardinality(months) = 1 THEN
        -- One month (as time passes): counted over the spells its index ranges select, those active in it.
        RETURN QUERY EXECUTE format(
            'WITH bounds AS (SELECT date_trunc(''month'', min(p.started_at) AT TIME ZONE %1$L)::date AS first_month, '
            '                       date_trunc(''month'', %2$L::timestamptz AT TIME ZONE %1$L)::date AS last_month '
            '                FROM crm_kpi.customer_spells p), '
            'm AS (SELECT k.month, (k.month::timestamp AT TIME ZONE %1$L) AS s, '
            '             ((k.month + interval ''1 month'')::timestamp AT TIME ZONE %1$L) AS e '
            '      FROM bounds, (SELECT DISTINCT u FROM unnest($1::date[]) u) AS k (month) '
            '      WHERE k.month BETWEEN bounds.first_month AND bounds.last_month) '
            'SELECT m.month, '
            '  (SELECT count(*) FROM crm_kpi.customer_spells p WHERE p.started_at < m.s AND p.ended_at >= m.s), '
            '  (SELECT count(*) FROM crm_kpi.customer_spells p WHERE p.started_at < m.s AND p.ended_at >= m.s '
            '                                                   AND p.ended_at < m.e AND p.ended_at <= %2$L), '
            '  (SELECT count(*) FROM crm_kpi.customer_spells p WHERE p.spell = 1 AND p.started_at >= m.s AND p.started_at < m.e), '
            '  (SELECT count(*) FROM crm_kpi.customer_spells p WHERE p.spell > 1 AND p.started_at >= m.s AND p.started_at < m.e) '
            'FROM m',
            st.timezone, st.as_of) USING months;
        RETURN;
    END IF;
    -- Several months: one pass over the spells, whatever the number of months. Each spell's start and
    -- end fall in a month, found by binary search among the months' first instants; the customers at the start
    -- of a month are the spells started before it less those ended before it (a spell ends after it starts).
    RETURN QUERY EXECUTE format(
        'WITH bounds AS (SELECT date_trunc(''month'', min(p.started_at) AT TIME ZONE %1$L)::date AS first_month, '
        '                       date_trunc(''month'', %2$L::timestamptz AT TIME ZONE %1$L)::date AS last_month '
        '                FROM crm_kpi.customer_spells p), '
        'm AS (SELECT row_number() OVER (ORDER BY g) AS i, g::date AS month, g AT TIME ZONE %1$L AS s, '
        '             g > bounds.last_month AS beyond '
        '      FROM bounds, LATERAL generate_series(bounds.first_month::timestamp, '
        '                                           bounds.last_month::timestamp + interval ''1 month'', interval ''1 month'') g), '
        'starts AS (SELECT array_agg(m.s ORDER BY m.i) AS a FROM m), '
        'ev AS (SELECT width_bucket(p.started_at, starts.a) AS sb, width_bucket(p.ended_at, starts.a) AS eb, '
        '              p.spell, p.ended_at <= %2$L AS happened '
        '       FROM crm_kpi.customer_spells p, starts), '
        'began AS (SELECT ev.sb AS i, count(*) AS n, count(*) FILTER (WHERE ev.spell = 1) AS new_customers, '
        '                 count(*) FILTER (WHERE ev.spell > 1) AS reactivated FROM ev GROUP BY ev.sb), '
        'ended AS (SELECT ev.eb AS i, count(*) AS n, count(*) FILTER (WHERE ev.happened AND ev.sb < ev.eb) AS churned '
        '          FROM ev GROUP BY ev.eb), '
        'x AS (SELECT m.month, m.beyond, '
        '             sum(coalesce(b.n, 0) - coalesce(e.n, 0)) OVER (ORDER BY m.i ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS at_start, '
        '             coalesce(e.churned, 0) AS churned, coalesce(b.new_customers, 0) AS new_customers, '
        '             coalesce(b.reactivated, 0) AS reactivated '
        '      FROM m LEFT JOIN began b ON b.i = m.i LEFT JOIN ended e ON e.i = m.i) '
        'SELECT x.month, coalesce(x.at_start, 0)::bigint, x.churned, x.new_customers, x.reactivated FROM x '
        'WHERE NOT x.beyond%3$s',
        st.timezone, st.as_of,
        CASE WHEN months IS NOT NULL THEN ' AND x.month = ANY($1)' ELSE '' END) USING months;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_churn_monthly(date[]) IS
    'crm_kpi.churn_monthly computed from crm_kpi.customer_spells as of engine_state.as_of, for the given months (all when NULL): one month from the spells its index ranges select, more in one pass over the spells, so that a far-off first month costs a row per month, not a scan';

CREATE OR REPLACE FUNCTION crm_kpi.early_warnings(max_rows integer DEFAULT 100, channels text[] DEFAULT NULL)
    RETURNS TABLE (customer_id bigint, stage crm_kpi.lifecycle_stage, warning_ratio double precision,
                   days_since_last_order numeric, mean_gap interval, orders bigint, revenue numeric, segment text)
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e crm_kpi.engine_state;
    factor numeric := coalesce(current_setting('crm_kpi.warning_factor', true), '2')::numeric;
    -- longer than any time since the last order of a buyer not churned (churned: no order for churn_after or longer)
    reach double precision;
    bound numeric;  -- a ratio that max_rows flagged customers reach, once known
BEGIN
    IF max_rows < 0 THEN
        RAISE EXCEPTION 'max_rows must not be negative: %', max_rows USING ERRCODE = 'invalid_parameter_value';
    ELSIF max_rows IS NULL OR max_rows = 0 THEN
        RETURN;
    END IF;
    SELECT * INTO e FROM crm_kpi.engine_state;
    reach := extract(epoch FROM e.churn_after + interval '1 day');
    -- The highest ratios belong to the customers with the shortest gaps between orders: the ratio that max_rows of
    -- the 4 x max_rows shortest reach bounds the max_rows-th from below. (NULL when fewer are flagged among them.)
    SELECT min(x.ratio) INTO bound
    FROM (SELECT w.ratio
          FROM (SELECT s.last_order_at, s.mean_gap FROM crm_kpi.customer_stats s
                WHERE s.orders >= 2 AND s.stage <> 'churned'
                  AND (channels IS NULL OR coalesce(s.acquisition_channel, '(none)') = ANY (channels))
                ORDER BY s.mean_gap LIMIT 4 * max_rows::bigint) s
          CROSS JOIN LATERAL (SELECT extract(epoch FROM e.as_of - s.last_order_at)
                                     / nullif(extract(epoch FROM s.mean_gap), 0) AS ratio) w
          WHERE w.ratio > factor
          ORDER BY w.ratio DESC LIMIT max_rows) x
    HAVING count(*) = max_rows;
    -- So only gaps up to reach / bound can rank (ratio = time since the last order / gap <= reach / gap), and
    -- customers of one order (ratio = time since / active_window) only when bound x active_window < reach.
    RETURN QUERY
    -- (the scales computed once: joined to every candidate, the view would be computed again for each)
    WITH sc AS MATERIALIZED (SELECT * FROM crm_kpi.rfm_scales)
    SELECT c.customer_id, c.stage, c.ratio::double precision, c.since / 86400, c.mean_gap, c.orders, c.revenue,
           (SELECT g.segment FROM crm_kpi.rfm_segments g
            WHERE g.recency_scores @> sc.recency_scores[width_bucket((c.last_order_at AT TIME ZONE e.timezone)::date, sc.days)]
              AND g.frequency_scores @> sc.frequency_scores[width_bucket(c.orders, sc.order_counts)])
    FROM (SELECT s.*, w.since, w.ratio
          FROM crm_kpi.customer_stats s
          CROSS JOIN LATERAL (SELECT extract(epoch FROM e.as_of - s.last_order_at) AS since) t
          CROSS JOIN LATERAL (SELECT t.since, t.since / nullif(extract(epoch FROM s.mean_gap), 0) AS ratio) w
          WHERE s.orders >= 2 AND s.stage <> 'churned'
            AND (bound IS NULL OR s.mean_gap <= make_interval(secs => reach / bound::double precision))
            AND w.ratio > factor
            AND (channels IS NULL OR coalesce(s.acquisition_channel, '(none)') = ANY (channels))
          UNION ALL
          SELECT s.*, t.since, t.since / extract(epoch FROM e.active_window)
          FROM crm_kpi.customer_stats s
          CROSS JOIN LATERAL (SELECT extract(epoch FROM e.as_of - s.last_order_at) AS since) t
          WHERE (bound IS NULL OR bound::double precision * extract(epoch FROM e.active_window) < reach)
            AND s.orders = 1 AND s.stage <> 'churned'
            AND t.since > extract(epoch FROM e.active_window)
            AND (channels IS NULL OR coalesce(s.acquisition_channel, '(none)') = ANY (channels))) c
    CROSS JOIN sc
    ORDER BY c.ratio DESC, c.revenue DESC, c.customer_id
    LIMIT max_rows;
END $$;
COMMENT ON FUNCTION crm_kpi.early_warnings(integer, text[]) IS
    'The customers the churn early warning flags (of the given acquisition channels, ''(none)'' for those without; all when NULL), most at risk first (highest ratio of days since the last order to their usual gap), then by revenue; up to max_rows. Reads the customers with the shortest gaps first, so as not to compute every buyer''s ratio';

CREATE OR REPLACE FUNCTION crm_kpi.rfm_report()
    RETURNS TABLE (segment text, customers bigint, share numeric, revenue numeric, mean_revenue numeric,
                   mean_orders numeric, mean_days_since_last_order numeric, early_warnings bigint)
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    -- Sizes and values from the buyers per RFM cell (rfm_grid); early warnings counted from early_warnings() (the
    -- warning depends on each customer's own gap: it has no cell).
    WITH sizes AS (
        SELECT r.segment, sum(r.buyers) AS customers, sum(r.revenue) AS revenue, sum(r.orders) AS orders,
               sum(r.days_since_last_order) AS days
        FROM crm_kpi.rfm_grid r GROUP BY r.segment),
    warned AS (SELECT w.segment, count(*) AS n FROM crm_kpi.early_warnings(2147483647) w GROUP BY w.segment)
    SELECT g.segment, coalesce(z.customers, 0)::bigint,
           100 * coalesce(z.customers, 0) / nullif(sum(z.customers) OVER (), 0),
           coalesce(z.revenue, 0), z.revenue / z.customers, z.orders / z.customers, z.days / z.customers,
           coalesce(w.n, 0)
    FROM crm_kpi.rfm_segments g
    LEFT JOIN sizes z ON z.segment = g.segment
    LEFT JOIN warned w ON w.segment = g.segment
    ORDER BY upper(g.recency_scores) + upper(g.frequency_scores) DESC, g.segment;
END;
COMMENT ON FUNCTION crm_kpi.rfm_report() IS
    'RFM segment sizes (and share of buyers, %) and values: revenue, mean revenue and orders, mean days since the last order (from crm_kpi.rfm_grid), early warnings (counted from crm_kpi.early_warnings())';

CREATE OR REPLACE FUNCTION crm_kpi.data_quality()
    RETURNS TABLE (check_name text, category text, source text, affected bigint, total bigint, pct numeric, detail text)
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH e AS (SELECT (as_of AT TIME ZONE timezone)::date AS today,
                      coalesce(((as_of AT TIME ZONE timezone)::date)::text, 'none yet') AS today_text,
                      'after the day of the last refresh (' || coalesce(((as_of AT TIME ZONE timezone)::date)::text, 'none yet')
                          || ')' AS after,
                      -- a century back: a date before it is most likely mistyped (year 1 for 2021, say)
                      ((as_of AT TIME ZONE timezone)::date - interval '100 years')::date AS cutoff,
                      'more than 100 years before the day of the last refresh ('
                          || coalesce(((as_of AT TIME ZONE timezone)::date)::text, 'none yet') || ')' AS before
               FROM crm_kpi.engine_state),
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
