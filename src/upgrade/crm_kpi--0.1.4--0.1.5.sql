-- crm_kpi 0.1.4 -> 0.1.5: the refresh matches a KPI table's stored rows with their fresh versions on every key column
-- that cannot be null (a customer's day, a day's rep), not on the first only, where each row was compared with all
-- the others of its customer or day.
\echo Use "ALTER EXTENSION crm_kpi UPDATE TO '0.1.5'" to load this file. \quit

CREATE OR REPLACE FUNCTION crm_kpi.apply_fresh(table_name name, keys anyarray) RETURNS bigint
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key_column name;
    -- A stored row and its fresh version are matched on every key column that cannot be null, not on the first
    -- only: a customer's days (or a day's reps) would each be compared with all the others.
    same_key text;
    deleted bigint;
    inserted bigint;
BEGIN
    SELECT t.key_columns[1], string_agg(format('f.%1$I = t.%1$I', a.attname), ' AND ' ORDER BY k.n)
      INTO key_column, same_key
    FROM crm_kpi.kpi_tables t
    CROSS JOIN LATERAL unnest(t.key_columns) WITH ORDINALITY k (name, n)
    JOIN pg_attribute a ON a.attrelid = format('crm_kpi.%I', t.table_name)::regclass AND a.attname = k.name
    WHERE t.table_name = apply_fresh.table_name AND a.attnotnull
    GROUP BY t.key_columns;
    same_key := coalesce(same_key, 'true');
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
