-- crm_kpi 0.1.3 -> 0.1.4: a value a binding cannot convert no longer makes the CRM's write fail. A capture trigger
-- whose keys are expressions (or whose binding has a filter) reads them with a SELECT, apart from the write; a value
-- it cannot convert (a customer id 'oops' cast to bigint) queues a rebuild of the tables the source's kind feeds,
-- with a WARNING, and the refresh reports the error in crm_kpi.status until the row is fixed.
\echo Use "ALTER EXTENSION crm_kpi UPDATE TO '0.1.4'" to load this file. \quit

CREATE OR REPLACE FUNCTION crm_kpi.capture_sql(kind text, source regclass, event text) RETURNS text
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b crm_kpi.source_bindings;
    tz text := coalesce((SELECT timezone FROM crm_kpi.engine_state), 'UTC');
    keys text[];
    rows_sql text;
BEGIN
    b := crm_kpi.capture_binding(kind, source);
    IF b.kind IS NULL THEN
        RETURN NULL;
    END IF;
    -- Truncated, or the binding no longer reads the table (a mapped column renamed or dropped): everything the kind
    -- feeds is stale, and the CRM's write goes through; the refresh reports the broken binding until it is fixed.
    IF event = 'truncate' OR EXISTS (SELECT FROM crm_kpi.binding_shape_problems(b.kind, b.source, b.mapping)) THEN
        RETURN format('INSERT INTO crm_kpi.change_queue (target) VALUES (%L)', '*' || b.kind);
    END IF;
    -- One SELECT list per key pair: the day of the time column in the KPI time zone (a date column as it is), the customer.
    SELECT array_agg(format('%s AS day, %s AS customer_id',
                             CASE WHEN dc.column_name IS NULL THEN 'NULL::date'
                                  WHEN dc.data_type = 'date'::regtype
                                  THEN format('CAST(%s AS date)', crm_kpi.mapping_sql(b.mapping -> k.day_column::text))
                                  ELSE format('(CAST(%s AS timestamptz) AT TIME ZONE %L)::date',
                                              crm_kpi.mapping_sql(b.mapping -> k.day_column::text), tz) END,
                             CASE WHEN k.customer_column IS NULL THEN 'NULL::bigint'
                                  ELSE format('CAST(%s AS bigint)', crm_kpi.mapping_sql(b.mapping -> k.customer_column::text)) END)
                     ORDER BY k.day_column, k.customer_column)
      INTO keys
    FROM crm_kpi.capture_keys k
    LEFT JOIN crm_kpi.source_contract dc ON dc.kind = k.kind AND dc.column_name = k.day_column
    WHERE k.kind = capture_sql.kind;
    IF keys IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT string_agg(format('SELECT %s FROM %I AS src%s', key_list, t,
                             coalesce(' WHERE (' || crm_kpi.mapping_sql(b.mapping -> '_filter') || ')', '')),
                      ' UNION ALL ')
      INTO rows_sql
    FROM unnest(CASE event WHEN 'insert' THEN ARRAY['crm_kpi_new']
                           WHEN 'delete' THEN ARRAY['crm_kpi_old']
                           ELSE ARRAY['crm_kpi_old', 'crm_kpi_new'] END) t,
         unnest(keys) key_list;
    -- A SELECT, which the trigger runs apart from the CRM's write and queues under the kind: a value it cannot
    -- convert queues the whole kind ('*' || kind) with a WARNING instead of failing the write.
    RETURN format('SELECT DISTINCT r.day, r.customer_id FROM (%s) AS r '
                  'WHERE r.day IS NOT NULL OR r.customer_id IS NOT NULL', rows_sql);
END $$;
COMMENT ON FUNCTION crm_kpi.capture_sql(text, regclass, text) IS
    'The statement a capture trigger of a bound source runs for an event (insert, update, delete, truncate): a SELECT of the distinct (day date, customer_id bigint) keys of the transition rows, which the trigger queues under the source''s kind (the whole kind, with a WARNING, when a value cannot be converted); an INSERT of ''*'' || kind when the write makes everything of the kind stale (a TRUNCATE, a binding that no longer reads the table)';
