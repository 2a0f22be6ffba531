-- lifecycle.sql: the customer lifecycle type, its rules, history and funnel (see lifecycle.c).

CREATE TYPE crm_kpi.lifecycle_stage AS ENUM
    ('prospect', 'contacted', 'customer', 'active', 'loyal', 'at_risk', 'churned');
COMMENT ON TYPE crm_kpi.lifecycle_stage IS
    'Customer lifecycle stage, ordered: prospect, contacted, customer, active, loyal, at_risk, churned';

CREATE FUNCTION crm_kpi.lifecycle_can_move(from_stage crm_kpi.lifecycle_stage, to_stage crm_kpi.lifecycle_stage)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'crm_kpi_lifecycle_can_move'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.lifecycle_can_move(crm_kpi.lifecycle_stage, crm_kpi.lifecycle_stage) IS
    'True when a customer may move from the first stage to the second (the legal moves of the lifecycle)';

CREATE FUNCTION crm_kpi.lifecycle_moves_from(from_stage crm_kpi.lifecycle_stage)
    RETURNS crm_kpi.lifecycle_stage[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT coalesce(array_agg(s ORDER BY s), '{}')
            FROM unnest(enum_range(NULL::crm_kpi.lifecycle_stage)) s
            WHERE crm_kpi.lifecycle_can_move(from_stage, s));
COMMENT ON FUNCTION crm_kpi.lifecycle_moves_from(crm_kpi.lifecycle_stage) IS
    'The stages a customer may move to from the given one';

CREATE FUNCTION crm_kpi.lifecycle_classify(at timestamptz, interactions bigint, orders bigint,
                                           first_order timestamptz, last_order timestamptz)
    RETURNS crm_kpi.lifecycle_stage
    AS 'MODULE_PATHNAME', 'crm_kpi_lifecycle_classify'
    LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.lifecycle_classify(timestamptz, bigint, bigint, timestamptz, timestamptz) IS
    'Lifecycle stage at an instant from activity at or before it (interactions, completed orders, first and last order), under crm_kpi.active_window, churn_after, loyal_min_orders and loyal_min_tenure; NULL counts are 0';

CREATE FUNCTION crm_kpi.lifecycle_classify(at timestamptz, interactions bigint, purchases crm_kpi.purchase_summary)
    RETURNS crm_kpi.lifecycle_stage
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN crm_kpi.lifecycle_classify(at, interactions, crm_kpi.orders(purchases),
                                      crm_kpi.first_order(purchases), crm_kpi.last_order(purchases));
COMMENT ON FUNCTION crm_kpi.lifecycle_classify(timestamptz, bigint, crm_kpi.purchase_summary) IS
    'Lifecycle stage at an instant from interactions and a purchase summary of the completed orders at or before it';

-- The funnel: customers per stage, and conversion between consecutive funnel stages.
CREATE TYPE crm_kpi.funnel_step AS (
    stage crm_kpi.lifecycle_stage,
    customers bigint,
    reached bigint,
    conversion numeric
);
COMMENT ON TYPE crm_kpi.funnel_step IS
    'One stage of the lifecycle funnel: customers now in it, customers who reached it, and the % of those who reached the previous funnel stage that reached this one';

CREATE FUNCTION crm_kpi.funnel_trans(bigint[], crm_kpi.lifecycle_stage) RETURNS bigint[]
    AS 'MODULE_PATHNAME', 'crm_kpi_lifecycle_funnel_trans'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.funnel_trans(bigint[], crm_kpi.lifecycle_stage) IS
    'Aggregate support: counts one customer''s stage into a funnel';

CREATE FUNCTION crm_kpi.funnel_combine(bigint[], bigint[]) RETURNS bigint[]
    AS 'MODULE_PATHNAME', 'crm_kpi_lifecycle_funnel_combine'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.funnel_combine(bigint[], bigint[]) IS
    'Aggregate support: adds two funnel counts';

CREATE FUNCTION crm_kpi.funnel_final(counts bigint[]) RETURNS crm_kpi.funnel_step[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (
        WITH per_stage AS (
            SELECT s AS stage, counts[i] AS customers,
                   -- the highest funnel stage (prospect..loyal) each current stage has reached
                   CASE WHEN s IN ('at_risk', 'churned') THEN 'customer'::crm_kpi.lifecycle_stage ELSE s END AS top
            FROM unnest(enum_range(NULL::crm_kpi.lifecycle_stage)) WITH ORDINALITY AS u(s, i)),
        reach AS (
            SELECT f.stage, f.customers,
                   CASE WHEN f.stage IN ('at_risk', 'churned') THEN NULL
                        ELSE (SELECT sum(p.customers) FROM per_stage p WHERE p.top >= f.stage)::bigint END AS reached
            FROM per_stage f),
        steps AS (
            SELECT r.stage, r.customers, r.reached,
                   CASE WHEN r.stage = 'prospect' OR r.reached IS NULL THEN NULL
                        ELSE 100.0 * r.reached / nullif(lag(r.reached) OVER (ORDER BY r.stage), 0) END AS conversion
            FROM reach r)
        SELECT array_agg(ROW(t.stage, t.customers, t.reached, t.conversion)::crm_kpi.funnel_step ORDER BY t.stage)
        FROM steps t);
COMMENT ON FUNCTION crm_kpi.funnel_final(bigint[]) IS
    'Aggregate support: turns funnel counts into funnel steps';

CREATE AGGREGATE crm_kpi.funnel(crm_kpi.lifecycle_stage) (
    SFUNC = crm_kpi.funnel_trans, STYPE = bigint[], INITCOND = '{0,0,0,0,0,0,0}',
    FINALFUNC = crm_kpi.funnel_final, COMBINEFUNC = crm_kpi.funnel_combine,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.funnel(crm_kpi.lifecycle_stage) IS
    'Lifecycle funnel of current stages: one step per stage with customers, customers who reached it, and conversion from the previous funnel stage';

-- History of every change of stage, and the tables whose stage column is guarded.
CREATE TABLE crm_kpi.lifecycle_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source text NOT NULL,
    customer_key text NOT NULL,
    from_stage crm_kpi.lifecycle_stage,
    to_stage crm_kpi.lifecycle_stage NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    changed_by name NOT NULL DEFAULT session_user,
    CHECK (from_stage IS DISTINCT FROM to_stage)
);
CREATE INDEX lifecycle_history_customer ON crm_kpi.lifecycle_history (source, customer_key, changed_at, id);
CREATE INDEX lifecycle_history_changed_at ON crm_kpi.lifecycle_history (changed_at);
COMMENT ON TABLE crm_kpi.lifecycle_history IS
    'Every change of lifecycle stage of a tracked table: customer, old stage (NULL when the row was inserted), new stage, when and by whom';
COMMENT ON COLUMN crm_kpi.lifecycle_history.source IS 'The tracked table (or the name given to crm_kpi.track_lifecycle)';
COMMENT ON COLUMN crm_kpi.lifecycle_history.customer_key IS 'The customer''s key in the source, as text';
COMMENT ON SEQUENCE crm_kpi.lifecycle_history_id_seq IS 'Numbers crm_kpi.lifecycle_history rows in the order they were written';
SELECT pg_catalog.pg_extension_config_dump('crm_kpi.lifecycle_history', '');
SELECT pg_catalog.pg_extension_config_dump('crm_kpi.lifecycle_history_id_seq', '');

CREATE TABLE crm_kpi.lifecycle_tracking (
    source_table regclass PRIMARY KEY,
    key_column name NOT NULL,
    stage_column name NOT NULL,
    source text NOT NULL UNIQUE
);
COMMENT ON TABLE crm_kpi.lifecycle_tracking IS
    'Tables whose stage column crm_kpi.track_lifecycle guards, with the key and stage columns and the source name used in the history';
SELECT pg_catalog.pg_extension_config_dump('crm_kpi.lifecycle_tracking', '');

CREATE FUNCTION crm_kpi.lifecycle_guard() RETURNS trigger
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    row_new jsonb := to_jsonb(NEW);
    new_stage crm_kpi.lifecycle_stage := (row_new ->> TG_ARGV[1])::crm_kpi.lifecycle_stage;
    old_stage crm_kpi.lifecycle_stage;
    customer text := row_new ->> TG_ARGV[0];
BEGIN
    IF TG_OP = 'UPDATE' THEN
        old_stage := (to_jsonb(OLD) ->> TG_ARGV[1])::crm_kpi.lifecycle_stage;
        IF old_stage IS NOT DISTINCT FROM new_stage THEN
            RETURN NULL;
        END IF;
        IF old_stage IS NOT NULL AND new_stage IS NOT NULL
           AND NOT crm_kpi.lifecycle_can_move(old_stage, new_stage) THEN
            RAISE EXCEPTION 'illegal lifecycle move of customer % in %: % -> %',
                    customer, TG_ARGV[2], old_stage, new_stage
                USING ERRCODE = 'check_violation',
                      DETAIL = format('Legal moves from %s: %s.', old_stage,
                                      coalesce(nullif(array_to_string(crm_kpi.lifecycle_moves_from(old_stage), ', '), ''), 'none')),
                      HINT = 'A stage never moves back to prospect or contacted; see crm_kpi.lifecycle_moves_from().';
        END IF;
    END IF;
    IF new_stage IS NOT NULL THEN
        INSERT INTO crm_kpi.lifecycle_history (source, customer_key, from_stage, to_stage)
        VALUES (TG_ARGV[2], customer, old_stage, new_stage);
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION crm_kpi.lifecycle_guard() IS
    'Trigger of tracked tables: refuses an illegal change of stage and records every legal one in crm_kpi.lifecycle_history';

-- What crm_kpi.track_lifecycle does, as the extension's owner, for the role that called it.
CREATE FUNCTION crm_kpi.track_lifecycle_by(source_table regclass, key_column name, stage_column name, source text,
                                           tracker regrole)
    RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    stage_type regtype;
    tracked_as text := coalesce(source, source_table::text);
BEGIN
    IF source_table IS NULL OR key_column IS NULL OR stage_column IS NULL OR tracker IS NULL THEN
        RAISE EXCEPTION 'source_table, key_column and stage_column must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT pg_has_role(tracker, (SELECT relowner FROM pg_class WHERE oid = source_table), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', source_table USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = source_table AND attname = key_column
                   AND attnum > 0 AND NOT attisdropped) THEN
        RAISE EXCEPTION 'column "%" of table % does not exist', key_column, source_table
            USING ERRCODE = 'undefined_column';
    END IF;
    SELECT atttypid::regtype INTO stage_type FROM pg_attribute
    WHERE attrelid = source_table AND attname = stage_column AND attnum > 0 AND NOT attisdropped;
    IF stage_type IS NULL THEN
        RAISE EXCEPTION 'column "%" of table % does not exist', stage_column, source_table
            USING ERRCODE = 'undefined_column';
    END IF;
    IF stage_type NOT IN ('crm_kpi.lifecycle_stage'::regtype, 'text'::regtype, 'character varying'::regtype) THEN
        RAISE EXCEPTION 'stage column "%" of table % has type %', stage_column, source_table, stage_type
            USING ERRCODE = 'datatype_mismatch',
                  DETAIL = 'A stage column is crm_kpi.lifecycle_stage, text or varchar holding its labels.';
    END IF;
    IF EXISTS (SELECT FROM crm_kpi.lifecycle_tracking t WHERE t.source_table = track_lifecycle_by.source_table) THEN
        RAISE EXCEPTION 'table % is already tracked', source_table USING ERRCODE = 'duplicate_object';
    END IF;
    INSERT INTO crm_kpi.lifecycle_tracking VALUES (source_table, key_column, stage_column, tracked_as);
    EXECUTE format('CREATE TRIGGER crm_kpi_lifecycle_guard AFTER INSERT OR UPDATE OF %I ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION crm_kpi.lifecycle_guard(%L, %L, %L)',
                   stage_column, source_table, key_column, stage_column, tracked_as);
END $$;
COMMENT ON FUNCTION crm_kpi.track_lifecycle_by(regclass, name, name, text, regrole) IS
    'What crm_kpi.track_lifecycle does, run as the extension''s owner for the role that called it (who must own the table); executable by the extension''s owner only';

CREATE FUNCTION crm_kpi.track_lifecycle(source_table regclass, key_column name, stage_column name,
                                        source text DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'crm_kpi_owner_call'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION crm_kpi.track_lifecycle(regclass, name, name, text) IS
    'Guards the stage column of a CRM table (owner only): illegal moves raise an error, legal ones are appended to crm_kpi.lifecycle_history. Runs as the extension''s owner (crm_kpi.track_lifecycle_by) for its caller';

-- What crm_kpi.untrack_lifecycle does, as the extension's owner, for the role that called it.
CREATE FUNCTION crm_kpi.untrack_lifecycle_by(source_table regclass, tracker regrole) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT pg_has_role(tracker, (SELECT relowner FROM pg_class WHERE oid = source_table), 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', source_table USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT FROM crm_kpi.lifecycle_tracking t WHERE t.source_table = untrack_lifecycle_by.source_table) THEN
        RAISE EXCEPTION 'table % is not tracked', source_table USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('DROP TRIGGER crm_kpi_lifecycle_guard ON %s', source_table);
    DELETE FROM crm_kpi.lifecycle_tracking t WHERE t.source_table = untrack_lifecycle_by.source_table;
END $$;
COMMENT ON FUNCTION crm_kpi.untrack_lifecycle_by(regclass, regrole) IS
    'What crm_kpi.untrack_lifecycle does, run as the extension''s owner for the role that called it (who must own the table); executable by the extension''s owner only';

CREATE FUNCTION crm_kpi.untrack_lifecycle(source_table regclass) RETURNS void
    AS 'MODULE_PATHNAME', 'crm_kpi_owner_call'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION crm_kpi.untrack_lifecycle(regclass) IS
    'Removes the lifecycle guard of a table (owner only); the table and the history recorded so far stay as they are. Runs as the extension''s owner (crm_kpi.untrack_lifecycle_by) for its caller';

CREATE FUNCTION crm_kpi.stage_at(source text, customer_key text, at timestamptz)
    RETURNS crm_kpi.lifecycle_stage
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT h.to_stage FROM crm_kpi.lifecycle_history h
            WHERE h.source = stage_at.source AND h.customer_key = stage_at.customer_key AND h.changed_at <= at
            ORDER BY h.changed_at DESC, h.id DESC LIMIT 1);
COMMENT ON FUNCTION crm_kpi.stage_at(text, text, timestamptz) IS
    'A customer''s stage at a past instant, from the history; NULL before its first recorded stage';

CREATE FUNCTION crm_kpi.stage_durations(source text DEFAULT NULL)
    RETURNS TABLE (stage crm_kpi.lifecycle_stage, stays bigint, mean_time interval, median_time interval)
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    BEGIN ATOMIC
        SELECT s.to_stage, count(*),
               justify_hours(make_interval(secs => avg(s.seconds))),
               justify_hours(make_interval(secs => percentile_cont(0.5) WITHIN GROUP (ORDER BY s.seconds)))
        FROM (SELECT h.to_stage,
                     extract(epoch FROM lead(h.changed_at) OVER w - h.changed_at)::float8 AS seconds
              FROM crm_kpi.lifecycle_history h
              WHERE stage_durations.source IS NULL OR h.source = stage_durations.source
              WINDOW w AS (PARTITION BY h.source, h.customer_key ORDER BY h.changed_at, h.id)) s
        WHERE s.seconds IS NOT NULL
        GROUP BY s.to_stage
        ORDER BY s.to_stage;
    END;
COMMENT ON FUNCTION crm_kpi.stage_durations(text) IS
    'Time spent in each stage, over completed stays (the customer has since moved on): count, mean and median';

CREATE FUNCTION crm_kpi.reactivations(from_time timestamptz, to_time timestamptz, source text DEFAULT NULL)
    RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT count(*) FROM crm_kpi.lifecycle_history h
            WHERE h.from_stage = 'churned' AND h.to_stage = 'customer'
              AND h.changed_at >= from_time AND h.changed_at < to_time
              AND (reactivations.source IS NULL OR h.source = reactivations.source));
COMMENT ON FUNCTION crm_kpi.reactivations(timestamptz, timestamptz, text) IS
    'Reactivations (churned -> customer) recorded in [from_time, to_time)';
