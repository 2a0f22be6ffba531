-- capture.sql: change capture: the triggers put on bound sources, and the statements they run.

-- What a changed row of each kind of source records: the day of a time column and/or the customer.
CREATE TABLE crm_kpi.capture_keys (
    kind text NOT NULL,
    day_column name,
    customer_column name,
    CHECK (day_column IS NOT NULL OR customer_column IS NOT NULL),
    UNIQUE NULLS NOT DISTINCT (kind, day_column, customer_column)
);
COMMENT ON TABLE crm_kpi.capture_keys IS
    'For each kind of source, the keys a changed row records in crm_kpi.change_queue: the day (in the KPI tables'' time zone) of a time column, the customer, or both';
INSERT INTO crm_kpi.capture_keys VALUES
    ('orders', 'ordered_at', 'customer_id'),
    ('customers', NULL, 'customer_id'),
    ('interactions', NULL, 'customer_id'),
    ('opportunities', 'created_at', NULL),
    ('opportunities', 'closed_at', NULL),
    ('tickets', 'opened_at', NULL),
    ('survey_responses', 'answered_at', NULL),
    ('marketing_spend', 'day', NULL);

-- Where the day of a captured row goes: the KPI families (queue targets) it makes stale, by day or by month.
CREATE TABLE crm_kpi.queue_routes (
    kind text NOT NULL,
    target text NOT NULL,
    grain text NOT NULL CHECK (grain IN ('day', 'month')),
    customerless_only boolean NOT NULL,
    PRIMARY KEY (kind, target)
);
COMMENT ON TABLE crm_kpi.queue_routes IS
    'The KPI families a captured day of each kind of source makes stale, by day or by the month containing it (customerless_only: only a row without a customer; the customer''s own part of the family is kept through the customer); a captured customer makes the customer stale';
INSERT INTO crm_kpi.queue_routes VALUES
    ('orders', 'sales', 'day', true),
    ('opportunities', 'pipeline', 'day', false),
    ('tickets', 'service', 'day', false),
    ('survey_responses', 'satisfaction', 'day', false),
    ('marketing_spend', 'marketing', 'month', false);

-- The binding a table's capture triggers serve: its own, or that of the partitioned table it is a partition of.
CREATE FUNCTION crm_kpi.capture_binding(kind text, source regclass) RETURNS crm_kpi.source_bindings
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT s
            FROM crm_kpi.source_bindings s
            JOIN (SELECT capture_binding.source AS relid, 0 AS depth
                  UNION ALL SELECT a.relid, row_number() OVER () FROM pg_partition_ancestors(capture_binding.source) a) t
              ON t.relid = s.source
            WHERE s.kind = capture_binding.kind
            ORDER BY t.depth LIMIT 1);
COMMENT ON FUNCTION crm_kpi.capture_binding(text, regclass) IS
    'The binding of kind that a table''s capture triggers serve: the table''s own, or its nearest partitioned ancestor''s; NULL when none';

-- The statement a capture trigger runs: queue the distinct (day, customer) keys of the statement's rows, one row each.
CREATE FUNCTION crm_kpi.capture_sql(kind text, source regclass, event text) RETURNS text
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

-- The keys a capture trigger can read straight from its transition rows, when every one is a plain column.
CREATE FUNCTION crm_kpi.capture_columns(kind text, source regclass)
    RETURNS TABLE (day_column name, day_is_date boolean, customer_column name, timezone text)
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b crm_kpi.source_bindings;
BEGIN
    b := crm_kpi.capture_binding(kind, source);
    -- A filter, or a key mapped to an expression: the trigger runs capture_sql's statement instead.
    IF b.kind IS NULL OR b.mapping ? '_filter' OR EXISTS (
        SELECT FROM crm_kpi.capture_keys k, unnest(ARRAY[k.day_column, k.customer_column]) c
        WHERE k.kind = capture_columns.kind AND c IS NOT NULL
          AND jsonb_typeof(b.mapping -> c::text) IS DISTINCT FROM 'string') THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT (b.mapping ->> k.day_column::text)::name, dc.data_type = 'date'::regtype,
           (b.mapping ->> k.customer_column::text)::name,
           coalesce((SELECT e.timezone FROM crm_kpi.engine_state e), 'UTC')
    FROM crm_kpi.capture_keys k
    LEFT JOIN crm_kpi.source_contract dc ON dc.kind = k.kind AND dc.column_name = k.day_column
    WHERE k.kind = capture_columns.kind
    ORDER BY k.day_column, k.customer_column;
END $$;
COMMENT ON FUNCTION crm_kpi.capture_columns(text, regclass) IS
    'The columns of a bound source that hold its capture keys (day column, whether the contract makes it a date, customer column) and the KPI time zone; no rows when a key is an expression or the binding has a filter, so that the trigger runs capture_sql''s statement instead';

CREATE FUNCTION crm_kpi.capture() RETURNS trigger
    AS 'MODULE_PATHNAME', 'crm_kpi_capture'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION crm_kpi.capture() IS
    'Capture trigger (AFTER ... FOR EACH STATEMENT, argument: the source kind): queues the keys the statement made stale into crm_kpi.change_queue';

CREATE FUNCTION crm_kpi.capture_loosen(source regclass, trigger_name text) RETURNS void
    AS 'MODULE_PATHNAME', 'crm_kpi_capture_loosen'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION crm_kpi.capture_loosen(regclass, text) IS
    'Makes a capture trigger depend automatically on crm_kpi.capture(), so that DROP EXTENSION removes it (table owner only)';

-- The tables that get capture triggers: the source itself and, for a partitioned one, every partition.
CREATE FUNCTION crm_kpi.capture_tables(source regclass) RETURNS SETOF regclass
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid::regclass FROM pg_class c
    WHERE c.relkind IN ('r', 'p')
      AND (c.oid = source OR c.oid IN (SELECT p.relid FROM pg_partition_tree(source) p))
$$;
COMMENT ON FUNCTION crm_kpi.capture_tables(regclass) IS
    'The tables a source''s capture triggers go on: the table, and every partition of a partitioned one (views get none)';

CREATE FUNCTION crm_kpi.capture_detach(kind text, source regclass) RETURNS void
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT t.t, x.tgname
             FROM crm_kpi.capture_tables(source) AS t (t)
             JOIN pg_trigger x ON x.tgrelid = t.t
             WHERE x.tgname IN (SELECT format('crm_kpi_%s_%s', kind, ev)
                                FROM unnest(ARRAY['ins', 'upd', 'del', 'trunc']) ev) LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', g.tgname, g.t);
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.capture_detach(text, regclass) IS
    'Removes the capture triggers of a source (and of its partitions)';

CREATE FUNCTION crm_kpi.capture_attach(kind text, source regclass) RETURNS void
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
    ev record;
    name text;
BEGIN
    PERFORM crm_kpi.capture_detach(kind, source);
    IF NOT EXISTS (SELECT FROM crm_kpi.capture_keys k WHERE k.kind = capture_attach.kind) THEN
        RETURN;
    END IF;
    FOR t IN SELECT crm_kpi.capture_tables(source) LOOP
        FOR ev IN SELECT * FROM (VALUES
            ('ins', 'AFTER INSERT', 'REFERENCING NEW TABLE AS crm_kpi_new'),
            ('upd', 'AFTER UPDATE', 'REFERENCING OLD TABLE AS crm_kpi_old NEW TABLE AS crm_kpi_new'),
            ('del', 'AFTER DELETE', 'REFERENCING OLD TABLE AS crm_kpi_old'),
            ('trunc', 'AFTER TRUNCATE', '')) AS v(suffix, timing, referencing)
        LOOP
            name := format('crm_kpi_%s_%s', kind, ev.suffix);
            EXECUTE format('CREATE TRIGGER %I %s ON %s %s FOR EACH STATEMENT EXECUTE FUNCTION crm_kpi.capture(%L)',
                           name, ev.timing, t, ev.referencing, kind);
            PERFORM crm_kpi.capture_loosen(t, name);
        END LOOP;
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.capture_attach(text, regclass) IS
    'Puts the capture triggers of a bound source on it (and on its partitions): INSERT, UPDATE, DELETE and TRUNCATE, statement-level with transition tables';

CREATE FUNCTION crm_kpi.capture_ok(kind text, source regclass) RETURNS boolean
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT count(*) FILTER (WHERE NOT EXISTS (
                SELECT FROM pg_trigger g JOIN pg_depend d ON d.classid = 'pg_trigger'::regclass AND d.objid = g.oid
                                        AND d.refclassid = 'pg_proc'::regclass AND d.refobjid = 'crm_kpi.capture()'::regprocedure
                                        AND d.deptype = 'a'
                WHERE g.tgrelid = t.t AND g.tgname = format('crm_kpi_%s_%s', kind, ev))) = 0
            FROM crm_kpi.capture_tables(source) AS t (t), unnest(ARRAY['ins', 'upd', 'del', 'trunc']) ev)
           OR NOT EXISTS (SELECT FROM crm_kpi.capture_keys k WHERE k.kind = capture_ok.kind);
COMMENT ON FUNCTION crm_kpi.capture_ok(text, regclass) IS
    'Whether a bound source (and each of its partitions) has its four capture triggers, removable with the extension';

CREATE FUNCTION crm_kpi.capture_new_partitions() RETURNS event_trigger
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b record;
BEGIN
    FOR b IN SELECT DISTINCT s.kind, s.source
             FROM pg_event_trigger_ddl_commands() c
             JOIN crm_kpi.source_bindings s ON c.objid IN (SELECT crm_kpi.capture_tables(s.source)::oid)
             WHERE c.classid = 'pg_class'::regclass
               AND NOT crm_kpi.capture_ok(s.kind, s.source) LOOP
        PERFORM crm_kpi.capture_attach(b.kind, b.source);
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.capture_new_partitions() IS
    'Event trigger: a partition created in or attached to a bound partitioned source gets the capture triggers at once';

CREATE EVENT TRIGGER crm_kpi_capture_new_partitions ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION crm_kpi.capture_new_partitions();
COMMENT ON EVENT TRIGGER crm_kpi_capture_new_partitions IS
    'Keeps every partition of a bound source captured when partitions are created or attached';
