-- bind.sql: binding a CRM's own tables to the source contract: bind_source, unbind_source, source_query.

CREATE FUNCTION crm_kpi.expression_problem(source regclass, expr text) RETURNS text
    AS 'MODULE_PATHNAME', 'crm_kpi_expression_problem'
    LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.expression_problem(regclass, text) IS
    'Why a binding''s SQL expression over a table is not allowed (NULL when it is): it must be one expression over the row, calling only non-volatile functions of pg_catalog. A table the caller cannot read (the source, or one a subquery reads) raises insufficient_privilege, as reading it would';

CREATE FUNCTION crm_kpi.query_function_problem(query text, immutable_only boolean) RETURNS text
    AS 'MODULE_PATHNAME', 'crm_kpi_query_function_problem'
    LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.query_function_problem(text, boolean) IS
    'The first function (or operator''s) that a query, its views expanded and their row-level security policies applied, would call and a binding may not: one not of pg_catalog, a volatile one, or when immutable_only one that is not immutable; NULL when there is none. Raises the errors of parsing it, and insufficient_privilege for a table or view the caller cannot read, as running it would';

-- The SQL of one mapped column: a column name (quoted) or {"expr": "..."} (parenthesized).
CREATE FUNCTION crm_kpi.mapping_sql(mapped jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE jsonb_typeof(mapped)
               WHEN 'string' THEN 'src.' || quote_ident(mapped #>> '{}')
               WHEN 'object' THEN '(' || (mapped ->> 'expr') || ')'
           END;
COMMENT ON FUNCTION crm_kpi.mapping_sql(jsonb) IS
    'The SQL a mapping entry stands for: "column" (quoted) or {"expr": "SQL expression"}';

-- The SELECT reading one bound source as the contract's columns.
CREATE FUNCTION crm_kpi.binding_select(kind text, source regclass, mapping jsonb) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT 'SELECT ' || string_agg(
                       format('CAST(%s AS %s) AS %I',
                              coalesce(crm_kpi.mapping_sql(mapping -> c.column_name::text), 'NULL'),
                              c.data_type, c.column_name), ', ' ORDER BY c.position)
                   || ' FROM ' || source::text || ' AS src'
                   || coalesce(' WHERE (' || crm_kpi.mapping_sql(mapping -> '_filter') || ')', '')
            FROM crm_kpi.source_contract c WHERE c.kind = binding_select.kind);
COMMENT ON FUNCTION crm_kpi.binding_select(text, regclass, jsonb) IS
    'The SELECT that reads a bound table as the contract columns of its kind (optional "_filter" keeps only some rows)';

-- Problems with the shape of a binding, all of them; no rows when it is valid.
CREATE FUNCTION crm_kpi.binding_shape_problems(kind text, source regclass, mapping jsonb) RETURNS SETOF text
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    c record;
    k text;
    v jsonb;
    col_type regtype;
    msg text;
BEGIN
    IF NOT EXISTS (SELECT FROM crm_kpi.source_contract sc WHERE sc.kind = binding_shape_problems.kind) THEN
        RETURN NEXT format('unknown kind "%s" (kinds: %s)', kind,
                           (SELECT string_agg(DISTINCT sc.kind, ', ') FROM crm_kpi.source_contract sc));
        RETURN;
    END IF;
    IF jsonb_typeof(mapping) IS DISTINCT FROM 'object' THEN
        RETURN NEXT 'the mapping must be a JSON object of contract column -> "table column" or {"expr": "SQL"}';
        RETURN;
    END IF;
    IF (SELECT relkind FROM pg_class WHERE oid = source) NOT IN ('r', 'p', 'v', 'm', 'f') THEN
        RETURN NEXT format('%s is not a table or view', source);
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(mapping) LOOP
        IF k <> '_filter' AND NOT EXISTS (SELECT FROM crm_kpi.source_contract sc
                                          WHERE sc.kind = binding_shape_problems.kind AND sc.column_name = k) THEN
            RETURN NEXT format('"%s" is not a column of the %s contract', k, kind);
        ELSIF NOT (jsonb_typeof(v) = 'string' OR (jsonb_typeof(v) = 'object' AND jsonb_typeof(v -> 'expr') = 'string'
                                                   AND (SELECT count(*) FROM jsonb_object_keys(v)) = 1)) THEN
            RETURN NEXT format('"%s" must map to a column name or {"expr": "SQL expression"}', k);
        END IF;
    END LOOP;
    FOR c IN SELECT sc.* FROM crm_kpi.source_contract sc WHERE sc.kind = binding_shape_problems.kind ORDER BY sc.position LOOP
        v := mapping -> c.column_name::text;
        IF v IS NULL THEN
            IF c.required THEN
                RETURN NEXT format('required column "%s" (%s) is not mapped', c.column_name, c.data_type);
            END IF;
            CONTINUE;
        END IF;
        IF jsonb_typeof(v) = 'string' THEN
            SELECT a.atttypid::regtype INTO col_type FROM pg_attribute a
            WHERE a.attrelid = source AND a.attname = (v #>> '{}') AND a.attnum > 0 AND NOT a.attisdropped;
            IF col_type IS NULL THEN
                RETURN NEXT format('column "%s" of %s (mapped to "%s") does not exist', v #>> '{}', source, c.column_name);
                CONTINUE;
            END IF;
            IF col_type = 'timestamp'::regtype AND c.data_type = 'timestamptz'::regtype THEN
                RETURN NEXT format('column "%s" of %s is timestamp without time zone; map "%s" with an expression that names its zone, such as {"expr": "%s AT TIME ZONE ''UTC''"}',
                                   v #>> '{}', source, c.column_name, quote_ident(v #>> '{}'));
                CONTINUE;
            END IF;
            IF col_type <> c.data_type AND NOT EXISTS (
                    SELECT FROM pg_cast pc WHERE pc.castsource = col_type AND pc.casttarget = c.data_type
                                             AND pc.castcontext IN ('i', 'a'))
               AND NOT (c.data_type = 'text'::regtype AND col_type IN ('character varying'::regtype, 'character'::regtype, 'name'::regtype)) THEN
                RETURN NEXT format('column "%s" of %s has type %s, which does not convert to %s ("%s")',
                                   v #>> '{}', source, col_type, c.data_type, c.column_name);
                CONTINUE;
            END IF;
        END IF;
        IF jsonb_typeof(v) = 'object' THEN
            BEGIN
                msg := crm_kpi.expression_problem(source, v ->> 'expr');
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
            END;
            IF msg IS NOT NULL THEN
                RETURN NEXT format('"%s": %s', c.column_name, msg);
                CONTINUE;
            END IF;
        END IF;
        -- The column or expression must evaluate on the table as the contract type.
        BEGIN
            EXECUTE format('SELECT CAST(%s AS %s) FROM %s AS src LIMIT 0',
                           crm_kpi.mapping_sql(v), c.data_type, source);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
            RETURN NEXT format('"%s": %s', c.column_name, msg);
        END;
    END LOOP;
    IF mapping ? '_filter' AND jsonb_typeof(mapping -> '_filter') = 'object' THEN
        BEGIN
            msg := crm_kpi.expression_problem(source, mapping -> '_filter' ->> 'expr');
            IF msg IS NULL THEN
                EXECUTE format('SELECT 1 FROM %s AS src WHERE CAST(%s AS boolean) LIMIT 0', source,
                               crm_kpi.mapping_sql(mapping -> '_filter'));
            END IF;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
        END;
        IF msg IS NOT NULL THEN
            RETURN NEXT format('"_filter": %s', msg);
        END IF;
    END IF;
END $$;
COMMENT ON FUNCTION crm_kpi.binding_shape_problems(text, regclass, jsonb) IS
    'Every problem with the shape of a proposed binding (unknown kind or column, missing required column, missing or incompatible table column, expression that does not compile or is not allowed); no rows when it has none';

-- What a query runs: the functions it calls (directly, through operators and casts, and through the
-- views it reads, at any depth), the domains it converts to, the tables it reads through a view;
-- problems with them, and every object it depends on. It is made a temporary view, then rolled back.
CREATE FUNCTION crm_kpi.query_code(query text, binder regrole, OUT problems text[], OUT objects oid[])
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    err text;
    -- A binder who is not a superuser could not read, herself, what a superuser reads for her.
    limited boolean := binder IS NOT NULL AND NOT (SELECT r.rolsuper FROM pg_roles r WHERE r.oid = binder);
BEGIN
    IF query IS NULL THEN
        RETURN;
    END IF;
    BEGIN
        EXECUTE 'CREATE TEMP VIEW crm_kpi_vetted AS ' || query;
        WITH RECURSIVE rules (rule, depth) AS (
            SELECT r.oid, 0 FROM pg_rewrite r WHERE r.ev_class = 'pg_temp.crm_kpi_vetted'::regclass
            UNION
            SELECT v.oid, rules.depth + 1
            FROM rules
            JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rules.rule AND d.refclassid = 'pg_class'::regclass
            JOIN pg_rewrite v ON v.ev_class = d.refobjid AND v.oid <> rules.rule),
        deps AS (
            SELECT DISTINCT d.refclassid, d.refobjid, r.depth > 0 AS in_view
            FROM rules r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.rule),
        code AS (
            SELECT p.oid, p.oid::regprocedure::text AS what
            FROM deps JOIN pg_proc p ON deps.refclassid = 'pg_proc'::regclass AND p.oid = deps.refobjid
            UNION
            SELECT p.oid, format('operator %s (%s)', o.oid::regoperator, p.oid::regprocedure)
            FROM deps JOIN pg_operator o ON deps.refclassid = 'pg_operator'::regclass AND o.oid = deps.refobjid
            JOIN pg_proc p ON p.oid = o.oprcode)
        SELECT ARRAY(SELECT DISTINCT x FROM (
                   SELECT format('it calls %s, which is not a function of pg_catalog', c.what) AS x
                   FROM code c JOIN pg_proc p ON p.oid = c.oid WHERE p.pronamespace <> 'pg_catalog'::regnamespace
                   UNION ALL
                   SELECT format('it calls %s, which is volatile', c.what)
                   FROM code c JOIN pg_proc p ON p.oid = c.oid
                   WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.provolatile = 'v'
                   UNION ALL
                   SELECT format('it converts to domain %s, whose checks run code', t.oid::regtype)
                   FROM deps JOIN pg_type t ON deps.refclassid = 'pg_type'::regclass AND t.oid = deps.refobjid
                   WHERE t.typtype = 'd' AND EXISTS (SELECT FROM pg_constraint k WHERE k.contypid IN (t.oid, t.typbasetype))
                   UNION ALL
                   SELECT format('it reads %s through a view, under row-level security', c.oid::regclass)
                   FROM deps JOIN pg_class c ON deps.refclassid = 'pg_class'::regclass AND c.oid = deps.refobjid
                   WHERE deps.in_view AND c.relrowsecurity
                   UNION ALL
                   -- every function it calls, PostgreSQL's own included (they are in no pg_depend entry); for a
                   -- binder who is not a superuser, immutable ones only: none whose result depends on who calls
                   -- it or on the database (a setting, a catalog, a file)
                   SELECT f FROM crm_kpi.query_function_problem(query, limited) f WHERE f IS NOT NULL
                   UNION ALL
                   -- what a binder who is not a superuser may bind: no table of another role read directly (a
                   -- subquery), which the refresher reads with its own privileges, ...
                   SELECT format('it reads %s, which belongs to another role: only a superuser may bind that', c.oid::regclass)
                   FROM deps JOIN pg_class c ON deps.refclassid = 'pg_class'::regclass AND c.oid = deps.refobjid
                   WHERE limited AND NOT deps.in_view AND c.relkind <> 'c' AND c.oid <> 'pg_temp.crm_kpi_vetted'::regclass
                     AND NOT pg_has_role(binder, c.relowner, 'USAGE')
                   UNION ALL
                   -- ... and no view read with the privileges of whoever reads it.
                   SELECT format('it reads view %s, which has security_invoker: only a superuser may bind that', c.oid::regclass)
                   FROM deps JOIN pg_class c ON deps.refclassid = 'pg_class'::regclass AND c.oid = deps.refobjid
                   WHERE limited AND c.relkind = 'v'
                     AND coalesce((SELECT o.option_value::boolean FROM pg_options_to_table(c.reloptions) o
                                   WHERE o.option_name = 'security_invoker'), false)) z ORDER BY 1),
               ARRAY(SELECT DISTINCT deps.refobjid FROM deps)
          INTO problems, objects;
        RAISE EXCEPTION 'crm_kpi: vetted' USING ERRCODE = 'P0001';  -- rolls the temporary view back
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS err = MESSAGE_TEXT;
        IF err <> 'crm_kpi: vetted' THEN
            problems := ARRAY[format('it cannot be vetted: %s', err)];
            objects := '{}';
        END IF;
    END;
END $$;
COMMENT ON FUNCTION crm_kpi.query_code(text, regrole) IS
    'What a query runs besides reading: problems (a function, or an operator''s or cast''s function, not of pg_catalog or volatile, called directly or in a view it reads; a conversion to a domain with checks; a table with row-level security read through a view; for a binder who is not a superuser, also a function that is not immutable, a table of another role read directly, a view with security_invoker) and the objects it depends on';

-- Problems with a binding, all of them; no rows when it is valid.
CREATE FUNCTION crm_kpi.binding_problems(kind text, source regclass, mapping jsonb, binder regrole DEFAULT NULL)
    RETURNS SETOF text
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    problems text[] := ARRAY(SELECT crm_kpi.binding_shape_problems(kind, source, mapping));
BEGIN
    IF cardinality(problems) = 0 THEN
        -- What reading the source runs, whoever reads it (a superuser's worker, the capture triggers).
        problems := ARRAY(SELECT format('reading %s: %s', source, p)
                          FROM unnest((crm_kpi.query_code(crm_kpi.binding_select(kind, source, mapping), binder)).problems) p);
    END IF;
    RETURN QUERY SELECT unnest(problems);
END $$;
COMMENT ON FUNCTION crm_kpi.binding_problems(text, regclass, jsonb, regrole) IS
    'Every problem with a proposed binding by a role (as by a superuser when NULL): unknown kind or column, missing required column, missing or incompatible table column, expression that does not compile or is not allowed, and reading the source would run code: a function or cast not of pg_catalog or volatile, in the mapping or in the view bound; for a binder who is not a superuser, also a function that is not immutable, a table of another role read by an expression, a view with security_invoker; no rows when it is valid. Expressions are vetted before anything runs them';

-- What crm_kpi.bind_source(kind, source, mapping) does, as the extension's owner, for the role that called it.
CREATE FUNCTION crm_kpi.bind_source_by(kind text, source regclass, mapping jsonb, binder regrole) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    problems text[];
BEGIN
    IF kind IS NULL OR source IS NULL OR mapping IS NULL OR binder IS NULL THEN
        RAISE EXCEPTION 'kind, source and mapping must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT pg_has_role(binder, (SELECT relowner FROM pg_class WHERE oid = source), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', source USING ERRCODE = 'insufficient_privilege';
    END IF;
    problems := ARRAY(SELECT crm_kpi.binding_problems(kind, source, mapping, binder));
    IF cardinality(problems) > 0 THEN
        RAISE EXCEPTION 'cannot bind % as the % source: % problem(s)', source, kind, cardinality(problems)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = array_to_string(problems, E'\n'),
                  HINT = 'See crm_kpi.source_contract for the columns of each kind.';
    END IF;
    DELETE FROM crm_kpi.pending_bindings p WHERE p.kind = bind_source_by.kind AND p.source = bind_source_by.source;
    -- Capture its changes from now on (before the binding is written: crm_kpi.hold_restored_binding() holds a
    -- binding whose table has no capture triggers); the KPI tables are rebuilt at the next refresh.
    PERFORM crm_kpi.capture_attach(kind, source);
    INSERT INTO crm_kpi.source_bindings AS b (kind, source, mapping, bound_by)
    VALUES (kind, source, mapping, pg_get_userbyid(binder))
    ON CONFLICT ON CONSTRAINT source_bindings_pkey
    DO UPDATE SET mapping = EXCLUDED.mapping, bound_by = EXCLUDED.bound_by, bound_at = now();
    -- (its trigger crm_kpi.hold_restored_binding() queued the rebuild)
    PERFORM crm_kpi.record_binding_shape(kind, source, mapping);  -- what DDL on it is compared with
END $$;
COMMENT ON FUNCTION crm_kpi.bind_source_by(text, regclass, jsonb, regrole) IS
    'What crm_kpi.bind_source does, run as the extension''s owner for the role that called it (the binder, who must own the table); executable by the extension''s owner only';

CREATE FUNCTION crm_kpi.bind_source(kind text, source regclass, mapping jsonb) RETURNS void
    AS 'MODULE_PATHNAME', 'crm_kpi_owner_call'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION crm_kpi.bind_source(text, regclass, jsonb) IS
    'Binds a CRM table (plain, partitioned or a view; owner only) as a source of a kind, mapping each contract column to a column or {"expr": "SQL"}; validates everything and reports every problem at once. Runs as the extension''s owner (crm_kpi.bind_source_by) for its caller';

-- What crm_kpi.unbind_source(kind, source) does, as the extension's owner, for the role that called it.
CREATE FUNCTION crm_kpi.unbind_source_by(kind text, source regclass, binder regrole) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    held boolean;
BEGIN
    IF NOT pg_has_role(binder, (SELECT relowner FROM pg_class WHERE oid = source), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', source USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM crm_kpi.pending_bindings p WHERE p.kind = unbind_source_by.kind AND p.source = unbind_source_by.source;
    held := FOUND;
    DELETE FROM crm_kpi.source_bindings b WHERE b.kind = unbind_source_by.kind AND b.source = unbind_source_by.source;
    IF NOT FOUND AND NOT held THEN
        RAISE EXCEPTION '% is not bound as the % source', source, kind USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM crm_kpi.capture_detach(kind, source);
    INSERT INTO crm_kpi.change_queue (target) VALUES ('*' || kind);
END $$;
COMMENT ON FUNCTION crm_kpi.unbind_source_by(text, regclass, regrole) IS
    'What crm_kpi.unbind_source does, run as the extension''s owner for the role that called it (who must own the table); executable by the extension''s owner only';

CREATE FUNCTION crm_kpi.unbind_source(kind text, source regclass) RETURNS void
    AS 'MODULE_PATHNAME', 'crm_kpi_owner_call'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION crm_kpi.unbind_source(text, regclass) IS
    'Removes a binding and its capture triggers (owner only); the table stays as it was, and the KPI tables it fed (crm_kpi.kind_tables) are rebuilt at the next refresh. Runs as the extension''s owner (crm_kpi.unbind_source_by) for its caller';

CREATE FUNCTION crm_kpi.source_query(kind text, source regclass DEFAULT NULL) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT string_agg(crm_kpi.binding_select(b.kind, b.source, b.mapping), ' UNION ALL ' ORDER BY b.source::oid)
            FROM crm_kpi.source_bindings b
            WHERE b.kind = source_query.kind AND (source_query.source IS NULL OR b.source = source_query.source));
COMMENT ON FUNCTION crm_kpi.source_query(text, regclass) IS
    'The query reading every source bound to a kind (or one of them) as the contract''s columns; NULL when none is bound';

CREATE VIEW crm_kpi.bindings AS
SELECT b.kind, b.source, pg_get_userbyid(c.relowner) AS owner, b.mapping, b.bound_by, b.bound_at,
       ARRAY(SELECT e.value #>> '{}' FROM jsonb_each(b.mapping) e
             WHERE jsonb_typeof(e.value) = 'string' AND NOT EXISTS (
                 SELECT FROM pg_attribute a WHERE a.attrelid = b.source AND a.attname = (e.value #>> '{}')
                 AND a.attnum > 0 AND NOT a.attisdropped)) AS missing_columns
FROM crm_kpi.source_bindings b JOIN pg_class c ON c.oid = b.source;
COMMENT ON VIEW crm_kpi.bindings IS
    'Bound sources with their owner and mapping, and the mapped columns that no longer exist in the table';

CREATE FUNCTION crm_kpi.forget_dropped_tables() RETURNS event_trigger
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM crm_kpi.lifecycle_tracking t
    WHERE t.source_table::oid IN (SELECT d.objid FROM pg_event_trigger_dropped_objects() d
                                  WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0);
    DELETE FROM crm_kpi.pending_bindings p
    WHERE p.source::oid IN (SELECT d.objid FROM pg_event_trigger_dropped_objects() d
                            WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0);
    WITH dropped AS (DELETE FROM crm_kpi.source_bindings b
                     WHERE b.source::oid IN (SELECT d.objid FROM pg_event_trigger_dropped_objects() d
                                             WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0)
                     RETURNING b.kind)
    INSERT INTO crm_kpi.change_queue (target) SELECT DISTINCT '*' || dropped.kind FROM dropped;
END $$;
COMMENT ON FUNCTION crm_kpi.forget_dropped_tables() IS
    'Event trigger: forgets the bindings (held ones too) and lifecycle tracking of tables that are dropped (lifecycle history stays)';

CREATE EVENT TRIGGER crm_kpi_forget_dropped_tables ON sql_drop
    EXECUTE FUNCTION crm_kpi.forget_dropped_tables();
COMMENT ON EVENT TRIGGER crm_kpi_forget_dropped_tables IS
    'Keeps crm_kpi.source_bindings and crm_kpi.lifecycle_tracking free of dropped tables';

-- Restoring a dump. pg_dump keeps crm_kpi.source_bindings (extension configuration) and the capture
-- triggers (on the CRM's tables); pg_restore and psql restore the bindings with the data, and the
-- triggers after the data of their table. A refresh in between (the worker starts at CREATE EXTENSION)
-- would read sources whose restored rows were never captured, and would put the missing capture
-- triggers on them itself, so that the restore's own CREATE TRIGGER fails. So a binding that arrives
-- without its capture triggers is held in crm_kpi.pending_bindings, and bound once they are restored.

-- Make a source's restored capture triggers (a plain dependency on crm_kpi.capture()) go with the extension.
CREATE FUNCTION crm_kpi.adopt_capture_triggers(kind text, source regclass) RETURNS void
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT x.tgrelid::regclass AS rel, x.tgname
             FROM crm_kpi.capture_tables(source) AS t (t)
             JOIN pg_trigger x ON x.tgrelid = t.t
             WHERE x.tgfoid = 'crm_kpi.capture()'::regprocedure
               AND x.tgname IN (SELECT format('crm_kpi_%s_%s', kind, ev) FROM unnest(ARRAY['ins', 'upd', 'del', 'trunc']) ev)
               AND EXISTS (SELECT FROM pg_depend d
                           WHERE d.classid = 'pg_trigger'::regclass AND d.objid = x.oid
                             AND d.refclassid = 'pg_proc'::regclass AND d.refobjid = x.tgfoid AND d.deptype = 'n') LOOP
        PERFORM crm_kpi.capture_loosen(g.rel, g.tgname);
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.adopt_capture_triggers(text, regclass) IS
    'Makes the capture triggers of a source that a restore created (CREATE TRIGGER ... crm_kpi.capture()) removable with the extension, like those crm_kpi.capture_attach() makes';

CREATE FUNCTION crm_kpi.hold_restored_binding() RETURNS trigger
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT crm_kpi.capture_ok(NEW.kind, NEW.source) THEN
        -- A parallel restore creates triggers in other sessions: serialized with crm_kpi.bind_restored(),
        -- one of the two sees what the other did.
        PERFORM pg_advisory_xact_lock(7226110472398251521);
        PERFORM crm_kpi.adopt_capture_triggers(NEW.kind, NEW.source);  -- restored before the binding
    END IF;
    IF crm_kpi.capture_ok(NEW.kind, NEW.source) THEN
        -- Bound (bind_source attaches the triggers first), restored after its triggers, or a view or a
        -- kind that needs no capture: the KPI tables are rebuilt.
        INSERT INTO crm_kpi.change_queue (target) VALUES ('*' || NEW.kind);
        RETURN NEW;
    END IF;
    INSERT INTO crm_kpi.pending_bindings AS p (kind, source, mapping, bound_by, bound_at)
    VALUES (NEW.kind, NEW.source, NEW.mapping, NEW.bound_by, NEW.bound_at)
    ON CONFLICT ON CONSTRAINT pending_bindings_pkey
    DO UPDATE SET mapping = EXCLUDED.mapping, bound_by = EXCLUDED.bound_by, bound_at = EXCLUDED.bound_at;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION crm_kpi.hold_restored_binding() IS
    'Trigger of crm_kpi.source_bindings: a binding written while its table lacks the capture triggers (restored from a dump before them) is held in crm_kpi.pending_bindings instead; any other queues a rebuild of the KPI tables its kind feeds (target * followed by the kind)';

CREATE TRIGGER hold_restored_binding BEFORE INSERT ON crm_kpi.source_bindings
    FOR EACH ROW EXECUTE FUNCTION crm_kpi.hold_restored_binding();
COMMENT ON TRIGGER hold_restored_binding ON crm_kpi.source_bindings IS
    'Holds a binding whose table has no capture triggers yet (a restore) in crm_kpi.pending_bindings';

CREATE FUNCTION crm_kpi.bind_restored() RETURNS event_trigger
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_event_trigger_ddl_commands() c JOIN pg_trigger x ON x.oid = c.objid
                   WHERE c.classid = 'pg_trigger'::regclass AND x.tgfoid = to_regprocedure('crm_kpi.capture()')) THEN
        RETURN;
    END IF;
    -- Serialized with crm_kpi.hold_restored_binding() (a parallel restore writes the bindings in another session).
    PERFORM pg_advisory_xact_lock(7226110472398251521);
    FOR p IN SELECT h.kind, h.source FROM crm_kpi.pending_bindings h LOOP
        PERFORM crm_kpi.adopt_capture_triggers(p.kind, p.source);
    END LOOP;
    -- Held bindings whose tables now have every capture trigger are bound (crm_kpi.hold_restored_binding() queues the rebuild).
    WITH ready AS (DELETE FROM crm_kpi.pending_bindings h WHERE crm_kpi.capture_ok(h.kind, h.source) RETURNING h.*)
    INSERT INTO crm_kpi.source_bindings (kind, source, mapping, bound_by, bound_at)
    SELECT r.kind, r.source, r.mapping, r.bound_by, r.bound_at FROM ready r;
END $$;
COMMENT ON FUNCTION crm_kpi.bind_restored() IS
    'Event trigger: when a restore creates the capture triggers of a held binding, makes them removable with the extension and, once its table has all of them, binds it (the KPI tables are then rebuilt)';

CREATE EVENT TRIGGER crm_kpi_bind_restored ON ddl_command_end
    WHEN TAG IN ('CREATE TRIGGER')
    EXECUTE FUNCTION crm_kpi.bind_restored();
COMMENT ON EVENT TRIGGER crm_kpi_bind_restored IS
    'Binds the sources a restore held back once their capture triggers are restored';

-- A bound source stays vetted: a change to it (or to what it reads) that would make reading it run
-- code other than PostgreSQL's own is refused, whoever makes it. Else the owner of a bound table
-- could change a column to a type of hers with a cast of hers, or replace a bound view, and have
-- the superuser who refreshes, or the capture triggers (which run as the extension's owner), run it.
CREATE FUNCTION crm_kpi.keep_bindings_vetted() RETURNS event_trigger
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed oid[];
    b record;
    vetted record;
BEGIN
    SELECT array_agg(CASE WHEN c.classid = 'pg_cast'::regclass THEN (SELECT k.castfunc FROM pg_cast k WHERE k.oid = c.objid)
                          ELSE c.objid END)
      INTO changed
    FROM pg_event_trigger_ddl_commands() c
    WHERE NOT EXISTS (SELECT FROM pg_class t WHERE t.oid = c.objid AND t.relpersistence = 't');  -- not our own vetting
    IF changed IS NULL THEN
        RETURN;
    END IF;
    -- The bindings a change may concern: a change of something other than a relation, of the bound
    -- source, of a relation the bound view reads, or of one named in the mapping (an expression's subquery).
    FOR b IN
        SELECT s.kind, s.source, s.mapping, to_regrole(quote_ident(s.bound_by)) AS binder FROM crm_kpi.source_bindings s
        WHERE EXISTS (
            WITH RECURSIVE read (relid) AS (
                SELECT s.source::oid
                UNION
                SELECT d.refobjid FROM read
                JOIN pg_rewrite r ON r.ev_class = read.relid
                JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass)
            SELECT FROM unnest(changed) x
            LEFT JOIN pg_class c ON c.oid = x
            WHERE c.oid IS NULL OR x IN (SELECT read.relid FROM read) OR strpos(s.mapping::text, c.relname::text) > 0)
        ORDER BY s.kind, s.source
    LOOP
        vetted := crm_kpi.query_code(crm_kpi.binding_select(b.kind, b.source, b.mapping), b.binder);
        IF cardinality(vetted.problems) > 0 AND vetted.objects && changed THEN
            RAISE EXCEPTION 'crm_kpi reads % as the % source: after this change, reading it would run code other than PostgreSQL''s own',
                    b.source, b.kind
                USING ERRCODE = 'insufficient_privilege', DETAIL = array_to_string(vetted.problems, E'\n'),
                      HINT = 'Unbind it first (crm_kpi.unbind_source).';
        END IF;
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.keep_bindings_vetted() IS
    'Event trigger: refuses a change (of a table, view, domain, type, cast or rule) after which reading a bound source would run code other than non-volatile functions of pg_catalog';

CREATE EVENT TRIGGER crm_kpi_keep_bindings_vetted ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE VIEW', 'ALTER VIEW', 'CREATE RULE', 'ALTER DOMAIN', 'ALTER TYPE', 'CREATE CAST')
    EXECUTE FUNCTION crm_kpi.keep_bindings_vetted();
COMMENT ON EVENT TRIGGER crm_kpi_keep_bindings_vetted IS
    'Keeps every bound source vetted: a change after which reading it would run other code is refused';
