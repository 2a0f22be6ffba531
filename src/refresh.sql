-- refresh.sql: the refresh engine: stale keys in bounded batches, time passing, rebuild, run history.

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
    'The KPI tables kept by the refresh engine: their key columns (the first is the stale key, of grain day, month or customer; none: the table is kept by the customers'' differences alone), the queue target that refreshes them, every target whose pending keys may change them, the function computing their rows for stale keys (fresh_<table> from the sources, or rollup_<table> from the per-customer parts; crm_kpi.verify() always compares with fresh_<table>), and the function adding what a batch of recomputed customers changes in them (NULL: they have no part per customer, or are per customer)';
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
    ('rfm_cells', 15, '{last_day,orders,channel}', 'none', 'customer', '{customer,orders,customers,interactions}', 'rollup_rfm_cells', 'add_rfm_cells_delta');

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

-- The scratch tables of the engine, crm_kpi.staged_<table>: the fresh rows of a batch, compared with the stored ones.
-- Permanent, so that a worker running for months does not create a table (and a row type, that its caches keep) per
-- batch; unlogged, since no row of theirs outlives the transaction that wrote it; used under the refresh lock only.
DO $$
DECLARE
    t name;
BEGIN
    FOR t IN SELECT k.table_name FROM crm_kpi.kpi_tables k ORDER BY k.position LOOP
        EXECUTE format('CREATE UNLOGGED TABLE crm_kpi.%I (LIKE crm_kpi.%I)', 'staged_' || t, t);
        EXECUTE format('COMMENT ON TABLE crm_kpi.%I IS %L', 'staged_' || t,
                       format('Scratch of the refresh engine: the fresh rows of crm_kpi.%I for the keys of the batch '
                              'being refreshed; empty outside a refresh or rebuild', t));
    END LOOP;
END $$;

-- Empty a scratch table: by TRUNCATE when asked, or when its file has grown to 1 MB (the dead rows of an earlier
-- large batch, which every DELETE and every run would scan again until a vacuum: 73 ms a run for the 330 MB left by
-- the pipeline of 660 days); else by DELETE, since a TRUNCATE costs a new file and a catalog update.
CREATE FUNCTION crm_kpi.empty_staged(table_name name, by_truncate boolean) RETURNS void
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    scratch regclass := format('crm_kpi.%I', 'staged_' || table_name)::regclass;
BEGIN
    EXECUTE format(CASE WHEN by_truncate OR pg_relation_size(scratch) >= 1048576 THEN 'TRUNCATE %s' ELSE 'DELETE FROM %s' END,
                   scratch);
END $$;
COMMENT ON FUNCTION crm_kpi.empty_staged(name, boolean) IS
    'Empties the scratch table crm_kpi.staged_<table>: by TRUNCATE when by_truncate is true or its file holds 1 MB or more, else by DELETE; callers hold the refresh lock';

-- Put the fresh rows of a KPI table for some keys (all when NULL) into its scratch table crm_kpi.staged_<table>.
CREATE FUNCTION crm_kpi.stage_fresh(table_name name, keys anyarray, compute name) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    staged bigint;
BEGIN
    -- A full batch (others may follow in the same transaction) truncates: else every batch would leave its rows
    -- dead in the table (no vacuum before commit) for the next batches to scan.
    PERFORM crm_kpi.empty_staged(table_name,
                                 keys IS NULL OR cardinality(keys) >= current_setting('crm_kpi.refresh_batch_size')::integer);
    EXECUTE format('INSERT INTO crm_kpi.%I SELECT * FROM crm_kpi.%I($1)', 'staged_' || table_name, compute) USING keys;
    GET DIAGNOSTICS staged = ROW_COUNT;
    -- The queries joining the scratch table are planned from its statistics, which autovacuum may have taken while
    -- it was empty (then every row count is estimated at 1: nested loops over thousands of rows). A large batch
    -- measures its own rows (and its key, which the joins use: the other columns cost time and change no plan);
    -- a small one costs little however it is planned.
    IF staged >= 500 THEN
        EXECUTE format('ANALYZE crm_kpi.%I (%I)', 'staged_' || table_name,
                       (SELECT t.key_columns[1] FROM crm_kpi.kpi_tables t WHERE t.table_name = stage_fresh.table_name));
    END IF;
END $$;
COMMENT ON FUNCTION crm_kpi.stage_fresh(name, anyarray, name) IS
    'Replaces the rows of the scratch table crm_kpi.staged_<table> (emptied by crm_kpi.empty_staged, truncated for a full batch of crm_kpi.refresh_batch_size keys) by the fresh rows crm_kpi.<compute>(keys) of a KPI table for some keys (all when NULL), and analyzes it (its row count and first key column) when they are 500 or more; callers hold the refresh lock';

-- Empty the scratch tables at the end of a run. (A rebuild writes the KPI tables without them: they hold at most
-- the batches that followed it.)
CREATE FUNCTION crm_kpi.clear_staged() RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t name;
BEGIN
    FOR t IN SELECT k.table_name FROM crm_kpi.kpi_tables k ORDER BY k.position LOOP
        PERFORM crm_kpi.empty_staged(t, false);
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.clear_staged() IS
    'Empties the scratch tables crm_kpi.staged_<table> at the end of a refresh or rebuild run (crm_kpi.empty_staged); callers hold the refresh lock';

-- Replace every row of a KPI table by its fresh rows (a rebuild); returns the rows written (deleted, inserted).
CREATE FUNCTION crm_kpi.replace_all(table_name name, compute name, key_grain text, concurrently boolean) RETURNS bigint
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    SET default_tablespace = ''
AS $$
DECLARE
    rel regclass := format('crm_kpi.%I', table_name)::regclass;
    deleted bigint;
    inserted bigint;
    indexes jsonb := '[]';
    i record;
BEGIN
    IF replace_all.concurrently THEN
        -- Readers keep reading the old rows until the rebuild commits.
        EXECUTE format('DELETE FROM %s', rel);
        GET DIAGNOSTICS deleted = ROW_COUNT;
    ELSE
        -- Readers wait (the caller holds the table in ACCESS EXCLUSIVE mode): an empty table without indexes, which
        -- are built again after the insert, each by one sort, the way REFRESH MATERIALIZED VIEW builds them, instead
        -- of growing a row at a time. The unique and primary key constraints are dropped and added again with their
        -- index. Each comes back as it was: name, definition, tablespace, comments, CLUSTER and REPLICA IDENTITY marks.
        -- (An index or constraint that another object depends on stays, and is kept up to date by the insert.)
        deleted := 0;  -- TRUNCATE writes no row
        EXECUTE format('TRUNCATE %s', rel);
        SELECT coalesce(jsonb_agg(to_jsonb(x) ORDER BY x.conname NULLS LAST, x.name), '[]') INTO indexes
        FROM (SELECT c.relname AS name, k.conname,
                     CASE WHEN k.oid IS NULL THEN pg_get_indexdef(c.oid) ELSE pg_get_constraintdef(k.oid) END AS def,
                     ts.spcname AS tablespace, obj_description(c.oid, 'pg_class') AS comment,
                     obj_description(k.oid, 'pg_constraint') AS constraint_comment,
                     ix.indisclustered AS clustered, ix.indisreplident AS replident
              FROM pg_index ix JOIN pg_class c ON c.oid = ix.indexrelid
                   LEFT JOIN pg_tablespace ts ON ts.oid = c.reltablespace
                   LEFT JOIN pg_constraint k ON k.conindid = ix.indexrelid AND k.conrelid = rel
              WHERE ix.indrelid = rel AND (k.oid IS NULL OR k.contype IN ('p', 'u'))
                -- not one that something else needs (a foreign key, a view grouping by the primary key): it stays
                AND NOT EXISTS (SELECT FROM pg_depend d
                                WHERE d.deptype = 'n' AND ((d.refclassid = 'pg_class'::regclass AND d.refobjid = ix.indexrelid)
                                                           OR (d.refclassid = 'pg_constraint'::regclass AND d.refobjid = k.oid)))) x;
        FOR i IN SELECT * FROM jsonb_to_recordset(indexes) AS (name name, conname name) LOOP
            IF i.conname IS NULL THEN
                EXECUTE format('DROP INDEX crm_kpi.%I', i.name);
            ELSE
                EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', rel, i.conname);
            END IF;
        END LOOP;
    END IF;
    -- In the order of the table's key: concurrently, its unique index grows at its right edge instead of at random
    -- pages; and the rows of a key (a customer, a day) stay together, for the refreshes and readers that follow.
    EXECUTE format('INSERT INTO %s SELECT * FROM crm_kpi.%I(NULL::%s) ORDER BY %s', rel, compute,
                   CASE key_grain WHEN 'customer' THEN 'bigint[]' ELSE 'date[]' END,
                   (SELECT string_agg(quote_ident(c), ', ') FROM crm_kpi.kpi_tables t, unnest(t.key_columns) c
                    WHERE t.table_name = replace_all.table_name));
    GET DIAGNOSTICS inserted = ROW_COUNT;
    FOR i IN SELECT * FROM jsonb_to_recordset(indexes) AS (name name, conname name, def text, tablespace name, comment text,
                                                           constraint_comment text, clustered boolean, replident boolean) LOOP
        -- (Neither pg_get_indexdef nor pg_get_constraintdef names the index's tablespace.)
        PERFORM set_config('default_tablespace', coalesce(i.tablespace, ''), true);
        IF i.conname IS NULL THEN
            EXECUTE i.def;
        ELSE
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', rel, i.conname, i.def);
            IF i.constraint_comment IS NOT NULL THEN
                EXECUTE format('COMMENT ON CONSTRAINT %I ON %s IS %L', i.conname, rel, i.constraint_comment);
            END IF;
        END IF;
        IF i.comment IS NOT NULL THEN
            EXECUTE format('COMMENT ON INDEX crm_kpi.%I IS %L', i.name, i.comment);
        END IF;
        IF i.clustered THEN
            EXECUTE format('ALTER TABLE %s CLUSTER ON %I', rel, i.name);
        END IF;
        IF i.replident THEN
            EXECUTE format('ALTER TABLE %s REPLICA IDENTITY USING INDEX %I', rel, i.name);
        END IF;
    END LOOP;
    RETURN deleted + inserted;
END $$;
COMMENT ON FUNCTION crm_kpi.replace_all(name, name, text, boolean) IS
    'Replaces every row of a KPI table by crm_kpi.<compute>(NULL) (its rows for all keys): concurrently, by DELETE and an insert in key order (readers see the old rows until commit), else by TRUNCATE and an insert into the table without its indexes and unique constraints, which are built again after it, as they were (the caller holds the table in ACCESS EXCLUSIVE mode); returns the rows written: deleted (concurrently) and inserted';

-- Make a KPI table equal to its staged fresh rows for those keys; returns the rows written (deleted + inserted).
CREATE FUNCTION crm_kpi.apply_fresh(table_name name, keys anyarray) RETURNS bigint
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    -- A merge join would sort both sides by the whole row image (*=): 0.7 s each for a third of a million rows.
    SET enable_mergejoin = off
AS $$
DECLARE
    key_column name;
    -- A stored row and its fresh version are matched on every key column, not on the first only (a customer's days,
    -- or a day's reps, would each be compared with all the others), by equalities a hash join can use: one that may
    -- be null as a one-element array (whose = holds between nulls).
    same_key text;
    deleted bigint;
    inserted bigint;
BEGIN
    SELECT t.key_columns[1],
           string_agg(format(CASE WHEN a.attnotnull THEN 'f.%1$I = t.%1$I' ELSE 'ARRAY[f.%1$I] = ARRAY[t.%1$I]' END, a.attname),
                      ' AND ' ORDER BY k.n)
      INTO key_column, same_key
    FROM crm_kpi.kpi_tables t
    CROSS JOIN LATERAL unnest(t.key_columns) WITH ORDINALITY k (name, n)
    JOIN pg_attribute a ON a.attrelid = format('crm_kpi.%I', t.table_name)::regclass AND a.attname = k.name
    WHERE t.table_name = apply_fresh.table_name
    GROUP BY t.key_columns;
    -- Rows equal to their fresh version (byte for byte) stay; the others are replaced.
    EXECUTE format('DELETE FROM crm_kpi.%1$I t WHERE t.%3$I = ANY($1) '
                   'AND NOT EXISTS (SELECT FROM crm_kpi.%2$I f WHERE %4$s AND f OPERATOR(pg_catalog.*=) t)',
                   table_name, 'staged_' || table_name, key_column, same_key) USING keys;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    EXECUTE format('INSERT INTO crm_kpi.%1$I SELECT f.* FROM crm_kpi.%2$I f '
                   'WHERE NOT EXISTS (SELECT FROM crm_kpi.%1$I t WHERE t.%3$I = ANY($1) AND %4$s '
                   '                  AND t OPERATOR(pg_catalog.*=) f)',
                   table_name, 'staged_' || table_name, key_column, same_key) USING keys;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    RETURN deleted + inserted;
END $$;
COMMENT ON FUNCTION crm_kpi.apply_fresh(name, anyarray) IS
    'Makes a KPI table equal to its staged fresh rows (crm_kpi.staged_<table>) for some keys, rewriting only the rows that differ; returns rows deleted + inserted';

-- The churn months a batch of recomputed spells makes stale.
CREATE FUNCTION crm_kpi.queue_spell_effects(ids bigint[]) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    WITH old AS (SELECT * FROM crm_kpi.customer_spells WHERE customer_id = ANY(ids)),
    fresh AS (SELECT * FROM crm_kpi.staged_customer_spells),
    changed AS (SELECT c.customer_id FROM crm_kpi.changed_spells(ids) c),
    -- months whose start lies in the activity of one version only (customers active at the start)
    activity AS (
        SELECT v.customer_id,
               coalesce(range_agg(tstzrange(v.started_at, v.ended_at, '(]')) FILTER (WHERE v.is_old), '{}') AS before,
               coalesce(range_agg(tstzrange(v.started_at, v.ended_at, '(]')) FILTER (WHERE NOT v.is_old), '{}') AS after
        FROM (SELECT o.*, true AS is_old FROM old o UNION ALL SELECT f.*, false FROM fresh f) v
        WHERE v.customer_id IN (SELECT customer_id FROM changed)
        GROUP BY v.customer_id),
    shifted AS (SELECT r FROM activity, unnest((before - after) + (after - before)) r),
    months AS (
        SELECT g::date AS month
        FROM shifted, generate_series(date_trunc('month', lower(r) AT TIME ZONE st.timezone),
                                      date_trunc('month', least(upper(r), st.as_of) AT TIME ZONE st.timezone),
                                      interval '1 month') g
        WHERE (g::timestamp AT TIME ZONE st.timezone) <@ r
        UNION
        -- months of acquisitions and reactivations that differ
        SELECT date_trunc('month', x.started_at AT TIME ZONE st.timezone)::date
        FROM ((SELECT customer_id, started_at, spell = 1 FROM old EXCEPT SELECT customer_id, started_at, spell = 1 FROM fresh)
              UNION ALL
              (SELECT customer_id, started_at, spell = 1 FROM fresh EXCEPT SELECT customer_id, started_at, spell = 1 FROM old))
             AS x (customer_id, started_at, first)
        UNION
        -- months of churns (that happened) that differ
        SELECT date_trunc('month', x.ended_at AT TIME ZONE st.timezone)::date
        FROM ((SELECT customer_id, ended_at FROM old EXCEPT SELECT customer_id, ended_at FROM fresh)
              UNION ALL
              (SELECT customer_id, ended_at FROM fresh EXCEPT SELECT customer_id, ended_at FROM old)) AS x (customer_id, ended_at)
        WHERE x.ended_at <= st.as_of)
    INSERT INTO crm_kpi.change_queue (target, day) SELECT 'churn', month FROM months;
END $$;
COMMENT ON FUNCTION crm_kpi.queue_spell_effects(bigint[]) IS
    'Queues the churn months that the staged fresh spells of some customers change: months they start in, churn in, or are active at the start of in one version only';

-- Time passing: stages that change with time alone, churns that happened, a new month.
CREATE FUNCTION crm_kpi.advance_time(new_as_of timestamptz) RETURNS void
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    IF st.built_at IS NULL OR new_as_of <= st.as_of THEN
        RETURN;
    END IF;
    INSERT INTO crm_kpi.change_queue (target, customer_id)
    SELECT 'customer', s.customer_id FROM crm_kpi.customer_stats s WHERE s.stage_until <= new_as_of;
    INSERT INTO crm_kpi.change_queue (target, day)
    SELECT DISTINCT 'churn', date_trunc('month', p.ended_at AT TIME ZONE st.timezone)::date
    FROM crm_kpi.customer_spells p WHERE p.ended_at > st.as_of AND p.ended_at <= new_as_of
    UNION
    SELECT 'churn', g::date
    FROM generate_series(date_trunc('month', st.as_of AT TIME ZONE st.timezone) + interval '1 month',
                         date_trunc('month', new_as_of AT TIME ZONE st.timezone), interval '1 month') g;
    UPDATE crm_kpi.engine_state SET as_of = new_as_of;
END $$;
COMMENT ON FUNCTION crm_kpi.advance_time(timestamptz) IS
    'Moves engine_state.as_of forward and queues what time alone changed: customers whose stage_until passed (index on it), months with churns that happened, months that began';

-- The failures of a run with those of one more family: each of its tables with the error.
CREATE FUNCTION crm_kpi.add_failure(failed jsonb, group_tables name[], errstate text, message text) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN failed || (SELECT jsonb_object_agg(t, format('%s: %s', errstate, message)) FROM unnest(group_tables) t);
COMMENT ON FUNCTION crm_kpi.add_failure(jsonb, name[], text, text) IS
    'The failures of a refresh run (KPI table -> error) with each table of a family that failed added, its error written SQLSTATE: message';

-- Rebuild the KPI tables of the kinds whose rebuild is queued (target * followed by the kind): each group of tables
-- (crm_kpi.kind_tables) in a subtransaction of its own, so that one broken binding does not hold the others back.
CREATE FUNCTION crm_kpi.rebuild_kinds(INOUT tables jsonb, INOUT failed jsonb) RETURNS record
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
    t record;
    b record;
    part jsonb;
    err text;
    errstate text;
BEGIN
    -- The largest group first: the one of the customers holds marketing_monthly, which marketing_spend feeds too.
    FOR g IN SELECT x.group_tables, array_agg(x.target) AS targets
             FROM (SELECT DISTINCT q.target, crm_kpi.kind_tables(substr(q.target, 2)) AS group_tables
                   FROM crm_kpi.change_queue q WHERE left(q.target, 1) = '*' AND q.target <> '*') x
             GROUP BY x.group_tables ORDER BY cardinality(x.group_tables) DESC, min(x.target) LOOP
        CONTINUE WHEN failed ?| g.group_tables::text[];
        part := tables;
        BEGIN
            -- The rebuild's markers, and the pending keys it covers: those whose every table it rebuilds (deleted
            -- before it reads the sources, as a rebuild of everything empties the queue; a key committed later stays).
            DELETE FROM crm_kpi.change_queue q
            WHERE q.target = ANY(g.targets)
               OR q.target IN (SELECT x.target FROM (SELECT DISTINCT unnest(k.queue_targets) AS target FROM crm_kpi.kpi_tables k) x
                               WHERE crm_kpi.stale_tables(x.target) <@ g.group_tables);
            FOR b IN SELECT s.kind, s.source FROM crm_kpi.source_bindings s WHERE '*' || s.kind = ANY(g.targets) LOOP
                IF NOT crm_kpi.capture_ok(b.kind, b.source) THEN
                    PERFORM crm_kpi.capture_attach(b.kind, b.source);
                END IF;
            END LOOP;
            FOR t IN SELECT k.table_name, k.stage_function, k.key_grain FROM crm_kpi.kpi_tables k
                     WHERE k.table_name = ANY(g.group_tables) AND NOT part ? k.table_name ORDER BY k.position LOOP
                PERFORM crm_kpi.report_activity(format('rebuilding %s (%s)', t.table_name, array_to_string(g.targets, ', ')));
                part := jsonb_set(part, ARRAY[t.table_name::text],
                                  to_jsonb(crm_kpi.replace_all(t.table_name, t.stage_function, t.key_grain, true)));
            END LOOP;
            tables := part;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, errstate = RETURNED_SQLSTATE;
            failed := crm_kpi.add_failure(failed, g.group_tables, errstate, err);
        END;
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.rebuild_kinds(jsonb, jsonb) IS
    'Rebuilds (concurrently) the KPI tables of each kind whose rebuild is queued (target * followed by the kind; crm_kpi.kind_tables), each group of tables in a subtransaction, and drops the pending keys whose every table it rebuilds: adds the rows written per table to tables; a group that fails stays queued with those keys, written nowhere, and its tables with the error go into failed';

-- One batch: up to crm_kpi.refresh_batch_size customers, or else as many days and months of each family. Returns the
-- keys taken. Each family runs in a subtransaction: one that fails (its tables and error go into failed) leaves its
-- keys queued and writes nothing, and the tables in failed are left alone for the rest of the run.
CREATE FUNCTION crm_kpi.refresh_batch(INOUT tables jsonb, INOUT failed jsonb, OUT keys bigint) RETURNS record
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
    FOR g IN SELECT k.own_target, k.key_grain, array_agg(k.table_name ORDER BY k.position) AS group_tables
             FROM crm_kpi.kpi_tables k WHERE k.key_grain IN ('day', 'month')
             GROUP BY k.own_target, k.key_grain ORDER BY min(k.position) LOOP
        CONTINUE WHEN failed ?| g.group_tables::text[];
        part := tables;
        BEGIN
            WITH picked AS (SELECT DISTINCT q.day FROM crm_kpi.change_queue q
                            WHERE q.target = g.own_target AND q.day IS NOT NULL LIMIT n),
            taken AS (DELETE FROM crm_kpi.change_queue q USING picked p
                      WHERE q.target = g.own_target AND q.day = p.day RETURNING q.day)
            SELECT array_agg(DISTINCT taken.day) INTO days FROM taken;
            IF days IS NOT NULL THEN
                FOR t IN SELECT k.table_name, k.stage_function FROM crm_kpi.kpi_tables k
                         WHERE k.table_name = ANY(g.group_tables) ORDER BY k.position LOOP
                    PERFORM crm_kpi.report_activity(format('%s, %s %s (%s keys still queued)', t.table_name,
                                                           cardinality(days), g.key_grain || 's',
                                                           (SELECT count(*) FROM crm_kpi.change_queue)));
                    PERFORM crm_kpi.stage_fresh(t.table_name, days, t.stage_function);
                    rows := crm_kpi.apply_fresh(t.table_name, days);
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

-- Adopt settings for a rebuild; returns whether the time zone changed.
CREATE FUNCTION crm_kpi.adopt_settings(wanted crm_kpi.engine_state) RETURNS boolean
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_timezone text := (SELECT timezone FROM crm_kpi.engine_state);
BEGIN
    UPDATE crm_kpi.engine_state SET
        timezone = wanted.timezone, active_window = wanted.active_window, churn_after = wanted.churn_after,
        loyal_min_tenure = wanted.loyal_min_tenure, loyal_min_orders = wanted.loyal_min_orders,
        resolution_sla = wanted.resolution_sla;
    RETURN old_timezone IS DISTINCT FROM wanted.timezone;
END $$;
COMMENT ON FUNCTION crm_kpi.adopt_settings(crm_kpi.engine_state) IS
    'Copies the time zone, lifecycle and SLA settings of a rebuild (crm_kpi.wanted_settings) into engine_state; true when the time zone changed';

-- The work of refresh() and rebuild(), under the tables' own settings; records the run.
CREATE FUNCTION crm_kpi.run_engine(full_rebuild boolean, adopt crm_kpi.engine_state, max_batches integer,
                                   concurrently boolean, hold_failed boolean)
    RETURNS crm_kpi.refresh_history
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    SET TimeZone = 'UTC' SET crm_kpi.timezone = 'UTC' SET crm_kpi.active_window = '90 days'
    SET crm_kpi.churn_after = '180 days' SET crm_kpi.loyal_min_tenure = '365 days'
    SET crm_kpi.loyal_min_orders = 5 SET crm_kpi.resolution_sla = '72 hours' SET jit = off
AS $$
DECLARE
    started timestamptz := clock_timestamp();
    checked timestamptz;
    tables jsonb := '{}';
    batches integer := 0;
    keys bigint := 0;
    b record;
    t record;
    rows bigint;
    err text;
    errstate text;
    failed_table text;
    failed jsonb := '{}';  -- tables of the families that failed, with the error
    held jsonb := '{}';    -- tables of the families held back until their retry_at, with their last error
    family_err text;
    rebuilt boolean := false;
    reattach boolean := false;
    run crm_kpi.refresh_history;
BEGIN
    BEGIN
        -- Inside the block: a rebuild that fails keeps the settings the tables were built with.
        IF adopt.timezone IS NOT NULL THEN
            reattach := crm_kpi.adopt_settings(adopt);
        END IF;
        IF full_rebuild THEN
            IF NOT run_engine.concurrently THEN
                -- All at once, in one order: readers that wait for one table hold no other.
                EXECUTE (SELECT 'LOCK TABLE ' || string_agg(format('crm_kpi.%I', k.table_name), ', ' ORDER BY k.position)
                                || ' IN ACCESS EXCLUSIVE MODE' FROM crm_kpi.kpi_tables k);
            END IF;
            checked := clock_timestamp();
            DELETE FROM crm_kpi.change_queue;
            UPDATE crm_kpi.engine_state SET as_of = now(), built_at = now();
            PERFORM crm_kpi.engine_apply(crm_kpi.engine_settings());
            FOR b IN SELECT s.kind, s.source FROM crm_kpi.source_bindings s LOOP
                IF reattach OR NOT crm_kpi.capture_ok(b.kind, b.source) THEN
                    PERFORM crm_kpi.capture_attach(b.kind, b.source);
                END IF;
            END LOOP;
            FOR t IN SELECT * FROM crm_kpi.kpi_tables ORDER BY position LOOP
                failed_table := t.table_name;
                rows := crm_kpi.replace_all(t.table_name, t.stage_function, t.key_grain, run_engine.concurrently);
                tables := jsonb_set(tables, ARRAY[t.table_name::text], to_jsonb(rows));
            END LOOP;
            failed_table := NULL;
            batches := 1;
        ELSE
            PERFORM crm_kpi.engine_apply(crm_kpi.engine_settings());
            PERFORM crm_kpi.advance_time(now());
            IF hold_failed THEN
                -- A family that failed is left alone until its retry_at: its failure may come late in a long
                -- computation, and every commit wakes the worker.
                SELECT coalesce(jsonb_object_agg(s.table_name, s.last_error), '{}') INTO held
                FROM crm_kpi.kpi_table_state s WHERE s.retry_at > now() AND s.last_error IS NOT NULL;
                failed := held;
            END IF;
            b := crm_kpi.rebuild_kinds(tables, failed);
            tables := b.tables;
            failed := b.failed;
            rebuilt := tables <> '{}';
        END IF;
        LOOP
            EXIT WHEN max_batches IS NOT NULL AND batches >= max_batches;
            checked := clock_timestamp();
            b := crm_kpi.refresh_batch(tables, failed);
            tables := b.tables;
            failed := b.failed;
            EXIT WHEN b.keys = 0;
            batches := batches + 1;
            keys := keys + b.keys;
        END LOOP;
        IF keys > 0 THEN  -- only a batch that took keys stages rows (a worker finds none most of the time)
            PERFORM crm_kpi.clear_staged();
        END IF;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS err = MESSAGE_TEXT, errstate = RETURNED_SQLSTATE;
        err := format('%s: %s', errstate, err);
        tables := '{}';
        failed := '{}';
        held := '{}';
        rebuilt := false;
    END;
    failed := failed - ARRAY(SELECT jsonb_object_keys(held));
    -- The families that failed in this run, each error once with its tables.
    SELECT string_agg(format('%s: %s', x.names, x.error), '; ' ORDER BY x.first) INTO family_err
    FROM (SELECT f.value #>> '{}' AS error, string_agg(f.key, ', ' ORDER BY k.position) AS names, min(k.position) AS first
          FROM jsonb_each(failed) f JOIN crm_kpi.kpi_tables k ON k.table_name = f.key
          GROUP BY 1) x;
    SELECT NULL, CASE WHEN full_rebuild OR rebuilt THEN 'rebuild' ELSE 'refresh' END, started, clock_timestamp(), batches, keys,
           coalesce((SELECT sum(value::bigint) FROM jsonb_each_text(tables)), 0), tables,
           (SELECT count(*) FROM crm_kpi.change_queue), coalesce(err, family_err)
      INTO run;
    -- A run that found nothing to do is not recorded (a worker wakes every naptime).
    IF full_rebuild OR rebuilt OR keys > 0 OR run.error IS NOT NULL THEN
        INSERT INTO crm_kpi.refresh_history (mode, started_at, finished_at, batches, stale_keys, rows_touched, tables,
                                             pending_after, error)
        VALUES (run.mode, run.started_at, run.finished_at, run.batches, run.stale_keys, run.rows_touched, run.tables,
                run.pending_after, run.error)
        RETURNING * INTO run;
    END IF;
    -- Every change committed before checked (the start of the last batch) was either refreshed or is pending, and a
    -- pending key was queued no later than its change committed: the watermark is the older of checked and the
    -- table's oldest pending key. (One pass over the queue, which may be large, for all the tables.)
    -- (A family that failed, or was held back, left its keys queued, with the times they were queued at.)
    -- A table that failed waits 1 s before the worker tries it again, twice as long after each failure in a row, at
    -- most 5 minutes; one held back keeps its error and retry time.
    WITH pending AS MATERIALIZED (SELECT q.target, min(q.queued_at) AS oldest, crm_kpi.stale_tables(q.target) AS stales
                                  FROM crm_kpi.change_queue q GROUP BY q.target)
    UPDATE crm_kpi.kpi_table_state s SET
        watermark = CASE WHEN err IS NULL
                         THEN greatest(s.watermark,
                                       least(checked, (SELECT min(p.oldest) FROM pending p WHERE s.table_name = ANY(p.stales))))
                         ELSE s.watermark END,
        last_refresh_at = CASE WHEN tables ? s.table_name THEN started ELSE s.last_refresh_at END,
        last_duration = CASE WHEN tables ? s.table_name THEN run.finished_at - started ELSE s.last_duration END,
        rows_touched = CASE WHEN tables ? s.table_name THEN (tables ->> s.table_name)::bigint ELSE s.rows_touched END,
        last_error = CASE WHEN r.failed_now THEN coalesce(err, failed ->> s.table_name)
                          WHEN held ? s.table_name THEN s.last_error END,
        last_error_at = CASE WHEN r.failed_now THEN run.finished_at ELSE s.last_error_at END,
        failures = CASE WHEN r.failed_now THEN s.failures + 1 WHEN held ? s.table_name THEN s.failures ELSE 0 END,
        retry_at = CASE WHEN r.failed_now THEN run.finished_at + least(interval '5 minutes', interval '1 second' * 2 ^ least(s.failures, 9))
                        WHEN held ? s.table_name THEN s.retry_at END
    FROM crm_kpi.kpi_tables k
    CROSS JOIN LATERAL (SELECT err IS NOT NULL OR failed ? k.table_name AS failed_now) r
    WHERE k.table_name = s.table_name AND (err IS NULL OR failed_table IS NULL OR s.table_name = failed_table);
    IF run.run_id IS NOT NULL THEN
        DELETE FROM crm_kpi.refresh_history h
        WHERE h.run_id <= run.run_id - current_setting('crm_kpi.history_limit')::bigint;
    END IF;
    IF err IS NOT NULL THEN
        RAISE WARNING 'crm_kpi refresh failed: %', err
            USING HINT = 'Nothing was written; the stale keys stay queued. See crm_kpi.status.';
    ELSIF family_err IS NOT NULL THEN
        RAISE WARNING 'crm_kpi refresh failed for some KPI tables: %', family_err
            USING HINT = 'The other KPI tables were refreshed; the stale keys of these stay queued. See crm_kpi.status.';
    END IF;
    RETURN run;
END $$;
COMMENT ON FUNCTION crm_kpi.run_engine(boolean, crm_kpi.engine_state, integer, boolean, boolean) IS
    'The work of crm_kpi.refresh() and crm_kpi.rebuild() under the settings the tables are built with (a rebuild first adopts the settings adopt, unless NULL; a failed one keeps the old; not concurrently, it holds every KPI table in ACCESS EXCLUSIVE mode): batches until the queue is empty (or max_batches), recorded in kpi_table_state and (unless there was nothing to do; run_id is then NULL) in refresh_history. A rebuild is all or nothing; a refresh rebuilds the tables of each kind whose rebuild is queued and refreshes each family in a subtransaction, so that a family that fails (a broken binding, a value out of range) leaves its keys queued and its tables as they were, with its error, while the others are refreshed. hold_failed (the worker): a family whose tables failed is left alone, keys queued and error kept, until their kpi_table_state.retry_at';

CREATE FUNCTION crm_kpi.refresh(max_batches integer DEFAULT NULL) RETURNS crm_kpi.refresh_history
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    full_rebuild boolean;
BEGIN
    IF max_batches < 1 THEN
        RAISE EXCEPTION 'max_batches must be at least 1, not %', max_batches USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM crm_kpi.library_version();  -- loads the library, so that its settings are defined
    -- Each batch must see the keys committed before it (and the watermark assumes it).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'the KPI tables are refreshed under READ COMMITTED only, not %', upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'active_sql_transaction',
                  HINT = 'Call it outside a REPEATABLE READ or SERIALIZABLE transaction.';
    END IF;
    PERFORM pg_advisory_xact_lock(7226110472398251520);
    full_rebuild := (SELECT built_at IS NULL FROM crm_kpi.engine_state)
                    OR EXISTS (SELECT FROM crm_kpi.change_queue WHERE target = '*');
    IF full_rebuild THEN
        PERFORM crm_kpi.lifecycle_classify(now(), 0, 0, NULL, NULL);  -- raises if churn_after <= active_window
        RETURN crm_kpi.run_engine(true, crm_kpi.wanted_settings(now()), max_batches, true, false);
    END IF;
    -- Called by the refresh worker (its backend type is the bgw_type worker.c gives it), it holds back the families
    -- that failed until their retry_at; called by hand, it retries them at once.
    RETURN crm_kpi.run_engine(false, NULL, max_batches, true,
                              coalesce((SELECT a.backend_type = 'crm_kpi worker' FROM pg_stat_get_activity(pg_backend_pid()) a), false));
END $$;
COMMENT ON FUNCTION crm_kpi.refresh(integer) IS
    'Brings the KPI tables up to date: recomputes the stale days, months and customers in batches (all, or max_batches) and what time alone changed, each family in a subtransaction (one that fails keeps its keys queued and its tables as they were, and the others are refreshed; the refresh worker then leaves it alone until its retry_at, a call by hand retries it at once); rebuilds everything instead when never built or a rebuild of everything (*) is queued, and first the tables a kind feeds when a source of that kind was truncated, bound, unbound or altered in what it reads. One refresh at a time; writers never wait for it';

CREATE FUNCTION crm_kpi.rebuild(concurrently boolean DEFAULT true) RETURNS crm_kpi.refresh_history
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF rebuild.concurrently IS NULL THEN
        RAISE EXCEPTION 'concurrently must be true or false, not NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM crm_kpi.library_version();  -- loads the library, so that its settings are defined
    -- Each batch must see the keys committed before it (and the watermark assumes it).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'the KPI tables are refreshed under READ COMMITTED only, not %', upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'active_sql_transaction',
                  HINT = 'Call it outside a REPEATABLE READ or SERIALIZABLE transaction.';
    END IF;
    PERFORM pg_advisory_xact_lock(7226110472398251520);
    PERFORM crm_kpi.lifecycle_classify(now(), 0, 0, NULL, NULL);  -- raises if churn_after <= active_window
    RETURN crm_kpi.run_engine(true, crm_kpi.wanted_settings(now()), NULL, rebuild.concurrently, false);
END $$;
COMMENT ON FUNCTION crm_kpi.rebuild(boolean) IS
    'Recomputes every KPI table from scratch with the current settings (first fill, after a restore, after crm_kpi.timezone, churn_after or another setting they depend on changed). Concurrently (the default), readers keep the old rows until it commits; not concurrently, faster, and readers of the KPI tables wait for it, as for REFRESH MATERIALIZED VIEW';
