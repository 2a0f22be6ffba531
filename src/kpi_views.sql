-- kpi_views.sql: week, month and quarter views over the daily KPI tables (exact rollups), and the rate views.

DO $$
DECLARE
    grain text;
    t record;
    from_months boolean;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('sales', 'rep_id, channel',
         'sum(orders)::bigint AS orders, sum(revenue) AS revenue, sum(new_customers)::bigint AS new_customers, '
         'sum(reactivated_customers)::bigint AS reactivated_customers',
         'orders, revenue, new and reactivated customers per rep and channel', false),
        ('pipeline', 'rep_id',
         'sum(created)::bigint AS created, sum(won)::bigint AS won, sum(lost)::bigint AS lost, '
         'sum(won_amount) AS won_amount, crm_kpi.rollup(sales_cycle) AS sales_cycle',
         'opportunities created, won and lost, won amount and the sales-cycle sketch per rep', false),
        ('service', NULL,
         'sum(opened)::bigint AS opened, sum(unanswered)::bigint AS unanswered, sum(resolved)::bigint AS resolved, '
         'sum(resolved_within_sla)::bigint AS resolved_within_sla, crm_kpi.rollup(first_response) AS first_response, '
         'crm_kpi.rollup(resolution) AS resolution, sum(replies_on_resolved)::bigint AS replies_on_resolved, '
         'sum(complaints)::bigint AS complaints',
         'tickets opened, unanswered, resolved (within SLA), response and resolution sketches, replies, complaints', true),
        ('satisfaction', NULL,
         'crm_kpi.rollup(nps) AS nps, crm_kpi.rollup(csat) AS csat',
         'the NPS and CSAT summaries', true)) AS v(family, dims, aggs, what, monthly)
    LOOP
        FOREACH grain IN ARRAY ARRAY['week', 'month', 'quarter'] LOOP
            -- Months and quarters of service and satisfaction from their rows per month (<family>_months), the
            -- rest from the days.
            from_months := t.monthly AND grain <> 'week';
            EXECUTE format('CREATE VIEW crm_kpi.%I AS SELECT date_trunc(%L, %s)::date AS %I%s, %s '
                           'FROM crm_kpi.%I GROUP BY 1%s',
                           t.family || '_' || grain || 'ly', grain,
                           CASE WHEN from_months THEN 'month' ELSE 'day' END, grain,
                           coalesce(', ' || t.dims, ''), t.aggs,
                           t.family || CASE WHEN from_months THEN '_months' ELSE '_daily' END,
                           coalesce(', ' || t.dims, ''));
            EXECUTE format('COMMENT ON VIEW crm_kpi.%I IS %L', t.family || '_' || grain || 'ly',
                           format('crm_kpi.%s_daily rolled up by %s%s: %s', t.family, grain,
                                  CASE WHEN grain = 'week' THEN ' (ISO weeks, which start on Monday)'
                                       WHEN t.monthly THEN format(' (from crm_kpi.%s_months)', t.family) ELSE '' END,
                                  t.what));
        END LOOP;
    END LOOP;
END $$;

-- The whole months from from_day to to_day, as the range [first day of the first, first day of the month after the last).
-- The first of them starts the month after the day before from_day; the month after the last starts the month of the
-- day after to_day. No SET and not declared STRICT, so that the planner inlines it (the body is bound when it is
-- created, and NULL gives NULL); one expression, no subquery; daterange(m0, m0) is empty.
CREATE FUNCTION crm_kpi.whole_months(from_day date, to_day date) RETURNS daterange
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN from_day IS NOT NULL AND to_day IS NOT NULL THEN
               daterange(date_trunc('month', (from_day - 1) + interval '1 month')::date,
                         greatest(date_trunc('month', (from_day - 1) + interval '1 month')::date,
                                  date_trunc('month', (to_day + 1)::timestamp)::date)) END;
COMMENT ON FUNCTION crm_kpi.whole_months(date, date) IS
    'The months wholly within the days from from_day to to_day, as a range of dates from the first day of the first to the first day of the month after the last (empty when there is none)';

-- The service and satisfaction rows of the days from from_day to to_day (as a Grafana panel's $__timeFilter(day) takes
-- them: from the date of the range's start to that of its end): each whole month among them as its row of
-- <family>_months, the days before the first whole month and after the last as their rows of <family>_daily, each part
-- read by its own range of the primary key. Summed and rolled up, they give what the days give. PL/pgSQL keeps the
-- plan of their query for the session; an SQL function that the planner does not inline is planned at every call.
CREATE FUNCTION crm_kpi.service_between(from_day date, to_day date) RETURNS SETOF crm_kpi.service_daily
    LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    months daterange := crm_kpi.whole_months(from_day, to_day);
    first_month date := coalesce(lower(months), to_day + 1);  -- no whole month: the days are all before it
    after_months date := coalesce(upper(months), to_day + 1);
BEGIN
    RETURN QUERY
        SELECT m.month, m.opened, m.unanswered, m.resolved, m.resolved_within_sla, m.first_response, m.resolution,
               m.replies_on_resolved, m.complaints
        FROM crm_kpi.service_months m WHERE m.month >= first_month AND m.month < after_months
        UNION ALL
        SELECT s.* FROM crm_kpi.service_daily s WHERE s.day >= from_day AND s.day < first_month
        UNION ALL
        SELECT s.* FROM crm_kpi.service_daily s WHERE s.day >= after_months AND s.day <= to_day;
END $$;
COMMENT ON FUNCTION crm_kpi.service_between(date, date) IS
    'The rows of crm_kpi.service_daily from from_day to to_day, with each whole month among them replaced by its row of crm_kpi.service_months (under the month''s first day): summed and rolled up, the same as those days, from a row per month. A panel passes $__timeFrom() and $__timeTo(), which become the dates of the range''s ends as in $__timeFilter(day); a NULL end gives no rows';

CREATE FUNCTION crm_kpi.satisfaction_between(from_day date, to_day date) RETURNS SETOF crm_kpi.satisfaction_daily
    LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    months daterange := crm_kpi.whole_months(from_day, to_day);
    first_month date := coalesce(lower(months), to_day + 1);  -- no whole month: the days are all before it
    after_months date := coalesce(upper(months), to_day + 1);
BEGIN
    RETURN QUERY
        SELECT m.month, m.nps, m.csat
        FROM crm_kpi.satisfaction_months m WHERE m.month >= first_month AND m.month < after_months
        UNION ALL
        SELECT s.* FROM crm_kpi.satisfaction_daily s WHERE s.day >= from_day AND s.day < first_month
        UNION ALL
        SELECT s.* FROM crm_kpi.satisfaction_daily s WHERE s.day >= after_months AND s.day <= to_day;
END $$;
COMMENT ON FUNCTION crm_kpi.satisfaction_between(date, date) IS
    'The rows of crm_kpi.satisfaction_daily from from_day to to_day, with each whole month among them replaced by its row of crm_kpi.satisfaction_months (under the month''s first day): rolled up, the same as those days, from a row per month. A panel passes $__timeFrom() and $__timeTo(), which become the dates of the range''s ends as in $__timeFilter(day); a NULL end gives no rows';

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

-- RFM segments from the R and F scores (rows: recency score, columns: frequency score). Users may edit them; the
-- cells 1-5 x 1-5 are covered exactly once (overlaps are excluded at once, gaps refused at commit), so that each
-- buyer has exactly one segment. Dumped: a restore brings the edited segments back over the built-in ones.
CREATE TABLE crm_kpi.rfm_segments (
    segment text PRIMARY KEY CHECK (segment <> ''),
    recency_scores int4range NOT NULL CHECK (NOT isempty(recency_scores) AND recency_scores <@ int4range(1, 5, '[]')),
    frequency_scores int4range NOT NULL CHECK (NOT isempty(frequency_scores) AND frequency_scores <@ int4range(1, 5, '[]')),
    meaning text NOT NULL,
    builtin boolean NOT NULL DEFAULT false,
    CONSTRAINT rfm_segments_one_per_cell EXCLUDE USING gist (recency_scores WITH &&, frequency_scores WITH &&)
);
COMMENT ON TABLE crm_kpi.rfm_segments IS
    'The RFM segment of each (recency score, frequency score) cell; the ranges cover the 5 x 5 grid exactly once (checked at commit). builtin: a segment as the extension installed it, which a segment inserted over its cells or under its name replaces; editing it makes it the user''s';
INSERT INTO crm_kpi.rfm_segments VALUES
    ('champions', '[4,5]', '[4,5]', 'bought recently and often', true),
    ('loyal', '[3,3]', '[4,5]', 'buy often, a little less recently', true),
    ('potential', '[4,5]', '[1,3]', 'recent, not yet frequent', true),
    ('needs attention', '[3,3]', '[1,3]', 'middling recency and frequency', true),
    ('at risk', '[1,2]', '[3,5]', 'used to buy often, not for a long time', true),
    ('hibernating', '[2,2]', '[1,2]', 'few orders, long ago', true),
    ('lost', '[1,1]', '[1,2]', 'few orders, longest ago', true);
SELECT pg_catalog.pg_extension_config_dump('crm_kpi.rfm_segments', '');

-- A segment written over the cells or under the name of built-in ones replaces them (so a restore, whose rows
-- come after those CREATE EXTENSION inserted, brings back exactly the segments dumped); an edited one is the user's.
CREATE FUNCTION crm_kpi.rfm_segments_replace() RETURNS trigger
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.builtin := false;
    END IF;
    DELETE FROM crm_kpi.rfm_segments g
    WHERE g.builtin
      AND (TG_OP = 'INSERT' OR g.segment <> OLD.segment)
      AND (g.segment = NEW.segment
           OR (g.recency_scores && NEW.recency_scores AND g.frequency_scores && NEW.frequency_scores));
    RETURN NEW;
END $$;
COMMENT ON FUNCTION crm_kpi.rfm_segments_replace() IS
    'Trigger of crm_kpi.rfm_segments: a segment inserted (or moved) over the cells or under the name of built-in segments replaces them; an updated segment is no longer built-in';
CREATE TRIGGER rfm_segments_replace BEFORE INSERT OR UPDATE ON crm_kpi.rfm_segments
    FOR EACH ROW EXECUTE FUNCTION crm_kpi.rfm_segments_replace();
COMMENT ON TRIGGER rfm_segments_replace ON crm_kpi.rfm_segments IS
    'Replaces the built-in segments that an inserted or moved segment covers or renames';

-- At commit: every cell has a segment (overlaps cannot be written at all).
CREATE FUNCTION crm_kpi.rfm_segments_check() RETURNS trigger
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    uncovered text := (SELECT string_agg(format('(%s, %s)', r, f), ', ' ORDER BY r, f)
                       FROM generate_series(1, 5) r, generate_series(1, 5) f
                       WHERE NOT EXISTS (SELECT FROM crm_kpi.rfm_segments g
                                         WHERE g.recency_scores @> r AND g.frequency_scores @> f));
BEGIN
    IF uncovered IS NOT NULL THEN
        RAISE EXCEPTION 'the RFM segments leave cells without a segment'
            USING ERRCODE = 'check_violation',
                  DETAIL = format('No segment of crm_kpi.rfm_segments covers the (recency score, frequency score) cells %s.', uncovered),
                  HINT = 'Every cell of 1-5 x 1-5 needs exactly one segment: extend a segment, or add one, in the same transaction.';
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION crm_kpi.rfm_segments_check() IS
    'Constraint trigger of crm_kpi.rfm_segments, at commit: raises check_violation when a cell of the 5 x 5 grid has no segment';
CREATE CONSTRAINT TRIGGER rfm_segments_cover_grid AFTER INSERT OR UPDATE OR DELETE ON crm_kpi.rfm_segments
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION crm_kpi.rfm_segments_check();
COMMENT ON TRIGGER rfm_segments_cover_grid ON crm_kpi.rfm_segments IS
    'At commit, refuses RFM segments that leave a cell of the 5 x 5 grid without a segment';

CREATE VIEW crm_kpi.customer_kpis AS
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

-- RFM recency and frequency scores as arrays, from the buyers per day of the last order (rfm_last_days) and per order
-- count (rfm_order_counts) instead of ranking every buyer: the scores of customer_kpis. (A value's rank() among the
-- buyers is 1 + the buyers of the smaller values; bigint arithmetic, as rank() and count() give there: the division
-- truncates.) Only the values that occur are listed, sorted, so that a far-off date costs nothing: width_bucket()
-- finds one by binary search.
CREATE VIEW crm_kpi.rfm_scales AS
WITH n AS MATERIALIZED (SELECT sum(o.buyers)::bigint AS n FROM crm_kpi.rfm_order_counts o)
SELECT r.days, r.recency_scores, f.order_counts, f.frequency_scores
FROM (SELECT array_agg(x.last_day ORDER BY x.last_day) AS days, array_agg(x.score ORDER BY x.last_day) AS recency_scores
      FROM (SELECT d.last_day, (1 + 5 * ((sum(d.buyers) OVER (ORDER BY d.last_day))::bigint - d.buyers) / n.n)::integer AS score
            FROM crm_kpi.rfm_last_days d CROSS JOIN n) x) r
CROSS JOIN
     (SELECT array_agg(x.orders ORDER BY x.orders) AS order_counts, array_agg(x.score ORDER BY x.orders) AS frequency_scores
      FROM (SELECT o.orders, (1 + 5 * ((sum(o.buyers) OVER (ORDER BY o.orders))::bigint - o.buyers) / n.n)::integer AS score
            FROM crm_kpi.rfm_order_counts o CROSS JOIN n) x) f;
COMMENT ON VIEW crm_kpi.rfm_scales IS
    'The RFM scores of crm_kpi.customer_kpis as one row of arrays, from crm_kpi.rfm_last_days and crm_kpi.rfm_order_counts: recency_scores[i] is the recency score of the buyers whose last order fell on days[i] (in the tables'' time zone), frequency_scores[i] the frequency score of order_counts[i] completed orders; both sorted, so that recency_scores[width_bucket(day, days)] is the score of a day that occurs';

-- The buyers of rfm_cells per RFM recency and frequency score, segment and channel. A month whose days that occur all
-- have one recency score (all but the few where the score steps up: at most 4) is read from rfm_month_cells, a row per
-- order count and channel, instead of a row per day besides.
CREATE VIEW crm_kpi.rfm_grid AS
WITH x AS MATERIALIZED (SELECT * FROM crm_kpi.rfm_scales),
months AS MATERIALIZED (
    SELECT date_trunc('month', u.day::timestamp)::date AS month, min(u.score) AS lo, max(u.score) AS hi
    FROM x CROSS JOIN unnest(x.days, x.recency_scores) u (day, score) GROUP BY 1),
cells AS (
    SELECT m.lo AS recency_score, c.orders, c.channel, c.buyers, c.revenue, c.last_order_epoch
    FROM months m JOIN crm_kpi.rfm_month_cells c ON c.month = m.month
    WHERE m.lo = m.hi
    UNION ALL
    SELECT x.recency_scores[width_bucket(c.last_day, x.days)], c.orders, c.channel, c.buyers, c.revenue, c.last_order_epoch
    FROM months m CROSS JOIN x
    JOIN crm_kpi.rfm_cells c ON c.last_day >= m.month AND c.last_day < (m.month + interval '1 month')::date
    WHERE m.lo <> m.hi),
scored AS MATERIALIZED (
    SELECT c.recency_score, x.frequency_scores[width_bucket(c.orders, x.order_counts)] AS frequency_score,
           c.channel, sum(c.buyers)::bigint AS buyers, sum(c.revenue) AS revenue, sum(c.orders * c.buyers)::bigint AS orders,
           sum(c.last_order_epoch) AS last_order_epoch
    FROM cells c CROSS JOIN x
    GROUP BY 1, 2, 3)
SELECT s.recency_score, s.frequency_score, g.segment, s.channel, s.buyers, s.revenue, s.orders,
       (extract(epoch FROM e.as_of) * s.buyers - s.last_order_epoch) / 86400 AS days_since_last_order
FROM scored s
JOIN crm_kpi.rfm_segments g ON g.recency_scores @> s.recency_score AND g.frequency_scores @> s.frequency_score
CROSS JOIN crm_kpi.engine_state e;
COMMENT ON VIEW crm_kpi.rfm_grid IS
    'The buyers of crm_kpi.rfm_cells (read per month from crm_kpi.rfm_month_cells where a month''s buyers have one recency score) per RFM recency and frequency score (those of crm_kpi.customer_kpis, from crm_kpi.rfm_scales), segment and acquisition channel: buyers, their revenue and completed orders, and the days since their last orders as of engine_state.as_of, summed over them. Segment sizes: sum(buyers), sum(revenue), sum(orders) / sum(buyers) mean orders, sum(days_since_last_order) / sum(buyers) mean days since the last order, grouped by segment';
