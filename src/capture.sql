-- capture.sql: change capture: the triggers put on bound sources, and the statements they run.

-- Which keys each kind of source makes stale: (target, contract column, grain); 'customer' marks the customer id.
CREATE TABLE crm_kpi.capture_keys (
    kind text NOT NULL,
    target text NOT NULL,
    column_name name NOT NULL,
    grain text NOT NULL CHECK (grain IN ('day', 'month', 'customer')),
    PRIMARY KEY (kind, target, column_name)
);
COMMENT ON TABLE crm_kpi.capture_keys IS
    'For each kind of source, the keys a changed row makes stale: the day or month of a time column for a KPI family, or the customer';
INSERT INTO crm_kpi.capture_keys VALUES
    ('orders', 'sales', 'ordered_at', 'day'),
    ('orders', 'cohort', 'ordered_at', 'month'),
    ('orders', 'customer', 'customer_id', 'customer'),
    ('customers', 'customer', 'customer_id', 'customer'),
    ('interactions', 'customer', 'customer_id', 'customer'),
    ('opportunities', 'pipeline', 'created_at', 'day'),
    ('opportunities', 'pipeline', 'closed_at', 'day'),
    ('tickets', 'service', 'opened_at', 'day'),
    ('survey_responses', 'satisfaction', 'answered_at', 'day'),
    ('marketing_spend', 'marketing', 'day', 'month');

-- The statement a capture trigger runs: queue the distinct stale keys of the statement's rows.
CREATE FUNCTION crm_kpi.capture_sql(kind text, source regclass, event text) RETURNS text
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b crm_kpi.source_bindings;
    tz text := coalesce((SELECT timezone FROM crm_kpi.engine_state), 'UTC');
    cols text;
    keys text;
    rows_sql text;
BEGIN
    SELECT * INTO b FROM crm_kpi.source_bindings s WHERE s.kind = capture_sql.kind AND s.source = capture_sql.source;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF event = 'truncate' THEN
        RETURN 'INSERT INTO crm_kpi.change_queue (target) VALUES (''*'')';
    END IF;
    SELECT string_agg(format('CAST(%s AS %s) AS %I', crm_kpi.mapping_sql(b.mapping -> c.column_name::text),
                             c.data_type, 'k_' || c.column_name), ', ' ORDER BY c.column_name)
      INTO cols
    FROM crm_kpi.source_contract c
    WHERE c.kind = capture_sql.kind
      AND c.column_name IN (SELECT k.column_name FROM crm_kpi.capture_keys k WHERE k.kind = capture_sql.kind);
    SELECT string_agg(format('(%L, %s, %s)', k.target,
                             CASE k.grain
                                 WHEN 'customer' THEN 'NULL::date'
                                 WHEN 'day' THEN format('(r.%I AT TIME ZONE %L)::date', 'k_' || k.column_name, tz)
                                 WHEN 'month' THEN
                                     CASE WHEN c.data_type = 'date'::regtype
                                          THEN format('date_trunc(''month'', r.%I)::date', 'k_' || k.column_name)
                                          ELSE format('date_trunc(''month'', r.%I AT TIME ZONE %L)::date',
                                                      'k_' || k.column_name, tz) END
                             END,
                             CASE k.grain WHEN 'customer' THEN format('r.%I', 'k_' || k.column_name)
                                          ELSE 'NULL::bigint' END), ', ' ORDER BY k.target, k.column_name)
      INTO keys
    FROM crm_kpi.capture_keys k
    JOIN crm_kpi.source_contract c ON c.kind = k.kind AND c.column_name = k.column_name
    WHERE k.kind = capture_sql.kind;
    IF cols IS NULL THEN
        RETURN NULL;
    END IF;
    rows_sql := (SELECT string_agg(format('SELECT %s FROM %I AS src%s', cols, t,
                                          coalesce(' WHERE (' || crm_kpi.mapping_sql(b.mapping -> '_filter') || ')', '')),
                                   ' UNION ALL ')
                 FROM unnest(CASE event WHEN 'insert' THEN ARRAY['crm_kpi_new']
                                        WHEN 'delete' THEN ARRAY['crm_kpi_old']
                                        ELSE ARRAY['crm_kpi_old', 'crm_kpi_new'] END) t);
    RETURN format('INSERT INTO crm_kpi.change_queue (target, day, customer_id) '
                  'SELECT DISTINCT k.target, k.day, k.customer_id FROM (%s) AS r '
                  'CROSS JOIN LATERAL (VALUES %s) AS k (target, day, customer_id) '
                  'WHERE k.day IS NOT NULL OR k.customer_id IS NOT NULL', rows_sql, keys);
END $$;
COMMENT ON FUNCTION crm_kpi.capture_sql(text, regclass, text) IS
    'The statement a capture trigger of a bound source runs for an event (insert, update, delete, truncate): it queues the distinct stale keys of the transition rows';

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
