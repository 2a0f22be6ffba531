-- crm_kpi 0.1.5 -> 0.1.6: the RFM scales (crm_kpi.rfm_scales, which early_warnings(), rfm_grid and rfm_report()
-- read) come from two new KPI tables, the buyers per day of their last order (rfm_last_days) and per number of
-- completed orders (rfm_order_counts), a row per day and per count, instead of a pass over every cell of rfm_cells;
-- the refresh keeps them like rfm_cells, and they are filled here from it. (Reading sketches and summaries got faster
-- in the library, with the same results.) early_warnings() looks up the segment of the rows it returns only, after
-- sorting its candidates without the scales' arrays.
\echo Use "ALTER EXTENSION crm_kpi UPDATE TO '0.1.6'" to load this file. \quit

-- rfm_cells summed over all but the day of the last order, and over all but the order count: what the RFM scales
-- read (crm_kpi.rfm_scales), a row per day and a row per order count instead of a scan of every cell.
CREATE TABLE crm_kpi.rfm_last_days (
    last_day date NOT NULL UNIQUE,
    buyers bigint NOT NULL
) WITH (fillfactor = 90);
COMMENT ON TABLE crm_kpi.rfm_last_days IS
    'The buyers of customer_stats (a completed order or more) counted per day of their last order (in the tables'' time zone): crm_kpi.rfm_cells summed over order counts and channels, from which crm_kpi.rfm_scales scores recency';

CREATE TABLE crm_kpi.rfm_order_counts (
    orders bigint NOT NULL UNIQUE,
    buyers bigint NOT NULL
) WITH (fillfactor = 90);
COMMENT ON TABLE crm_kpi.rfm_order_counts IS
    'The buyers of customer_stats (a completed order or more) counted per number of completed orders: crm_kpi.rfm_cells summed over days and channels, from which crm_kpi.rfm_scales scores frequency';

-- rfm_last_days and rfm_order_counts: rfm_cells summed over the other keys, from the sources (fresh_) or from the
-- stored rfm_cells, which a rebuild fills first (rollup_). keys is ignored: all rows are returned.
CREATE FUNCTION crm_kpi.fresh_rfm_last_days(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.rfm_last_days
    LANGUAGE sql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT c.last_day, sum(c.buyers)::bigint FROM crm_kpi.fresh_rfm_cells(NULL::date[]) c GROUP BY 1;
END;
COMMENT ON FUNCTION crm_kpi.fresh_rfm_last_days(date[]) IS
    'crm_kpi.rfm_last_days computed from the sources as of engine_state.as_of (keys is ignored: all rows)';

CREATE FUNCTION crm_kpi.rollup_rfm_last_days(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.rfm_last_days
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT c.last_day, sum(c.buyers)::bigint FROM crm_kpi.rfm_cells c GROUP BY 1;
END;
COMMENT ON FUNCTION crm_kpi.rollup_rfm_last_days(date[]) IS
    'crm_kpi.rfm_last_days summed from the stored crm_kpi.rfm_cells (keys is ignored: all rows)';

CREATE FUNCTION crm_kpi.fresh_rfm_order_counts(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.rfm_order_counts
    LANGUAGE sql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT c.orders, sum(c.buyers)::bigint FROM crm_kpi.fresh_rfm_cells(NULL::date[]) c GROUP BY 1;
END;
COMMENT ON FUNCTION crm_kpi.fresh_rfm_order_counts(date[]) IS
    'crm_kpi.rfm_order_counts computed from the sources as of engine_state.as_of (keys is ignored: all rows)';

CREATE FUNCTION crm_kpi.rollup_rfm_order_counts(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.rfm_order_counts
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT c.orders, sum(c.buyers)::bigint FROM crm_kpi.rfm_cells c GROUP BY 1;
END;
COMMENT ON FUNCTION crm_kpi.rollup_rfm_order_counts(date[]) IS
    'crm_kpi.rfm_order_counts summed from the stored crm_kpi.rfm_cells (keys is ignored: all rows)';

-- rfm_last_days and rfm_order_counts: each buyer counts once, under the day of its last order or under its orders (the
-- key, key_sql of x.last_order_at and x.orders). A row left with no buyers is deleted.
CREATE FUNCTION crm_kpi.add_buyer_counts(ids bigint[], target name, key_column name, key_sql text) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    written bigint;
    emptied tid[];
BEGIN
    EXECUTE format(
        'WITH d AS ( '
        '    SELECT %3$s AS k, sum(x.sign)::bigint AS buyers '
        '    FROM (SELECT -1 AS sign, c.orders, c.last_order_at FROM crm_kpi.customer_stats c '
        '          WHERE c.customer_id = ANY($1) AND c.orders > 0 '
        '          UNION ALL '
        '          SELECT 1, f.orders, f.last_order_at FROM crm_kpi.staged_customer_stats f WHERE f.orders > 0) x '
        '    GROUP BY 1 HAVING sum(x.sign) <> 0), '
        'up AS ( '
        '    INSERT INTO crm_kpi.%1$I AS s SELECT d.k, d.buyers FROM d '
        '    ON CONFLICT (%2$I) DO UPDATE SET buyers = s.buyers + excluded.buyers '
        '    RETURNING s.ctid, s.buyers) '
        'SELECT count(*), array_agg(up.ctid) FILTER (WHERE up.buyers = 0) FROM up',
        target, key_column, key_sql) INTO written, emptied USING ids;
    RETURN written + crm_kpi.delete_emptied(target, emptied);
END $$;
COMMENT ON FUNCTION crm_kpi.add_buyer_counts(bigint[], name, name, text) IS
    'Adds to a table of buyers per key (crm_kpi.<target>, keyed by key_column, computed by key_sql from x.orders and x.last_order_at) the staged fresh customer_stats of some customers minus their stored ones, deleting the rows left with no buyers; returns the rows written';

CREATE FUNCTION crm_kpi.add_rfm_last_days_delta(ids bigint[]) RETURNS bigint
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    RETURN crm_kpi.add_buyer_counts(ids, 'rfm_last_days', 'last_day',
                                    format('(x.last_order_at AT TIME ZONE %L)::date', (crm_kpi.engine_settings()).timezone));
COMMENT ON FUNCTION crm_kpi.add_rfm_last_days_delta(bigint[]) IS
    'Adds to crm_kpi.rfm_last_days what the staged fresh customer_stats of some customers change in it; returns the rows written';

CREATE FUNCTION crm_kpi.add_rfm_order_counts_delta(ids bigint[]) RETURNS bigint
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    RETURN crm_kpi.add_buyer_counts(ids, 'rfm_order_counts', 'orders', 'x.orders');
COMMENT ON FUNCTION crm_kpi.add_rfm_order_counts_delta(bigint[]) IS
    'Adds to crm_kpi.rfm_order_counts what the staged fresh customer_stats of some customers change in it; returns the rows written';

INSERT INTO crm_kpi.kpi_tables VALUES
    ('rfm_last_days', 16, '{last_day}', 'none', 'customer', '{customer,orders,customers,interactions}', 'rollup_rfm_last_days', 'add_rfm_last_days_delta'),
    ('rfm_order_counts', 17, '{orders}', 'none', 'customer', '{customer,orders,customers,interactions}', 'rollup_rfm_order_counts', 'add_rfm_order_counts_delta');
COMMENT ON TABLE crm_kpi.kpi_tables IS
    'The KPI tables kept by the refresh engine: their key columns (the first is the stale key, of grain day, month or customer; none: the table is kept by the customers'' differences alone), the queue target that refreshes them, every target whose pending keys may change them, the function computing their rows for stale keys (fresh_<table> from the sources, or rollup_<table> from the per-customer parts, or from a KPI table before it; crm_kpi.verify() always compares with fresh_<table>), and the function adding what a batch of recomputed customers changes in them (NULL: they have no part per customer, or are per customer)';
INSERT INTO crm_kpi.kpi_table_state (table_name, watermark, last_refresh_at, last_duration, rows_touched, last_error,
                                     last_error_at, failures, retry_at)
SELECT t.name, s.watermark, s.last_refresh_at, s.last_duration, NULL, s.last_error, s.last_error_at, s.failures, s.retry_at
FROM crm_kpi.kpi_table_state s CROSS JOIN (VALUES ('rfm_last_days'::name), ('rfm_order_counts')) t (name)
WHERE s.table_name = 'rfm_cells';
-- Their scratch tables, as the install script makes them.
DO $$
DECLARE
    t name;
BEGIN
    FOREACH t IN ARRAY ARRAY['rfm_last_days', 'rfm_order_counts']::name[] LOOP
        EXECUTE format('CREATE UNLOGGED TABLE crm_kpi.%I (LIKE crm_kpi.%I)', 'staged_' || t, t);
        EXECUTE format('COMMENT ON TABLE crm_kpi.%I IS %L', 'staged_' || t,
                       format('Scratch of the refresh engine: the fresh rows of crm_kpi.%I for the keys of the batch '
                              'being refreshed; empty outside a refresh or rebuild', t));
    END LOOP;
END $$;
REVOKE EXECUTE ON FUNCTION crm_kpi.add_buyer_counts(bigint[], name, name, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION crm_kpi.add_rfm_last_days_delta(bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION crm_kpi.add_rfm_order_counts_delta(bigint[]) FROM PUBLIC;
INSERT INTO crm_kpi.rfm_last_days SELECT * FROM crm_kpi.rollup_rfm_last_days(NULL::date[]);
INSERT INTO crm_kpi.rfm_order_counts SELECT * FROM crm_kpi.rollup_rfm_order_counts(NULL::date[]);
-- A role that crm_kpi.grant_reader() made reads them too.
DO $$
DECLARE
    r regrole;
BEGIN
    FOR r IN SELECT DISTINCT a.grantee::regrole
             FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
             WHERE c.oid = 'crm_kpi.rfm_cells'::regclass AND a.privilege_type = 'SELECT'
               AND a.grantee <> c.relowner AND a.grantee <> 0 LOOP
        EXECUTE format('GRANT SELECT ON crm_kpi.rfm_last_days, crm_kpi.rfm_order_counts TO %s', r);
    END LOOP;
END $$;

-- RFM recency and frequency scores as arrays, from the buyers per day of the last order (rfm_last_days) and per order
-- count (rfm_order_counts) instead of ranking every buyer: the scores of customer_kpis. (A value's rank() among the
-- buyers is 1 + the buyers of the smaller values; bigint arithmetic, as rank() and count() give there: the division
-- truncates.) Only the values that occur are listed, sorted, so that a far-off date costs nothing: width_bucket()
-- finds one by binary search.
CREATE OR REPLACE VIEW crm_kpi.rfm_scales AS
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

-- The segment of the rows kept only, after the sort.
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
