-- refresh_registry.sql: what the refresh engine keeps and records: the KPI tables in refresh order with their keys and
-- the queue targets that make them stale, their state, the run history, the tables' settings, and why a rebuild is due.

-- The KPI tables the engine keeps, in refresh order, with their keys and the queue targets that make them stale.
CREATE TABLE crm_kpi.kpi_tables (
    table_name name PRIMARY KEY,
    position integer NOT NULL UNIQUE,
    key_columns name[] NOT NULL,
    key_grain text NOT NULL CHECK (key_grain IN ('day', 'month', 'customer', 'none')),
    own_target text NOT NULL,
    queue_targets text[] NOT NULL,
    stage_function name NOT NULL,
    delta_function name
);
COMMENT ON TABLE crm_kpi.kpi_tables IS
    'The KPI tables kept by the refresh engine: their key columns (the first is the stale key, of grain day, month or customer; none: the table is kept by the customers'' differences alone), the queue target that refreshes them, every target whose pending keys may change them, the function computing their rows for stale keys (fresh_<table> from the sources, or rollup_<table> from the per-customer parts, or from a KPI table before it; crm_kpi.verify() always compares with fresh_<table>), and the function adding what a batch of recomputed customers changes in them (NULL: they have no part per customer, or are per customer)';
INSERT INTO crm_kpi.kpi_tables VALUES
    ('customer_stats', 1, '{customer_id}', 'customer', 'customer', '{customer,orders,customers,interactions}', 'fresh_customer_stats', NULL),
    ('customer_spells', 2, '{customer_id,spell}', 'customer', 'customer', '{customer,orders,customers,interactions}', 'fresh_customer_spells', NULL),
    ('customer_days', 3, '{customer_id,day,rep_id}', 'customer', 'customer', '{customer,orders,customers}', 'fresh_customer_days', NULL),
    ('sales_daily', 4, '{day,rep_id,channel}', 'day', 'sales', '{sales,customer,orders,customers}', 'rollup_sales_daily', 'add_sales_delta'),
    ('sales_channel_daily', 5, '{day,channel}', 'day', 'sales', '{sales,customer,orders,customers}', 'rollup_sales_channel_daily', 'add_sales_channel_delta'),
    ('pipeline_daily', 6, '{day,rep_id}', 'day', 'pipeline', '{pipeline,opportunities}', 'fresh_pipeline_daily', NULL),
    ('pipeline_total_daily', 7, '{day}', 'day', 'pipeline', '{pipeline,opportunities}', 'rollup_pipeline_total_daily', NULL),
    ('service_daily', 8, '{day}', 'day', 'service', '{service,tickets}', 'fresh_service_daily', NULL),
    ('satisfaction_daily', 9, '{day}', 'day', 'satisfaction', '{satisfaction,survey_responses}', 'fresh_satisfaction_daily', NULL),
    ('cohort_monthly', 10, '{month,cohort_month}', 'month', 'cohort', '{cohort,customer,orders,customers}', 'rollup_cohort_monthly', 'add_cohort_delta'),
    ('marketing_monthly', 11, '{month,channel}', 'month', 'marketing', '{marketing,marketing_spend,customer,orders,customers}', 'fresh_marketing_monthly', 'add_marketing_delta'),
    ('churn_monthly', 12, '{month}', 'month', 'churn', '{churn,customer,orders,customers}', 'fresh_churn_monthly', 'add_churn_delta'),
    ('customer_counts', 13, '{channel,stage,lead_month}', 'none', 'customer', '{customer,orders,customers,interactions}', 'rollup_customer_counts', 'add_customer_counts_delta'),
    ('customer_events_daily', 14, '{day,channel}', 'none', 'customer', '{customer,orders,customers,interactions}', 'rollup_customer_events_daily', 'add_customer_events_delta'),
    ('rfm_cells', 15, '{last_day,orders,channel}', 'none', 'customer', '{customer,orders,customers,interactions}', 'rollup_rfm_cells', 'add_rfm_cells_delta'),
    ('rfm_last_days', 16, '{last_day}', 'none', 'customer', '{customer,orders,customers,interactions}', 'rollup_rfm_last_days', 'add_rfm_last_days_delta'),
    ('rfm_order_counts', 17, '{orders}', 'none', 'customer', '{customer,orders,customers,interactions}', 'rollup_rfm_order_counts', 'add_rfm_order_counts_delta'),
    ('rfm_month_cells', 18, '{month,orders,channel}', 'none', 'customer', '{customer,orders,customers,interactions}', 'rollup_rfm_month_cells', 'add_rfm_month_cells_delta'),
    ('service_months', 19, '{month}', 'month', 'service', '{service,tickets}', 'rollup_service_months', NULL),
    ('satisfaction_months', 20, '{month}', 'month', 'satisfaction', '{satisfaction,survey_responses}', 'rollup_satisfaction_months', NULL);

-- The KPI tables a kind of source feeds: those its keys make stale, directly or through the customers it changes.
CREATE FUNCTION crm_kpi.kind_tables(kind text) RETURNS name[]
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT coalesce(array_agg(k.table_name ORDER BY k.position), '{}')
            FROM crm_kpi.kpi_tables k
            WHERE kind = ANY(k.queue_targets)
               OR ('customer' = ANY(k.queue_targets)
                   AND EXISTS (SELECT FROM crm_kpi.kpi_tables c WHERE c.key_grain = 'customer' AND kind = ANY(c.queue_targets))));
COMMENT ON FUNCTION crm_kpi.kind_tables(text) IS
    'The KPI tables a kind of source feeds, in refresh order: those listing it among their queue targets and, for a kind the per-customer tables read (orders, customers, interactions), every table kept from the customers; what a TRUNCATE, bind, unbind or DDL of a source of that kind makes the next refresh rebuild';

-- The KPI tables a pending key of the queue may change.
CREATE FUNCTION crm_kpi.stale_tables(target text) RETURNS name[]
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN target = '*' THEN (SELECT array_agg(k.table_name ORDER BY k.position) FROM crm_kpi.kpi_tables k)
                WHEN left(target, 1) = '*' THEN crm_kpi.kind_tables(substr(target, 2))
                ELSE (SELECT coalesce(array_agg(k.table_name ORDER BY k.position), '{}')
                      FROM crm_kpi.kpi_tables k WHERE target = ANY(k.queue_targets)) END;
COMMENT ON FUNCTION crm_kpi.stale_tables(text) IS
    'The KPI tables a pending key of crm_kpi.change_queue with this target may change: every one for *, those its kind feeds for * followed by a kind (crm_kpi.kind_tables), else those listing the target among their queue targets';

CREATE TABLE crm_kpi.kpi_table_state (
    table_name name PRIMARY KEY REFERENCES crm_kpi.kpi_tables,
    watermark timestamptz,
    last_refresh_at timestamptz,
    last_duration interval,
    rows_touched bigint,
    last_error text,
    last_error_at timestamptz,
    failures integer NOT NULL DEFAULT 0,
    retry_at timestamptz
);
INSERT INTO crm_kpi.kpi_table_state (table_name) SELECT table_name FROM crm_kpi.kpi_tables;
COMMENT ON TABLE crm_kpi.kpi_table_state IS
    'Per KPI table: watermark (every change committed before it is reflected), last refresh that touched it, its duration, rows written, last error; failures: refreshes that failed on it in a row (0 after one that succeeds), and retry_at: until when the refresh worker leaves it alone after the last of them (1 s after the first, doubling with each, at most 5 minutes; NULL when it is not failing)';

CREATE TABLE crm_kpi.refresh_history (
    run_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    mode text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    batches integer NOT NULL,
    stale_keys bigint NOT NULL,
    rows_touched bigint NOT NULL,
    tables jsonb NOT NULL,
    pending_after bigint,
    error text
);
COMMENT ON SEQUENCE crm_kpi.refresh_history_run_id_seq IS 'Numbers the runs of crm_kpi.refresh_history';
COMMENT ON TABLE crm_kpi.refresh_history IS
    'Refresh and rebuild runs, newest last, capped at crm_kpi.history_limit rows: keys taken from the queue, rows written per table, keys left pending, error';

-- Run with the settings the KPI tables were built with (and TimeZone = their zone, for interval arithmetic).
CREATE FUNCTION crm_kpi.engine_apply(st crm_kpi.engine_state) RETURNS void
    LANGUAGE sql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT set_config('TimeZone', st.timezone, true), set_config('crm_kpi.timezone', st.timezone, true),
           set_config('crm_kpi.active_window', st.active_window::text, true),
           set_config('crm_kpi.churn_after', st.churn_after::text, true),
           set_config('crm_kpi.loyal_min_tenure', st.loyal_min_tenure::text, true),
           set_config('crm_kpi.loyal_min_orders', st.loyal_min_orders::text, true),
           set_config('crm_kpi.resolution_sla', st.resolution_sla::text, true);
END;
COMMENT ON FUNCTION crm_kpi.engine_apply(crm_kpi.engine_state) IS
    'Sets, for the rest of the transaction, the time zone and lifecycle settings to those the KPI tables are computed with';

-- Why a rebuild of the tables some kinds feed is queued (targets: * followed by a kind), or NULL.
CREATE FUNCTION crm_kpi.kind_rebuild_reason(targets text[]) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT format('a bound %s source was truncated, bound, unbound, or altered in what it reads: the next refresh rebuilds %s',
                          (SELECT string_agg(DISTINCT substr(g, 2), ', ') FROM unnest(targets) g),
                          string_agg(k.table_name, ', ' ORDER BY k.position))
            FROM crm_kpi.kpi_tables k
            WHERE EXISTS (SELECT FROM unnest(targets) g WHERE k.table_name = ANY(crm_kpi.stale_tables(g)))
            HAVING count(*) > 0);
COMMENT ON FUNCTION crm_kpi.kind_rebuild_reason(text[]) IS
    'Why a rebuild of the tables some kinds feed is queued (targets * followed by a kind, as in crm_kpi.change_queue): the kinds, and the tables the next refresh rebuilds (crm_kpi.kind_tables); NULL when they feed none';

-- Which settings the KPI tables depend on differ from those they were built with, or NULL.
CREATE FUNCTION crm_kpi.settings_rebuild_reason() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT CASE WHEN crm_kpi.library_version() IS NULL THEN NULL  -- loads the library, which defines the settings
                        WHEN e.built_at IS NOT NULL THEN nullif(concat_ws('; ',
            CASE WHEN e.timezone <> current_setting('crm_kpi.timezone')
                 THEN format('crm_kpi.timezone is %s, the tables use %s', current_setting('crm_kpi.timezone'), e.timezone) END,
            CASE WHEN e.active_window <> current_setting('crm_kpi.active_window')::interval
                 THEN format('crm_kpi.active_window is %s, the tables use %s', current_setting('crm_kpi.active_window'), e.active_window) END,
            CASE WHEN e.churn_after <> current_setting('crm_kpi.churn_after')::interval
                 THEN format('crm_kpi.churn_after is %s, the tables use %s', current_setting('crm_kpi.churn_after'), e.churn_after) END,
            CASE WHEN e.loyal_min_tenure <> current_setting('crm_kpi.loyal_min_tenure')::interval
                 THEN format('crm_kpi.loyal_min_tenure is %s, the tables use %s', current_setting('crm_kpi.loyal_min_tenure'), e.loyal_min_tenure) END,
            CASE WHEN e.loyal_min_orders <> current_setting('crm_kpi.loyal_min_orders')::integer
                 THEN format('crm_kpi.loyal_min_orders is %s, the tables use %s', current_setting('crm_kpi.loyal_min_orders'), e.loyal_min_orders) END,
            CASE WHEN e.resolution_sla <> current_setting('crm_kpi.resolution_sla')::interval
                 THEN format('crm_kpi.resolution_sla is %s, the tables use %s', current_setting('crm_kpi.resolution_sla'), e.resolution_sla) END), '')
                   END
            FROM crm_kpi.engine_state e);
COMMENT ON FUNCTION crm_kpi.settings_rebuild_reason() IS
    'The settings the KPI tables depend on (crm_kpi.timezone, active_window, churn_after, loyal_min_tenure, loyal_min_orders, resolution_sla) whose value differs from the one they were built with (engine_state), each with both values; NULL when none does or they were never built';

-- Why KPI tables need a rebuild, given the rebuild markers queued for them (targets * and * followed by a kind), or NULL.
CREATE FUNCTION crm_kpi.rebuild_reason_for(markers text[]) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT CASE
        WHEN crm_kpi.library_version() IS NULL THEN NULL  -- loads the library, which defines the settings
        WHEN e.built_at IS NULL THEN 'never built (first fill, or restored from a dump)'
        WHEN '*' = ANY(markers) THEN 'a bound source was truncated, bound, unbound, or altered in what it reads'
        ELSE nullif(concat_ws('; ', crm_kpi.kind_rebuild_reason(markers), crm_kpi.settings_rebuild_reason()), '')
        END FROM crm_kpi.engine_state e);
COMMENT ON FUNCTION crm_kpi.rebuild_reason_for(text[]) IS
    'Why KPI tables need a rebuild, given the rebuild markers of crm_kpi.change_queue that concern them (* for every table, * followed by a kind for the tables it feeds): never built, a rebuild of everything queued, the kinds whose tables the next refresh rebuilds, the settings that changed; NULL when none applies';

-- Why the KPI tables need crm_kpi.rebuild(), or NULL.
CREATE FUNCTION crm_kpi.rebuild_reason() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN crm_kpi.rebuild_reason_for(ARRAY(SELECT DISTINCT q.target FROM crm_kpi.change_queue q WHERE left(q.target, 1) = '*'));
COMMENT ON FUNCTION crm_kpi.rebuild_reason() IS
    'Why the KPI tables need crm_kpi.rebuild(): never built, a source truncated, bound, unbound or altered in what it reads (of a kind: the next refresh rebuilds the tables it feeds), or a setting they depend on changed since; NULL when they do not';
