-- crm_kpi 0.1.4 -> 0.1.5: the refresh matches a KPI table's stored rows with their fresh versions on the whole key,
-- a column that may be null included (a day's pipeline without a rep), by a hash join, not on the first key column
-- only, where each row was compared with all the others of its customer or day. A scratch table left large by an
-- earlier batch is truncated, not deleted from and scanned again at every run until a vacuum. The tables a refresh
-- changes in place leave a tenth of each page free, so that those updates stay on their page (HOT); rows written
-- before the update get that room as they move, or at once with crm_kpi.rebuild().
\echo Use "ALTER EXTENSION crm_kpi UPDATE TO '0.1.5'" to load this file. \quit

CREATE OR REPLACE FUNCTION crm_kpi.apply_fresh(table_name name, keys anyarray) RETURNS bigint
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
REVOKE EXECUTE ON FUNCTION crm_kpi.empty_staged(name, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION crm_kpi.stage_fresh(table_name name, keys anyarray, compute name) RETURNS void
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

CREATE OR REPLACE FUNCTION crm_kpi.clear_staged() RETURNS void
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

ALTER TABLE crm_kpi.sales_daily SET (fillfactor = 90);
ALTER TABLE crm_kpi.sales_channel_daily SET (fillfactor = 90);
ALTER TABLE crm_kpi.customer_counts SET (fillfactor = 90);
ALTER TABLE crm_kpi.customer_events_daily SET (fillfactor = 90);
ALTER TABLE crm_kpi.rfm_cells SET (fillfactor = 90);
ALTER TABLE crm_kpi.cohort_monthly SET (fillfactor = 90);
ALTER TABLE crm_kpi.marketing_monthly SET (fillfactor = 90);
ALTER TABLE crm_kpi.churn_monthly SET (fillfactor = 90);
