-- kpi_fresh.sql: each KPI table computed from scratch over the bound sources, for given keys or for everything.
-- The refresh engine, rebuild and verify all read these, with the settings of crm_kpi.engine_state.

-- The query reading every source bound to a kind; an empty relation of the contract's columns when none is.
CREATE FUNCTION crm_kpi.source_sql(kind text) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN coalesce(crm_kpi.source_query(kind),
                    (SELECT 'SELECT ' || string_agg(format('CAST(NULL AS %s) AS %I', c.data_type, c.column_name),
                                                    ', ' ORDER BY c.position) || ' WHERE false'
                     FROM crm_kpi.source_contract c WHERE c.kind = source_sql.kind));
COMMENT ON FUNCTION crm_kpi.source_sql(text) IS
    'The rows of every source bound to a kind, as the contract''s columns (no rows when none is bound)';

-- A FROM item: a relation, or when keyed only its rows whose time column falls in one of the days or months of $1.
CREATE FUNCTION crm_kpi.period_rows(relation text, alias text, time_column name, grain text, tz text, keys date[])
    RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE
        WHEN keys IS NULL THEN format('(SELECT * FROM %1$s AS z WHERE z.%3$I IS NOT NULL) AS %2$s', relation, alias, time_column)
        -- Few periods: runs of consecutive ones as literal ranges, which the planner can estimate.
        WHEN cardinality(keys) <= 64 THEN format('(SELECT * FROM %1$s AS z WHERE %3$s) AS %2$s', relation, alias, (
            SELECT coalesce(string_agg(CASE WHEN isfinite(r.first) THEN format('(z.%1$I >= %2$L AND z.%1$I < %3$L)', time_column,
                                                                                 r.first::timestamp AT TIME ZONE tz,
                                                                                 (r.last + ('1 ' || grain)::interval)::timestamp AT TIME ZONE tz)
                                            ELSE format('z.%I = %L', time_column, r.first::timestamp AT TIME ZONE tz) END, ' OR '),
                            'false')
            FROM (SELECT min(i.k) AS first, max(i.k) AS last
                  FROM (SELECT k.k,
                               CASE WHEN NOT isfinite(k.k) THEN k.k::text  -- infinity alone
                                    WHEN grain = 'day' THEN (k.k - (dense_rank() OVER (ORDER BY k.k))::integer)::text
                                    ELSE (12 * extract(year FROM k.k) + extract(month FROM k.k)
                                          - dense_rank() OVER (ORDER BY k.k))::text END AS run
                        FROM (SELECT DISTINCT d AS k FROM unnest(keys) d WHERE d IS NOT NULL) k) i
                  GROUP BY i.run) r))
        ELSE format('(SELECT y.* FROM unnest($1::date[]) AS key (first_day) CROSS JOIN LATERAL '
                    '(SELECT * FROM %1$s AS z WHERE z.%3$I >= (key.first_day::timestamp AT TIME ZONE %4$L) '
                    'AND z.%3$I < ((key.first_day + interval %5$L)::timestamp AT TIME ZONE %4$L)) AS y) AS %2$s',
                    relation, alias, time_column, tz, '1 ' || grain) END;
COMMENT ON FUNCTION crm_kpi.period_rows(text, text, name, text, text, date[]) IS
    'SQL of a FROM item: the rows of a relation that have a time (a row without one is in no day), or only those whose time column lies in the days or months keys lists (index-friendly ranges: literal ones for runs of consecutive periods when there are few, else one per period read from $1)';

-- A WHERE condition to append: only the customers of $1, when some are given.
CREATE FUNCTION crm_kpi.id_filter(alias text, ids bigint[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN ids IS NOT NULL THEN format(' AND %I.customer_id = ANY($1)', alias) ELSE '' END;
COMMENT ON FUNCTION crm_kpi.id_filter(text, bigint[]) IS
    'SQL to append to a WHERE clause: AND <alias>.customer_id = ANY($1) when ids is not NULL, else nothing';

-- Months from a cohort month to a month.
CREATE FUNCTION crm_kpi.month_offset(month date, cohort_month date) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ((extract(year FROM month) - extract(year FROM cohort_month)) * 12
            + extract(month FROM month) - extract(month FROM cohort_month))::integer;
COMMENT ON FUNCTION crm_kpi.month_offset(date, date) IS
    'Months from cohort_month to month (0 for the cohort month itself)';

-- The current settings, as an engine_state row at as_of.
CREATE FUNCTION crm_kpi.wanted_settings(as_of timestamptz) RETURNS crm_kpi.engine_state
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN ROW(true, NULL, as_of, current_setting('crm_kpi.timezone'),
               current_setting('crm_kpi.active_window')::interval,
               current_setting('crm_kpi.churn_after')::interval,
               current_setting('crm_kpi.loyal_min_tenure')::interval,
               current_setting('crm_kpi.loyal_min_orders')::integer,
               current_setting('crm_kpi.resolution_sla')::interval)::crm_kpi.engine_state;
COMMENT ON FUNCTION crm_kpi.wanted_settings(timestamptz) IS
    'The current time zone, lifecycle and SLA settings as an engine_state row at as_of (what a rebuild adopts)';

-- The settings KPIs are computed with: those the tables were built with, or the current ones before the first build.
CREATE FUNCTION crm_kpi.engine_settings() RETURNS crm_kpi.engine_state
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT CASE WHEN e.built_at IS NOT NULL THEN e
                        WHEN crm_kpi.library_version() IS NULL THEN NULL  -- loads the library and its settings
                        ELSE crm_kpi.wanted_settings(now()) END
            FROM crm_kpi.engine_state e);
COMMENT ON FUNCTION crm_kpi.engine_settings() IS
    'The settings and instant the KPI tables are computed with: engine_state once built, else the current settings at now()';

CREATE FUNCTION crm_kpi.fresh_sales_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.sales_daily
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
    sel text;
    -- A few days: each order's customer by its key (a hash of every customer would cost more than the days).
    customer_join text := 'LEFT JOIN LATERAL (SELECT c.* FROM c WHERE c.customer_id = s.customer_id OFFSET 0) cu ON true';
BEGIN
    IF days IS NULL OR cardinality(days) > 31 THEN
        customer_join := 'LEFT JOIN c cu ON cu.customer_id = s.customer_id';
        -- Everything, or many days: one pass over the orders in customer order beats a lookup per order.
        sel := 'SELECT * FROM (SELECT o.*, lag(o.ordered_at) OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS prev_at '
               'FROM o WHERE o.status = ''completed'' AND o.ordered_at IS NOT NULL) w'
               || CASE WHEN days IS NULL THEN ''
                       ELSE format(' WHERE (w.ordered_at AT TIME ZONE %L)::date = ANY($1)', st.timezone) END;
    ELSE
        sel := 'SELECT o.*, (SELECT max(p.ordered_at) FROM o p WHERE p.customer_id = o.customer_id AND p.status = ''completed'''
               ' AND p.ordered_at <= o.ordered_at AND (p.ordered_at < o.ordered_at OR p.order_id < o.order_id)) AS prev_at '
               'FROM ' || crm_kpi.period_rows('o', 'o', 'ordered_at', 'day', st.timezone, days) || ' WHERE o.status = ''completed''';
    END IF;
    RETURN QUERY EXECUTE format(
        'WITH o AS NOT MATERIALIZED (%s), c AS NOT MATERIALIZED (%s) '
        'SELECT (s.ordered_at AT TIME ZONE %L)::date, s.rep_id, cu.acquisition_channel, count(*), coalesce(sum(s.amount), 0), '
        '       count(*) FILTER (WHERE cu.customer_id IS NOT NULL AND s.prev_at IS NULL), '
        '       count(*) FILTER (WHERE cu.customer_id IS NOT NULL AND s.prev_at + %L::interval <= s.ordered_at) '
        'FROM (%s) s %s GROUP BY 1, 2, 3',
        crm_kpi.source_sql('orders'), crm_kpi.source_sql('customers'), st.timezone, st.churn_after, sel, customer_join)
        USING days;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_sales_daily(date[]) IS
    'crm_kpi.sales_daily computed from the sources, for the given days (all when NULL)';

-- sales_daily as the refresh engine keeps it: the sum of the customers' parts (customer_days) and the orders without
-- a customer, for the given days. Never reads the orders of a customer: a customer's part changes only by its deltas.
CREATE FUNCTION crm_kpi.rollup_sales_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.sales_daily
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH o AS NOT MATERIALIZED (%s) '
        'SELECT x.day, x.rep_id, x.channel, sum(x.orders)::bigint, sum(x.revenue), sum(x.new_customers)::bigint, '
        '       sum(x.reactivated_customers)::bigint '
        'FROM (SELECT d.day, d.rep_id, d.channel, d.orders, d.revenue, d.new_customers, d.reactivated_customers '
        '      FROM crm_kpi.customer_days d%s '
        '      UNION ALL '
        '      SELECT (o.ordered_at AT TIME ZONE %L)::date, o.rep_id, NULL, 1, coalesce(o.amount, 0), 0, 0 '
        '      FROM %s WHERE o.status = ''completed'' AND o.customer_id IS NULL) x '
        'GROUP BY 1, 2, 3',
        crm_kpi.source_sql('orders'), CASE WHEN days IS NOT NULL THEN ' WHERE d.day = ANY($1)' ELSE '' END, st.timezone,
        crm_kpi.period_rows('o', 'o', 'ordered_at', 'day', st.timezone, days)) USING days;
END $$;
COMMENT ON FUNCTION crm_kpi.rollup_sales_daily(date[]) IS
    'crm_kpi.sales_daily as the sum of crm_kpi.customer_days and the completed orders without a customer, for the given days (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_customer_days(ids bigint[] DEFAULT NULL) RETURNS SETOF crm_kpi.customer_days
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH o AS NOT MATERIALIZED (%s), c AS NOT MATERIALIZED (%s) '
        'SELECT s.customer_id, (s.ordered_at AT TIME ZONE %L)::date, s.rep_id, cu.acquisition_channel, count(*)::integer, '
        '       coalesce(sum(s.amount), 0), count(*) FILTER (WHERE cu.customer_id IS NOT NULL AND s.prev_at IS NULL)::integer, '
        '       count(*) FILTER (WHERE cu.customer_id IS NOT NULL AND s.prev_at + %L::interval <= s.ordered_at)::integer '
        'FROM (SELECT o.*, lag(o.ordered_at) OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS prev_at '
        '      FROM o WHERE o.status = ''completed'' AND o.ordered_at IS NOT NULL AND o.customer_id IS NOT NULL%5$s) s '
        'LEFT JOIN (SELECT * FROM c WHERE true%6$s) cu ON cu.customer_id = s.customer_id '
        'GROUP BY 1, 2, 3, 4',
        crm_kpi.source_sql('orders'), crm_kpi.source_sql('customers'), st.timezone, st.churn_after,
        crm_kpi.id_filter('o', ids),
        crm_kpi.id_filter('c', ids)) USING ids;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_customer_days(bigint[]) IS
    'crm_kpi.customer_days computed from the sources, for the given customers (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_pipeline_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.pipeline_daily
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
    by_created text := crm_kpi.period_rows('p', 'p', 'created_at', 'day', st.timezone, days);
    by_closed text := crm_kpi.period_rows('p', 'p', 'closed_at', 'day', st.timezone, days);
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH p AS NOT MATERIALIZED (%1$s) '
        'SELECT e.day, e.rep_id, sum(e.created)::bigint, sum(e.won)::bigint, sum(e.lost)::bigint, '
        '       coalesce(sum(e.won_amount), 0), crm_kpi.sketch_agg(e.cycle) '
        'FROM (SELECT (p.created_at AT TIME ZONE %2$L)::date AS day, p.rep_id, 1 AS created, 0 AS won, 0 AS lost, '
        '             NULL::numeric AS won_amount, NULL::interval AS cycle FROM %3$s WHERE p.created_at IS NOT NULL '
        '      UNION ALL '
        '      SELECT (p.closed_at AT TIME ZONE %2$L)::date, p.rep_id, 0, (p.status = ''won'')::int, (p.status = ''lost'')::int, '
        '             CASE WHEN p.status = ''won'' THEN p.amount END, CASE WHEN p.status = ''won'' THEN p.closed_at - p.created_at END '
        '      FROM %4$s WHERE p.closed_at IS NOT NULL AND p.status IN (''won'', ''lost'')) e '
        'GROUP BY 1, 2',
        crm_kpi.source_sql('opportunities'), st.timezone, by_created, by_closed) USING days;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_pipeline_daily(date[]) IS
    'crm_kpi.pipeline_daily computed from the sources, for the given days (all when NULL)';

-- The tables summed over reps, from the sources (fresh_) or from the stored per-rep table (rollup_).
CREATE FUNCTION crm_kpi.fresh_sales_channel_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.sales_channel_daily
    LANGUAGE sql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT s.day, s.channel, sum(s.orders)::bigint, sum(s.revenue), sum(s.new_customers)::bigint,
           sum(s.reactivated_customers)::bigint
    FROM crm_kpi.fresh_sales_daily(days) s GROUP BY s.day, s.channel;
END;
COMMENT ON FUNCTION crm_kpi.fresh_sales_channel_daily(date[]) IS
    'crm_kpi.sales_channel_daily computed from the sources, for the given days (all when NULL)';

CREATE FUNCTION crm_kpi.rollup_sales_channel_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.sales_channel_daily
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT s.day, s.channel, sum(s.orders)::bigint, sum(s.revenue), sum(s.new_customers)::bigint,
           sum(s.reactivated_customers)::bigint
    FROM crm_kpi.sales_daily s WHERE days IS NULL OR s.day = ANY(days) GROUP BY s.day, s.channel;
END;
COMMENT ON FUNCTION crm_kpi.rollup_sales_channel_daily(date[]) IS
    'crm_kpi.sales_channel_daily as crm_kpi.sales_daily summed over reps, for the given days (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_pipeline_total_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.pipeline_total_daily
    LANGUAGE sql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT p.day, sum(p.created)::bigint, sum(p.won)::bigint, sum(p.lost)::bigint, sum(p.won_amount),
           crm_kpi.rollup(p.sales_cycle)
    FROM crm_kpi.fresh_pipeline_daily(days) p GROUP BY p.day;
END;
COMMENT ON FUNCTION crm_kpi.fresh_pipeline_total_daily(date[]) IS
    'crm_kpi.pipeline_total_daily computed from the sources, for the given days (all when NULL)';

CREATE FUNCTION crm_kpi.rollup_pipeline_total_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.pipeline_total_daily
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT p.day, sum(p.created)::bigint, sum(p.won)::bigint, sum(p.lost)::bigint, sum(p.won_amount),
           crm_kpi.rollup(p.sales_cycle)
    FROM crm_kpi.pipeline_daily p WHERE days IS NULL OR p.day = ANY(days) GROUP BY p.day;
END;
COMMENT ON FUNCTION crm_kpi.rollup_pipeline_total_daily(date[]) IS
    'crm_kpi.pipeline_total_daily as crm_kpi.pipeline_daily summed over reps, for the given days (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_service_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.service_daily
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH t AS NOT MATERIALIZED (%s) '
        'SELECT (t.opened_at AT TIME ZONE %L)::date, count(*), count(*) FILTER (WHERE t.first_response_at IS NULL), '
        '       count(t.resolved_at), count(*) FILTER (WHERE t.resolved_at - t.opened_at <= %L::interval), '
        '       crm_kpi.sketch_agg(t.first_response_at - t.opened_at), crm_kpi.sketch_agg(t.resolved_at - t.opened_at), '
        '       coalesce(sum(t.replies) FILTER (WHERE t.resolved_at IS NOT NULL), 0), count(*) FILTER (WHERE t.is_complaint) '
        'FROM %s WHERE t.opened_at IS NOT NULL GROUP BY 1',
        crm_kpi.source_sql('tickets'), st.timezone, st.resolution_sla,
        crm_kpi.period_rows('t', 't', 'opened_at', 'day', st.timezone, days)) USING days;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_service_daily(date[]) IS
    'crm_kpi.service_daily computed from the sources, for the given days (all when NULL)';

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

CREATE FUNCTION crm_kpi.fresh_satisfaction_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.satisfaction_daily
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH r AS NOT MATERIALIZED (%s) '
        'SELECT (r.answered_at AT TIME ZONE %L)::date, crm_kpi.nps_agg(r.score) FILTER (WHERE r.kind = ''nps''), '
        '       crm_kpi.csat_agg(r.score) FILTER (WHERE r.kind = ''csat'') '
        'FROM %s WHERE r.answered_at IS NOT NULL GROUP BY 1',
        crm_kpi.source_sql('survey_responses'), st.timezone,
        crm_kpi.period_rows('r', 'r', 'answered_at', 'day', st.timezone, days)) USING days;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_satisfaction_daily(date[]) IS
    'crm_kpi.satisfaction_daily computed from the sources, for the given days (all when NULL)';

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

CREATE FUNCTION crm_kpi.fresh_customer_stats(ids bigint[] DEFAULT NULL) RETURNS SETOF crm_kpi.customer_stats
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH c AS NOT MATERIALIZED (%1$s), o AS NOT MATERIALIZED (%2$s), i AS NOT MATERIALIZED (%3$s), '
        'cu AS (SELECT * FROM c WHERE true%4$s), '
        'ord AS (SELECT o.customer_id, o.amount, o.ordered_at, '
        '               lag(o.ordered_at) OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS prev_at '
        '        FROM o WHERE o.status = ''completed''%5$s), '
        'agg AS (SELECT ord.customer_id, '
        '               crm_kpi.purchase_agg(ord.amount, ord.ordered_at) FILTER (WHERE ord.ordered_at <= %7$L) AS purchases, '
        '               count(*) FILTER (WHERE ord.ordered_at <= %7$L) AS orders, '
        '               coalesce(sum(ord.amount) FILTER (WHERE ord.ordered_at <= %7$L), 0) AS revenue, '
        '               min(ord.ordered_at) FILTER (WHERE ord.ordered_at <= %7$L) AS first_at, '
        '               max(ord.ordered_at) FILTER (WHERE ord.ordered_at <= %7$L) AS last_at, '
        '               min(ord.ordered_at) FILTER (WHERE ord.ordered_at > %7$L) AS next_at, '
        '               (min(ord.ordered_at) AT TIME ZONE %8$L)::date AS new_day, '
        '               array_agg(DISTINCT (ord.ordered_at AT TIME ZONE %8$L)::date) '
        '                   FILTER (WHERE ord.prev_at + %9$L::interval <= ord.ordered_at) AS reactivation_days '
        '        FROM ord GROUP BY ord.customer_id), '
        'ia AS (SELECT i.customer_id, count(*) FILTER (WHERE i.occurred_at <= %7$L) AS n, '
        '              min(i.occurred_at) FILTER (WHERE i.occurred_at > %7$L) AS next_at '
        '       FROM i WHERE true%6$s GROUP BY i.customer_id) '
        'SELECT cu.customer_id, cu.created_at, cu.acquisition_channel, coalesce(ia.n, 0), a.purchases, '
        '       coalesce(a.orders, 0), coalesce(a.revenue, 0), a.first_at, a.last_at, crm_kpi.mean_gap(a.purchases), '
        '       crm_kpi.lifecycle_classify(%7$L, ia.n, a.orders, a.first_at, a.last_at), '
        '       least(a.next_at, ia.next_at, '
        '             CASE WHEN a.last_at + %10$L::interval >= %7$L THEN a.last_at + %10$L::interval END, '
        '             CASE WHEN a.last_at + %9$L::interval >= %7$L THEN a.last_at + %9$L::interval END, '
        '             CASE WHEN a.orders >= %12$s AND a.first_at + %11$L::interval >= %7$L '
        '                  THEN a.first_at + %11$L::interval END), '
        '       a.new_day, coalesce(a.reactivation_days, ''{}'') '
        'FROM cu LEFT JOIN agg a ON a.customer_id = cu.customer_id LEFT JOIN ia ON ia.customer_id = cu.customer_id',
        crm_kpi.source_sql('customers'), crm_kpi.source_sql('orders'), crm_kpi.source_sql('interactions'),
        crm_kpi.id_filter('c', ids), crm_kpi.id_filter('o', ids), crm_kpi.id_filter('i', ids),
        st.as_of, st.timezone, st.churn_after, st.active_window, st.loyal_min_tenure, st.loyal_min_orders) USING ids;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_customer_stats(bigint[]) IS
    'crm_kpi.customer_stats computed from the sources as of engine_state.as_of, for the given customers (all when NULL)';

-- customer_counts: customer_stats counted per channel, stage and lead month, from the sources (fresh_) or from the stored
-- table (rollup_). It has no stale key (the customers' differences keep it): keys is ignored, all rows are returned.
CREATE FUNCTION crm_kpi.fresh_customer_counts(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.customer_counts
    LANGUAGE sql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT s.acquisition_channel, s.stage, date_trunc('month', s.created_at AT TIME ZONE e.timezone)::date, count(*),
           count(*) FILTER (WHERE s.orders >= 1), count(*) FILTER (WHERE s.orders >= 2),
           coalesce(sum(s.revenue) FILTER (WHERE s.orders >= 1), 0)
    FROM crm_kpi.fresh_customer_stats(NULL::bigint[]) s CROSS JOIN crm_kpi.engine_state e GROUP BY 1, 2, 3;
END;
COMMENT ON FUNCTION crm_kpi.fresh_customer_counts(date[]) IS
    'crm_kpi.customer_counts computed from the sources as of engine_state.as_of (keys is ignored: all rows)';

CREATE FUNCTION crm_kpi.rollup_customer_counts(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.customer_counts
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT s.acquisition_channel, s.stage, date_trunc('month', s.created_at AT TIME ZONE e.timezone)::date, count(*),
           count(*) FILTER (WHERE s.orders >= 1), count(*) FILTER (WHERE s.orders >= 2),
           coalesce(sum(s.revenue) FILTER (WHERE s.orders >= 1), 0)
    FROM crm_kpi.customer_stats s CROSS JOIN crm_kpi.engine_state e GROUP BY 1, 2, 3;
END;
COMMENT ON FUNCTION crm_kpi.rollup_customer_counts(date[]) IS
    'crm_kpi.customer_counts counted from the stored crm_kpi.customer_stats (keys is ignored: all rows)';

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

CREATE FUNCTION crm_kpi.fresh_customer_spells(ids bigint[] DEFAULT NULL) RETURNS SETOF crm_kpi.customer_spells
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH c AS NOT MATERIALIZED (%1$s), o AS NOT MATERIALIZED (%2$s), '
        'ord AS (SELECT o.customer_id, o.ordered_at, o.order_id, '
        '               lag(o.ordered_at) OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS prev_at '
        '        FROM o WHERE o.status = ''completed'' AND o.ordered_at <= %3$L%5$s '
        '          AND o.customer_id IN (SELECT c.customer_id FROM c WHERE true%6$s)), '
        'numbered AS (SELECT ord.*, count(*) FILTER (WHERE ord.prev_at IS NULL OR ord.prev_at + %4$L::interval <= ord.ordered_at) '
        '                 OVER (PARTITION BY ord.customer_id ORDER BY ord.ordered_at, ord.order_id) AS spell FROM ord) '
        'SELECT n.customer_id, n.spell::integer, min(n.ordered_at), max(n.ordered_at) + %4$L::interval '
        'FROM numbered n GROUP BY n.customer_id, n.spell',
        crm_kpi.source_sql('customers'), crm_kpi.source_sql('orders'), st.as_of, st.churn_after,
        crm_kpi.id_filter('o', ids),
        crm_kpi.id_filter('c', ids)) USING ids;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_customer_spells(bigint[]) IS
    'crm_kpi.customer_spells computed from the sources as of engine_state.as_of, for the given customers (all when NULL)';

-- The events customer_events_daily counts: of a customer, kind 1 created, 2 first completed order, 3 lead ended (the
-- later of the two, when both are known); of a spell, kind 4 started, 5 ended. Inlined into the queries counting them.
CREATE FUNCTION crm_kpi.customer_events(created_at timestamptz, first_order_at timestamptz)
    RETURNS TABLE (at timestamptz, kind integer)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT x.at, x.kind
    FROM (VALUES (created_at, 1), (first_order_at, 2),
                 (CASE WHEN first_order_at >= created_at THEN first_order_at
                       WHEN first_order_at < created_at THEN created_at END, 3)) x (at, kind);
END;
COMMENT ON FUNCTION crm_kpi.customer_events(timestamptz, timestamptz) IS
    'A customer''s events in crm_kpi.customer_events_daily: (created_at, 1), (first_order_at, 2) and the later of the two, (lead ended, 3); at is NULL when unknown';
CREATE FUNCTION crm_kpi.spell_events(started_at timestamptz, ended_at timestamptz)
    RETURNS TABLE (at timestamptz, kind integer)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT x.at, x.kind FROM (VALUES (started_at, 4), (ended_at, 5)) x (at, kind);
END;
COMMENT ON FUNCTION crm_kpi.spell_events(timestamptz, timestamptz) IS
    'A spell''s events in crm_kpi.customer_events_daily: (started_at, 4), (ended_at, 5)';

-- customer_events_daily: each customer's events (created, first order, lead ended, spells started and ended) counted
-- per day and channel, from the sources (fresh_) or from the stored customer_stats and customer_spells (rollup_): one
-- query, over the customers and spells given (relations or calls), with the zone as a literal. (Each its own query: a
-- union of both with one branch skipped costs every row the nodes of the union, 11 s instead of 6 in a full-size
-- rebuild.)
CREATE FUNCTION crm_kpi.customer_events_sql(customers text, spells text, materialized boolean) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN format(
        'WITH st AS %s (SELECT s.customer_id, s.created_at, s.first_order_at, s.acquisition_channel FROM %s s), '
        'ev AS ( '
        '    SELECT s.acquisition_channel AS channel, x.at, x.kind '
        '    FROM st s CROSS JOIN LATERAL crm_kpi.customer_events(s.created_at, s.first_order_at) x '
        '    UNION ALL '
        '    SELECT s.acquisition_channel, x.at, x.kind '
        '    FROM %s p JOIN st s ON s.customer_id = p.customer_id '
        '    CROSS JOIN LATERAL crm_kpi.spell_events(p.started_at, p.ended_at) x) '
        'SELECT (ev.at AT TIME ZONE %L)::date, ev.channel, '
        '       count(*) FILTER (WHERE ev.kind = 1), count(*) FILTER (WHERE ev.kind = 2), count(*) FILTER (WHERE ev.kind = 3), '
        '       count(*) FILTER (WHERE ev.kind = 4), count(*) FILTER (WHERE ev.kind = 5) '
        'FROM ev WHERE ev.at IS NOT NULL '
        'GROUP BY 1, 2',
        CASE WHEN materialized THEN 'MATERIALIZED' ELSE 'NOT MATERIALIZED' END, customers, spells,
        (crm_kpi.engine_settings()).timezone);
COMMENT ON FUNCTION crm_kpi.customer_events_sql(text, text, boolean) IS
    'The query counting the rows of crm_kpi.customer_events_daily from the customers and spells given (relations or function calls, as SQL; the customers materialized once or read twice), in the zone of the KPI tables';

CREATE FUNCTION crm_kpi.fresh_customer_events_daily(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.customer_events_daily
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- (the customers computed once for both kinds of events)
    RETURN QUERY EXECUTE crm_kpi.customer_events_sql('crm_kpi.fresh_customer_stats(NULL::bigint[])',
                                                     'crm_kpi.fresh_customer_spells(NULL::bigint[])', true);
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_customer_events_daily(date[]) IS
    'crm_kpi.customer_events_daily computed from the sources as of engine_state.as_of (keys is ignored: all rows)';

CREATE FUNCTION crm_kpi.rollup_customer_events_daily(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.customer_events_daily
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE crm_kpi.customer_events_sql('crm_kpi.customer_stats', 'crm_kpi.customer_spells', false);
END $$;
COMMENT ON FUNCTION crm_kpi.rollup_customer_events_daily(date[]) IS
    'crm_kpi.customer_events_daily counted from the stored crm_kpi.customer_stats and customer_spells (keys is ignored: all rows)';

-- Each customer's part of cohort_monthly, derived from the customer's parts of sales_daily (customer_days) and its
-- first order (customer_stats): the months with a completed order, their revenue, the customer's cohort month. From
-- the stored tables (for some customers or months, or all), or from the staged fresh rows of a batch. Summed by
-- sorting (hash aggregation off): the planner, which cannot tell how many months a customer's days fall in, estimates
-- far fewer groups than there are, and a hash table over every customer month then spills to disk (19 s instead of
-- 5 s for the 9.2M days of a rebuild).
CREATE FUNCTION crm_kpi.customer_month_parts(staged boolean, ids bigint[], months date[])
    RETURNS TABLE (customer_id bigint, month date, cohort_month date, revenue numeric)
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    SET enable_hashagg = off
AS $$
BEGIN
    -- One query, planned for the keys at hand (a cached generic plan of a static one would not use the indexes on
    -- customer ids); customer_stats filtered by the ids too, else the planner may hash every customer. The months
    -- bound the days, for the index on them.
    RETURN QUERY EXECUTE format(
        'SELECT m.customer_id, m.month, date_trunc(''month'', s.first_order_at AT TIME ZONE %1$L)::date, m.revenue '
        'FROM (SELECT d.customer_id, date_trunc(''month'', d.day)::date AS month, sum(d.revenue) AS revenue '
        '      FROM crm_kpi.%2$I d WHERE true%4$s%6$s GROUP BY 1, 2) m '
        'JOIN crm_kpi.%3$I s ON s.customer_id = m.customer_id AND s.first_order_at IS NOT NULL%5$s',
        (crm_kpi.engine_settings()).timezone,
        CASE WHEN staged THEN 'staged_customer_days' ELSE 'customer_days' END,
        CASE WHEN staged THEN 'staged_customer_stats' ELSE 'customer_stats' END,
        crm_kpi.id_filter('d', ids), crm_kpi.id_filter('s', ids),
        CASE WHEN months IS NOT NULL
             THEN ' AND d.day >= (SELECT min(x) FROM unnest($2) x) '
                  'AND d.day < (SELECT max(x) + interval ''1 month'' FROM unnest($2) x) '
                  'AND date_trunc(''month'', d.day)::date = ANY($2)'
             ELSE '' END) USING ids, months;
END $$;
COMMENT ON FUNCTION crm_kpi.customer_month_parts(boolean, bigint[], date[]) IS
    'Each customer''s part of crm_kpi.cohort_monthly (its months with a completed order, their revenue, its cohort month), derived from customer_days and customer_stats: the staged fresh rows of a batch (staged), or the stored ones; of the given customers and months (all when NULL; months are first days of months)';

-- cohort_monthly as the refresh engine keeps it: the count and sum of the customers' parts.
CREATE FUNCTION crm_kpi.rollup_cohort_monthly(months date[] DEFAULT NULL) RETURNS SETOF crm_kpi.cohort_monthly
    LANGUAGE sql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT m.month, m.cohort_month, crm_kpi.month_offset(m.month, m.cohort_month), count(*), sum(m.revenue)
    FROM crm_kpi.customer_month_parts(false, NULL, months) m
    GROUP BY m.month, m.cohort_month;
END;
COMMENT ON FUNCTION crm_kpi.rollup_cohort_monthly(date[]) IS
    'crm_kpi.cohort_monthly as the count and revenue of the customers'' parts (crm_kpi.customer_month_parts, from customer_days and customer_stats) per month and cohort, for the given months (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_cohort_monthly(months date[] DEFAULT NULL) RETURNS SETOF crm_kpi.cohort_monthly
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH o AS NOT MATERIALIZED (%s) '
        'SELECT x.month, x.cohort_month, crm_kpi.month_offset(x.month, x.cohort_month), x.customers, x.revenue '
        'FROM (SELECT date_trunc(''month'', o.ordered_at AT TIME ZONE %2$L)::date AS month, '
        '             date_trunc(''month'', cs.first_order_at AT TIME ZONE %2$L)::date AS cohort_month, '
        '             count(DISTINCT o.customer_id) AS customers, coalesce(sum(o.amount), 0) AS revenue '
        '      FROM %3$s JOIN crm_kpi.customer_stats cs ON cs.customer_id = o.customer_id AND cs.first_order_at IS NOT NULL '
        '      WHERE o.status = ''completed'' GROUP BY 1, 2) x',
        crm_kpi.source_sql('orders'), st.timezone,
        crm_kpi.period_rows('o', 'o', 'ordered_at', 'month', st.timezone, months)) USING months;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_cohort_monthly(date[]) IS
    'crm_kpi.cohort_monthly computed from the orders and crm_kpi.customer_stats, for the given months (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_marketing_monthly(months date[] DEFAULT NULL) RETURNS SETOF crm_kpi.marketing_monthly
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH m AS NOT MATERIALIZED (%s) '
        'SELECT x.month, x.channel, coalesce(sum(x.spend), 0), sum(x.acquired)::bigint '
        'FROM (SELECT date_trunc(''month'', m.day)::date AS month, m.channel, m.amount AS spend, 0 AS acquired '
        '      FROM m WHERE m.day IS NOT NULL%s '
        '      UNION ALL '
        '      SELECT date_trunc(''month'', cs.first_order_at AT TIME ZONE %L)::date, cs.acquisition_channel, NULL, 1 '
        '      FROM %s WHERE cs.first_order_at IS NOT NULL) x '
        'GROUP BY 1, 2',
        crm_kpi.source_sql('marketing_spend'),
        CASE WHEN months IS NOT NULL THEN ' AND date_trunc(''month'', m.day)::date = ANY($1)' ELSE '' END,
        st.timezone,
        crm_kpi.period_rows('crm_kpi.customer_stats', 'cs', 'first_order_at', 'month', st.timezone, months))
        USING months;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_marketing_monthly(date[]) IS
    'crm_kpi.marketing_monthly computed from the marketing spend and crm_kpi.customer_stats, for the given months (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_churn_monthly(months date[] DEFAULT NULL) RETURNS SETOF crm_kpi.churn_monthly
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
