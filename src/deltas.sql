-- deltas.sql: how a batch of recomputed customers changes the KPI tables summed over customers: by the difference
-- between their staged fresh rows (crm_kpi.staged_<table>) and their stored ones, never by rescanning days or months.
-- Each runs before the customer tables are replaced; counts and numeric sums make every difference exact.

-- Delete rows of a KPI table by their ctids (those an upsert left empty); returns how many.
CREATE FUNCTION crm_kpi.delete_emptied(target name, emptied tid[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    deleted bigint := 0;
BEGIN
    IF emptied IS NOT NULL THEN
        EXECUTE format('DELETE FROM crm_kpi.%I s WHERE s.ctid = ANY($1)', target) USING emptied;
        GET DIAGNOSTICS deleted = ROW_COUNT;
    END IF;
    RETURN deleted;
END $$;
COMMENT ON FUNCTION crm_kpi.delete_emptied(name, tid[]) IS
    'Deletes the rows of crm_kpi.<target> at the given ctids (rows a difference left with nothing to count, in this transaction); returns the rows deleted';

-- sales_daily and its sum over reps: the customers' parts (customer_days). A row left with no orders is deleted.
CREATE FUNCTION crm_kpi.add_sales_parts(ids bigint[], target name, keys text) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    written bigint;
    emptied tid[];
BEGIN
    EXECUTE format(
        'WITH d AS ( '
        '    SELECT %2$s, sum(x.orders)::bigint AS orders, sum(x.revenue) AS revenue, '
        '           sum(x.new_customers)::bigint AS new_customers, sum(x.reactivated_customers)::bigint AS reactivated_customers '
        '    FROM (SELECT %2$s, -c.orders AS orders, -c.revenue AS revenue, '
        '                 -c.new_customers AS new_customers, -c.reactivated_customers AS reactivated_customers '
        '          FROM crm_kpi.customer_days c WHERE c.customer_id = ANY($1) '
        '          UNION ALL '
        '          SELECT %2$s, f.orders, f.revenue, f.new_customers, f.reactivated_customers '
        '          FROM crm_kpi.staged_customer_days f) x '
        '    GROUP BY %2$s '
        '    HAVING sum(x.orders) <> 0 OR sum(x.revenue) <> 0 OR sum(x.new_customers) <> 0 OR sum(x.reactivated_customers) <> 0), '
        'up AS ( '
        '    INSERT INTO crm_kpi.%1$I AS s SELECT * FROM d '
        '    ON CONFLICT (%2$s) DO UPDATE SET '
        '        orders = s.orders + excluded.orders, revenue = s.revenue + excluded.revenue, '
        '        new_customers = s.new_customers + excluded.new_customers, '
        '        reactivated_customers = s.reactivated_customers + excluded.reactivated_customers '
        '    RETURNING s.ctid, s.orders) '
        'SELECT count(*), array_agg(up.ctid) FILTER (WHERE up.orders = 0) FROM up',
        target, keys) INTO written, emptied USING ids;
    RETURN written + crm_kpi.delete_emptied(target, emptied);
END $$;
COMMENT ON FUNCTION crm_kpi.add_sales_parts(bigint[], name, text) IS
    'Adds to a sales table (crm_kpi.<target>, keyed by the columns keys lists) the staged fresh customer_days of some customers minus their stored ones, deleting the rows left with no orders; returns the rows written';

CREATE FUNCTION crm_kpi.add_sales_delta(ids bigint[]) RETURNS bigint
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    RETURN crm_kpi.add_sales_parts(ids, 'sales_daily', 'day, rep_id, channel');
COMMENT ON FUNCTION crm_kpi.add_sales_delta(bigint[]) IS
    'Adds to crm_kpi.sales_daily what the staged fresh customer_days of some customers change in it; returns the rows written';

CREATE FUNCTION crm_kpi.add_sales_channel_delta(ids bigint[]) RETURNS bigint
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    RETURN crm_kpi.add_sales_parts(ids, 'sales_channel_daily', 'day, channel');
COMMENT ON FUNCTION crm_kpi.add_sales_channel_delta(bigint[]) IS
    'Adds to crm_kpi.sales_channel_daily what the staged fresh customer_days of some customers change in it; returns the rows written';

-- cohort_monthly: the customers' parts (crm_kpi.customer_month_parts). A cell left with no customers is deleted.
CREATE FUNCTION crm_kpi.add_cohort_delta(ids bigint[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    written bigint;
    emptied tid[];
BEGIN
    WITH d AS (
        SELECT x.month, x.cohort_month, sum(x.customers)::bigint AS customers, sum(x.revenue) AS revenue
        FROM (SELECT c.month, c.cohort_month, -1 AS customers, -c.revenue AS revenue
              FROM crm_kpi.customer_month_parts(false, ids, NULL) c
              UNION ALL
              SELECT f.month, f.cohort_month, 1, f.revenue FROM crm_kpi.customer_month_parts(true, NULL, NULL) f) x
        GROUP BY 1, 2
        HAVING sum(x.customers) <> 0 OR sum(x.revenue) <> 0),
    up AS (
        INSERT INTO crm_kpi.cohort_monthly AS s
        SELECT d.month, d.cohort_month, crm_kpi.month_offset(d.month, d.cohort_month), d.customers, d.revenue
        FROM d
        ON CONFLICT (month, cohort_month) DO UPDATE SET
            customers = s.customers + excluded.customers, revenue = s.revenue + excluded.revenue
        RETURNING s.ctid, s.customers)
    SELECT count(*), array_agg(up.ctid) FILTER (WHERE up.customers = 0) INTO written, emptied FROM up;
    RETURN written + crm_kpi.delete_emptied('cohort_monthly', emptied);
END $$;
COMMENT ON FUNCTION crm_kpi.add_cohort_delta(bigint[]) IS
    'Adds to crm_kpi.cohort_monthly the parts of some customers derived from their staged fresh customer_days and customer_stats minus those derived from their stored ones (crm_kpi.customer_month_parts), deleting the cells left with no customers; returns the rows written';

-- marketing_monthly: new customers per month of first order and channel, from customer_stats. A row whose new
-- customers fall to 0 may still stand for spend, or not: its month is queued, to be recomputed from the sources.
CREATE FUNCTION crm_kpi.add_marketing_delta(ids bigint[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
    written bigint;
    emptied date[];
BEGIN
    WITH d AS (
        SELECT x.month, x.channel, sum(x.n)::bigint AS n
        FROM (SELECT date_trunc('month', c.first_order_at AT TIME ZONE st.timezone)::date AS month,
                     c.acquisition_channel AS channel, -1 AS n
              FROM crm_kpi.customer_stats c WHERE c.customer_id = ANY(ids) AND c.first_order_at IS NOT NULL
              UNION ALL
              SELECT date_trunc('month', f.first_order_at AT TIME ZONE st.timezone)::date, f.acquisition_channel, 1
              FROM crm_kpi.staged_customer_stats f WHERE f.first_order_at IS NOT NULL) x
        GROUP BY 1, 2
        HAVING sum(x.n) <> 0),
    up AS (
        INSERT INTO crm_kpi.marketing_monthly AS s SELECT d.month, d.channel, 0, d.n FROM d
        ON CONFLICT (month, channel) DO UPDATE SET new_customers = s.new_customers + excluded.new_customers
        RETURNING s.month, s.new_customers)
    SELECT count(*), array_agg(DISTINCT up.month) FILTER (WHERE up.new_customers = 0) INTO written, emptied FROM up;
    IF emptied IS NOT NULL THEN
        INSERT INTO crm_kpi.change_queue (target, day) SELECT 'marketing', m FROM unnest(emptied) m;
    END IF;
    RETURN written;
END $$;
COMMENT ON FUNCTION crm_kpi.add_marketing_delta(bigint[]) IS
    'Adds to crm_kpi.marketing_monthly the new customers of the staged fresh customer_stats of some customers minus their stored ones; queues the months where a row''s new customers fell to 0 (recomputed from the sources: the row stays only if it has spend); returns the rows written';

-- customer_counts: each customer counts once, under its channel and stage. A row left with no customers is deleted.
CREATE FUNCTION crm_kpi.add_customer_counts_delta(ids bigint[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
    written bigint;
    emptied tid[];
BEGIN
    WITH d AS (
        SELECT x.channel, x.stage, date_trunc('month', x.created_at AT TIME ZONE st.timezone)::date AS lead_month,
               sum(x.sign)::bigint AS customers,
               sum(x.sign) FILTER (WHERE x.orders >= 1) AS buyers, sum(x.sign) FILTER (WHERE x.orders >= 2) AS repeaters,
               sum(x.sign * x.revenue) FILTER (WHERE x.orders >= 1) AS revenue
        FROM (SELECT -1 AS sign, c.acquisition_channel AS channel, c.stage, c.created_at, c.orders, c.revenue
              FROM crm_kpi.customer_stats c WHERE c.customer_id = ANY(ids)
              UNION ALL
              SELECT 1, f.acquisition_channel, f.stage, f.created_at, f.orders, f.revenue
              FROM crm_kpi.staged_customer_stats f) x
        GROUP BY 1, 2, 3),
    nonzero AS (
        SELECT d.channel, d.stage, d.lead_month, d.customers, coalesce(d.buyers, 0)::bigint AS buyers,
               coalesce(d.repeaters, 0)::bigint AS repeaters, coalesce(d.revenue, 0) AS revenue
        FROM d
        WHERE d.customers <> 0 OR coalesce(d.buyers, 0) <> 0 OR coalesce(d.repeaters, 0) <> 0 OR coalesce(d.revenue, 0) <> 0),
    up AS (
        INSERT INTO crm_kpi.customer_counts AS s SELECT * FROM nonzero
        ON CONFLICT (channel, stage, lead_month) DO UPDATE SET
            customers = s.customers + excluded.customers, buyers = s.buyers + excluded.buyers,
            repeat_buyers = s.repeat_buyers + excluded.repeat_buyers, buyer_revenue = s.buyer_revenue + excluded.buyer_revenue
        RETURNING s.ctid, s.customers)
    SELECT count(*), array_agg(up.ctid) FILTER (WHERE up.customers = 0) INTO written, emptied FROM up;
    RETURN written + crm_kpi.delete_emptied('customer_counts', emptied);
END $$;
COMMENT ON FUNCTION crm_kpi.add_customer_counts_delta(bigint[]) IS
    'Adds to crm_kpi.customer_counts the staged fresh customer_stats of some customers minus their stored ones, deleting the rows left with no customers; returns the rows written';

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

CREATE FUNCTION crm_kpi.add_rfm_cells_delta(ids bigint[]) RETURNS bigint
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

-- customer_events_daily: the events of the customers and of their spells, by day and channel. A row left with
-- nothing to count is deleted.
CREATE FUNCTION crm_kpi.add_customer_events_delta(ids bigint[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
    written bigint;
    emptied tid[];
BEGIN
    WITH ev AS (
        SELECT -1 AS sign, c.acquisition_channel AS channel, x.at, x.kind
        FROM crm_kpi.customer_stats c CROSS JOIN LATERAL crm_kpi.customer_events(c.created_at, c.first_order_at) x
        WHERE c.customer_id = ANY(ids)
        UNION ALL
        SELECT 1, f.acquisition_channel, x.at, x.kind
        FROM crm_kpi.staged_customer_stats f CROSS JOIN LATERAL crm_kpi.customer_events(f.created_at, f.first_order_at) x
        UNION ALL
        SELECT -1, c.acquisition_channel, x.at, x.kind
        FROM crm_kpi.customer_spells p JOIN crm_kpi.customer_stats c ON c.customer_id = p.customer_id
        CROSS JOIN LATERAL crm_kpi.spell_events(p.started_at, p.ended_at) x
        WHERE p.customer_id = ANY(ids)
        UNION ALL
        SELECT 1, f.acquisition_channel, x.at, x.kind
        FROM crm_kpi.staged_customer_spells p JOIN crm_kpi.staged_customer_stats f ON f.customer_id = p.customer_id
        CROSS JOIN LATERAL crm_kpi.spell_events(p.started_at, p.ended_at) x),
    d AS (
        SELECT (ev.at AT TIME ZONE st.timezone)::date AS day, ev.channel,
               coalesce(sum(ev.sign) FILTER (WHERE ev.kind = 1), 0)::bigint AS created,
               coalesce(sum(ev.sign) FILTER (WHERE ev.kind = 2), 0)::bigint AS first_bought,
               coalesce(sum(ev.sign) FILTER (WHERE ev.kind = 3), 0)::bigint AS leads_ended,
               coalesce(sum(ev.sign) FILTER (WHERE ev.kind = 4), 0)::bigint AS spells_started,
               coalesce(sum(ev.sign) FILTER (WHERE ev.kind = 5), 0)::bigint AS spells_ended
        FROM ev WHERE ev.at IS NOT NULL
        GROUP BY 1, 2),
    up AS (
        INSERT INTO crm_kpi.customer_events_daily AS s
        SELECT * FROM d
        WHERE d.created <> 0 OR d.first_bought <> 0 OR d.leads_ended <> 0 OR d.spells_started <> 0 OR d.spells_ended <> 0
        ON CONFLICT (day, channel) DO UPDATE SET
            created = s.created + excluded.created, first_bought = s.first_bought + excluded.first_bought,
            leads_ended = s.leads_ended + excluded.leads_ended, spells_started = s.spells_started + excluded.spells_started,
            spells_ended = s.spells_ended + excluded.spells_ended
        RETURNING s.ctid, s.created, s.first_bought, s.leads_ended, s.spells_started, s.spells_ended)
    SELECT count(*), array_agg(up.ctid) FILTER (WHERE up.created = 0 AND up.first_bought = 0 AND up.leads_ended = 0
                                                  AND up.spells_started = 0 AND up.spells_ended = 0)
      INTO written, emptied FROM up;
    RETURN written + crm_kpi.delete_emptied('customer_events_daily', emptied);
END $$;
COMMENT ON FUNCTION crm_kpi.add_customer_events_delta(bigint[]) IS
    'Adds to crm_kpi.customer_events_daily the events of the staged fresh customer_stats and customer_spells of some customers minus those of their stored ones, deleting the rows left with nothing to count; returns the rows written';

-- The spells of some customers that the staged fresh ones remove (sign -1) or add (sign 1).
CREATE FUNCTION crm_kpi.changed_spells(ids bigint[])
    RETURNS TABLE (sign integer, customer_id bigint, spell integer, started_at timestamptz, ended_at timestamptz)
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    WITH o AS MATERIALIZED (SELECT * FROM crm_kpi.customer_spells s WHERE s.customer_id = ANY(ids))
    SELECT -1, o.* FROM o
    WHERE NOT EXISTS (SELECT FROM crm_kpi.staged_customer_spells f
                      WHERE f.customer_id = o.customer_id AND f.spell = o.spell
                        AND f.started_at = o.started_at AND f.ended_at = o.ended_at)
    UNION ALL
    SELECT 1, f.* FROM crm_kpi.staged_customer_spells f
    WHERE NOT EXISTS (SELECT FROM o
                      WHERE o.customer_id = f.customer_id AND o.spell = f.spell
                        AND o.started_at = f.started_at AND o.ended_at = f.ended_at);
END $$;
COMMENT ON FUNCTION crm_kpi.changed_spells(bigint[]) IS
    'The stored spells of some customers that their staged fresh spells (crm_kpi.staged_customer_spells) remove, with sign -1, and those they add, with sign 1';

-- churn_monthly: each spell counts at the start of every month it spans, in the month it churns (once that has
-- happened) and in the month it starts. When the change moves the first month (that of the first spell, from which
-- the table has a row per month), the months the spells touch are queued instead.
CREATE FUNCTION crm_kpi.add_churn_delta(ids bigint[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
    first_month date := (SELECT min(c.month) FROM crm_kpi.churn_monthly c);
    written bigint;
    -- The first month after the change: that of the first spell of the other customers or of the fresh ones.
    new_first timestamptz := least((SELECT min(s.started_at) FROM crm_kpi.customer_spells s WHERE s.customer_id <> ALL(ids)),
                                   (SELECT min(f.started_at) FROM crm_kpi.staged_customer_spells f));
    new_first_month date := date_trunc('month', new_first AT TIME ZONE st.timezone)::date;
    last_month date := date_trunc('month', st.as_of AT TIME ZONE st.timezone)::date;
BEGIN
    IF first_month IS NULL AND new_first IS NULL THEN
        RETURN 0;  -- no spell before, none after
    END IF;
    IF first_month IS DISTINCT FROM new_first_month THEN
        -- The months the spells touch, and those that appear or disappear with the first month (all of them when
        -- the table was empty or will be).
        PERFORM crm_kpi.queue_spell_effects(ids);
        INSERT INTO crm_kpi.change_queue (target, day)
        SELECT 'churn', g::date
        FROM generate_series(least(first_month, new_first_month),
                             CASE WHEN first_month IS NULL OR new_first_month IS NULL THEN last_month
                                  ELSE greatest(first_month, new_first_month) END,
                             interval '1 month') g;
        RETURN 0;
    END IF;
    WITH c AS MATERIALIZED (SELECT * FROM crm_kpi.changed_spells(ids)),
    contribution AS (
        -- at the start of each month after the one it starts in, up to the one it ends in and that of as_of
        SELECT g::date AS month, c.sign AS at_start, 0 AS churned, 0 AS acquired, 0 AS reactivated
        FROM c
        CROSS JOIN generate_series(date_trunc('month', c.started_at AT TIME ZONE st.timezone) + interval '1 month',
                                   date_trunc('month', least(c.ended_at, st.as_of) AT TIME ZONE st.timezone),
                                   interval '1 month') g
        WHERE (g::timestamp AT TIME ZONE st.timezone) <= c.ended_at
        UNION ALL
        -- churned in the month it ends in, once that has happened, if it began before that month
        SELECT date_trunc('month', c.ended_at AT TIME ZONE st.timezone)::date, 0, c.sign, 0, 0
        FROM c
        WHERE c.ended_at <= st.as_of
          AND c.started_at < (date_trunc('month', c.ended_at AT TIME ZONE st.timezone)::timestamp AT TIME ZONE st.timezone)
        UNION ALL
        -- new or reactivated in the month it starts in
        SELECT date_trunc('month', c.started_at AT TIME ZONE st.timezone)::date, 0, 0,
               CASE WHEN c.spell = 1 THEN c.sign ELSE 0 END, CASE WHEN c.spell > 1 THEN c.sign ELSE 0 END
        FROM c),
    d AS (
        SELECT x.month, sum(x.at_start)::bigint AS at_start, sum(x.churned)::bigint AS churned,
               sum(x.acquired)::bigint AS acquired, sum(x.reactivated)::bigint AS reactivated
        FROM contribution x
        GROUP BY 1
        HAVING sum(x.at_start) <> 0 OR sum(x.churned) <> 0 OR sum(x.acquired) <> 0 OR sum(x.reactivated) <> 0),
    up AS (
        INSERT INTO crm_kpi.churn_monthly AS s SELECT * FROM d
        ON CONFLICT (month) DO UPDATE SET
            customers_at_start = s.customers_at_start + excluded.customers_at_start,
            churned = s.churned + excluded.churned, new_customers = s.new_customers + excluded.new_customers,
            reactivated = s.reactivated + excluded.reactivated
        RETURNING 1)
    SELECT count(*) INTO written FROM up;
    RETURN written;
END $$;
COMMENT ON FUNCTION crm_kpi.add_churn_delta(bigint[]) IS
    'Adds to crm_kpi.churn_monthly the counts of the staged fresh customer_spells of some customers minus their stored ones (customers at the start of each month they span, churned, new, reactivated); when the change moves the first month of the table (that of the first spell), queues the months they touch instead (crm_kpi.queue_spell_effects); returns the rows written';
