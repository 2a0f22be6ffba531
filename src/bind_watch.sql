-- bind_watch.sql: DDL after which a bound source reads other values makes the KPI tables stale (the next
-- refresh rebuilds them): a mapped column renamed and another added in its name, dropped and added again, its
-- type changed with USING, a bound view replaced, a partition attached or detached. DDL that changes nothing
-- the binding reads (a column added, an index, a partition created empty) does not.

-- The relations reading a bound source reads: itself, its partitions, and what a bound view reads.
CREATE FUNCTION crm_kpi.binding_reads(source regclass) RETURNS SETOF oid
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE read (relid) AS (
        SELECT source::oid
        UNION
        SELECT x.relid
        FROM read
        CROSS JOIN LATERAL (
            SELECT d.refobjid AS relid
            FROM pg_rewrite r
            JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                            AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> read.relid
            WHERE r.ev_class = read.relid
            UNION
            SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = read.relid) x)
    SELECT relid FROM read
$$;
COMMENT ON FUNCTION crm_kpi.binding_reads(regclass) IS
    'The relations reading a bound source reads: the source, its partitions (all levels), and the relations a bound view reads (recursively)';

-- What a binding reads, as a fingerprint: each relation it reads, the definition of each view, and the
-- number, type and typmod of each column whose name the mapping mentions.
CREATE FUNCTION crm_kpi.binding_shape(source regclass, mapping jsonb) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT md5(string_agg(concat_ws(':', c.oid, c.relkind,
                                            CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
                                            (SELECT string_agg(format('%s/%s/%s/%s', a.attname, a.attnum, a.atttypid, a.atttypmod),
                                                               ',' ORDER BY a.attnum)
                                             FROM pg_attribute a
                                             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                                               AND strpos(mapping::text, a.attname::text) > 0)),
                                  ';' ORDER BY c.oid))
            FROM crm_kpi.binding_reads(source) r JOIN pg_class c ON c.oid = r);
COMMENT ON FUNCTION crm_kpi.binding_shape(regclass, jsonb) IS
    'A fingerprint of what a binding reads: the relations (crm_kpi.binding_reads), the definitions of views, and the number, type and typmod of every column whose name appears in the mapping';

CREATE TABLE crm_kpi.binding_shapes (
    kind text NOT NULL,
    source regclass NOT NULL,
    shape text NOT NULL,
    PRIMARY KEY (kind, source),
    FOREIGN KEY (kind, source) REFERENCES crm_kpi.source_bindings ON DELETE CASCADE
);
COMMENT ON TABLE crm_kpi.binding_shapes IS
    'The fingerprint (crm_kpi.binding_shape) of what each binding read when it was bound or last checked; not dumped: a restore rebuilds the KPI tables anyway';

-- Record the fingerprint of a binding; returns whether it differs from a recorded one.
CREATE FUNCTION crm_kpi.record_binding_shape(kind text, source regclass, mapping jsonb) RETURNS boolean
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    shape text := crm_kpi.binding_shape(source, mapping);
    old text;
BEGIN
    SELECT s.shape INTO old FROM crm_kpi.binding_shapes s
    WHERE s.kind = record_binding_shape.kind AND s.source = record_binding_shape.source;
    IF old IS DISTINCT FROM shape THEN
        INSERT INTO crm_kpi.binding_shapes AS s (kind, source, shape)
        VALUES (record_binding_shape.kind, record_binding_shape.source, shape)
        ON CONFLICT ON CONSTRAINT binding_shapes_pkey DO UPDATE SET shape = EXCLUDED.shape;
    END IF;
    RETURN old IS DISTINCT FROM shape AND old IS NOT NULL;
END $$;
COMMENT ON FUNCTION crm_kpi.record_binding_shape(text, regclass, jsonb) IS
    'Records the fingerprint of what a binding reads; true when one was recorded before and it differs';

CREATE FUNCTION crm_kpi.watch_bindings() RETURNS event_trigger
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b record;
    changed text[] := '{}';
BEGIN
    FOR b IN SELECT s.kind, s.source, s.mapping FROM crm_kpi.source_bindings s ORDER BY s.kind, s.source LOOP
        IF crm_kpi.record_binding_shape(b.kind, b.source, b.mapping) THEN
            changed := changed || b.kind;
        END IF;
    END LOOP;
    -- A table just created (a new partition of a bound source, say) holds no row yet.
    IF TG_TAG <> 'CREATE TABLE' THEN
        INSERT INTO crm_kpi.change_queue (target) SELECT DISTINCT '*' || k FROM unnest(changed) k;
    END IF;
END $$;
COMMENT ON FUNCTION crm_kpi.watch_bindings() IS
    'Event trigger: when DDL changes what a bound source reads (its fingerprint, crm_kpi.binding_shape), queues a rebuild of the KPI tables its kind feeds (target * followed by the kind); a new table only updates the fingerprints';

CREATE EVENT TRIGGER crm_kpi_watch_bindings ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'CREATE VIEW', 'ALTER VIEW', 'CREATE RULE', 'DROP RULE')
    EXECUTE FUNCTION crm_kpi.watch_bindings();
COMMENT ON EVENT TRIGGER crm_kpi_watch_bindings IS
    'Queues a rebuild of the KPI tables the kind of a bound source feeds when DDL changes what it reads';

CREATE FUNCTION crm_kpi.watch_rewrites() RETURNS event_trigger
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO crm_kpi.change_queue (target)
    SELECT DISTINCT '*' || s.kind FROM crm_kpi.source_bindings s
    WHERE pg_event_trigger_table_rewrite_oid() IN (SELECT crm_kpi.binding_reads(s.source));
END $$;
COMMENT ON FUNCTION crm_kpi.watch_rewrites() IS
    'Event trigger: an ALTER TABLE that rewrites a table a bound source reads (a column type changed with USING, say) queues a rebuild of the KPI tables its kind feeds (target * followed by the kind)';

CREATE EVENT TRIGGER crm_kpi_watch_rewrites ON table_rewrite
    EXECUTE FUNCTION crm_kpi.watch_rewrites();
COMMENT ON EVENT TRIGGER crm_kpi_watch_rewrites IS
    'Queues a rebuild of the KPI tables the kind of a bound source feeds when ALTER TABLE rewrites a table it reads';
