-- crm_kpi 0.1.6 -> 0.1.7: KPI tables of month rows, so that a panel totalling a long range reads a row per month.
-- rfm_month_cells (rfm_cells summed over the days of each month, kept from the customers' differences like rfm_cells,
-- both through crm_kpi.add_rfm_cells): crm_kpi.rfm_grid (the RFM segments panel, rfm_report()) reads it for the
-- months whose buyers all have one recency score, and the cells of rfm_cells only for the few where the score steps
-- up. service_months and satisfaction_months (service_daily and satisfaction_daily summed per month), kept with their
-- daily tables (the refresh recomputes a family's month table for the months of the stale days it takes): the views
-- <family>_monthly and <family>_quarterly read them, and the new crm_kpi.service_between() and satisfaction_between()
-- (the executive Service and Satisfaction panels, and others that total a range) give a range's rows with each whole
-- month as one row. The period views' comments are mended. All three are filled here.
\echo Use "ALTER EXTENSION crm_kpi UPDATE TO '0.1.7'" to load this file. \quit

-- rfm_cells summed over the days of each month: crm_kpi.rfm_grid reads a row per month, order count and channel for
-- the months whose buyers all have one recency score, and the cells of rfm_cells for the few others.
CREATE TABLE crm_kpi.rfm_month_cells (
    month date NOT NULL,
    orders bigint NOT NULL,
    channel text,
    buyers bigint NOT NULL,
    revenue numeric NOT NULL,
    last_order_epoch numeric NOT NULL,
    UNIQUE NULLS NOT DISTINCT (month, orders, channel)
) WITH (fillfactor = 90);
COMMENT ON TABLE crm_kpi.rfm_month_cells IS
    'crm_kpi.rfm_cells summed over the days of each month (the first day of the month of the buyers'' last order, in the tables'' time zone): buyers per month, completed orders and acquisition channel, their revenue and the sum of their last orders'' instants (epoch seconds); crm_kpi.rfm_grid reads it for the months whose buyers all have one recency score';

-- rfm_month_cells: rfm_cells summed per month, from the sources (fresh_) or from the stored rfm_cells (rollup_). keys
-- is ignored: all rows are returned.
CREATE FUNCTION crm_kpi.fresh_rfm_month_cells(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.rfm_month_cells
    LANGUAGE sql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT date_trunc('month', c.last_day::timestamp)::date, c.orders, c.channel, sum(c.buyers)::bigint, sum(c.revenue),
           sum(c.last_order_epoch)
    FROM crm_kpi.fresh_rfm_cells(NULL::date[]) c GROUP BY 1, 2, 3;
END;
COMMENT ON FUNCTION crm_kpi.fresh_rfm_month_cells(date[]) IS
    'crm_kpi.rfm_month_cells computed from the sources as of engine_state.as_of (keys is ignored: all rows)';

CREATE FUNCTION crm_kpi.rollup_rfm_month_cells(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.rfm_month_cells
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT date_trunc('month', c.last_day::timestamp)::date, c.orders, c.channel, sum(c.buyers)::bigint, sum(c.revenue),
           sum(c.last_order_epoch)
    FROM crm_kpi.rfm_cells c GROUP BY 1, 2, 3;
END;
COMMENT ON FUNCTION crm_kpi.rollup_rfm_month_cells(date[]) IS
    'crm_kpi.rfm_month_cells summed from the stored crm_kpi.rfm_cells (keys is ignored: all rows)';
-- rfm_cells and rfm_month_cells: each buyer counts once, under the day (or month) of its last order, its orders and its
-- channel (the first key, key_column, computed by key_sql from x.last_order_at). A row left with no buyers is deleted.
CREATE FUNCTION crm_kpi.add_rfm_cells(ids bigint[], target name, key_column name, key_sql text) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    written bigint;
    emptied tid[];
BEGIN
    EXECUTE format(
        'WITH d AS ( '
        '    SELECT %3$s AS k, x.orders, x.channel, sum(x.sign)::bigint AS buyers, sum(x.sign * x.revenue) AS revenue, '
        '           sum(x.sign * extract(epoch FROM x.last_order_at)) AS last_order_epoch '
        '    FROM (SELECT -1 AS sign, c.acquisition_channel AS channel, c.orders, c.revenue, c.last_order_at '
        '          FROM crm_kpi.customer_stats c WHERE c.customer_id = ANY($1) AND c.orders > 0 '
        '          UNION ALL '
        '          SELECT 1, f.acquisition_channel, f.orders, f.revenue, f.last_order_at '
        '          FROM crm_kpi.staged_customer_stats f WHERE f.orders > 0) x '
        '    GROUP BY 1, 2, 3), '
        'up AS ( '
        '    INSERT INTO crm_kpi.%1$I AS s '
        '    SELECT d.k, d.orders, d.channel, d.buyers, coalesce(d.revenue, 0), d.last_order_epoch FROM d '
        '    WHERE d.buyers <> 0 OR coalesce(d.revenue, 0) <> 0 OR d.last_order_epoch <> 0 '
        '    ON CONFLICT (%2$I, orders, channel) DO UPDATE SET '
        '        buyers = s.buyers + excluded.buyers, revenue = s.revenue + excluded.revenue, '
        '        last_order_epoch = s.last_order_epoch + excluded.last_order_epoch '
        '    RETURNING s.ctid, s.buyers) '
        'SELECT count(*), array_agg(up.ctid) FILTER (WHERE up.buyers = 0) FROM up',
        target, key_column, key_sql) INTO written, emptied USING ids;
    RETURN written + crm_kpi.delete_emptied(target, emptied);
END $$;
COMMENT ON FUNCTION crm_kpi.add_rfm_cells(bigint[], name, name, text) IS
    'Adds to a table of buyers per day or month of their last order, orders and channel (crm_kpi.<target>, its first key key_column computed by key_sql from x.last_order_at) the staged fresh customer_stats of some customers minus their stored ones, deleting the rows left with no buyers; returns the rows written';

CREATE OR REPLACE FUNCTION crm_kpi.add_rfm_cells_delta(ids bigint[]) RETURNS bigint
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    RETURN crm_kpi.add_rfm_cells(ids, 'rfm_cells', 'last_day',
                                 format('(x.last_order_at AT TIME ZONE %L)::date', (crm_kpi.engine_settings()).timezone));
COMMENT ON FUNCTION crm_kpi.add_rfm_cells_delta(bigint[]) IS
    'Adds to crm_kpi.rfm_cells the staged fresh customer_stats of some customers minus their stored ones, deleting the rows left with no buyers; returns the rows written';

CREATE FUNCTION crm_kpi.add_rfm_month_cells_delta(ids bigint[]) RETURNS bigint
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    RETURN crm_kpi.add_rfm_cells(ids, 'rfm_month_cells', 'month',
                                 format('date_trunc(''month'', x.last_order_at AT TIME ZONE %L)::date',
                                        (crm_kpi.engine_settings()).timezone));
COMMENT ON FUNCTION crm_kpi.add_rfm_month_cells_delta(bigint[]) IS
    'Adds to crm_kpi.rfm_month_cells what the staged fresh customer_stats of some customers change in it; returns the rows written';

INSERT INTO crm_kpi.kpi_tables VALUES
    ('rfm_month_cells', 18, '{month,orders,channel}', 'none', 'customer', '{customer,orders,customers,interactions}', 'rollup_rfm_month_cells', 'add_rfm_month_cells_delta');
INSERT INTO crm_kpi.kpi_table_state (table_name, watermark, last_refresh_at, last_duration, rows_touched, last_error,
                                     last_error_at, failures, retry_at)
SELECT 'rfm_month_cells', s.watermark, s.last_refresh_at, s.last_duration, NULL, s.last_error, s.last_error_at, s.failures,
       s.retry_at
FROM crm_kpi.kpi_table_state s WHERE s.table_name = 'rfm_cells';
-- Its scratch table, as the install script makes it.
CREATE UNLOGGED TABLE crm_kpi.staged_rfm_month_cells (LIKE crm_kpi.rfm_month_cells);
COMMENT ON TABLE crm_kpi.staged_rfm_month_cells IS
    'Scratch of the refresh engine: the fresh rows of crm_kpi.rfm_month_cells for the keys of the batch being refreshed; empty outside a refresh or rebuild';
REVOKE EXECUTE ON FUNCTION crm_kpi.add_rfm_cells(bigint[], name, name, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION crm_kpi.add_rfm_month_cells_delta(bigint[]) FROM PUBLIC;
INSERT INTO crm_kpi.rfm_month_cells SELECT * FROM crm_kpi.rollup_rfm_month_cells(NULL::date[]);
-- A role that crm_kpi.grant_reader() made reads it too, and may call its read-only functions.
DO $$
DECLARE
    r regrole;
BEGIN
    FOR r IN SELECT DISTINCT a.grantee::regrole
             FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
             WHERE c.oid = 'crm_kpi.rfm_cells'::regclass AND a.privilege_type = 'SELECT'
               AND a.grantee <> c.relowner AND a.grantee <> 0 LOOP
        EXECUTE format('GRANT SELECT ON crm_kpi.rfm_month_cells TO %s', r);
        EXECUTE format('GRANT EXECUTE ON FUNCTION crm_kpi.fresh_rfm_month_cells(date[]), '
                       'crm_kpi.rollup_rfm_month_cells(date[]) TO %s', r);
    END LOOP;
END $$;

-- The buyers of rfm_cells per RFM recency and frequency score, segment and channel. A month whose days that occur all
-- have one recency score (all but the few where the score steps up: at most 4) is read from rfm_month_cells, a row per
-- order count and channel, instead of a row per day besides.
CREATE OR REPLACE VIEW crm_kpi.rfm_grid AS
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

-- service_daily summed per month: what the views service_monthly and service_quarterly and crm_kpi.service_between()
-- read, a row per month instead of a row per day.
CREATE TABLE crm_kpi.service_months (
    month date PRIMARY KEY,
    opened bigint NOT NULL,
    unanswered bigint NOT NULL,
    resolved bigint NOT NULL,
    resolved_within_sla bigint NOT NULL,
    first_response crm_kpi.sketch,
    resolution crm_kpi.sketch,
    replies_on_resolved bigint NOT NULL,
    complaints bigint NOT NULL
);
COMMENT ON TABLE crm_kpi.service_months IS
    'crm_kpi.service_daily summed per month (the first day of the month the tickets were opened in, in the tables'' time zone): opened, still unanswered, resolved, resolved within crm_kpi.resolution_sla, the sketches of first response and resolution times merged, replies on resolved tickets, complaints';
-- satisfaction_daily summed per month: what the views satisfaction_monthly and satisfaction_quarterly and
-- crm_kpi.satisfaction_between() read, a row per month instead of a row per day.
CREATE TABLE crm_kpi.satisfaction_months (
    month date PRIMARY KEY,
    nps crm_kpi.nps_summary,
    csat crm_kpi.csat_summary
);
COMMENT ON TABLE crm_kpi.satisfaction_months IS
    'crm_kpi.satisfaction_daily summed per month (the first day of the month the responses were answered in, in the tables'' time zone): the NPS and CSAT summaries merged';
INSERT INTO crm_kpi.kpi_tables VALUES
    ('service_months', 19, '{month}', 'month', 'service', '{service,tickets}', 'rollup_service_months', NULL),
    ('satisfaction_months', 20, '{month}', 'month', 'satisfaction', '{satisfaction,survey_responses}', 'rollup_satisfaction_months', NULL);
INSERT INTO crm_kpi.kpi_table_state (table_name, watermark, last_refresh_at, last_duration, rows_touched, last_error,
                                     last_error_at, failures, retry_at)
SELECT t.name, s.watermark, s.last_refresh_at, s.last_duration, NULL, s.last_error, s.last_error_at, s.failures, s.retry_at
FROM crm_kpi.kpi_table_state s
JOIN (VALUES ('service_months'::name, 'service_daily'::name), ('satisfaction_months', 'satisfaction_daily')) t (name, daily)
  ON s.table_name = t.daily;
-- Their scratch tables, as the install script makes them.
DO $$
DECLARE
    t name;
BEGIN
    FOREACH t IN ARRAY ARRAY['service_months', 'satisfaction_months']::name[] LOOP
        EXECUTE format('CREATE UNLOGGED TABLE crm_kpi.%I (LIKE crm_kpi.%I)', 'staged_' || t, t);
        EXECUTE format('COMMENT ON TABLE crm_kpi.%I IS %L', 'staged_' || t,
                       format('Scratch of the refresh engine: the fresh rows of crm_kpi.%I for the keys of the batch '
                              'being refreshed; empty outside a refresh or rebuild', t));
    END LOOP;
END $$;

-- The days of some months (NULL for NULL: all). An infinite date is no month: it has no days.
CREATE FUNCTION crm_kpi.days_of_months(months date[]) RETURNS date[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN months IS NOT NULL THEN
               ARRAY(SELECT generate_series(f.first, f.first + interval '1 month' - interval '1 day', interval '1 day')::date
                     FROM unnest(months) m CROSS JOIN LATERAL (SELECT date_trunc('month', m::timestamp) AS first) f
                     WHERE isfinite(m)) END;
COMMENT ON FUNCTION crm_kpi.days_of_months(date[]) IS
    'The days of the months of the given dates (NULL when months is NULL: all days; none for an infinite date), for computing month rows from day rows';

-- service_months: service_daily summed per month, from the sources (fresh_) or from the stored service_daily, which
-- a refresh or rebuild writes first (rollup_), for the given months (all when NULL).
CREATE FUNCTION crm_kpi.fresh_service_months(months date[] DEFAULT NULL) RETURNS SETOF crm_kpi.service_months
    LANGUAGE sql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT date_trunc('month', d.day::timestamp)::date, sum(d.opened)::bigint, sum(d.unanswered)::bigint,
           sum(d.resolved)::bigint, sum(d.resolved_within_sla)::bigint, crm_kpi.rollup(d.first_response),
           crm_kpi.rollup(d.resolution), sum(d.replies_on_resolved)::bigint, sum(d.complaints)::bigint
    FROM crm_kpi.fresh_service_daily(crm_kpi.days_of_months(months)) d
    GROUP BY 1;
END;
COMMENT ON FUNCTION crm_kpi.fresh_service_months(date[]) IS
    'crm_kpi.service_months computed from the sources, for the given months (all when NULL)';

CREATE FUNCTION crm_kpi.rollup_service_months(months date[] DEFAULT NULL) RETURNS SETOF crm_kpi.service_months
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT date_trunc('month', d.day::timestamp)::date, sum(d.opened)::bigint, sum(d.unanswered)::bigint,
           sum(d.resolved)::bigint, sum(d.resolved_within_sla)::bigint, crm_kpi.rollup(d.first_response),
           crm_kpi.rollup(d.resolution), sum(d.replies_on_resolved)::bigint, sum(d.complaints)::bigint
    FROM crm_kpi.service_daily d
    WHERE months IS NULL OR date_trunc('month', d.day::timestamp)::date = ANY(months)
    GROUP BY 1;
END;
COMMENT ON FUNCTION crm_kpi.rollup_service_months(date[]) IS
    'crm_kpi.service_months summed from the stored crm_kpi.service_daily, for the given months (all when NULL)';
-- satisfaction_months: satisfaction_daily summed per month, from the sources (fresh_) or from the stored
-- satisfaction_daily, which a refresh or rebuild writes first (rollup_), for the given months (all when NULL).
CREATE FUNCTION crm_kpi.fresh_satisfaction_months(months date[] DEFAULT NULL) RETURNS SETOF crm_kpi.satisfaction_months
    LANGUAGE sql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT date_trunc('month', d.day::timestamp)::date, crm_kpi.rollup(d.nps), crm_kpi.rollup(d.csat)
    FROM crm_kpi.fresh_satisfaction_daily(crm_kpi.days_of_months(months)) d
    GROUP BY 1;
END;
COMMENT ON FUNCTION crm_kpi.fresh_satisfaction_months(date[]) IS
    'crm_kpi.satisfaction_months computed from the sources, for the given months (all when NULL)';

CREATE FUNCTION crm_kpi.rollup_satisfaction_months(months date[] DEFAULT NULL) RETURNS SETOF crm_kpi.satisfaction_months
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT date_trunc('month', d.day::timestamp)::date, crm_kpi.rollup(d.nps), crm_kpi.rollup(d.csat)
    FROM crm_kpi.satisfaction_daily d
    WHERE months IS NULL OR date_trunc('month', d.day::timestamp)::date = ANY(months)
    GROUP BY 1;
END;
COMMENT ON FUNCTION crm_kpi.rollup_satisfaction_months(date[]) IS
    'crm_kpi.satisfaction_months summed from the stored crm_kpi.satisfaction_daily, for the given months (all when NULL)';
INSERT INTO crm_kpi.service_months SELECT * FROM crm_kpi.rollup_service_months(NULL::date[]);
INSERT INTO crm_kpi.satisfaction_months SELECT * FROM crm_kpi.rollup_satisfaction_months(NULL::date[]);

-- One batch: up to crm_kpi.refresh_batch_size customers, or else as many days and months of each family. Returns the
-- keys taken. Each family runs in a subtransaction: one that fails (its tables and error go into failed) leaves its
-- keys queued and writes nothing, and the tables in failed are left alone for the rest of the run.
CREATE OR REPLACE FUNCTION crm_kpi.refresh_batch(INOUT tables jsonb, INOUT failed jsonb, OUT keys bigint) RETURNS record
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := current_setting('crm_kpi.refresh_batch_size')::integer;
    -- what a batch of customers writes
    customer_tables name[] := ARRAY(SELECT k.table_name FROM crm_kpi.kpi_tables k
                                    WHERE k.key_grain = 'customer' OR k.delta_function IS NOT NULL ORDER BY k.position);
    ids bigint[];
    days date[];
    t record;
    g record;
    rows bigint;
    part jsonb;
    err text;
    errstate text;
BEGIN
    -- Keys captured under a source's kind become keys of the KPI families they make stale.
    -- A routed key keeps the time its oldest change was queued at (the watermark is taken from the pending keys).
    WITH taken AS (DELETE FROM crm_kpi.change_queue q
                   WHERE q.target IN (SELECT k.kind FROM crm_kpi.capture_keys k)
                   RETURNING q.target, q.day, q.customer_id, q.queued_at)
    INSERT INTO crm_kpi.change_queue (target, day, customer_id, queued_at)
    SELECT x.target, x.day, x.customer_id, min(x.queued_at)
    FROM (SELECT r.target, CASE r.grain WHEN 'month' THEN date_trunc('month', k.day)::date ELSE k.day END AS day,
                 NULL::bigint AS customer_id, k.queued_at
          FROM taken k JOIN crm_kpi.queue_routes r ON r.kind = k.target
          WHERE k.day IS NOT NULL AND (k.customer_id IS NULL OR NOT r.customerless_only)
          UNION ALL
          SELECT 'customer', NULL, k.customer_id, k.queued_at FROM taken k WHERE k.customer_id IS NOT NULL) x
    GROUP BY x.target, x.day, x.customer_id;
    GET DIAGNOSTICS rows = ROW_COUNT;
    IF rows > 0 THEN
        -- The queue's size swings between refreshes: without fresh statistics, the joins below may be planned
        -- for an empty queue (nested loops over thousands of keys).
        ANALYZE crm_kpi.change_queue;
    END IF;
    keys := 0;
    IF NOT failed ?| customer_tables::text[] THEN
        part := tables;
        BEGIN
            WITH picked AS (SELECT DISTINCT q.customer_id FROM crm_kpi.change_queue q
                            WHERE q.target = 'customer' AND q.customer_id IS NOT NULL LIMIT n),
            taken AS (DELETE FROM crm_kpi.change_queue q USING picked p
                      WHERE q.target = 'customer' AND q.customer_id = p.customer_id RETURNING q.customer_id)
            SELECT array_agg(DISTINCT customer_id) INTO ids FROM taken;
            IF ids IS NOT NULL THEN
                PERFORM crm_kpi.report_activity(format('customers, %s of them (%s keys still queued)',
                                                       cardinality(ids), (SELECT count(*) FROM crm_kpi.change_queue)));
                FOR t IN SELECT k.table_name, k.stage_function FROM crm_kpi.kpi_tables k WHERE k.key_grain = 'customer'
                         ORDER BY k.position LOOP
                    PERFORM crm_kpi.stage_fresh(t.table_name, ids, t.stage_function);
                END LOOP;
                -- Before the customer tables are replaced: the tables summed over customers change by fresh - stored.
                FOR t IN SELECT k.table_name, k.delta_function FROM crm_kpi.kpi_tables k
                         WHERE k.delta_function IS NOT NULL ORDER BY k.position LOOP
                    EXECUTE format('SELECT crm_kpi.%I($1)', t.delta_function) INTO rows USING ids;
                    part := jsonb_set(part, ARRAY[t.table_name::text], to_jsonb(coalesce((part ->> t.table_name)::bigint, 0) + rows));
                END LOOP;
                FOR t IN SELECT k.table_name FROM crm_kpi.kpi_tables k WHERE k.key_grain = 'customer' ORDER BY k.position LOOP
                    rows := crm_kpi.apply_fresh(t.table_name, ids);
                    part := jsonb_set(part, ARRAY[t.table_name::text], to_jsonb(coalesce((part ->> t.table_name)::bigint, 0) + rows));
                END LOOP;
                tables := part;
                keys := cardinality(ids);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, errstate = RETURNED_SQLSTATE;
            failed := crm_kpi.add_failure(failed, customer_tables, errstate, err);
        END;
        IF keys > 0 THEN
            RETURN;
        END IF;
    END IF;
    -- A family's keys are of the grain of its first table: a month table after day tables (service_months after
    -- service_daily) is recomputed for the months of the days taken.
    FOR g IN SELECT k.own_target, (array_agg(k.key_grain ORDER BY k.position))[1] AS key_grain,
                    array_agg(k.table_name ORDER BY k.position) AS group_tables
             FROM crm_kpi.kpi_tables k WHERE k.key_grain IN ('day', 'month')
             GROUP BY k.own_target ORDER BY min(k.position) LOOP
        CONTINUE WHEN failed ?| g.group_tables::text[];
        part := tables;
        BEGIN
            WITH picked AS (SELECT DISTINCT q.day FROM crm_kpi.change_queue q
                            WHERE q.target = g.own_target AND q.day IS NOT NULL LIMIT n),
            taken AS (DELETE FROM crm_kpi.change_queue q USING picked p
                      WHERE q.target = g.own_target AND q.day = p.day RETURNING q.day)
            SELECT array_agg(DISTINCT taken.day) INTO days FROM taken;
            IF days IS NOT NULL THEN
                FOR t IN SELECT k.table_name, k.stage_function, k.key_grain,
                                CASE WHEN k.key_grain = g.key_grain THEN days
                                     ELSE ARRAY(SELECT DISTINCT date_trunc('month', d::timestamp)::date
                                                FROM unnest(days) d) END AS table_keys
                         FROM crm_kpi.kpi_tables k
                         WHERE k.table_name = ANY(g.group_tables) ORDER BY k.position LOOP
                    PERFORM crm_kpi.report_activity(format('%s, %s %s (%s keys still queued)', t.table_name,
                                                           cardinality(t.table_keys), t.key_grain || 's',
                                                           (SELECT count(*) FROM crm_kpi.change_queue)));
                    PERFORM crm_kpi.stage_fresh(t.table_name, t.table_keys, t.stage_function);
                    rows := crm_kpi.apply_fresh(t.table_name, t.table_keys);
                    part := jsonb_set(part, ARRAY[t.table_name::text], to_jsonb(coalesce((part ->> t.table_name)::bigint, 0) + rows));
                END LOOP;
                tables := part;
                keys := keys + cardinality(days);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, errstate = RETURNED_SQLSTATE;
            failed := crm_kpi.add_failure(failed, g.group_tables, errstate, err);
        END;
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.refresh_batch(jsonb, jsonb) IS
    'Takes one batch of stale keys from the queue (customers first, then days and months, at most crm_kpi.refresh_batch_size of each family) and recomputes them, each family in a subtransaction; adds the rows written to the per-table counts (tables); a family that fails keeps its keys queued and writes nothing, and its tables with the error go into failed, whose tables it leaves alone';

-- The views of every family again: the months and quarters of service and satisfaction read their month tables, and
-- the comments are mended.
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
            EXECUTE format('CREATE OR REPLACE VIEW crm_kpi.%I AS SELECT date_trunc(%L, %s)::date AS %I%s, %s '
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
-- <family>_months, the other days as their rows of <family>_daily. Summed and rolled up, they give what the days give.
-- Like whole_months(), without SET or STRICT so that the planner inlines them into a panel's query (a NULL end gives
-- no rows): called, each would be planned again for every query.
CREATE FUNCTION crm_kpi.service_between(from_day date, to_day date) RETURNS SETOF crm_kpi.service_daily
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    WITH w AS MATERIALIZED (SELECT crm_kpi.whole_months(from_day, to_day) AS months)  -- computed once
    SELECT m.month, m.opened, m.unanswered, m.resolved, m.resolved_within_sla, m.first_response, m.resolution,
           m.replies_on_resolved, m.complaints
    FROM w JOIN crm_kpi.service_months m ON m.month <@ w.months
    UNION ALL
    SELECT s.day, s.opened, s.unanswered, s.resolved, s.resolved_within_sla, s.first_response, s.resolution,
           s.replies_on_resolved, s.complaints
    FROM w JOIN crm_kpi.service_daily s ON s.day >= from_day AND s.day <= to_day
    WHERE NOT s.day <@ w.months;
END;
COMMENT ON FUNCTION crm_kpi.service_between(date, date) IS
    'The rows of crm_kpi.service_daily from from_day to to_day, with each whole month among them replaced by its row of crm_kpi.service_months (under the month''s first day): summed and rolled up, the same as those days, from a row per month. A panel passes $__timeFrom() and $__timeTo(), which become the dates of the range''s ends as in $__timeFilter(day)';

CREATE FUNCTION crm_kpi.satisfaction_between(from_day date, to_day date) RETURNS SETOF crm_kpi.satisfaction_daily
    LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    WITH w AS MATERIALIZED (SELECT crm_kpi.whole_months(from_day, to_day) AS months)  -- computed once
    SELECT m.month, m.nps, m.csat
    FROM w JOIN crm_kpi.satisfaction_months m ON m.month <@ w.months
    UNION ALL
    SELECT s.day, s.nps, s.csat
    FROM w JOIN crm_kpi.satisfaction_daily s ON s.day >= from_day AND s.day <= to_day
    WHERE NOT s.day <@ w.months;
END;
COMMENT ON FUNCTION crm_kpi.satisfaction_between(date, date) IS
    'The rows of crm_kpi.satisfaction_daily from from_day to to_day, with each whole month among them replaced by its row of crm_kpi.satisfaction_months (under the month''s first day): rolled up, the same as those days, from a row per month. A panel passes $__timeFrom() and $__timeTo(), which become the dates of the range''s ends as in $__timeFilter(day)';

-- A role that crm_kpi.grant_reader() made reads the month tables too, and may call the new read-only functions.
DO $$
DECLARE
    r regrole;
BEGIN
    FOR r IN SELECT DISTINCT a.grantee::regrole
             FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
             WHERE c.oid = 'crm_kpi.service_daily'::regclass AND a.privilege_type = 'SELECT'
               AND a.grantee <> c.relowner AND a.grantee <> 0 LOOP
        EXECUTE format('GRANT SELECT ON crm_kpi.service_months, crm_kpi.satisfaction_months TO %s', r);
        EXECUTE format('GRANT EXECUTE ON FUNCTION crm_kpi.days_of_months(date[]), crm_kpi.fresh_service_months(date[]), '
                       'crm_kpi.rollup_service_months(date[]), crm_kpi.fresh_satisfaction_months(date[]), '
                       'crm_kpi.rollup_satisfaction_months(date[]), crm_kpi.whole_months(date, date), '
                       'crm_kpi.service_between(date, date), crm_kpi.satisfaction_between(date, date) TO %s', r);
    END LOOP;
END $$;
