-- reports.sql: analyst reports over the KPI tables (never the sources): headline KPIs per period, breakdowns, segments.

-- The periods of a grain that overlap [from_day, to_day]: first and next first day.
CREATE FUNCTION crm_kpi.report_periods(from_day date, to_day date, grain text)
    RETURNS TABLE (period date, next_period date)
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    step interval := CASE grain WHEN 'day' THEN interval '1 day' WHEN 'week' THEN interval '7 days'
                                WHEN 'month' THEN interval '1 month' WHEN 'quarter' THEN interval '3 months'
                                WHEN 'year' THEN interval '1 year' END;
BEGIN
    IF step IS NULL THEN
        RAISE EXCEPTION 'unknown period grain "%"', grain
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Grains are day, week (starting on Monday), month, quarter and year.';
    END IF;
    IF to_day < from_day THEN
        RAISE EXCEPTION 'the report ends (%) before it starts (%)', to_day, from_day USING ERRCODE = 'data_exception';
    END IF;
    IF to_day - from_day > 36600 THEN
        RAISE EXCEPTION 'a report spans at most 100 years, not % days', to_day - from_day USING ERRCODE = 'program_limit_exceeded';
    END IF;
    RETURN QUERY SELECT g::date, (g + step)::date
                 FROM generate_series(date_trunc(grain, from_day::timestamp), to_day::timestamp, step) g;
END $$;
COMMENT ON FUNCTION crm_kpi.report_periods(date, date, text) IS
    'The day, week (from Monday), month, quarter or year periods overlapping [from_day, to_day]: first day and first day of the next';

CREATE FUNCTION crm_kpi.report(from_day date, to_day date, grain text DEFAULT 'month')
    RETURNS TABLE (
        period date, next_period date,
        orders bigint, revenue numeric, aov numeric, new_customers bigint, reactivated_customers bigint,
        buyers bigint, purchase_frequency numeric,
        customers_at_start bigint, churned bigint, churn_rate numeric, retention_rate numeric,
        predictive_clv numeric, marketing_spend numeric, cac numeric, net_clv numeric,
        opportunities_created bigint, won bigint, lost bigint, win_rate numeric, won_amount numeric,
        sales_cycle_median_days numeric,
        tickets_opened bigint, resolution_rate numeric, resolved_within_sla_rate numeric, unanswered bigint,
        first_response_median interval, first_response_p90 interval, resolution_median interval,
        replies_per_resolved_ticket numeric, complaints bigint, complaint_rate numeric,
        nps numeric, nps_responses bigint, csat numeric, csat_mean numeric, csat_responses bigint)
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH p AS (SELECT * FROM crm_kpi.report_periods(from_day, to_day, grain)),
    e AS (SELECT timezone, as_of FROM crm_kpi.engine_state),
    s AS (SELECT p.period, sum(d.orders)::bigint AS orders, sum(d.revenue) AS revenue,
                 sum(d.new_customers)::bigint AS new_customers, sum(d.reactivated_customers)::bigint AS reactivated
          FROM p JOIN crm_kpi.sales_channel_daily d ON d.day >= p.period AND d.day < p.next_period GROUP BY p.period),
    -- distinct buyers: exact per month from the cohort table (a customer is in one cohort)
    b AS (SELECT p.period, sum(c.customers)::bigint AS buyers
          FROM p JOIN crm_kpi.cohort_monthly c ON c.month = p.period WHERE grain = 'month' GROUP BY p.period),
    ch AS (SELECT p.period,
                  (SELECT count(*) FROM crm_kpi.customer_spells x
                   WHERE x.started_at < ps.s AND x.ended_at >= ps.s) AS at_start,
                  (SELECT count(*) FROM crm_kpi.customer_spells x
                   WHERE x.started_at < ps.s AND x.ended_at >= ps.s AND x.ended_at < ps.n AND x.ended_at <= e.as_of) AS churned
           FROM p CROSS JOIN e
           CROSS JOIN LATERAL (SELECT p.period::timestamp AT TIME ZONE e.timezone AS s,
                                      p.next_period::timestamp AT TIME ZONE e.timezone AS n) ps
           WHERE ps.s <= e.as_of),
    m AS (SELECT p.period, sum(x.spend) AS spend, sum(x.new_customers)::bigint AS acquired
          FROM p JOIN crm_kpi.marketing_monthly x ON x.month >= p.period AND x.month < p.next_period
          WHERE grain IN ('month', 'quarter', 'year') GROUP BY p.period),
    o AS (SELECT p.period, sum(d.created)::bigint AS created, sum(d.won)::bigint AS won, sum(d.lost)::bigint AS lost,
                 sum(d.won_amount) AS won_amount, crm_kpi.rollup(d.sales_cycle) AS cycle
          FROM p JOIN crm_kpi.pipeline_total_daily d ON d.day >= p.period AND d.day < p.next_period GROUP BY p.period),
    t AS (SELECT p.period, sum(d.opened)::bigint AS opened, sum(d.resolved)::bigint AS resolved,
                 sum(d.resolved_within_sla)::bigint AS within_sla, sum(d.unanswered)::bigint AS unanswered,
                 crm_kpi.rollup(d.first_response) AS first_response, crm_kpi.rollup(d.resolution) AS resolution,
                 sum(d.replies_on_resolved)::bigint AS replies, sum(d.complaints)::bigint AS complaints
          FROM p JOIN crm_kpi.service_daily d ON d.day >= p.period AND d.day < p.next_period GROUP BY p.period),
    v AS (SELECT p.period, crm_kpi.rollup(d.nps) AS nps, crm_kpi.rollup(d.csat) AS csat
          FROM p JOIN crm_kpi.satisfaction_daily d ON d.day >= p.period AND d.day < p.next_period GROUP BY p.period),
    k AS (SELECT p.period, p.next_period,
                 coalesce(s.orders, 0) AS orders, coalesce(s.revenue, 0) AS revenue,
                 s.revenue / nullif(s.orders, 0) AS aov,
                 coalesce(s.new_customers, 0) AS new_customers, coalesce(s.reactivated, 0) AS reactivated,
                 b.buyers, s.orders::numeric / nullif(b.buyers, 0) AS frequency,
                 ch.at_start, ch.churned,
                 100 * ch.churned::numeric / nullif(ch.at_start, 0) AS churn_rate,
                 m.spend, m.spend / nullif(m.acquired, 0) AS cac,
                 o.created, o.won, o.lost, o.won_amount, o.cycle,
                 t.opened, t.resolved, t.within_sla, t.unanswered, t.first_response, t.resolution, t.replies, t.complaints,
                 v.nps, v.csat
          FROM p LEFT JOIN s USING (period) LEFT JOIN b USING (period) LEFT JOIN ch USING (period)
          LEFT JOIN m USING (period) LEFT JOIN o USING (period) LEFT JOIN t USING (period) LEFT JOIN v USING (period))
    SELECT k.period, k.next_period,
           k.orders, k.revenue, k.aov, k.new_customers, k.reactivated,
           k.buyers, k.frequency,
           k.at_start, k.churned, k.churn_rate, 100 - k.churn_rate,
           k.aov * k.frequency * 100 / nullif(k.churn_rate, 0),
           k.spend, k.cac, k.aov * k.frequency * 100 / nullif(k.churn_rate, 0) - k.cac,
           coalesce(k.created, 0), coalesce(k.won, 0), coalesce(k.lost, 0),
           100 * k.won::numeric / nullif(k.won + k.lost, 0), coalesce(k.won_amount, 0),
           (extract(epoch FROM crm_kpi.percentile_interval(k.cycle, 0.5)) / 86400)::numeric,
           coalesce(k.opened, 0), 100 * k.resolved::numeric / nullif(k.opened, 0),
           100 * k.within_sla::numeric / nullif(k.opened, 0), coalesce(k.unanswered, 0),
           crm_kpi.percentile_interval(k.first_response, 0.5), crm_kpi.percentile_interval(k.first_response, 0.9),
           crm_kpi.percentile_interval(k.resolution, 0.5),
           k.replies::numeric / nullif(k.resolved, 0), coalesce(k.complaints, 0),
           100 * k.complaints::numeric / nullif(k.at_start, 0),
           crm_kpi.nps(k.nps), crm_kpi.responses(k.nps), crm_kpi.csat(k.csat), crm_kpi.csat_mean(k.csat),
           crm_kpi.responses(k.csat)
    FROM k ORDER BY k.period;
END;
COMMENT ON FUNCTION crm_kpi.report(date, date, text) IS
    'One row per day, week, month, quarter or year overlapping [from_day, to_day] with every headline KPI, read from the KPI tables: sales (orders, revenue, AOV, new and reactivated customers; buyers and purchase frequency at month grain), churn and retention (%), predictive and net CLV (month grain), marketing spend and CAC (month, quarter, year), pipeline (win rate, won amount, median sales cycle in days), service (resolution and SLA rates, response and resolution times, replies per resolved ticket, complaint rate per customer active at the start), NPS and CSAT. Ratios with a zero denominator are NULL';

CREATE FUNCTION crm_kpi.report_by_rep(from_day date, to_day date, grain text DEFAULT 'month')
    RETURNS TABLE (period date, rep_id bigint, orders bigint, revenue numeric, aov numeric, new_customers bigint,
                   opportunities_created bigint, won bigint, lost bigint, win_rate numeric, won_amount numeric)
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH p AS (SELECT * FROM crm_kpi.report_periods(from_day, to_day, grain)),
    s AS (SELECT p.period, d.rep_id, sum(d.orders)::bigint AS orders, sum(d.revenue) AS revenue,
                 sum(d.new_customers)::bigint AS new_customers
          FROM p JOIN crm_kpi.sales_daily d ON d.day >= p.period AND d.day < p.next_period GROUP BY 1, 2),
    o AS (SELECT p.period, d.rep_id, sum(d.created)::bigint AS created, sum(d.won)::bigint AS won,
                 sum(d.lost)::bigint AS lost, sum(d.won_amount) AS won_amount
          FROM p JOIN crm_kpi.pipeline_daily d ON d.day >= p.period AND d.day < p.next_period GROUP BY 1, 2)
    SELECT coalesce(s.period, o.period), coalesce(s.rep_id, o.rep_id),
           coalesce(s.orders, 0), coalesce(s.revenue, 0), s.revenue / nullif(s.orders, 0), coalesce(s.new_customers, 0),
           coalesce(o.created, 0), coalesce(o.won, 0), coalesce(o.lost, 0),
           100 * o.won::numeric / nullif(o.won + o.lost, 0), coalesce(o.won_amount, 0)
    FROM s FULL JOIN o ON o.period = s.period AND o.rep_id IS NOT DISTINCT FROM s.rep_id
    ORDER BY 1, 2 NULLS LAST;
END;
COMMENT ON FUNCTION crm_kpi.report_by_rep(date, date, text) IS
    'Per period and rep (NULL: orders and opportunities without one): orders, revenue, AOV, new customers acquired by the rep''s orders, opportunities created, won, lost, win rate, won amount';

CREATE FUNCTION crm_kpi.report_by_channel(from_day date, to_day date, grain text DEFAULT 'month')
    RETURNS TABLE (period date, channel text, orders bigint, revenue numeric, aov numeric, new_customers bigint,
                   marketing_spend numeric, cac numeric)
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH p AS (SELECT * FROM crm_kpi.report_periods(from_day, to_day, grain)),
    s AS (SELECT p.period, d.channel, sum(d.orders)::bigint AS orders, sum(d.revenue) AS revenue,
                 sum(d.new_customers)::bigint AS new_customers
          FROM p JOIN crm_kpi.sales_channel_daily d ON d.day >= p.period AND d.day < p.next_period GROUP BY 1, 2),
    m AS (SELECT p.period, x.channel, sum(x.spend) AS spend, sum(x.new_customers)::bigint AS acquired
          FROM p JOIN crm_kpi.marketing_monthly x ON x.month >= p.period AND x.month < p.next_period
          WHERE grain IN ('month', 'quarter', 'year') GROUP BY 1, 2)
    SELECT coalesce(s.period, m.period), coalesce(s.channel, m.channel),
           coalesce(s.orders, 0), coalesce(s.revenue, 0), s.revenue / nullif(s.orders, 0), coalesce(s.new_customers, 0),
           m.spend, m.spend / nullif(m.acquired, 0)
    FROM s FULL JOIN m ON m.period = s.period AND m.channel IS NOT DISTINCT FROM s.channel
    ORDER BY 1, 2 NULLS LAST;
END;
COMMENT ON FUNCTION crm_kpi.report_by_channel(date, date, text) IS
    'Per period and acquisition channel (NULL: customers without one): orders, revenue, AOV, new customers, and at month, quarter or year grain the marketing spend and CAC';

CREATE FUNCTION crm_kpi.early_warnings(max_rows integer DEFAULT 100, channels text[] DEFAULT NULL)
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
    -- The segment is looked up for the rows kept only, after the sort: the scales' arrays (a few kB) carried through
    -- it by every candidate were most of its time. (The scales computed once: in the subquery, the view would be
    -- computed again for each row.)
    WITH sc AS MATERIALIZED (SELECT * FROM crm_kpi.rfm_scales),
    top AS (
        SELECT c.customer_id, c.stage, c.ratio, c.since, c.mean_gap, c.orders, c.revenue, c.last_order_at
        FROM (SELECT s.customer_id, s.stage, s.mean_gap, s.orders, s.revenue, s.last_order_at, w.since, w.ratio
              FROM crm_kpi.customer_stats s
              CROSS JOIN LATERAL (SELECT extract(epoch FROM e.as_of - s.last_order_at) AS since) t
              CROSS JOIN LATERAL (SELECT t.since, t.since / nullif(extract(epoch FROM s.mean_gap), 0) AS ratio) w
              WHERE s.orders >= 2 AND s.stage <> 'churned'
                AND (bound IS NULL OR s.mean_gap <= make_interval(secs => reach / bound::double precision))
                AND w.ratio > factor
                AND (channels IS NULL OR coalesce(s.acquisition_channel, '(none)') = ANY (channels))
              UNION ALL
              SELECT s.customer_id, s.stage, s.mean_gap, s.orders, s.revenue, s.last_order_at, t.since,
                     t.since / extract(epoch FROM e.active_window)
              FROM crm_kpi.customer_stats s
              CROSS JOIN LATERAL (SELECT extract(epoch FROM e.as_of - s.last_order_at) AS since) t
              WHERE (bound IS NULL OR bound::double precision * extract(epoch FROM e.active_window) < reach)
                AND s.orders = 1 AND s.stage <> 'churned'
                AND t.since > extract(epoch FROM e.active_window)
                AND (channels IS NULL OR coalesce(s.acquisition_channel, '(none)') = ANY (channels))) c
        ORDER BY c.ratio DESC, c.revenue DESC, c.customer_id
        LIMIT max_rows)
    SELECT c.customer_id, c.stage, c.ratio::double precision, c.since / 86400, c.mean_gap, c.orders, c.revenue,
           (SELECT g.segment FROM crm_kpi.rfm_segments g
            WHERE g.recency_scores @> sc.recency_scores[width_bucket((c.last_order_at AT TIME ZONE e.timezone)::date, sc.days)]
              AND g.frequency_scores @> sc.frequency_scores[width_bucket(c.orders, sc.order_counts)])
    FROM top c CROSS JOIN sc
    ORDER BY c.ratio DESC, c.revenue DESC, c.customer_id;
END $$;
COMMENT ON FUNCTION crm_kpi.early_warnings(integer, text[]) IS
    'The customers the churn early warning flags (of the given acquisition channels, ''(none)'' for those without; all when NULL), most at risk first (highest ratio of days since the last order to their usual gap), then by revenue; up to max_rows. Reads the customers with the shortest gaps first, so as not to compute every buyer''s ratio';

CREATE FUNCTION crm_kpi.rfm_report()
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
