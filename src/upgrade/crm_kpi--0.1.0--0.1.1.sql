-- crm_kpi 0.1.0 -> 0.1.1: RFM recency is scored by the day of the last order in crm_kpi.timezone (KPI_SPEC.md:
-- days since the last order), so that last orders on the same day score alike; customer_kpis keeps its columns, so
-- views built on it stay. The KPI table rfm_cells and the views rfm_scales and rfm_grid score RFM without ranking
-- every buyer; early_warnings() takes channels and reads the shortest gaps first. Vetting a binding's SQL raises
-- insufficient_privilege for a table its caller cannot read.
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

-- The KPI table rfm_cells (buyers per day of the last order, orders and channel), its scratch table, how the engine
-- keeps it, and the views rfm_scales and rfm_grid over it (RFM scores and segment sizes without ranking every
-- buyer); filled from the stored customer_stats, which it follows from then on.
CREATE TABLE crm_kpi.rfm_cells (
    last_day date NOT NULL,
    orders bigint NOT NULL,
    channel text,
    buyers bigint NOT NULL,
    revenue numeric NOT NULL,
    last_order_epoch numeric NOT NULL,
    UNIQUE NULLS NOT DISTINCT (last_day, orders, channel)
);
COMMENT ON TABLE crm_kpi.rfm_cells IS
    'The buyers of customer_stats (a completed order or more) counted per day of their last order (in the tables'' time zone), completed orders and acquisition channel: buyers, their revenue, and the sum of their last orders'' instants (epoch seconds). Enough to score RFM recency and frequency and to size and value the segments (crm_kpi.rfm_grid) without a row per customer';

-- rfm_cells: the buyers of customer_stats counted per day of their last order, orders and channel, from the sources
-- (fresh_) or from the stored table (rollup_). No stale key either: keys is ignored, all rows are returned.
CREATE FUNCTION crm_kpi.fresh_rfm_cells(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.rfm_cells
    LANGUAGE sql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT (s.last_order_at AT TIME ZONE e.timezone)::date, s.orders, s.acquisition_channel, count(*),
           coalesce(sum(s.revenue), 0), sum(extract(epoch FROM s.last_order_at))
    FROM crm_kpi.fresh_customer_stats(NULL::bigint[]) s CROSS JOIN crm_kpi.engine_state e
    WHERE s.orders > 0 GROUP BY 1, 2, 3;
END;
COMMENT ON FUNCTION crm_kpi.fresh_rfm_cells(date[]) IS
    'crm_kpi.rfm_cells computed from the sources as of engine_state.as_of (keys is ignored: all rows)';

CREATE FUNCTION crm_kpi.rollup_rfm_cells(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.rfm_cells
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT (s.last_order_at AT TIME ZONE e.timezone)::date, s.orders, s.acquisition_channel, count(*),
           coalesce(sum(s.revenue), 0), sum(extract(epoch FROM s.last_order_at))
    FROM crm_kpi.customer_stats s CROSS JOIN crm_kpi.engine_state e
    WHERE s.orders > 0 GROUP BY 1, 2, 3;
END;
COMMENT ON FUNCTION crm_kpi.rollup_rfm_cells(date[]) IS
    'crm_kpi.rfm_cells counted from the stored crm_kpi.customer_stats (keys is ignored: all rows)';

-- rfm_cells: each buyer counts once, under the day of its last order, its orders and its channel. A row left with no
-- buyers is deleted.
CREATE FUNCTION crm_kpi.add_rfm_cells_delta(ids bigint[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
    written bigint;
    emptied tid[];
BEGIN
    WITH d AS (
        SELECT (x.last_order_at AT TIME ZONE st.timezone)::date AS last_day, x.orders, x.channel,
               sum(x.sign)::bigint AS buyers, sum(x.sign * x.revenue) AS revenue,
               sum(x.sign * extract(epoch FROM x.last_order_at)) AS last_order_epoch
        FROM (SELECT -1 AS sign, c.acquisition_channel AS channel, c.orders, c.revenue, c.last_order_at
              FROM crm_kpi.customer_stats c WHERE c.customer_id = ANY(ids) AND c.orders > 0
              UNION ALL
              SELECT 1, f.acquisition_channel, f.orders, f.revenue, f.last_order_at
              FROM crm_kpi.staged_customer_stats f WHERE f.orders > 0) x
        GROUP BY 1, 2, 3),
    up AS (
        INSERT INTO crm_kpi.rfm_cells AS s
        SELECT d.last_day, d.orders, d.channel, d.buyers, coalesce(d.revenue, 0), d.last_order_epoch FROM d
        WHERE d.buyers <> 0 OR coalesce(d.revenue, 0) <> 0 OR d.last_order_epoch <> 0
        ON CONFLICT (last_day, orders, channel) DO UPDATE SET
            buyers = s.buyers + excluded.buyers, revenue = s.revenue + excluded.revenue,
            last_order_epoch = s.last_order_epoch + excluded.last_order_epoch
        RETURNING s.ctid, s.buyers)
    SELECT count(*), array_agg(up.ctid) FILTER (WHERE up.buyers = 0) INTO written, emptied FROM up;
    RETURN written + crm_kpi.delete_emptied('rfm_cells', emptied);
END $$;
COMMENT ON FUNCTION crm_kpi.add_rfm_cells_delta(bigint[]) IS
    'Adds to crm_kpi.rfm_cells the staged fresh customer_stats of some customers minus their stored ones, deleting the rows left with no buyers; returns the rows written';

-- RFM recency and frequency scores as arrays, from the buyers per day of the last order and per order count of
-- rfm_cells instead of ranking every buyer: the scores of customer_kpis. (A value's rank() among the buyers is 1 + the
-- buyers of the smaller values; bigint arithmetic, as rank() and count() give there: the division truncates.) Only
-- the values that occur are listed, sorted, so that a far-off date costs nothing: width_bucket() finds one by binary
-- search.
CREATE VIEW crm_kpi.rfm_scales AS
WITH sums AS MATERIALIZED (
    SELECT c.last_day, c.orders, sum(c.buyers)::bigint AS buyers
    FROM crm_kpi.rfm_cells c GROUP BY GROUPING SETS ((c.last_day), (c.orders))),
n AS MATERIALIZED (SELECT sum(s.buyers)::bigint AS n FROM sums s WHERE s.orders IS NOT NULL)
SELECT r.days, r.recency_scores, f.order_counts, f.frequency_scores
FROM (SELECT array_agg(x.last_day ORDER BY x.last_day) AS days, array_agg(x.score ORDER BY x.last_day) AS recency_scores
      FROM (SELECT s.last_day, (1 + 5 * ((sum(s.buyers) OVER (ORDER BY s.last_day))::bigint - s.buyers) / n.n)::integer AS score
            FROM sums s CROSS JOIN n WHERE s.last_day IS NOT NULL) x) r
CROSS JOIN
     (SELECT array_agg(x.orders ORDER BY x.orders) AS order_counts, array_agg(x.score ORDER BY x.orders) AS frequency_scores
      FROM (SELECT s.orders, (1 + 5 * ((sum(s.buyers) OVER (ORDER BY s.orders))::bigint - s.buyers) / n.n)::integer AS score
            FROM sums s CROSS JOIN n WHERE s.orders IS NOT NULL) x) f;
COMMENT ON VIEW crm_kpi.rfm_scales IS
    'The RFM scores of crm_kpi.customer_kpis as one row of arrays, from crm_kpi.rfm_cells: recency_scores[i] is the recency score of the buyers whose last order fell on days[i] (in the tables'' time zone), frequency_scores[i] the frequency score of order_counts[i] completed orders; both sorted, so that recency_scores[width_bucket(day, days)] is the score of a day that occurs';

-- The buyers of rfm_cells per RFM recency and frequency score, segment and channel.
CREATE VIEW crm_kpi.rfm_grid AS
WITH scored AS MATERIALIZED (
    SELECT x.recency_scores[width_bucket(c.last_day, x.days)] AS recency_score,
           x.frequency_scores[width_bucket(c.orders, x.order_counts)] AS frequency_score,
           c.channel, sum(c.buyers)::bigint AS buyers, sum(c.revenue) AS revenue, sum(c.orders * c.buyers)::bigint AS orders,
           sum(c.last_order_epoch) AS last_order_epoch
    FROM crm_kpi.rfm_cells c CROSS JOIN crm_kpi.rfm_scales x
    GROUP BY 1, 2, 3)
SELECT s.recency_score, s.frequency_score, g.segment, s.channel, s.buyers, s.revenue, s.orders,
       (extract(epoch FROM e.as_of) * s.buyers - s.last_order_epoch) / 86400 AS days_since_last_order
FROM scored s
JOIN crm_kpi.rfm_segments g ON g.recency_scores @> s.recency_score AND g.frequency_scores @> s.frequency_score
CROSS JOIN crm_kpi.engine_state e;
COMMENT ON VIEW crm_kpi.rfm_grid IS
    'The buyers of crm_kpi.rfm_cells per RFM recency and frequency score (those of crm_kpi.customer_kpis, from crm_kpi.rfm_scales), segment and acquisition channel: buyers, their revenue and completed orders, and the days since their last orders as of engine_state.as_of, summed over them. Segment sizes: sum(buyers), sum(revenue), sum(orders) / sum(buyers) mean orders, sum(days_since_last_order) / sum(buyers) mean days since the last order, grouped by segment';

INSERT INTO crm_kpi.kpi_tables VALUES
    ('rfm_cells', 15, '{last_day,orders,channel}', 'none', 'customer', '{customer,orders,customers,interactions}', 'rollup_rfm_cells', 'add_rfm_cells_delta');
INSERT INTO crm_kpi.kpi_table_state
SELECT 'rfm_cells', s.watermark, s.last_refresh_at, s.last_duration, NULL, s.last_error, s.last_error_at
FROM crm_kpi.kpi_table_state s WHERE s.table_name = 'customer_counts';
CREATE UNLOGGED TABLE crm_kpi.staged_rfm_cells (LIKE crm_kpi.rfm_cells);
COMMENT ON TABLE crm_kpi.staged_rfm_cells IS
    'Scratch of the refresh engine: the fresh rows of crm_kpi.rfm_cells for the keys of the batch being refreshed; empty outside a refresh or rebuild';
REVOKE EXECUTE ON FUNCTION crm_kpi.add_rfm_cells_delta(bigint[]) FROM PUBLIC;
INSERT INTO crm_kpi.rfm_cells SELECT * FROM crm_kpi.rollup_rfm_cells(NULL::date[]);

-- early_warnings() takes the channels too, and reads the customers with the shortest gaps first (through a partial
-- index of customer_stats) instead of every buyer's ratio.
-- the churn early warning's most at-risk customers first (crm_kpi.early_warnings)
CREATE INDEX customer_stats_warning ON crm_kpi.customer_stats (mean_gap) WHERE orders >= 2 AND stage <> 'churned';
DROP FUNCTION crm_kpi.early_warnings(integer);
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
    CROSS JOIN crm_kpi.rfm_scales sc
    ORDER BY c.ratio DESC, c.revenue DESC, c.customer_id
    LIMIT max_rows;
END $$;
COMMENT ON FUNCTION crm_kpi.early_warnings(integer, text[]) IS
    'The customers the churn early warning flags (of the given acquisition channels, ''(none)'' for those without; all when NULL), most at risk first (highest ratio of days since the last order to their usual gap), then by revenue; up to max_rows. Reads the customers with the shortest gaps first, so as not to compute every buyer''s ratio';
