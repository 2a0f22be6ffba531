-- staging.sql: how the refresh engine replaces a KPI table's rows: fresh rows staged in scratch tables, then only the
-- rows that differ rewritten; or, in a rebuild, every row replaced.

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
