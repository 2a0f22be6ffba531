-- crm_kpi 0.1.0, the install script as released (generated from src/*.sql at 5f9d38e), kept unchanged so that
-- an install of 0.1.0 can be tested through the update chain to the current version.
\echo Use "CREATE EXTENSION crm_kpi" to load this file. \quit
-- schema.sql: the extension's schema.

-- A schema crm_kpi made beforehand by a role that is not a superuser would let that role add objects
-- (a better-matching overload, say) that the extension's functions would then call: refused.
DO $$
DECLARE
    owner_name name := (SELECT r.rolname FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                        WHERE n.nspname = 'crm_kpi');
BEGIN
    IF owner_name IS DISTINCT FROM current_user
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = owner_name) THEN
        RAISE EXCEPTION 'schema crm_kpi belongs to %, who is not a superuser', owner_name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Its owner could put objects in it that crm_kpi''s functions would run.',
                  HINT = 'Drop the schema, or give it to a superuser, before CREATE EXTENSION crm_kpi.';
    END IF;
END $$;

COMMENT ON SCHEMA crm_kpi IS 'crm_kpi: CRM KPI aggregates, customer lifecycle and maintained KPI tables';
-- info.sql: what the loaded library knows about itself (see info.c).

CREATE FUNCTION crm_kpi.library_version() RETURNS text
    AS 'MODULE_PATHNAME', 'crm_kpi_library_version'
    LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.library_version() IS
    'Version the loaded crm_kpi shared library was built as; equals the installed extension version unless an upgrade is pending';

CREATE FUNCTION crm_kpi.preloaded() RETURNS boolean
    AS 'MODULE_PATHNAME', 'crm_kpi_preloaded'
    LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.preloaded() IS
    'True when crm_kpi is in shared_preload_libraries (required for the background worker)';
-- periods.sql: KPI periods (day, week, month, quarter, year) in crm_kpi.timezone (see config.c).

CREATE FUNCTION crm_kpi.period_start(at timestamptz, grain text DEFAULT 'day') RETURNS date
    LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tz text := current_setting('crm_kpi.timezone');
BEGIN
    IF grain NOT IN ('day', 'week', 'month', 'quarter', 'year') THEN
        RAISE EXCEPTION 'unknown period grain "%"', grain
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Grains are day, week (starting on Monday), month, quarter and year.';
    END IF;
    RETURN (date_trunc(grain, at, tz) AT TIME ZONE tz)::date;
END $$;
COMMENT ON FUNCTION crm_kpi.period_start(timestamptz, text) IS
    'First day of the day, week (ISO, from Monday), month, quarter or year containing an instant, in crm_kpi.timezone';

CREATE FUNCTION crm_kpi.period_bounds(first_day date, grain text DEFAULT 'day') RETURNS tstzrange
    LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tz text := current_setting('crm_kpi.timezone');
    step interval;
BEGIN
    step := CASE grain WHEN 'day' THEN interval '1 day' WHEN 'week' THEN interval '7 days'
                       WHEN 'month' THEN interval '1 month' WHEN 'quarter' THEN interval '3 months'
                       WHEN 'year' THEN interval '1 year' END;
    IF step IS NULL THEN
        RAISE EXCEPTION 'unknown period grain "%"', grain
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Grains are day, week (starting on Monday), month, quarter and year.';
    END IF;
    IF crm_kpi.period_start(first_day::timestamp AT TIME ZONE tz, grain) <> first_day THEN
        RAISE EXCEPTION '% is not the first day of a %', first_day, grain
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN tstzrange(first_day::timestamp AT TIME ZONE tz, (first_day + step)::timestamp AT TIME ZONE tz, '[)');
END $$;
COMMENT ON FUNCTION crm_kpi.period_bounds(date, text) IS
    'The instants of a period, half-open [start, end), from its first day, in crm_kpi.timezone (a DST day has 23 or 25 hours)';
-- counters.sql: support functions shared by the counter summaries (see counters.c).

CREATE FUNCTION crm_kpi.counter_combine(internal, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_combine'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.counter_combine(internal, internal) IS
    'Aggregate support: merges two NPS, CSAT or rate states (parallel and partial aggregation)';

CREATE FUNCTION crm_kpi.counter_serialize(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_serialize'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.counter_serialize(internal) IS
    'Aggregate support: serializes an NPS, CSAT or rate state as its summary bytes';

CREATE FUNCTION crm_kpi.counter_deserialize(bytea, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_deserialize'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.counter_deserialize(bytea, internal) IS
    'Aggregate support: rebuilds an NPS, CSAT or rate state from its summary bytes, validating them';
-- nps.sql: Net Promoter Score (see nps.c).

CREATE TYPE crm_kpi.nps_summary;

CREATE FUNCTION crm_kpi.nps_summary_in(cstring) RETURNS crm_kpi.nps_summary
    AS 'MODULE_PATHNAME', 'crm_kpi_nps_summary_in'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.nps_summary_in(cstring) IS 'Input function of crm_kpi.nps_summary: parses "nps v1 ..."';

CREATE FUNCTION crm_kpi.nps_summary_out(crm_kpi.nps_summary) RETURNS cstring
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_out'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.nps_summary_out(crm_kpi.nps_summary) IS 'Output function of crm_kpi.nps_summary';

CREATE FUNCTION crm_kpi.nps_summary_recv(internal) RETURNS crm_kpi.nps_summary
    AS 'MODULE_PATHNAME', 'crm_kpi_nps_summary_recv'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.nps_summary_recv(internal) IS 'Binary input function of crm_kpi.nps_summary, validating the bytes';

CREATE FUNCTION crm_kpi.nps_summary_send(crm_kpi.nps_summary) RETURNS bytea
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_send'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.nps_summary_send(crm_kpi.nps_summary) IS 'Binary output function of crm_kpi.nps_summary';

CREATE TYPE crm_kpi.nps_summary (
    INPUT = crm_kpi.nps_summary_in, OUTPUT = crm_kpi.nps_summary_out,
    RECEIVE = crm_kpi.nps_summary_recv, SEND = crm_kpi.nps_summary_send,
    INTERNALLENGTH = VARIABLE, STORAGE = extended
);
COMMENT ON TYPE crm_kpi.nps_summary IS 'NPS summary: promoters (9-10), passives (7-8) and detractors (0-6); rolls up exactly';

CREATE FUNCTION crm_kpi.nps_summary_final(internal) RETURNS crm_kpi.nps_summary
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_summary_final'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.nps_summary_final(internal) IS 'Aggregate support: finishes a state as a crm_kpi.nps_summary (NULL when empty)';

CREATE FUNCTION crm_kpi.nps_summary_rollup_trans(internal, crm_kpi.nps_summary) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_rollup_trans'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.nps_summary_rollup_trans(internal, crm_kpi.nps_summary) IS 'Aggregate support: adds a crm_kpi.nps_summary into a rollup';

CREATE AGGREGATE crm_kpi.rollup(crm_kpi.nps_summary) (
    SFUNC = crm_kpi.nps_summary_rollup_trans, STYPE = internal, FINALFUNC = crm_kpi.nps_summary_final,
    COMBINEFUNC = crm_kpi.counter_combine,
    SERIALFUNC = crm_kpi.counter_serialize, DESERIALFUNC = crm_kpi.counter_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.rollup(crm_kpi.nps_summary) IS 'Merges crm_kpi.nps_summary values exactly (a month is the rollup of its days)';

CREATE FUNCTION crm_kpi.nps_trans(internal, integer) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_nps_trans'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.nps_trans(internal, integer) IS 'Aggregate support: counts one NPS score 0-10 (NULL ignored)';

CREATE FUNCTION crm_kpi.nps_inv(internal, integer) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_inv'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.nps_inv(internal, integer) IS 'Aggregate support: removes one NPS score 0-10 leaving a moving window frame';

CREATE FUNCTION crm_kpi.nps_final(internal) RETURNS numeric
    AS 'MODULE_PATHNAME', 'crm_kpi_nps_final'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.nps_final(internal) IS 'Aggregate support: the NPS of a state';

CREATE AGGREGATE crm_kpi.nps(integer) (
    SFUNC = crm_kpi.nps_trans, STYPE = internal, FINALFUNC = crm_kpi.nps_final,
    COMBINEFUNC = crm_kpi.counter_combine,
    SERIALFUNC = crm_kpi.counter_serialize, DESERIALFUNC = crm_kpi.counter_deserialize,
    MSFUNC = crm_kpi.nps_trans, MINVFUNC = crm_kpi.nps_inv, MSTYPE = internal, MFINALFUNC = crm_kpi.nps_final,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.nps(integer) IS 'Net Promoter Score of scores 0-10: % promoters (9-10) minus % detractors (0-6), -100 to 100; NULL over no scores';

CREATE AGGREGATE crm_kpi.nps_agg(integer) (
    SFUNC = crm_kpi.nps_trans, STYPE = internal, FINALFUNC = crm_kpi.nps_summary_final,
    COMBINEFUNC = crm_kpi.counter_combine,
    SERIALFUNC = crm_kpi.counter_serialize, DESERIALFUNC = crm_kpi.counter_deserialize,
    MSFUNC = crm_kpi.nps_trans, MINVFUNC = crm_kpi.nps_inv, MSTYPE = internal, MFINALFUNC = crm_kpi.nps_summary_final,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.nps_agg(integer) IS 'NPS summary of scores 0-10, to store and roll up; read it with crm_kpi.nps(nps_summary)';

CREATE FUNCTION crm_kpi.nps(crm_kpi.nps_summary) RETURNS numeric
    AS 'MODULE_PATHNAME', 'crm_kpi_nps_summary_nps'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.nps(crm_kpi.nps_summary) IS 'Net Promoter Score of a summary, -100 to 100; NULL when it holds no responses';

CREATE FUNCTION crm_kpi.promoters(crm_kpi.nps_summary) RETURNS bigint
    AS 'MODULE_PATHNAME', 'crm_kpi_nps_summary_promoters'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.promoters(crm_kpi.nps_summary) IS 'Responses scoring 9 or 10';

CREATE FUNCTION crm_kpi.passives(crm_kpi.nps_summary) RETURNS bigint
    AS 'MODULE_PATHNAME', 'crm_kpi_nps_summary_passives'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.passives(crm_kpi.nps_summary) IS 'Responses scoring 7 or 8';

CREATE FUNCTION crm_kpi.detractors(crm_kpi.nps_summary) RETURNS bigint
    AS 'MODULE_PATHNAME', 'crm_kpi_nps_summary_detractors'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.detractors(crm_kpi.nps_summary) IS 'Responses scoring 0 to 6';

CREATE FUNCTION crm_kpi.responses(crm_kpi.nps_summary) RETURNS bigint
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_total'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.responses(crm_kpi.nps_summary) IS 'Responses in an NPS summary';
-- csat.sql: CSAT, top-two-box on a 1-5 scale, and the mean score (see csat.c).

CREATE TYPE crm_kpi.csat_summary;

CREATE FUNCTION crm_kpi.csat_summary_in(cstring) RETURNS crm_kpi.csat_summary
    AS 'MODULE_PATHNAME', 'crm_kpi_csat_summary_in'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.csat_summary_in(cstring) IS 'Input function of crm_kpi.csat_summary: parses "csat v1 ..."';

CREATE FUNCTION crm_kpi.csat_summary_out(crm_kpi.csat_summary) RETURNS cstring
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_out'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.csat_summary_out(crm_kpi.csat_summary) IS 'Output function of crm_kpi.csat_summary';

CREATE FUNCTION crm_kpi.csat_summary_recv(internal) RETURNS crm_kpi.csat_summary
    AS 'MODULE_PATHNAME', 'crm_kpi_csat_summary_recv'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.csat_summary_recv(internal) IS 'Binary input function of crm_kpi.csat_summary, validating the bytes';

CREATE FUNCTION crm_kpi.csat_summary_send(crm_kpi.csat_summary) RETURNS bytea
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_send'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.csat_summary_send(crm_kpi.csat_summary) IS 'Binary output function of crm_kpi.csat_summary';

CREATE TYPE crm_kpi.csat_summary (
    INPUT = crm_kpi.csat_summary_in, OUTPUT = crm_kpi.csat_summary_out,
    RECEIVE = crm_kpi.csat_summary_recv, SEND = crm_kpi.csat_summary_send,
    INTERNALLENGTH = VARIABLE, STORAGE = extended
);
COMMENT ON TYPE crm_kpi.csat_summary IS 'CSAT summary: responses per score 1-5; rolls up exactly';

CREATE FUNCTION crm_kpi.csat_summary_final(internal) RETURNS crm_kpi.csat_summary
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_summary_final'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.csat_summary_final(internal) IS 'Aggregate support: finishes a state as a crm_kpi.csat_summary (NULL when empty)';

CREATE FUNCTION crm_kpi.csat_summary_rollup_trans(internal, crm_kpi.csat_summary) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_rollup_trans'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.csat_summary_rollup_trans(internal, crm_kpi.csat_summary) IS 'Aggregate support: adds a crm_kpi.csat_summary into a rollup';

CREATE AGGREGATE crm_kpi.rollup(crm_kpi.csat_summary) (
    SFUNC = crm_kpi.csat_summary_rollup_trans, STYPE = internal, FINALFUNC = crm_kpi.csat_summary_final,
    COMBINEFUNC = crm_kpi.counter_combine,
    SERIALFUNC = crm_kpi.counter_serialize, DESERIALFUNC = crm_kpi.counter_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.rollup(crm_kpi.csat_summary) IS 'Merges crm_kpi.csat_summary values exactly (a month is the rollup of its days)';

CREATE FUNCTION crm_kpi.csat_trans(internal, integer) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_csat_trans'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.csat_trans(internal, integer) IS 'Aggregate support: counts one CSAT score 1-5 (NULL ignored)';

CREATE FUNCTION crm_kpi.csat_inv(internal, integer) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_inv'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.csat_inv(internal, integer) IS 'Aggregate support: removes one CSAT score 1-5 leaving a moving window frame';

CREATE FUNCTION crm_kpi.csat_final(internal) RETURNS numeric
    AS 'MODULE_PATHNAME', 'crm_kpi_csat_final'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.csat_final(internal) IS 'Aggregate support: the CSAT of a state';

CREATE FUNCTION crm_kpi.csat_mean_final(internal) RETURNS numeric
    AS 'MODULE_PATHNAME', 'crm_kpi_csat_mean_final'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.csat_mean_final(internal) IS 'Aggregate support: the mean CSAT score of a state';

CREATE AGGREGATE crm_kpi.csat(integer) (
    SFUNC = crm_kpi.csat_trans, STYPE = internal, FINALFUNC = crm_kpi.csat_final,
    COMBINEFUNC = crm_kpi.counter_combine,
    SERIALFUNC = crm_kpi.counter_serialize, DESERIALFUNC = crm_kpi.counter_deserialize,
    MSFUNC = crm_kpi.csat_trans, MINVFUNC = crm_kpi.csat_inv, MSTYPE = internal, MFINALFUNC = crm_kpi.csat_final,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.csat(integer) IS 'CSAT of scores 1-5: % of responses scoring 4 or 5, 0 to 100; NULL over no scores';

CREATE AGGREGATE crm_kpi.csat_mean(integer) (
    SFUNC = crm_kpi.csat_trans, STYPE = internal, FINALFUNC = crm_kpi.csat_mean_final,
    COMBINEFUNC = crm_kpi.counter_combine,
    SERIALFUNC = crm_kpi.counter_serialize, DESERIALFUNC = crm_kpi.counter_deserialize,
    MSFUNC = crm_kpi.csat_trans, MINVFUNC = crm_kpi.csat_inv, MSTYPE = internal, MFINALFUNC = crm_kpi.csat_mean_final,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.csat_mean(integer) IS 'Mean CSAT score of scores 1-5; NULL over no scores';

CREATE AGGREGATE crm_kpi.csat_agg(integer) (
    SFUNC = crm_kpi.csat_trans, STYPE = internal, FINALFUNC = crm_kpi.csat_summary_final,
    COMBINEFUNC = crm_kpi.counter_combine,
    SERIALFUNC = crm_kpi.counter_serialize, DESERIALFUNC = crm_kpi.counter_deserialize,
    MSFUNC = crm_kpi.csat_trans, MINVFUNC = crm_kpi.csat_inv, MSTYPE = internal, MFINALFUNC = crm_kpi.csat_summary_final,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.csat_agg(integer) IS 'CSAT summary of scores 1-5, to store and roll up; read it with crm_kpi.csat(csat_summary)';

CREATE FUNCTION crm_kpi.csat(crm_kpi.csat_summary) RETURNS numeric
    AS 'MODULE_PATHNAME', 'crm_kpi_csat_summary_csat'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.csat(crm_kpi.csat_summary) IS 'CSAT of a summary: % of responses scoring 4 or 5; NULL when it holds no responses';

CREATE FUNCTION crm_kpi.csat_mean(crm_kpi.csat_summary) RETURNS numeric
    AS 'MODULE_PATHNAME', 'crm_kpi_csat_summary_mean'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.csat_mean(crm_kpi.csat_summary) IS 'Mean score of a CSAT summary; NULL when it holds no responses';

CREATE FUNCTION crm_kpi.satisfied(crm_kpi.csat_summary) RETURNS bigint
    AS 'MODULE_PATHNAME', 'crm_kpi_csat_summary_satisfied'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.satisfied(crm_kpi.csat_summary) IS 'Responses scoring 4 or 5';

CREATE FUNCTION crm_kpi.score_count(crm_kpi.csat_summary, integer) RETURNS bigint
    AS 'MODULE_PATHNAME', 'crm_kpi_csat_summary_score_count'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.score_count(crm_kpi.csat_summary, integer) IS 'Responses giving one score (1-5)';

CREATE FUNCTION crm_kpi.responses(crm_kpi.csat_summary) RETURNS bigint
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_total'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.responses(crm_kpi.csat_summary) IS 'Responses in a CSAT summary';
-- rate.sql: rates such as win, conversion and resolution rate (see rate.c).

CREATE TYPE crm_kpi.rate_summary;

CREATE FUNCTION crm_kpi.rate_summary_in(cstring) RETURNS crm_kpi.rate_summary
    AS 'MODULE_PATHNAME', 'crm_kpi_rate_summary_in'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.rate_summary_in(cstring) IS 'Input function of crm_kpi.rate_summary: parses "rate v1 ..."';

CREATE FUNCTION crm_kpi.rate_summary_out(crm_kpi.rate_summary) RETURNS cstring
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_out'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.rate_summary_out(crm_kpi.rate_summary) IS 'Output function of crm_kpi.rate_summary';

CREATE FUNCTION crm_kpi.rate_summary_recv(internal) RETURNS crm_kpi.rate_summary
    AS 'MODULE_PATHNAME', 'crm_kpi_rate_summary_recv'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.rate_summary_recv(internal) IS 'Binary input function of crm_kpi.rate_summary, validating the bytes';

CREATE FUNCTION crm_kpi.rate_summary_send(crm_kpi.rate_summary) RETURNS bytea
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_send'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.rate_summary_send(crm_kpi.rate_summary) IS 'Binary output function of crm_kpi.rate_summary';

CREATE TYPE crm_kpi.rate_summary (
    INPUT = crm_kpi.rate_summary_in, OUTPUT = crm_kpi.rate_summary_out,
    RECEIVE = crm_kpi.rate_summary_recv, SEND = crm_kpi.rate_summary_send,
    INTERNALLENGTH = VARIABLE, STORAGE = extended
);
COMMENT ON TYPE crm_kpi.rate_summary IS 'Rate summary: successes (true) and failures (false); rolls up exactly';

CREATE FUNCTION crm_kpi.rate_summary_final(internal) RETURNS crm_kpi.rate_summary
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_summary_final'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.rate_summary_final(internal) IS 'Aggregate support: finishes a state as a crm_kpi.rate_summary (NULL when empty)';

CREATE FUNCTION crm_kpi.rate_summary_rollup_trans(internal, crm_kpi.rate_summary) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_rollup_trans'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.rate_summary_rollup_trans(internal, crm_kpi.rate_summary) IS 'Aggregate support: adds a crm_kpi.rate_summary into a rollup';

CREATE AGGREGATE crm_kpi.rollup(crm_kpi.rate_summary) (
    SFUNC = crm_kpi.rate_summary_rollup_trans, STYPE = internal, FINALFUNC = crm_kpi.rate_summary_final,
    COMBINEFUNC = crm_kpi.counter_combine,
    SERIALFUNC = crm_kpi.counter_serialize, DESERIALFUNC = crm_kpi.counter_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.rollup(crm_kpi.rate_summary) IS 'Merges crm_kpi.rate_summary values exactly (a month is the rollup of its days)';

CREATE FUNCTION crm_kpi.rate_trans(internal, boolean) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_rate_trans'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.rate_trans(internal, boolean) IS 'Aggregate support: counts one outcome (NULL ignored)';

CREATE FUNCTION crm_kpi.rate_inv(internal, boolean) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_inv'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.rate_inv(internal, boolean) IS 'Aggregate support: removes one outcome leaving a moving window frame';

CREATE FUNCTION crm_kpi.rate_final(internal) RETURNS numeric
    AS 'MODULE_PATHNAME', 'crm_kpi_rate_final'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.rate_final(internal) IS 'Aggregate support: the rate of a state';

CREATE AGGREGATE crm_kpi.rate(boolean) (
    SFUNC = crm_kpi.rate_trans, STYPE = internal, FINALFUNC = crm_kpi.rate_final,
    COMBINEFUNC = crm_kpi.counter_combine,
    SERIALFUNC = crm_kpi.counter_serialize, DESERIALFUNC = crm_kpi.counter_deserialize,
    MSFUNC = crm_kpi.rate_trans, MINVFUNC = crm_kpi.rate_inv, MSTYPE = internal, MFINALFUNC = crm_kpi.rate_final,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.rate(boolean) IS 'Rate in percent: true outcomes over true and false ones, 0 to 100; NULL over no outcomes';

CREATE AGGREGATE crm_kpi.rate_agg(boolean) (
    SFUNC = crm_kpi.rate_trans, STYPE = internal, FINALFUNC = crm_kpi.rate_summary_final,
    COMBINEFUNC = crm_kpi.counter_combine,
    SERIALFUNC = crm_kpi.counter_serialize, DESERIALFUNC = crm_kpi.counter_deserialize,
    MSFUNC = crm_kpi.rate_trans, MINVFUNC = crm_kpi.rate_inv, MSTYPE = internal, MFINALFUNC = crm_kpi.rate_summary_final,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.rate_agg(boolean) IS 'Rate summary of outcomes, to store and roll up; read it with crm_kpi.rate(rate_summary)';

CREATE FUNCTION crm_kpi.rate(crm_kpi.rate_summary) RETURNS numeric
    AS 'MODULE_PATHNAME', 'crm_kpi_rate_summary_rate'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.rate(crm_kpi.rate_summary) IS 'Rate of a summary in percent, 0 to 100; NULL when it holds no outcomes';

CREATE FUNCTION crm_kpi.successes(crm_kpi.rate_summary) RETURNS bigint
    AS 'MODULE_PATHNAME', 'crm_kpi_rate_summary_successes'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.successes(crm_kpi.rate_summary) IS 'True outcomes in a rate summary';

CREATE FUNCTION crm_kpi.trials(crm_kpi.rate_summary) RETURNS bigint
    AS 'MODULE_PATHNAME', 'crm_kpi_counter_total'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.trials(crm_kpi.rate_summary) IS 'Outcomes (true and false) in a rate summary';
-- purchase.sql: purchase summary (see purchase.c).

CREATE TYPE crm_kpi.purchase_summary;

CREATE FUNCTION crm_kpi.purchase_summary_in(cstring) RETURNS crm_kpi.purchase_summary
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_summary_in'
    LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.purchase_summary_in(cstring) IS
    'Input function of crm_kpi.purchase_summary: parses "purchase v1 orders=N revenue=X first=T last=T" (stable: times are read like timestamptz input)';

CREATE FUNCTION crm_kpi.purchase_summary_out(crm_kpi.purchase_summary) RETURNS cstring
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_summary_out'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.purchase_summary_out(crm_kpi.purchase_summary) IS
    'Output function of crm_kpi.purchase_summary (times in ISO 8601, UTC)';

CREATE FUNCTION crm_kpi.purchase_summary_recv(internal) RETURNS crm_kpi.purchase_summary
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_summary_recv'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.purchase_summary_recv(internal) IS
    'Binary input function of crm_kpi.purchase_summary, validating the bytes';

CREATE FUNCTION crm_kpi.purchase_summary_send(crm_kpi.purchase_summary) RETURNS bytea
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_summary_send'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.purchase_summary_send(crm_kpi.purchase_summary) IS
    'Binary output function of crm_kpi.purchase_summary';

CREATE TYPE crm_kpi.purchase_summary (
    INPUT = crm_kpi.purchase_summary_in, OUTPUT = crm_kpi.purchase_summary_out,
    RECEIVE = crm_kpi.purchase_summary_recv, SEND = crm_kpi.purchase_summary_send,
    INTERNALLENGTH = VARIABLE, STORAGE = extended
);
COMMENT ON TYPE crm_kpi.purchase_summary IS
    'Purchase summary: completed orders, revenue, first and last order time; rolls up exactly';

CREATE FUNCTION crm_kpi.purchase_trans(internal, numeric, timestamptz) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_trans'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.purchase_trans(internal, numeric, timestamptz) IS
    'Aggregate support: counts one order (amount, time); rows with a NULL are ignored';

CREATE FUNCTION crm_kpi.purchase_rollup_trans(internal, crm_kpi.purchase_summary) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_rollup_trans'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.purchase_rollup_trans(internal, crm_kpi.purchase_summary) IS
    'Aggregate support: adds a crm_kpi.purchase_summary into a rollup';

CREATE FUNCTION crm_kpi.purchase_combine(internal, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_combine'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.purchase_combine(internal, internal) IS
    'Aggregate support: merges two purchase states';

CREATE FUNCTION crm_kpi.purchase_serialize(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_serialize'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.purchase_serialize(internal) IS
    'Aggregate support: serializes a purchase state as its summary bytes';

CREATE FUNCTION crm_kpi.purchase_deserialize(bytea, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_deserialize'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.purchase_deserialize(bytea, internal) IS
    'Aggregate support: rebuilds a purchase state from its summary bytes, validating them';

CREATE FUNCTION crm_kpi.purchase_final(internal) RETURNS crm_kpi.purchase_summary
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_final'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.purchase_final(internal) IS
    'Aggregate support: finishes a purchase state as a summary (NULL over no orders)';

CREATE AGGREGATE crm_kpi.purchase_agg(numeric, timestamptz) (
    SFUNC = crm_kpi.purchase_trans, STYPE = internal, FINALFUNC = crm_kpi.purchase_final,
    COMBINEFUNC = crm_kpi.purchase_combine,
    SERIALFUNC = crm_kpi.purchase_serialize, DESERIALFUNC = crm_kpi.purchase_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.purchase_agg(numeric, timestamptz) IS
    'Purchase summary of completed orders (amount >= 0, order time); NULL over no orders';

CREATE AGGREGATE crm_kpi.rollup(crm_kpi.purchase_summary) (
    SFUNC = crm_kpi.purchase_rollup_trans, STYPE = internal, FINALFUNC = crm_kpi.purchase_final,
    COMBINEFUNC = crm_kpi.purchase_combine,
    SERIALFUNC = crm_kpi.purchase_serialize, DESERIALFUNC = crm_kpi.purchase_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.rollup(crm_kpi.purchase_summary) IS
    'Merges purchase summaries exactly: orders and revenue add up, first is the earliest, last the latest';

CREATE FUNCTION crm_kpi.orders(crm_kpi.purchase_summary) RETURNS bigint
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_orders'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.orders(crm_kpi.purchase_summary) IS 'Completed orders in a purchase summary';

CREATE FUNCTION crm_kpi.revenue(crm_kpi.purchase_summary) RETURNS numeric
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_revenue'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.revenue(crm_kpi.purchase_summary) IS
    'Revenue of a purchase summary; for one customer to date, its historical CLV';

CREATE FUNCTION crm_kpi.aov(crm_kpi.purchase_summary) RETURNS numeric
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_aov'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.aov(crm_kpi.purchase_summary) IS 'Average order value: revenue / orders';

CREATE FUNCTION crm_kpi.first_order(crm_kpi.purchase_summary) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_first'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.first_order(crm_kpi.purchase_summary) IS 'Time of the first order';

CREATE FUNCTION crm_kpi.last_order(crm_kpi.purchase_summary) RETURNS timestamptz
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_last'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.last_order(crm_kpi.purchase_summary) IS 'Time of the last order';

CREATE FUNCTION crm_kpi.mean_gap(crm_kpi.purchase_summary) RETURNS interval
    AS 'MODULE_PATHNAME', 'crm_kpi_purchase_mean_gap'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.mean_gap(crm_kpi.purchase_summary) IS
    'Mean gap between orders, (last - first) / (orders - 1), to the microsecond; NULL under two orders. Meaningful for one customer''s orders';
-- sketch.sql: crm_kpi.sketch, the mergeable percentile sketch (see sketch.c).

CREATE TYPE crm_kpi.sketch;

CREATE FUNCTION crm_kpi.sketch_in(cstring) RETURNS crm_kpi.sketch
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_in'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.sketch_in(cstring) IS
    'Input function of crm_kpi.sketch: parses "sketch v1 values=... alpha=... level=... count=... zeros=... min=... max=... sum=... neg=... pos=...", validating it';

CREATE FUNCTION crm_kpi.sketch_out(crm_kpi.sketch) RETURNS cstring
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_out'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.sketch_out(crm_kpi.sketch) IS
    'Output function of crm_kpi.sketch: exact text form (shortest round-trip decimals, exact hexadecimal sum, buckets as index:count)';

CREATE FUNCTION crm_kpi.sketch_recv(internal) RETURNS crm_kpi.sketch
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_recv'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.sketch_recv(internal) IS
    'Binary input function of crm_kpi.sketch, validating the bytes and their canonical form';

CREATE FUNCTION crm_kpi.sketch_send(crm_kpi.sketch) RETURNS bytea
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_send'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.sketch_send(crm_kpi.sketch) IS
    'Binary output function of crm_kpi.sketch: its canonical bytes (equal for equal multisets of values)';

CREATE TYPE crm_kpi.sketch (
    INPUT = crm_kpi.sketch_in, OUTPUT = crm_kpi.sketch_out,
    RECEIVE = crm_kpi.sketch_recv, SEND = crm_kpi.sketch_send,
    INTERNALLENGTH = VARIABLE, STORAGE = extended
);
COMMENT ON TYPE crm_kpi.sketch IS
    'Mergeable percentile sketch: logarithmic buckets with a guaranteed relative error, exact count, min, max and sum; order-independent, rolls up exactly';

-- Aggregate support.

CREATE FUNCTION crm_kpi.sketch_trans(internal, double precision) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_trans'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.sketch_trans(internal, double precision) IS
    'Aggregate support: adds one value to a sketch (relative error 0.01); NULLs are ignored';

CREATE FUNCTION crm_kpi.sketch_trans(internal, double precision, double precision) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_trans'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.sketch_trans(internal, double precision, double precision) IS
    'Aggregate support: adds one value to a sketch of the given relative error; NULL values are ignored';

CREATE FUNCTION crm_kpi.sketch_interval_trans(internal, interval) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_interval_trans'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.sketch_interval_trans(internal, interval) IS
    'Aggregate support: adds one interval (in seconds, as extract(epoch from ...)) to a sketch (relative error 0.01); NULLs are ignored';

CREATE FUNCTION crm_kpi.sketch_interval_trans(internal, interval, double precision) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_interval_trans'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.sketch_interval_trans(internal, interval, double precision) IS
    'Aggregate support: adds one interval (in seconds) to a sketch of the given relative error; NULL values are ignored';

CREATE FUNCTION crm_kpi.sketch_rollup_trans(internal, crm_kpi.sketch) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_rollup_trans'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.sketch_rollup_trans(internal, crm_kpi.sketch) IS
    'Aggregate support: merges one crm_kpi.sketch into a rollup; NULLs are ignored';

CREATE FUNCTION crm_kpi.sketch_combine(internal, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_combine'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.sketch_combine(internal, internal) IS
    'Aggregate support: merges two sketch states';

CREATE FUNCTION crm_kpi.sketch_serialize(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_serialize'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.sketch_serialize(internal) IS
    'Aggregate support: serializes a sketch state as its canonical crm_kpi.sketch bytes';

CREATE FUNCTION crm_kpi.sketch_deserialize(bytea, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_deserialize'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.sketch_deserialize(bytea, internal) IS
    'Aggregate support: rebuilds a sketch state from its bytes, validating them';

CREATE FUNCTION crm_kpi.sketch_final(internal) RETURNS crm_kpi.sketch
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_final'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.sketch_final(internal) IS
    'Aggregate support: finishes a sketch state (NULL over no values)';

CREATE AGGREGATE crm_kpi.sketch_agg(double precision) (
    SFUNC = crm_kpi.sketch_trans, STYPE = internal, FINALFUNC = crm_kpi.sketch_final,
    COMBINEFUNC = crm_kpi.sketch_combine,
    SERIALFUNC = crm_kpi.sketch_serialize, DESERIALFUNC = crm_kpi.sketch_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.sketch_agg(double precision) IS
    'Percentile sketch of finite values with relative error 0.01; NULLs ignored; NULL over no values';

CREATE AGGREGATE crm_kpi.sketch_agg(double precision, relative_error double precision) (
    SFUNC = crm_kpi.sketch_trans, STYPE = internal, FINALFUNC = crm_kpi.sketch_final,
    COMBINEFUNC = crm_kpi.sketch_combine,
    SERIALFUNC = crm_kpi.sketch_serialize, DESERIALFUNC = crm_kpi.sketch_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.sketch_agg(double precision, double precision) IS
    'Percentile sketch of finite values with the given relative error (1e-9 <= error < 1, the same on every row); NULL values ignored';

CREATE AGGREGATE crm_kpi.sketch_agg(interval) (
    SFUNC = crm_kpi.sketch_interval_trans, STYPE = internal, FINALFUNC = crm_kpi.sketch_final,
    COMBINEFUNC = crm_kpi.sketch_combine,
    SERIALFUNC = crm_kpi.sketch_serialize, DESERIALFUNC = crm_kpi.sketch_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.sketch_agg(interval) IS
    'Percentile sketch of intervals (in seconds, as extract(epoch from ...)) with relative error 0.01; read with percentile_interval()';

CREATE AGGREGATE crm_kpi.sketch_agg(interval, relative_error double precision) (
    SFUNC = crm_kpi.sketch_interval_trans, STYPE = internal, FINALFUNC = crm_kpi.sketch_final,
    COMBINEFUNC = crm_kpi.sketch_combine,
    SERIALFUNC = crm_kpi.sketch_serialize, DESERIALFUNC = crm_kpi.sketch_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.sketch_agg(interval, double precision) IS
    'Percentile sketch of intervals (in seconds) with the given relative error; read with percentile_interval()';

CREATE AGGREGATE crm_kpi.rollup(crm_kpi.sketch) (
    SFUNC = crm_kpi.sketch_rollup_trans, STYPE = internal, FINALFUNC = crm_kpi.sketch_final,
    COMBINEFUNC = crm_kpi.sketch_combine,
    SERIALFUNC = crm_kpi.sketch_serialize, DESERIALFUNC = crm_kpi.sketch_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.rollup(crm_kpi.sketch) IS
    'Merges sketches of the same relative error and value type: equal to the sketch of all their values';

-- One-step percentile.

CREATE FUNCTION crm_kpi.approx_percentile_trans(internal, double precision, double precision) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_approx_percentile_trans'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.approx_percentile_trans(internal, double precision, double precision) IS
    'Aggregate support: adds one value to a one-step percentile (q the same on every row); NULL values are ignored';

CREATE FUNCTION crm_kpi.approx_percentile_serialize(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'crm_kpi_approx_percentile_serialize'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.approx_percentile_serialize(internal) IS
    'Aggregate support: serializes a one-step percentile state as q followed by the sketch bytes';

CREATE FUNCTION crm_kpi.approx_percentile_deserialize(bytea, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'crm_kpi_approx_percentile_deserialize'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.approx_percentile_deserialize(bytea, internal) IS
    'Aggregate support: rebuilds a one-step percentile state, validating it';

CREATE FUNCTION crm_kpi.approx_percentile_final(internal) RETURNS double precision
    AS 'MODULE_PATHNAME', 'crm_kpi_approx_percentile_final'
    LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.approx_percentile_final(internal) IS
    'Aggregate support: estimates the percentile (NULL over no values)';

CREATE AGGREGATE crm_kpi.approx_percentile(double precision, q double precision) (
    SFUNC = crm_kpi.approx_percentile_trans, STYPE = internal,
    FINALFUNC = crm_kpi.approx_percentile_final,
    COMBINEFUNC = crm_kpi.sketch_combine,
    SERIALFUNC = crm_kpi.approx_percentile_serialize,
    DESERIALFUNC = crm_kpi.approx_percentile_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE crm_kpi.approx_percentile(double precision, double precision) IS
    'Estimate of percentile_cont(q) within relative error 0.01 of the neighbouring values (q in [0, 1], the same on every row); NULL over no values';

-- Accessors.

CREATE FUNCTION crm_kpi.percentile(crm_kpi.sketch, q double precision) RETURNS double precision
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_percentile'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.percentile(crm_kpi.sketch, double precision) IS
    'Estimate of percentile_cont(q) over the sketched values, q in [0, 1], within relative_error() of the neighbouring values; exact at q = 0 and 1';

CREATE FUNCTION crm_kpi.percentile(crm_kpi.sketch, q double precision[]) RETURNS double precision[]
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_percentiles'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.percentile(crm_kpi.sketch, double precision[]) IS
    'Estimates of percentile_cont at each q of the array (same shape), reading the sketch once';

CREATE FUNCTION crm_kpi.percentile_interval(crm_kpi.sketch, q double precision) RETURNS interval
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_percentile_interval'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.percentile_interval(crm_kpi.sketch, double precision) IS
    'Estimate of percentile_cont(q) of a sketch of intervals, as an interval of seconds (error for a sketch of numbers)';

CREATE FUNCTION crm_kpi.count(crm_kpi.sketch) RETURNS bigint
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_count'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.count(crm_kpi.sketch) IS 'Exact number of values in the sketch';

CREATE FUNCTION crm_kpi.min(crm_kpi.sketch) RETURNS double precision
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_min'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.min(crm_kpi.sketch) IS 'Exact least value in the sketch (seconds for intervals)';

CREATE FUNCTION crm_kpi.max(crm_kpi.sketch) RETURNS double precision
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_max'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.max(crm_kpi.sketch) IS 'Exact greatest value in the sketch (seconds for intervals)';

CREATE FUNCTION crm_kpi.sum(crm_kpi.sketch) RETURNS double precision
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_sum'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.sum(crm_kpi.sketch) IS
    'Sum of the values, kept exactly and rounded once to double precision (independent of input order)';

CREATE FUNCTION crm_kpi.mean(crm_kpi.sketch) RETURNS double precision
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_mean'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.mean(crm_kpi.sketch) IS
    'Mean of the values: the exact sum divided by the count (independent of input order)';

CREATE FUNCTION crm_kpi.relative_error(crm_kpi.sketch) RETURNS double precision
    AS 'MODULE_PATHNAME', 'crm_kpi_sketch_relative_error'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.relative_error(crm_kpi.sketch) IS
    'Guaranteed relative error of the sketch''s percentiles: the requested one, grown by each collapse that kept it within 2048 buckets';
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
-- sources.sql: the source contract, the reference CRM schema, and bindings of a CRM's own tables.

-- What each kind of source provides to the KPIs: one row per column.
CREATE TABLE crm_kpi.source_contract (
    kind text NOT NULL,
    column_name name NOT NULL,
    data_type regtype NOT NULL,
    required boolean NOT NULL,
    position int NOT NULL,
    description text NOT NULL,
    PRIMARY KEY (kind, column_name)
);
COMMENT ON TABLE crm_kpi.source_contract IS
    'The source contract: for each kind of source, the columns the KPIs read, their types, and whether a binding must map them';

INSERT INTO crm_kpi.source_contract (kind, column_name, data_type, required, position, description) VALUES
    ('customers', 'customer_id', 'bigint', true, 1, 'key of the customer (or lead)'),
    ('customers', 'created_at', 'timestamptz', true, 2, 'when the customer became known (lead created)'),
    ('customers', 'acquisition_channel', 'text', false, 3, 'marketing channel that acquired the customer'),
    ('customers', 'name', 'text', false, 4, 'contact name (data quality)'),
    ('customers', 'email', 'text', false, 5, 'contact e-mail (data quality)'),
    ('customers', 'phone', 'text', false, 6, 'contact phone (data quality)'),
    ('sales_reps', 'rep_id', 'bigint', true, 1, 'key of the sales rep'),
    ('sales_reps', 'name', 'text', true, 2, 'name of the rep'),
    ('sales_reps', 'team', 'text', false, 3, 'team of the rep'),
    ('opportunities', 'opportunity_id', 'bigint', true, 1, 'key of the opportunity'),
    ('opportunities', 'customer_id', 'bigint', true, 2, 'customer the opportunity is for'),
    ('opportunities', 'rep_id', 'bigint', false, 3, 'rep owning the opportunity'),
    ('opportunities', 'status', 'text', true, 4, '''open'', ''won'' or ''lost'''),
    ('opportunities', 'stage', 'text', false, 5, 'pipeline stage name (for stage win rates)'),
    ('opportunities', 'amount', 'numeric', true, 6, 'expected or won amount, >= 0'),
    ('opportunities', 'created_at', 'timestamptz', true, 7, 'when the opportunity was created'),
    ('opportunities', 'closed_at', 'timestamptz', false, 8, 'when it was won or lost; NULL while open'),
    ('orders', 'order_id', 'bigint', true, 1, 'key of the order'),
    ('orders', 'customer_id', 'bigint', true, 2, 'customer who ordered'),
    ('orders', 'rep_id', 'bigint', false, 3, 'rep the revenue is attributed to'),
    ('orders', 'status', 'text', true, 4, '''completed'', ''refunded'' or ''cancelled''; only completed orders count'),
    ('orders', 'amount', 'numeric', true, 5, 'order value, >= 0'),
    ('orders', 'ordered_at', 'timestamptz', true, 6, 'when the order was placed'),
    ('interactions', 'interaction_id', 'bigint', true, 1, 'key of the interaction'),
    ('interactions', 'customer_id', 'bigint', true, 2, 'customer interacted with'),
    ('interactions', 'rep_id', 'bigint', false, 3, 'rep who interacted'),
    ('interactions', 'channel', 'text', false, 4, 'call, e-mail, meeting, ...'),
    ('interactions', 'occurred_at', 'timestamptz', true, 5, 'when it happened'),
    ('tickets', 'ticket_id', 'bigint', true, 1, 'key of the support ticket'),
    ('tickets', 'customer_id', 'bigint', true, 2, 'customer who opened it'),
    ('tickets', 'opened_at', 'timestamptz', true, 3, 'when it was opened'),
    ('tickets', 'first_response_at', 'timestamptz', false, 4, 'first response; NULL while unanswered'),
    ('tickets', 'resolved_at', 'timestamptz', false, 5, 'resolution; NULL while unresolved'),
    ('tickets', 'replies', 'integer', false, 6, 'number of replies on the ticket'),
    ('tickets', 'is_complaint', 'boolean', false, 7, 'whether the ticket is a complaint'),
    ('survey_responses', 'response_id', 'bigint', true, 1, 'key of the response'),
    ('survey_responses', 'customer_id', 'bigint', true, 2, 'customer who answered'),
    ('survey_responses', 'kind', 'text', true, 3, '''nps'' (score 0-10) or ''csat'' (score 1-5)'),
    ('survey_responses', 'score', 'integer', true, 4, 'the score'),
    ('survey_responses', 'answered_at', 'timestamptz', true, 5, 'when it was answered'),
    ('survey_responses', 'ticket_id', 'bigint', false, 6, 'ticket the survey followed, if any'),
    ('marketing_spend', 'channel', 'text', true, 1, 'marketing channel'),
    ('marketing_spend', 'day', 'date', true, 2, 'day of the spend'),
    ('marketing_spend', 'amount', 'numeric', true, 3, 'amount spent, >= 0');

-- The bound sources. pg_dump keeps them.
CREATE TABLE crm_kpi.source_bindings (
    kind text NOT NULL,
    source regclass NOT NULL,
    mapping jsonb NOT NULL,
    bound_by name NOT NULL DEFAULT current_user,
    bound_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, source)
);
COMMENT ON TABLE crm_kpi.source_bindings IS
    'Bound sources: a CRM table bound to a kind of the source contract, with the mapping of each contract column to a column or SQL expression of it';
SELECT pg_catalog.pg_extension_config_dump('crm_kpi.source_bindings', '');

-- Bindings restored from a dump before their capture triggers: held here until the restore
-- creates those triggers, so that no refresh reads a source whose changes are not yet captured.
CREATE TABLE crm_kpi.pending_bindings (
    kind text NOT NULL,
    source regclass NOT NULL,
    mapping jsonb NOT NULL,
    bound_by name NOT NULL,
    bound_at timestamptz NOT NULL,
    PRIMARY KEY (kind, source)
);
COMMENT ON TABLE crm_kpi.pending_bindings IS
    'Bindings restored (pg_restore, psql) into crm_kpi.source_bindings before the capture triggers of their table: held here, unused, until the restore has created those triggers, then bound, and the KPI tables rebuilt';
SELECT pg_catalog.pg_extension_config_dump('crm_kpi.pending_bindings', '');
-- bind.sql: binding a CRM's own tables to the source contract: bind_source, unbind_source, source_query.

CREATE FUNCTION crm_kpi.expression_problem(source regclass, expr text) RETURNS text
    AS 'MODULE_PATHNAME', 'crm_kpi_expression_problem'
    LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.expression_problem(regclass, text) IS
    'Why a binding''s SQL expression over a table is not allowed (NULL when it is): it must be one expression over the row, reading only readable tables and calling only non-volatile functions of pg_catalog';

CREATE FUNCTION crm_kpi.query_function_problem(query text, immutable_only boolean) RETURNS text
    AS 'MODULE_PATHNAME', 'crm_kpi_query_function_problem'
    LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.query_function_problem(text, boolean) IS
    'The first function (or operator''s) that a query, its views expanded and their row-level security policies applied, would call and a binding may not: one not of pg_catalog, a volatile one, or when immutable_only one that is not immutable; NULL when there is none. Raises the errors of parsing it';

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
    INSERT INTO crm_kpi.change_queue (target) VALUES ('*');
END $$;
COMMENT ON FUNCTION crm_kpi.unbind_source_by(text, regclass, regrole) IS
    'What crm_kpi.unbind_source does, run as the extension''s owner for the role that called it (who must own the table); executable by the extension''s owner only';

CREATE FUNCTION crm_kpi.unbind_source(kind text, source regclass) RETURNS void
    AS 'MODULE_PATHNAME', 'crm_kpi_owner_call'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION crm_kpi.unbind_source(text, regclass) IS
    'Removes a binding and its capture triggers (owner only); the table stays as it was, and the KPI tables are rebuilt at the next refresh. Runs as the extension''s owner (crm_kpi.unbind_source_by) for its caller';

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
    DELETE FROM crm_kpi.source_bindings b
    WHERE b.source::oid IN (SELECT d.objid FROM pg_event_trigger_dropped_objects() d
                            WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0);
    IF FOUND THEN
        INSERT INTO crm_kpi.change_queue (target) VALUES ('*');
    END IF;
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
        INSERT INTO crm_kpi.change_queue (target) VALUES ('*');
        RETURN NEW;
    END IF;
    INSERT INTO crm_kpi.pending_bindings AS p (kind, source, mapping, bound_by, bound_at)
    VALUES (NEW.kind, NEW.source, NEW.mapping, NEW.bound_by, NEW.bound_at)
    ON CONFLICT ON CONSTRAINT pending_bindings_pkey
    DO UPDATE SET mapping = EXCLUDED.mapping, bound_by = EXCLUDED.bound_by, bound_at = EXCLUDED.bound_at;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION crm_kpi.hold_restored_binding() IS
    'Trigger of crm_kpi.source_bindings: a binding written while its table lacks the capture triggers (restored from a dump before them) is held in crm_kpi.pending_bindings instead; any other queues a rebuild';

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
-- kpi_tables.sql: the KPI tables (derived data, kept by the refresh engine) and their week, month and quarter views.

-- Settings the KPI tables were built with, and the instant time-dependent KPIs are taken at.
CREATE TABLE crm_kpi.engine_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    built_at timestamptz,
    as_of timestamptz,
    timezone text,
    active_window interval,
    churn_after interval,
    loyal_min_tenure interval,
    loyal_min_orders integer,
    resolution_sla interval
);
INSERT INTO crm_kpi.engine_state DEFAULT VALUES;
COMMENT ON TABLE crm_kpi.engine_state IS
    'The settings the KPI tables were built with (NULL before the first crm_kpi.rebuild()), and as_of: the instant stages, churn and other time-dependent KPIs are taken at';

-- Keys made stale by writes to the bound sources; appended by the capture triggers, consumed by the refresh engine.
CREATE TABLE crm_kpi.change_queue (
    target text NOT NULL,
    day date,
    customer_id bigint,
    queued_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE crm_kpi.change_queue IS
    'Stale keys. Capture triggers append, under the source''s kind, the day and/or customer of each changed row (once per statement); the refresh engine turns them into days or months of KPI families (sales, cohort, pipeline, service, satisfaction, marketing, churn) and customers (target customer), deduplicated. Target ''*'' means everything (TRUNCATE, bind, unbind). Append-only for writers';

CREATE TABLE crm_kpi.sales_daily (
    day date NOT NULL,
    rep_id bigint,
    channel text,
    orders bigint NOT NULL,
    revenue numeric NOT NULL,
    new_customers bigint NOT NULL,
    reactivated_customers bigint NOT NULL,
    UNIQUE NULLS NOT DISTINCT (day, rep_id, channel)
);
COMMENT ON TABLE crm_kpi.sales_daily IS
    'Completed orders per day (in crm_kpi.timezone), rep of the order and acquisition channel of the customer: orders, revenue, new customers (first completed order) and reactivated customers (completed order after crm_kpi.churn_after or more without one)';
CREATE INDEX sales_daily_rep ON crm_kpi.sales_daily (rep_id, day);
CREATE INDEX sales_daily_channel ON crm_kpi.sales_daily (channel, day);

CREATE TABLE crm_kpi.sales_channel_daily (
    day date NOT NULL,
    channel text,
    orders bigint NOT NULL,
    revenue numeric NOT NULL,
    new_customers bigint NOT NULL,
    reactivated_customers bigint NOT NULL,
    UNIQUE NULLS NOT DISTINCT (day, channel)
);
COMMENT ON TABLE crm_kpi.sales_channel_daily IS
    'crm_kpi.sales_daily summed over reps: completed orders, revenue, new and reactivated customers per day and acquisition channel (for dashboards of all reps: a row per day and channel instead of one per rep)';
CREATE INDEX sales_channel_daily_channel ON crm_kpi.sales_channel_daily (channel, day);

CREATE TABLE crm_kpi.pipeline_daily (
    day date NOT NULL,
    rep_id bigint,
    created bigint NOT NULL,
    won bigint NOT NULL,
    lost bigint NOT NULL,
    won_amount numeric NOT NULL,
    sales_cycle crm_kpi.sketch,
    UNIQUE NULLS NOT DISTINCT (day, rep_id)
);
COMMENT ON TABLE crm_kpi.pipeline_daily IS
    'Opportunities per day and rep: created that day; won, lost and won amount by the day they closed; sales_cycle is the sketch of closed_at - created_at of those won';
CREATE INDEX pipeline_daily_rep ON crm_kpi.pipeline_daily (rep_id, day);

CREATE TABLE crm_kpi.pipeline_total_daily (
    day date PRIMARY KEY,
    created bigint NOT NULL,
    won bigint NOT NULL,
    lost bigint NOT NULL,
    won_amount numeric NOT NULL,
    sales_cycle crm_kpi.sketch
);
COMMENT ON TABLE crm_kpi.pipeline_total_daily IS
    'crm_kpi.pipeline_daily summed over reps (the sales-cycle sketches merged): opportunities created, won, lost, won amount and sales cycle per day';

CREATE TABLE crm_kpi.service_daily (
    day date PRIMARY KEY,
    opened bigint NOT NULL,
    unanswered bigint NOT NULL,
    resolved bigint NOT NULL,
    resolved_within_sla bigint NOT NULL,
    first_response crm_kpi.sketch,
    resolution crm_kpi.sketch,
    replies_on_resolved bigint NOT NULL,
    complaints bigint NOT NULL
);
COMMENT ON TABLE crm_kpi.service_daily IS
    'Tickets by the day they were opened: opened, still unanswered, resolved, resolved within crm_kpi.resolution_sla, sketches of first response and resolution times, replies on resolved tickets, complaints';

CREATE TABLE crm_kpi.satisfaction_daily (
    day date PRIMARY KEY,
    nps crm_kpi.nps_summary,
    csat crm_kpi.csat_summary
);
COMMENT ON TABLE crm_kpi.satisfaction_daily IS
    'Survey responses by the day they were answered: the NPS and CSAT summaries';

CREATE TABLE crm_kpi.customer_stats (
    customer_id bigint PRIMARY KEY,
    created_at timestamptz,
    acquisition_channel text,
    interactions bigint NOT NULL,
    purchases crm_kpi.purchase_summary,
    orders bigint NOT NULL,
    revenue numeric NOT NULL,
    first_order_at timestamptz,
    last_order_at timestamptz,
    mean_gap interval,
    stage crm_kpi.lifecycle_stage NOT NULL,
    stage_until timestamptz,
    new_day date,
    reactivation_days date[] NOT NULL
);
COMMENT ON TABLE crm_kpi.customer_stats IS
    'Per customer, as of engine_state.as_of: interactions, completed orders and revenue, first and last order, mean gap, lifecycle stage and the instant it next changes with time alone (stage_until); new_day and reactivation_days over every completed order, dated or not in the future';
CREATE INDEX customer_stats_stage_until ON crm_kpi.customer_stats (stage_until);
CREATE INDEX customer_stats_first_order ON crm_kpi.customer_stats (first_order_at);
CREATE INDEX customer_stats_stage ON crm_kpi.customer_stats (stage);

CREATE TABLE crm_kpi.customer_spells (
    customer_id bigint NOT NULL,
    spell integer NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz NOT NULL,
    PRIMARY KEY (customer_id, spell)
);
COMMENT ON TABLE crm_kpi.customer_spells IS
    'Active spells of each customer as of engine_state.as_of: from an order after none for crm_kpi.churn_after (or the first) to the last order of the spell + churn_after, the churn instant (in the future while the spell goes on)';
CREATE INDEX customer_spells_ended ON crm_kpi.customer_spells (ended_at);
CREATE INDEX customer_spells_started ON crm_kpi.customer_spells (started_at);

CREATE TABLE crm_kpi.customer_counts (
    channel text,
    stage crm_kpi.lifecycle_stage NOT NULL,
    lead_month date,
    customers bigint NOT NULL,
    buyers bigint NOT NULL,
    repeat_buyers bigint NOT NULL,
    buyer_revenue numeric NOT NULL,
    UNIQUE NULLS NOT DISTINCT (channel, stage, lead_month)
);
COMMENT ON TABLE crm_kpi.customer_counts IS
    'crm_kpi.customer_stats counted per acquisition channel, lifecycle stage (now, as of engine_state.as_of) and lead month (the month of created_at, in the tables'' time zone): customers, buyers (a completed order or more), repeat buyers (two or more) and the buyers'' revenue';

CREATE TABLE crm_kpi.customer_events_daily (
    day date NOT NULL,
    channel text,
    created bigint NOT NULL,
    first_bought bigint NOT NULL,
    leads_ended bigint NOT NULL,
    spells_started bigint NOT NULL,
    spells_ended bigint NOT NULL,
    UNIQUE NULLS NOT DISTINCT (day, channel)
);
COMMENT ON TABLE crm_kpi.customer_events_daily IS
    'Customers'' events per day (in the tables'' time zone) and acquisition channel, from customer_stats and customer_spells as of engine_state.as_of: created (created_at), first completed order, leads ended (the later of the two, when both are known), active spells started and ended (their churn instant, in the future while they go on). Summed up to a day: customers created, buyers, leads, and active customers at its start';

-- Per-customer contributions: what each customer adds to sales_daily and cohort_monthly. A recomputed customer
-- changes those tables by the difference of its contributions, never by rescanning days or months.
CREATE TABLE crm_kpi.customer_days (
    customer_id bigint NOT NULL,
    day date NOT NULL,
    rep_id bigint,
    channel text,
    -- (integer: counts of one customer's day, summed into the bigint columns of sales_daily, which sum(integer) does
    -- without the allocation per group that sum(bigint) needs)
    orders integer NOT NULL,
    revenue numeric NOT NULL,
    new_customers integer NOT NULL,
    reactivated_customers integer NOT NULL,
    UNIQUE NULLS NOT DISTINCT (customer_id, day, rep_id)
);
COMMENT ON TABLE crm_kpi.customer_days IS
    'Each customer''s part of sales_daily (every customer id that has completed orders, bound as a customer or not): per day and rep of the orders, with the customer''s acquisition channel; sales_daily is their sum plus the orders without a customer';
CREATE INDEX customer_days_day ON crm_kpi.customer_days (day);

CREATE TABLE crm_kpi.cohort_monthly (
    month date NOT NULL,
    cohort_month date NOT NULL,
    month_offset integer NOT NULL,
    customers bigint NOT NULL,
    revenue numeric NOT NULL,
    PRIMARY KEY (month, cohort_month)
);
COMMENT ON TABLE crm_kpi.cohort_monthly IS
    'Cohorts by month of first completed order: for each month, the customers of the cohort with a completed order in it and their revenue; month_offset counts months since the cohort month';
CREATE INDEX cohort_monthly_cohort ON crm_kpi.cohort_monthly (cohort_month, month_offset);

CREATE TABLE crm_kpi.marketing_monthly (
    month date NOT NULL,
    channel text,
    spend numeric NOT NULL,
    new_customers bigint NOT NULL,
    UNIQUE NULLS NOT DISTINCT (month, channel)
);
COMMENT ON TABLE crm_kpi.marketing_monthly IS
    'Per month and channel: marketing spend and new customers acquired through the channel (first completed order in the month); CAC = spend / new_customers';

CREATE TABLE crm_kpi.churn_monthly (
    month date PRIMARY KEY,
    customers_at_start bigint NOT NULL,
    churned bigint NOT NULL,
    new_customers bigint NOT NULL,
    reactivated bigint NOT NULL
);
COMMENT ON TABLE crm_kpi.churn_monthly IS
    'Per month up to the one of engine_state.as_of: active customers entering the month, how many of them churned in it (churn instants up to as_of), new and reactivated customers';
-- kpi_views.sql: week, month and quarter views over the daily KPI tables (exact rollups), and the rate views.

DO $$
DECLARE
    grain text;
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('sales', 'rep_id, channel',
         'sum(orders)::bigint AS orders, sum(revenue) AS revenue, sum(new_customers)::bigint AS new_customers, '
         'sum(reactivated_customers)::bigint AS reactivated_customers',
         'orders, revenue, new and reactivated customers per rep and channel'),
        ('pipeline', 'rep_id',
         'sum(created)::bigint AS created, sum(won)::bigint AS won, sum(lost)::bigint AS lost, '
         'sum(won_amount) AS won_amount, crm_kpi.rollup(sales_cycle) AS sales_cycle',
         'opportunities created, won and lost, won amount and the sales-cycle sketch per rep'),
        ('service', NULL,
         'sum(opened)::bigint AS opened, sum(unanswered)::bigint AS unanswered, sum(resolved)::bigint AS resolved, '
         'sum(resolved_within_sla)::bigint AS resolved_within_sla, crm_kpi.rollup(first_response) AS first_response, '
         'crm_kpi.rollup(resolution) AS resolution, sum(replies_on_resolved)::bigint AS replies_on_resolved, '
         'sum(complaints)::bigint AS complaints',
         'tickets opened, unanswered, resolved (within SLA), response and resolution sketches, replies, complaints'),
        ('satisfaction', NULL,
         'crm_kpi.rollup(nps) AS nps, crm_kpi.rollup(csat) AS csat',
         'the NPS and CSAT summaries')) AS v(family, dims, aggs, what)
    LOOP
        FOREACH grain IN ARRAY ARRAY['week', 'month', 'quarter'] LOOP
            EXECUTE format('CREATE VIEW crm_kpi.%I AS SELECT date_trunc(%L, day)::date AS %I%s, %s '
                           'FROM crm_kpi.%I GROUP BY 1%s',
                           t.family || '_' || grain || 'ly', grain, grain,
                           coalesce(', ' || t.dims, ''), t.aggs, t.family || '_daily',
                           coalesce(', ' || t.dims, ''));
            EXECUTE format('COMMENT ON VIEW crm_kpi.%I IS %L', t.family || '_' || grain || 'ly',
                           format('crm_kpi.%s_daily rolled up by %s (%s start on Monday): %s',
                                  t.family, grain, CASE grain WHEN 'week' THEN 'ISO weeks' ELSE grain || 's' END, t.what));
        END LOOP;
    END LOOP;
END $$;

CREATE VIEW crm_kpi.churn_rates AS
SELECT month, customers_at_start, churned, customers_at_start - churned AS retained, new_customers, reactivated,
       100 * churned::numeric / nullif(customers_at_start, 0) AS churn_rate,
       100 - 100 * churned::numeric / nullif(customers_at_start, 0) AS retention_rate
FROM crm_kpi.churn_monthly;
COMMENT ON VIEW crm_kpi.churn_rates IS
    'Monthly customer churn and retention rates (%): churned / customers at start, and its complement, so that the two add up to 100 exactly; NULL when no customer was active at the start';

CREATE VIEW crm_kpi.marketing_cac AS
SELECT month, channel, spend, new_customers, spend / nullif(new_customers, 0) AS cac
FROM crm_kpi.marketing_monthly;
COMMENT ON VIEW crm_kpi.marketing_cac IS
    'Monthly CAC per channel: spend / new customers acquired through the channel (NULL when none)';

CREATE VIEW crm_kpi.cohort_retention AS
SELECT c.cohort_month, c.month_offset, c.month, c.customers, z.customers AS cohort_size,
       100 * c.customers::numeric / nullif(z.customers, 0) AS retention,
       100 * c.revenue / nullif(z.revenue, 0) AS revenue_retention
FROM crm_kpi.cohort_monthly c
JOIN crm_kpi.cohort_monthly z ON z.cohort_month = c.cohort_month AND z.month_offset = 0;
COMMENT ON VIEW crm_kpi.cohort_retention IS
    'Cohort retention: for each cohort and month offset k, the % of the cohort with a completed order in month k, and revenue in month k as % of month 0 (net revenue retention)';

-- RFM segments from the R and F scores (rows: recency score, columns: frequency score). Users may edit them; the
-- cells 1-5 x 1-5 are covered exactly once (overlaps are excluded at once, gaps refused at commit), so that each
-- buyer has exactly one segment. Dumped: a restore brings the edited segments back over the built-in ones.
CREATE TABLE crm_kpi.rfm_segments (
    segment text PRIMARY KEY CHECK (segment <> ''),
    recency_scores int4range NOT NULL CHECK (NOT isempty(recency_scores) AND recency_scores <@ int4range(1, 5, '[]')),
    frequency_scores int4range NOT NULL CHECK (NOT isempty(frequency_scores) AND frequency_scores <@ int4range(1, 5, '[]')),
    meaning text NOT NULL,
    builtin boolean NOT NULL DEFAULT false,
    CONSTRAINT rfm_segments_one_per_cell EXCLUDE USING gist (recency_scores WITH &&, frequency_scores WITH &&)
);
COMMENT ON TABLE crm_kpi.rfm_segments IS
    'The RFM segment of each (recency score, frequency score) cell; the ranges cover the 5 x 5 grid exactly once (checked at commit). builtin: a segment as the extension installed it, which a segment inserted over its cells or under its name replaces; editing it makes it the user''s';
INSERT INTO crm_kpi.rfm_segments VALUES
    ('champions', '[4,5]', '[4,5]', 'bought recently and often', true),
    ('loyal', '[3,3]', '[4,5]', 'buy often, a little less recently', true),
    ('potential', '[4,5]', '[1,3]', 'recent, not yet frequent', true),
    ('needs attention', '[3,3]', '[1,3]', 'middling recency and frequency', true),
    ('at risk', '[1,2]', '[3,5]', 'used to buy often, not for a long time', true),
    ('hibernating', '[2,2]', '[1,2]', 'few orders, long ago', true),
    ('lost', '[1,1]', '[1,2]', 'few orders, longest ago', true);
SELECT pg_catalog.pg_extension_config_dump('crm_kpi.rfm_segments', '');

-- A segment written over the cells or under the name of built-in ones replaces them (so a restore, whose rows
-- come after those CREATE EXTENSION inserted, brings back exactly the segments dumped); an edited one is the user's.
CREATE FUNCTION crm_kpi.rfm_segments_replace() RETURNS trigger
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.builtin := false;
    END IF;
    DELETE FROM crm_kpi.rfm_segments g
    WHERE g.builtin
      AND (TG_OP = 'INSERT' OR g.segment <> OLD.segment)
      AND (g.segment = NEW.segment
           OR (g.recency_scores && NEW.recency_scores AND g.frequency_scores && NEW.frequency_scores));
    RETURN NEW;
END $$;
COMMENT ON FUNCTION crm_kpi.rfm_segments_replace() IS
    'Trigger of crm_kpi.rfm_segments: a segment inserted (or moved) over the cells or under the name of built-in segments replaces them; an updated segment is no longer built-in';
CREATE TRIGGER rfm_segments_replace BEFORE INSERT OR UPDATE ON crm_kpi.rfm_segments
    FOR EACH ROW EXECUTE FUNCTION crm_kpi.rfm_segments_replace();
COMMENT ON TRIGGER rfm_segments_replace ON crm_kpi.rfm_segments IS
    'Replaces the built-in segments that an inserted or moved segment covers or renames';

-- At commit: every cell has a segment (overlaps cannot be written at all).
CREATE FUNCTION crm_kpi.rfm_segments_check() RETURNS trigger
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    uncovered text := (SELECT string_agg(format('(%s, %s)', r, f), ', ' ORDER BY r, f)
                       FROM generate_series(1, 5) r, generate_series(1, 5) f
                       WHERE NOT EXISTS (SELECT FROM crm_kpi.rfm_segments g
                                         WHERE g.recency_scores @> r AND g.frequency_scores @> f));
BEGIN
    IF uncovered IS NOT NULL THEN
        RAISE EXCEPTION 'the RFM segments leave cells without a segment'
            USING ERRCODE = 'check_violation',
                  DETAIL = format('No segment of crm_kpi.rfm_segments covers the (recency score, frequency score) cells %s.', uncovered),
                  HINT = 'Every cell of 1-5 x 1-5 needs exactly one segment: extend a segment, or add one, in the same transaction.';
    END IF;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION crm_kpi.rfm_segments_check() IS
    'Constraint trigger of crm_kpi.rfm_segments, at commit: raises check_violation when a cell of the 5 x 5 grid has no segment';
CREATE CONSTRAINT TRIGGER rfm_segments_cover_grid AFTER INSERT OR UPDATE OR DELETE ON crm_kpi.rfm_segments
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION crm_kpi.rfm_segments_check();
COMMENT ON TRIGGER rfm_segments_cover_grid ON crm_kpi.rfm_segments IS
    'At commit, refuses RFM segments that leave a cell of the 5 x 5 grid without a segment';

CREATE VIEW crm_kpi.customer_kpis AS
WITH e AS (SELECT as_of, active_window FROM crm_kpi.engine_state),
buyers AS (
    SELECT s.customer_id, (e.as_of - s.last_order_at) AS since_last,
           count(*) OVER () AS n,
           rank() OVER (ORDER BY s.last_order_at) AS r_rank,
           rank() OVER (ORDER BY s.orders) AS f_rank,
           rank() OVER (ORDER BY s.revenue) AS m_rank
    FROM crm_kpi.customer_stats s CROSS JOIN e
    WHERE s.orders > 0),
scored AS (
    SELECT b.customer_id, b.since_last,
           (1 + 5 * (b.r_rank - 1) / b.n)::integer AS recency_score,
           (1 + 5 * (b.f_rank - 1) / b.n)::integer AS frequency_score,
           (1 + 5 * (b.m_rank - 1) / b.n)::integer AS monetary_score
    FROM buyers b)
SELECT s.customer_id, s.stage, s.acquisition_channel, s.orders, s.revenue, s.first_order_at, s.last_order_at, s.mean_gap,
       extract(epoch FROM sc.since_last) / 86400 AS days_since_last_order,
       sc.recency_score, sc.frequency_score, sc.monetary_score, g.segment,
       w.ratio AS warning_ratio,
       coalesce(w.ratio > w.threshold, false) AS early_warning
FROM crm_kpi.customer_stats s
CROSS JOIN e
LEFT JOIN scored sc ON sc.customer_id = s.customer_id
LEFT JOIN crm_kpi.rfm_segments g ON g.recency_scores @> sc.recency_score AND g.frequency_scores @> sc.frequency_score
LEFT JOIN LATERAL (
    SELECT CASE WHEN s.orders >= 2 THEN extract(epoch FROM sc.since_last) / nullif(extract(epoch FROM s.mean_gap), 0)
                ELSE extract(epoch FROM sc.since_last) / extract(epoch FROM e.active_window) END AS ratio,
           CASE WHEN s.orders >= 2 THEN coalesce(current_setting('crm_kpi.warning_factor', true), '2')::numeric ELSE 1 END AS threshold
    WHERE s.orders > 0 AND s.stage <> 'churned') w ON true;
COMMENT ON VIEW crm_kpi.customer_kpis IS
    'Per customer as of engine_state.as_of: stage, orders, revenue, first and last order, mean gap; RFM scores 1-5 by quintile of rank among buyers (5 best; equal values, equal scores) and the segment of crm_kpi.rfm_segments; the churn early warning (days since the last order over the mean gap, flagged above crm_kpi.warning_factor; with one order, over crm_kpi.active_window, flagged above 1), for buyers not churned';
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
    -- Truncated, or the binding no longer reads the table (a mapped column renamed or dropped): everything is stale,
    -- and the CRM's write goes through; the refresh reports the broken binding until it is fixed.
    IF event = 'truncate' OR EXISTS (SELECT FROM crm_kpi.binding_shape_problems(b.kind, b.source, b.mapping)) THEN
        RETURN 'INSERT INTO crm_kpi.change_queue (target) VALUES (''*'')';
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
    RETURN format('INSERT INTO crm_kpi.change_queue (target, day, customer_id) '
                  'SELECT DISTINCT %L, r.day, r.customer_id FROM (%s) AS r '
                  'WHERE r.day IS NOT NULL OR r.customer_id IS NOT NULL', kind, rows_sql);
END $$;
COMMENT ON FUNCTION crm_kpi.capture_sql(text, regclass, text) IS
    'The statement a capture trigger of a bound source runs for an event (insert, update, delete, truncate): it queues, once each, the (day, customer) keys of the transition rows under the source''s kind';

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
    changed boolean := false;
BEGIN
    FOR b IN SELECT s.kind, s.source, s.mapping FROM crm_kpi.source_bindings s ORDER BY s.kind, s.source LOOP
        IF crm_kpi.record_binding_shape(b.kind, b.source, b.mapping) THEN
            changed := true;
        END IF;
    END LOOP;
    -- A table just created (a new partition of a bound source, say) holds no row yet.
    IF changed AND TG_TAG <> 'CREATE TABLE' THEN
        INSERT INTO crm_kpi.change_queue (target) VALUES ('*');
    END IF;
END $$;
COMMENT ON FUNCTION crm_kpi.watch_bindings() IS
    'Event trigger: when DDL changes what a bound source reads (its fingerprint, crm_kpi.binding_shape), queues a rebuild of the KPI tables (target *); a new table only updates the fingerprints';

CREATE EVENT TRIGGER crm_kpi_watch_bindings ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'CREATE VIEW', 'ALTER VIEW', 'CREATE RULE', 'DROP RULE')
    EXECUTE FUNCTION crm_kpi.watch_bindings();
COMMENT ON EVENT TRIGGER crm_kpi_watch_bindings IS
    'Queues a rebuild of the KPI tables when DDL changes what a bound source reads';

CREATE FUNCTION crm_kpi.watch_rewrites() RETURNS event_trigger
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM crm_kpi.source_bindings s
               WHERE pg_event_trigger_table_rewrite_oid() IN (SELECT crm_kpi.binding_reads(s.source))) THEN
        INSERT INTO crm_kpi.change_queue (target) VALUES ('*');
    END IF;
END $$;
COMMENT ON FUNCTION crm_kpi.watch_rewrites() IS
    'Event trigger: an ALTER TABLE that rewrites a table a bound source reads (a column type changed with USING, say) queues a rebuild of the KPI tables (target *)';

CREATE EVENT TRIGGER crm_kpi_watch_rewrites ON table_rewrite
    EXECUTE FUNCTION crm_kpi.watch_rewrites();
COMMENT ON EVENT TRIGGER crm_kpi_watch_rewrites IS
    'Queues a rebuild of the KPI tables when ALTER TABLE rewrites a table a bound source reads';
-- worker.sql: the background workers seen from SQL: wake, wait, status.

CREATE FUNCTION crm_kpi.request_refresh() RETURNS boolean
    AS 'MODULE_PATHNAME', 'crm_kpi_request_refresh'
    LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION crm_kpi.request_refresh() IS
    'Wakes this database''s refresh worker at once; false when no enabled worker runs (library not preloaded, crm_kpi.enabled off)';

CREATE FUNCTION crm_kpi.report_activity(activity text) RETURNS void
    AS 'MODULE_PATHNAME', 'crm_kpi_report_activity'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION crm_kpi.report_activity(text) IS
    'In a refresh worker, sets its pg_stat_activity.query to what it is doing (which table, how far); does nothing in other sessions';

CREATE FUNCTION crm_kpi.worker_created() RETURNS boolean
    AS 'MODULE_PATHNAME', 'crm_kpi_worker_created'
    LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION crm_kpi.worker_created() IS
    'Asks the launcher for a refresh worker in this database once the current transaction commits (run by CREATE EXTENSION); false when not preloaded';

CREATE FUNCTION crm_kpi.worker_status(OUT pid integer, OUT state text, OUT started_at timestamptz,
                                      OUT last_run_at timestamptz, OUT last_error text, OUT last_error_at timestamptz)
    RETURNS record
    AS 'MODULE_PATHNAME', 'crm_kpi_worker_status'
    LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION crm_kpi.worker_status() IS
    'This database''s refresh worker: pid (NULL when none runs), state (starting, idle, refreshing, backoff, disabled, none, not preloaded), when it started, its last run, its last error';

CREATE FUNCTION crm_kpi.wait_for_refresh(timeout interval DEFAULT '60 seconds') RETURNS boolean
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    called timestamptz := clock_timestamp();
    deadline timestamptz := clock_timestamp() + timeout;
    pause double precision := 0.005;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'crm_kpi.wait_for_refresh() needs a new snapshot per statement'
            USING ERRCODE = 'active_sql_transaction', HINT = 'Call it outside a REPEATABLE READ or SERIALIZABLE transaction.';
    END IF;
    IF NOT crm_kpi.request_refresh() THEN
        -- No worker: do the refresh here.
        PERFORM crm_kpi.refresh();
        RETURN true;
    END IF;
    LOOP
        -- Every KPI table's watermark is past the call: a refresh that started after it found nothing pending.
        IF (SELECT min(coalesce(s.watermark, '-infinity')) >= called FROM crm_kpi.kpi_table_state s) THEN
            RETURN true;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RETURN false;
        END IF;
        PERFORM pg_sleep(pause);
        pause := least(pause * 2, 0.1);
        PERFORM crm_kpi.request_refresh();
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.wait_for_refresh(interval) IS
    'Returns true once every change committed before the call is reflected in the KPI tables (the worker is woken and polled, with growing pauses up to 0.1 s), false at the timeout; without a worker it runs crm_kpi.refresh() itself';

-- A new database with the extension gets its worker once CREATE EXTENSION commits.
SELECT crm_kpi.worker_created();
-- kpi_fresh.sql: each KPI table computed from scratch over the bound sources, for given keys or for everything.
-- The refresh engine, rebuild and verify all read these, with the settings of crm_kpi.engine_state.

-- The query reading every source bound to a kind; an empty relation of the contract's columns when none is.
CREATE FUNCTION crm_kpi.source_sql(kind text) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN coalesce(crm_kpi.source_query(kind),
                    (SELECT 'SELECT ' || string_agg(format('CAST(NULL AS %s) AS %I', c.data_type, c.column_name),
                                                    ', ' ORDER BY c.position) || ' WHERE false'
                     FROM crm_kpi.source_contract c WHERE c.kind = source_sql.kind));
COMMENT ON FUNCTION crm_kpi.source_sql(text) IS
    'The rows of every source bound to a kind, as the contract''s columns (no rows when none is bound)';

-- A FROM item: a relation, or when keyed only its rows whose time column falls in one of the days or months of $1.
CREATE FUNCTION crm_kpi.period_rows(relation text, alias text, time_column name, grain text, tz text, keys date[])
    RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE
        WHEN keys IS NULL THEN format('(SELECT * FROM %1$s AS z WHERE z.%3$I IS NOT NULL) AS %2$s', relation, alias, time_column)
        -- Few periods: runs of consecutive ones as literal ranges, which the planner can estimate.
        WHEN cardinality(keys) <= 64 THEN format('(SELECT * FROM %1$s AS z WHERE %3$s) AS %2$s', relation, alias, (
            SELECT coalesce(string_agg(CASE WHEN isfinite(r.first) THEN format('(z.%1$I >= %2$L AND z.%1$I < %3$L)', time_column,
                                                                                 r.first::timestamp AT TIME ZONE tz,
                                                                                 (r.last + ('1 ' || grain)::interval)::timestamp AT TIME ZONE tz)
                                            ELSE format('z.%I = %L', time_column, r.first::timestamp AT TIME ZONE tz) END, ' OR '),
                            'false')
            FROM (SELECT min(i.k) AS first, max(i.k) AS last
                  FROM (SELECT k.k,
                               CASE WHEN NOT isfinite(k.k) THEN k.k::text  -- infinity alone
                                    WHEN grain = 'day' THEN (k.k - (dense_rank() OVER (ORDER BY k.k))::integer)::text
                                    ELSE (12 * extract(year FROM k.k) + extract(month FROM k.k)
                                          - dense_rank() OVER (ORDER BY k.k))::text END AS run
                        FROM (SELECT DISTINCT d AS k FROM unnest(keys) d WHERE d IS NOT NULL) k) i
                  GROUP BY i.run) r))
        ELSE format('(SELECT y.* FROM unnest($1::date[]) AS key (first_day) CROSS JOIN LATERAL '
                    '(SELECT * FROM %1$s AS z WHERE z.%3$I >= (key.first_day::timestamp AT TIME ZONE %4$L) '
                    'AND z.%3$I < ((key.first_day + interval %5$L)::timestamp AT TIME ZONE %4$L)) AS y) AS %2$s',
                    relation, alias, time_column, tz, '1 ' || grain) END;
COMMENT ON FUNCTION crm_kpi.period_rows(text, text, name, text, text, date[]) IS
    'SQL of a FROM item: the rows of a relation that have a time (a row without one is in no day), or only those whose time column lies in the days or months keys lists (index-friendly ranges: literal ones for runs of consecutive periods when there are few, else one per period read from $1)';

-- A WHERE condition to append: only the customers of $1, when some are given.
CREATE FUNCTION crm_kpi.id_filter(alias text, ids bigint[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN ids IS NOT NULL THEN format(' AND %I.customer_id = ANY($1)', alias) ELSE '' END;
COMMENT ON FUNCTION crm_kpi.id_filter(text, bigint[]) IS
    'SQL to append to a WHERE clause: AND <alias>.customer_id = ANY($1) when ids is not NULL, else nothing';

-- Months from a cohort month to a month.
CREATE FUNCTION crm_kpi.month_offset(month date, cohort_month date) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ((extract(year FROM month) - extract(year FROM cohort_month)) * 12
            + extract(month FROM month) - extract(month FROM cohort_month))::integer;
COMMENT ON FUNCTION crm_kpi.month_offset(date, date) IS
    'Months from cohort_month to month (0 for the cohort month itself)';

-- The current settings, as an engine_state row at as_of.
CREATE FUNCTION crm_kpi.wanted_settings(as_of timestamptz) RETURNS crm_kpi.engine_state
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN ROW(true, NULL, as_of, current_setting('crm_kpi.timezone'),
               current_setting('crm_kpi.active_window')::interval,
               current_setting('crm_kpi.churn_after')::interval,
               current_setting('crm_kpi.loyal_min_tenure')::interval,
               current_setting('crm_kpi.loyal_min_orders')::integer,
               current_setting('crm_kpi.resolution_sla')::interval)::crm_kpi.engine_state;
COMMENT ON FUNCTION crm_kpi.wanted_settings(timestamptz) IS
    'The current time zone, lifecycle and SLA settings as an engine_state row at as_of (what a rebuild adopts)';

-- The settings KPIs are computed with: those the tables were built with, or the current ones before the first build.
CREATE FUNCTION crm_kpi.engine_settings() RETURNS crm_kpi.engine_state
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT CASE WHEN e.built_at IS NOT NULL THEN e
                        WHEN crm_kpi.library_version() IS NULL THEN NULL  -- loads the library and its settings
                        ELSE crm_kpi.wanted_settings(now()) END
            FROM crm_kpi.engine_state e);
COMMENT ON FUNCTION crm_kpi.engine_settings() IS
    'The settings and instant the KPI tables are computed with: engine_state once built, else the current settings at now()';

CREATE FUNCTION crm_kpi.fresh_sales_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.sales_daily
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
    sel text;
    -- A few days: each order's customer by its key (a hash of every customer would cost more than the days).
    customer_join text := 'LEFT JOIN LATERAL (SELECT c.* FROM c WHERE c.customer_id = s.customer_id OFFSET 0) cu ON true';
BEGIN
    IF days IS NULL OR cardinality(days) > 31 THEN
        customer_join := 'LEFT JOIN c cu ON cu.customer_id = s.customer_id';
        -- Everything, or many days: one pass over the orders in customer order beats a lookup per order.
        sel := 'SELECT * FROM (SELECT o.*, lag(o.ordered_at) OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS prev_at '
               'FROM o WHERE o.status = ''completed'' AND o.ordered_at IS NOT NULL) w'
               || CASE WHEN days IS NULL THEN ''
                       ELSE format(' WHERE (w.ordered_at AT TIME ZONE %L)::date = ANY($1)', st.timezone) END;
    ELSE
        sel := 'SELECT o.*, (SELECT max(p.ordered_at) FROM o p WHERE p.customer_id = o.customer_id AND p.status = ''completed'''
               ' AND p.ordered_at <= o.ordered_at AND (p.ordered_at < o.ordered_at OR p.order_id < o.order_id)) AS prev_at '
               'FROM ' || crm_kpi.period_rows('o', 'o', 'ordered_at', 'day', st.timezone, days) || ' WHERE o.status = ''completed''';
    END IF;
    RETURN QUERY EXECUTE format(
        'WITH o AS NOT MATERIALIZED (%s), c AS NOT MATERIALIZED (%s) '
        'SELECT (s.ordered_at AT TIME ZONE %L)::date, s.rep_id, cu.acquisition_channel, count(*), coalesce(sum(s.amount), 0), '
        '       count(*) FILTER (WHERE cu.customer_id IS NOT NULL AND s.prev_at IS NULL), '
        '       count(*) FILTER (WHERE cu.customer_id IS NOT NULL AND s.prev_at + %L::interval <= s.ordered_at) '
        'FROM (%s) s %s GROUP BY 1, 2, 3',
        crm_kpi.source_sql('orders'), crm_kpi.source_sql('customers'), st.timezone, st.churn_after, sel, customer_join)
        USING days;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_sales_daily(date[]) IS
    'crm_kpi.sales_daily computed from the sources, for the given days (all when NULL)';

-- sales_daily as the refresh engine keeps it: the sum of the customers' parts (customer_days) and the orders without
-- a customer, for the given days. Never reads the orders of a customer: a customer's part changes only by its deltas.
CREATE FUNCTION crm_kpi.rollup_sales_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.sales_daily
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH o AS NOT MATERIALIZED (%s) '
        'SELECT x.day, x.rep_id, x.channel, sum(x.orders)::bigint, sum(x.revenue), sum(x.new_customers)::bigint, '
        '       sum(x.reactivated_customers)::bigint '
        'FROM (SELECT d.day, d.rep_id, d.channel, d.orders, d.revenue, d.new_customers, d.reactivated_customers '
        '      FROM crm_kpi.customer_days d%s '
        '      UNION ALL '
        '      SELECT (o.ordered_at AT TIME ZONE %L)::date, o.rep_id, NULL, 1, coalesce(o.amount, 0), 0, 0 '
        '      FROM %s WHERE o.status = ''completed'' AND o.customer_id IS NULL) x '
        'GROUP BY 1, 2, 3',
        crm_kpi.source_sql('orders'), CASE WHEN days IS NOT NULL THEN ' WHERE d.day = ANY($1)' ELSE '' END, st.timezone,
        crm_kpi.period_rows('o', 'o', 'ordered_at', 'day', st.timezone, days)) USING days;
END $$;
COMMENT ON FUNCTION crm_kpi.rollup_sales_daily(date[]) IS
    'crm_kpi.sales_daily as the sum of crm_kpi.customer_days and the completed orders without a customer, for the given days (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_customer_days(ids bigint[] DEFAULT NULL) RETURNS SETOF crm_kpi.customer_days
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH o AS NOT MATERIALIZED (%s), c AS NOT MATERIALIZED (%s) '
        'SELECT s.customer_id, (s.ordered_at AT TIME ZONE %L)::date, s.rep_id, cu.acquisition_channel, count(*)::integer, '
        '       coalesce(sum(s.amount), 0), count(*) FILTER (WHERE cu.customer_id IS NOT NULL AND s.prev_at IS NULL)::integer, '
        '       count(*) FILTER (WHERE cu.customer_id IS NOT NULL AND s.prev_at + %L::interval <= s.ordered_at)::integer '
        'FROM (SELECT o.*, lag(o.ordered_at) OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS prev_at '
        '      FROM o WHERE o.status = ''completed'' AND o.ordered_at IS NOT NULL AND o.customer_id IS NOT NULL%5$s) s '
        'LEFT JOIN (SELECT * FROM c WHERE true%6$s) cu ON cu.customer_id = s.customer_id '
        'GROUP BY 1, 2, 3, 4',
        crm_kpi.source_sql('orders'), crm_kpi.source_sql('customers'), st.timezone, st.churn_after,
        crm_kpi.id_filter('o', ids),
        crm_kpi.id_filter('c', ids)) USING ids;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_customer_days(bigint[]) IS
    'crm_kpi.customer_days computed from the sources, for the given customers (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_pipeline_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.pipeline_daily
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
    by_created text := crm_kpi.period_rows('p', 'p', 'created_at', 'day', st.timezone, days);
    by_closed text := crm_kpi.period_rows('p', 'p', 'closed_at', 'day', st.timezone, days);
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH p AS NOT MATERIALIZED (%1$s) '
        'SELECT e.day, e.rep_id, sum(e.created)::bigint, sum(e.won)::bigint, sum(e.lost)::bigint, '
        '       coalesce(sum(e.won_amount), 0), crm_kpi.sketch_agg(e.cycle) '
        'FROM (SELECT (p.created_at AT TIME ZONE %2$L)::date AS day, p.rep_id, 1 AS created, 0 AS won, 0 AS lost, '
        '             NULL::numeric AS won_amount, NULL::interval AS cycle FROM %3$s WHERE p.created_at IS NOT NULL '
        '      UNION ALL '
        '      SELECT (p.closed_at AT TIME ZONE %2$L)::date, p.rep_id, 0, (p.status = ''won'')::int, (p.status = ''lost'')::int, '
        '             CASE WHEN p.status = ''won'' THEN p.amount END, CASE WHEN p.status = ''won'' THEN p.closed_at - p.created_at END '
        '      FROM %4$s WHERE p.closed_at IS NOT NULL AND p.status IN (''won'', ''lost'')) e '
        'GROUP BY 1, 2',
        crm_kpi.source_sql('opportunities'), st.timezone, by_created, by_closed) USING days;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_pipeline_daily(date[]) IS
    'crm_kpi.pipeline_daily computed from the sources, for the given days (all when NULL)';

-- The tables summed over reps, from the sources (fresh_) or from the stored per-rep table (rollup_).
CREATE FUNCTION crm_kpi.fresh_sales_channel_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.sales_channel_daily
    LANGUAGE sql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT s.day, s.channel, sum(s.orders)::bigint, sum(s.revenue), sum(s.new_customers)::bigint,
           sum(s.reactivated_customers)::bigint
    FROM crm_kpi.fresh_sales_daily(days) s GROUP BY s.day, s.channel;
END;
COMMENT ON FUNCTION crm_kpi.fresh_sales_channel_daily(date[]) IS
    'crm_kpi.sales_channel_daily computed from the sources, for the given days (all when NULL)';

CREATE FUNCTION crm_kpi.rollup_sales_channel_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.sales_channel_daily
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT s.day, s.channel, sum(s.orders)::bigint, sum(s.revenue), sum(s.new_customers)::bigint,
           sum(s.reactivated_customers)::bigint
    FROM crm_kpi.sales_daily s WHERE days IS NULL OR s.day = ANY(days) GROUP BY s.day, s.channel;
END;
COMMENT ON FUNCTION crm_kpi.rollup_sales_channel_daily(date[]) IS
    'crm_kpi.sales_channel_daily as crm_kpi.sales_daily summed over reps, for the given days (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_pipeline_total_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.pipeline_total_daily
    LANGUAGE sql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT p.day, sum(p.created)::bigint, sum(p.won)::bigint, sum(p.lost)::bigint, sum(p.won_amount),
           crm_kpi.rollup(p.sales_cycle)
    FROM crm_kpi.fresh_pipeline_daily(days) p GROUP BY p.day;
END;
COMMENT ON FUNCTION crm_kpi.fresh_pipeline_total_daily(date[]) IS
    'crm_kpi.pipeline_total_daily computed from the sources, for the given days (all when NULL)';

CREATE FUNCTION crm_kpi.rollup_pipeline_total_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.pipeline_total_daily
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT p.day, sum(p.created)::bigint, sum(p.won)::bigint, sum(p.lost)::bigint, sum(p.won_amount),
           crm_kpi.rollup(p.sales_cycle)
    FROM crm_kpi.pipeline_daily p WHERE days IS NULL OR p.day = ANY(days) GROUP BY p.day;
END;
COMMENT ON FUNCTION crm_kpi.rollup_pipeline_total_daily(date[]) IS
    'crm_kpi.pipeline_total_daily as crm_kpi.pipeline_daily summed over reps, for the given days (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_service_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.service_daily
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH t AS NOT MATERIALIZED (%s) '
        'SELECT (t.opened_at AT TIME ZONE %L)::date, count(*), count(*) FILTER (WHERE t.first_response_at IS NULL), '
        '       count(t.resolved_at), count(*) FILTER (WHERE t.resolved_at - t.opened_at <= %L::interval), '
        '       crm_kpi.sketch_agg(t.first_response_at - t.opened_at), crm_kpi.sketch_agg(t.resolved_at - t.opened_at), '
        '       coalesce(sum(t.replies) FILTER (WHERE t.resolved_at IS NOT NULL), 0), count(*) FILTER (WHERE t.is_complaint) '
        'FROM %s WHERE t.opened_at IS NOT NULL GROUP BY 1',
        crm_kpi.source_sql('tickets'), st.timezone, st.resolution_sla,
        crm_kpi.period_rows('t', 't', 'opened_at', 'day', st.timezone, days)) USING days;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_service_daily(date[]) IS
    'crm_kpi.service_daily computed from the sources, for the given days (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_satisfaction_daily(days date[] DEFAULT NULL) RETURNS SETOF crm_kpi.satisfaction_daily
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH r AS NOT MATERIALIZED (%s) '
        'SELECT (r.answered_at AT TIME ZONE %L)::date, crm_kpi.nps_agg(r.score) FILTER (WHERE r.kind = ''nps''), '
        '       crm_kpi.csat_agg(r.score) FILTER (WHERE r.kind = ''csat'') '
        'FROM %s WHERE r.answered_at IS NOT NULL GROUP BY 1',
        crm_kpi.source_sql('survey_responses'), st.timezone,
        crm_kpi.period_rows('r', 'r', 'answered_at', 'day', st.timezone, days)) USING days;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_satisfaction_daily(date[]) IS
    'crm_kpi.satisfaction_daily computed from the sources, for the given days (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_customer_stats(ids bigint[] DEFAULT NULL) RETURNS SETOF crm_kpi.customer_stats
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH c AS NOT MATERIALIZED (%1$s), o AS NOT MATERIALIZED (%2$s), i AS NOT MATERIALIZED (%3$s), '
        'cu AS (SELECT * FROM c WHERE true%4$s), '
        'ord AS (SELECT o.customer_id, o.amount, o.ordered_at, '
        '               lag(o.ordered_at) OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS prev_at '
        '        FROM o WHERE o.status = ''completed''%5$s), '
        'agg AS (SELECT ord.customer_id, '
        '               crm_kpi.purchase_agg(ord.amount, ord.ordered_at) FILTER (WHERE ord.ordered_at <= %7$L) AS purchases, '
        '               count(*) FILTER (WHERE ord.ordered_at <= %7$L) AS orders, '
        '               coalesce(sum(ord.amount) FILTER (WHERE ord.ordered_at <= %7$L), 0) AS revenue, '
        '               min(ord.ordered_at) FILTER (WHERE ord.ordered_at <= %7$L) AS first_at, '
        '               max(ord.ordered_at) FILTER (WHERE ord.ordered_at <= %7$L) AS last_at, '
        '               min(ord.ordered_at) FILTER (WHERE ord.ordered_at > %7$L) AS next_at, '
        '               (min(ord.ordered_at) AT TIME ZONE %8$L)::date AS new_day, '
        '               array_agg(DISTINCT (ord.ordered_at AT TIME ZONE %8$L)::date) '
        '                   FILTER (WHERE ord.prev_at + %9$L::interval <= ord.ordered_at) AS reactivation_days '
        '        FROM ord GROUP BY ord.customer_id), '
        'ia AS (SELECT i.customer_id, count(*) FILTER (WHERE i.occurred_at <= %7$L) AS n, '
        '              min(i.occurred_at) FILTER (WHERE i.occurred_at > %7$L) AS next_at '
        '       FROM i WHERE true%6$s GROUP BY i.customer_id) '
        'SELECT cu.customer_id, cu.created_at, cu.acquisition_channel, coalesce(ia.n, 0), a.purchases, '
        '       coalesce(a.orders, 0), coalesce(a.revenue, 0), a.first_at, a.last_at, crm_kpi.mean_gap(a.purchases), '
        '       crm_kpi.lifecycle_classify(%7$L, ia.n, a.orders, a.first_at, a.last_at), '
        '       least(a.next_at, ia.next_at, '
        '             CASE WHEN a.last_at + %10$L::interval >= %7$L THEN a.last_at + %10$L::interval END, '
        '             CASE WHEN a.last_at + %9$L::interval >= %7$L THEN a.last_at + %9$L::interval END, '
        '             CASE WHEN a.orders >= %12$s AND a.first_at + %11$L::interval >= %7$L '
        '                  THEN a.first_at + %11$L::interval END), '
        '       a.new_day, coalesce(a.reactivation_days, ''{}'') '
        'FROM cu LEFT JOIN agg a ON a.customer_id = cu.customer_id LEFT JOIN ia ON ia.customer_id = cu.customer_id',
        crm_kpi.source_sql('customers'), crm_kpi.source_sql('orders'), crm_kpi.source_sql('interactions'),
        crm_kpi.id_filter('c', ids), crm_kpi.id_filter('o', ids), crm_kpi.id_filter('i', ids),
        st.as_of, st.timezone, st.churn_after, st.active_window, st.loyal_min_tenure, st.loyal_min_orders) USING ids;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_customer_stats(bigint[]) IS
    'crm_kpi.customer_stats computed from the sources as of engine_state.as_of, for the given customers (all when NULL)';

-- customer_counts: customer_stats counted per channel, stage and lead month, from the sources (fresh_) or from the stored
-- table (rollup_). It has no stale key (the customers' differences keep it): keys is ignored, all rows are returned.
CREATE FUNCTION crm_kpi.fresh_customer_counts(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.customer_counts
    LANGUAGE sql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT s.acquisition_channel, s.stage, date_trunc('month', s.created_at AT TIME ZONE e.timezone)::date, count(*),
           count(*) FILTER (WHERE s.orders >= 1), count(*) FILTER (WHERE s.orders >= 2),
           coalesce(sum(s.revenue) FILTER (WHERE s.orders >= 1), 0)
    FROM crm_kpi.fresh_customer_stats(NULL::bigint[]) s CROSS JOIN crm_kpi.engine_state e GROUP BY 1, 2, 3;
END;
COMMENT ON FUNCTION crm_kpi.fresh_customer_counts(date[]) IS
    'crm_kpi.customer_counts computed from the sources as of engine_state.as_of (keys is ignored: all rows)';

CREATE FUNCTION crm_kpi.rollup_customer_counts(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.customer_counts
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT s.acquisition_channel, s.stage, date_trunc('month', s.created_at AT TIME ZONE e.timezone)::date, count(*),
           count(*) FILTER (WHERE s.orders >= 1), count(*) FILTER (WHERE s.orders >= 2),
           coalesce(sum(s.revenue) FILTER (WHERE s.orders >= 1), 0)
    FROM crm_kpi.customer_stats s CROSS JOIN crm_kpi.engine_state e GROUP BY 1, 2, 3;
END;
COMMENT ON FUNCTION crm_kpi.rollup_customer_counts(date[]) IS
    'crm_kpi.customer_counts counted from the stored crm_kpi.customer_stats (keys is ignored: all rows)';

CREATE FUNCTION crm_kpi.fresh_customer_spells(ids bigint[] DEFAULT NULL) RETURNS SETOF crm_kpi.customer_spells
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH c AS NOT MATERIALIZED (%1$s), o AS NOT MATERIALIZED (%2$s), '
        'ord AS (SELECT o.customer_id, o.ordered_at, o.order_id, '
        '               lag(o.ordered_at) OVER (PARTITION BY o.customer_id ORDER BY o.ordered_at, o.order_id) AS prev_at '
        '        FROM o WHERE o.status = ''completed'' AND o.ordered_at <= %3$L%5$s '
        '          AND o.customer_id IN (SELECT c.customer_id FROM c WHERE true%6$s)), '
        'numbered AS (SELECT ord.*, count(*) FILTER (WHERE ord.prev_at IS NULL OR ord.prev_at + %4$L::interval <= ord.ordered_at) '
        '                 OVER (PARTITION BY ord.customer_id ORDER BY ord.ordered_at, ord.order_id) AS spell FROM ord) '
        'SELECT n.customer_id, n.spell::integer, min(n.ordered_at), max(n.ordered_at) + %4$L::interval '
        'FROM numbered n GROUP BY n.customer_id, n.spell',
        crm_kpi.source_sql('customers'), crm_kpi.source_sql('orders'), st.as_of, st.churn_after,
        crm_kpi.id_filter('o', ids),
        crm_kpi.id_filter('c', ids)) USING ids;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_customer_spells(bigint[]) IS
    'crm_kpi.customer_spells computed from the sources as of engine_state.as_of, for the given customers (all when NULL)';

-- The events customer_events_daily counts: of a customer, kind 1 created, 2 first completed order, 3 lead ended (the
-- later of the two, when both are known); of a spell, kind 4 started, 5 ended. Inlined into the queries counting them.
CREATE FUNCTION crm_kpi.customer_events(created_at timestamptz, first_order_at timestamptz)
    RETURNS TABLE (at timestamptz, kind integer)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT x.at, x.kind
    FROM (VALUES (created_at, 1), (first_order_at, 2),
                 (CASE WHEN first_order_at >= created_at THEN first_order_at
                       WHEN first_order_at < created_at THEN created_at END, 3)) x (at, kind);
END;
COMMENT ON FUNCTION crm_kpi.customer_events(timestamptz, timestamptz) IS
    'A customer''s events in crm_kpi.customer_events_daily: (created_at, 1), (first_order_at, 2) and the later of the two, (lead ended, 3); at is NULL when unknown';
CREATE FUNCTION crm_kpi.spell_events(started_at timestamptz, ended_at timestamptz)
    RETURNS TABLE (at timestamptz, kind integer)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT x.at, x.kind FROM (VALUES (started_at, 4), (ended_at, 5)) x (at, kind);
END;
COMMENT ON FUNCTION crm_kpi.spell_events(timestamptz, timestamptz) IS
    'A spell''s events in crm_kpi.customer_events_daily: (started_at, 4), (ended_at, 5)';

-- customer_events_daily: each customer's events (created, first order, lead ended, spells started and ended) counted
-- per day and channel, from the sources (fresh_) or from the stored customer_stats and customer_spells (rollup_): one
-- query, over the customers and spells given (relations or calls), with the zone as a literal. (Each its own query: a
-- union of both with one branch skipped costs every row the nodes of the union, 11 s instead of 6 in a full-size
-- rebuild.)
CREATE FUNCTION crm_kpi.customer_events_sql(customers text, spells text, materialized boolean) RETURNS text
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN format(
        'WITH st AS %s (SELECT s.customer_id, s.created_at, s.first_order_at, s.acquisition_channel FROM %s s), '
        'ev AS ( '
        '    SELECT s.acquisition_channel AS channel, x.at, x.kind '
        '    FROM st s CROSS JOIN LATERAL crm_kpi.customer_events(s.created_at, s.first_order_at) x '
        '    UNION ALL '
        '    SELECT s.acquisition_channel, x.at, x.kind '
        '    FROM %s p JOIN st s ON s.customer_id = p.customer_id '
        '    CROSS JOIN LATERAL crm_kpi.spell_events(p.started_at, p.ended_at) x) '
        'SELECT (ev.at AT TIME ZONE %L)::date, ev.channel, '
        '       count(*) FILTER (WHERE ev.kind = 1), count(*) FILTER (WHERE ev.kind = 2), count(*) FILTER (WHERE ev.kind = 3), '
        '       count(*) FILTER (WHERE ev.kind = 4), count(*) FILTER (WHERE ev.kind = 5) '
        'FROM ev WHERE ev.at IS NOT NULL '
        'GROUP BY 1, 2',
        CASE WHEN materialized THEN 'MATERIALIZED' ELSE 'NOT MATERIALIZED' END, customers, spells,
        (crm_kpi.engine_settings()).timezone);
COMMENT ON FUNCTION crm_kpi.customer_events_sql(text, text, boolean) IS
    'The query counting the rows of crm_kpi.customer_events_daily from the customers and spells given (relations or function calls, as SQL; the customers materialized once or read twice), in the zone of the KPI tables';

CREATE FUNCTION crm_kpi.fresh_customer_events_daily(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.customer_events_daily
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- (the customers computed once for both kinds of events)
    RETURN QUERY EXECUTE crm_kpi.customer_events_sql('crm_kpi.fresh_customer_stats(NULL::bigint[])',
                                                     'crm_kpi.fresh_customer_spells(NULL::bigint[])', true);
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_customer_events_daily(date[]) IS
    'crm_kpi.customer_events_daily computed from the sources as of engine_state.as_of (keys is ignored: all rows)';

CREATE FUNCTION crm_kpi.rollup_customer_events_daily(keys date[] DEFAULT NULL) RETURNS SETOF crm_kpi.customer_events_daily
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE crm_kpi.customer_events_sql('crm_kpi.customer_stats', 'crm_kpi.customer_spells', false);
END $$;
COMMENT ON FUNCTION crm_kpi.rollup_customer_events_daily(date[]) IS
    'crm_kpi.customer_events_daily counted from the stored crm_kpi.customer_stats and customer_spells (keys is ignored: all rows)';

-- Each customer's part of cohort_monthly, derived from the customer's parts of sales_daily (customer_days) and its
-- first order (customer_stats): the months with a completed order, their revenue, the customer's cohort month. From
-- the stored tables (for some customers or months, or all), or from the staged fresh rows of a batch. Summed by
-- sorting (hash aggregation off): the planner, which cannot tell how many months a customer's days fall in, estimates
-- far fewer groups than there are, and a hash table over every customer month then spills to disk (19 s instead of
-- 5 s for the 9.2M days of a rebuild).
CREATE FUNCTION crm_kpi.customer_month_parts(staged boolean, ids bigint[], months date[])
    RETURNS TABLE (customer_id bigint, month date, cohort_month date, revenue numeric)
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    SET enable_hashagg = off
AS $$
BEGIN
    -- One query, planned for the keys at hand (a cached generic plan of a static one would not use the indexes on
    -- customer ids); customer_stats filtered by the ids too, else the planner may hash every customer. The months
    -- bound the days, for the index on them.
    RETURN QUERY EXECUTE format(
        'SELECT m.customer_id, m.month, date_trunc(''month'', s.first_order_at AT TIME ZONE %1$L)::date, m.revenue '
        'FROM (SELECT d.customer_id, date_trunc(''month'', d.day)::date AS month, sum(d.revenue) AS revenue '
        '      FROM crm_kpi.%2$I d WHERE true%4$s%6$s GROUP BY 1, 2) m '
        'JOIN crm_kpi.%3$I s ON s.customer_id = m.customer_id AND s.first_order_at IS NOT NULL%5$s',
        (crm_kpi.engine_settings()).timezone,
        CASE WHEN staged THEN 'staged_customer_days' ELSE 'customer_days' END,
        CASE WHEN staged THEN 'staged_customer_stats' ELSE 'customer_stats' END,
        crm_kpi.id_filter('d', ids), crm_kpi.id_filter('s', ids),
        CASE WHEN months IS NOT NULL
             THEN ' AND d.day >= (SELECT min(x) FROM unnest($2) x) '
                  'AND d.day < (SELECT max(x) + interval ''1 month'' FROM unnest($2) x) '
                  'AND date_trunc(''month'', d.day)::date = ANY($2)'
             ELSE '' END) USING ids, months;
END $$;
COMMENT ON FUNCTION crm_kpi.customer_month_parts(boolean, bigint[], date[]) IS
    'Each customer''s part of crm_kpi.cohort_monthly (its months with a completed order, their revenue, its cohort month), derived from customer_days and customer_stats: the staged fresh rows of a batch (staged), or the stored ones; of the given customers and months (all when NULL; months are first days of months)';

-- cohort_monthly as the refresh engine keeps it: the count and sum of the customers' parts.
CREATE FUNCTION crm_kpi.rollup_cohort_monthly(months date[] DEFAULT NULL) RETURNS SETOF crm_kpi.cohort_monthly
    LANGUAGE sql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT m.month, m.cohort_month, crm_kpi.month_offset(m.month, m.cohort_month), count(*), sum(m.revenue)
    FROM crm_kpi.customer_month_parts(false, NULL, months) m
    GROUP BY m.month, m.cohort_month;
END;
COMMENT ON FUNCTION crm_kpi.rollup_cohort_monthly(date[]) IS
    'crm_kpi.cohort_monthly as the count and revenue of the customers'' parts (crm_kpi.customer_month_parts, from customer_days and customer_stats) per month and cohort, for the given months (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_cohort_monthly(months date[] DEFAULT NULL) RETURNS SETOF crm_kpi.cohort_monthly
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH o AS NOT MATERIALIZED (%s) '
        'SELECT x.month, x.cohort_month, crm_kpi.month_offset(x.month, x.cohort_month), x.customers, x.revenue '
        'FROM (SELECT date_trunc(''month'', o.ordered_at AT TIME ZONE %2$L)::date AS month, '
        '             date_trunc(''month'', cs.first_order_at AT TIME ZONE %2$L)::date AS cohort_month, '
        '             count(DISTINCT o.customer_id) AS customers, coalesce(sum(o.amount), 0) AS revenue '
        '      FROM %3$s JOIN crm_kpi.customer_stats cs ON cs.customer_id = o.customer_id AND cs.first_order_at IS NOT NULL '
        '      WHERE o.status = ''completed'' GROUP BY 1, 2) x',
        crm_kpi.source_sql('orders'), st.timezone,
        crm_kpi.period_rows('o', 'o', 'ordered_at', 'month', st.timezone, months)) USING months;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_cohort_monthly(date[]) IS
    'crm_kpi.cohort_monthly computed from the orders and crm_kpi.customer_stats, for the given months (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_marketing_monthly(months date[] DEFAULT NULL) RETURNS SETOF crm_kpi.marketing_monthly
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH m AS NOT MATERIALIZED (%s) '
        'SELECT x.month, x.channel, coalesce(sum(x.spend), 0), sum(x.acquired)::bigint '
        'FROM (SELECT date_trunc(''month'', m.day)::date AS month, m.channel, m.amount AS spend, 0 AS acquired '
        '      FROM m WHERE m.day IS NOT NULL%s '
        '      UNION ALL '
        '      SELECT date_trunc(''month'', cs.first_order_at AT TIME ZONE %L)::date, cs.acquisition_channel, NULL, 1 '
        '      FROM %s WHERE cs.first_order_at IS NOT NULL) x '
        'GROUP BY 1, 2',
        crm_kpi.source_sql('marketing_spend'),
        CASE WHEN months IS NOT NULL THEN ' AND date_trunc(''month'', m.day)::date = ANY($1)' ELSE '' END,
        st.timezone,
        crm_kpi.period_rows('crm_kpi.customer_stats', 'cs', 'first_order_at', 'month', st.timezone, months))
        USING months;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_marketing_monthly(date[]) IS
    'crm_kpi.marketing_monthly computed from the marketing spend and crm_kpi.customer_stats, for the given months (all when NULL)';

CREATE FUNCTION crm_kpi.fresh_churn_monthly(months date[] DEFAULT NULL) RETURNS SETOF crm_kpi.churn_monthly
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
BEGIN
    RETURN QUERY EXECUTE format(
        'WITH bounds AS (SELECT date_trunc(''month'', min(p.started_at) AT TIME ZONE %1$L)::date AS first_month, '
        '                       date_trunc(''month'', %2$L::timestamptz AT TIME ZONE %1$L)::date AS last_month '
        '                FROM crm_kpi.customer_spells p), '
        'm AS (SELECT k.month, (k.month::timestamp AT TIME ZONE %1$L) AS s, '
        '             ((k.month + interval ''1 month'')::timestamp AT TIME ZONE %1$L) AS e '
        '      FROM bounds, %3$s AS k (month) WHERE k.month BETWEEN bounds.first_month AND bounds.last_month) '
        'SELECT m.month, '
        '  (SELECT count(*) FROM crm_kpi.customer_spells p WHERE p.started_at < m.s AND p.ended_at >= m.s), '
        '  (SELECT count(*) FROM crm_kpi.customer_spells p WHERE p.started_at < m.s AND p.ended_at >= m.s '
        '                                                   AND p.ended_at < m.e AND p.ended_at <= %2$L), '
        '  (SELECT count(*) FROM crm_kpi.customer_spells p WHERE p.spell = 1 AND p.started_at >= m.s AND p.started_at < m.e), '
        '  (SELECT count(*) FROM crm_kpi.customer_spells p WHERE p.spell > 1 AND p.started_at >= m.s AND p.started_at < m.e) '
        'FROM m',
        st.timezone, st.as_of,
        CASE WHEN months IS NOT NULL THEN '(SELECT DISTINCT u FROM unnest($1::date[]) u)'
             ELSE 'LATERAL (SELECT g::date FROM generate_series(bounds.first_month, bounds.last_month, interval ''1 month'') g)'
        END) USING months;
END $$;
COMMENT ON FUNCTION crm_kpi.fresh_churn_monthly(date[]) IS
    'crm_kpi.churn_monthly computed from crm_kpi.customer_spells as of engine_state.as_of, for the given months (all when NULL)';
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
    ('customer_events_daily', 14, '{day,channel}', 'none', 'customer', '{customer,orders,customers,interactions}', 'rollup_customer_events_daily', 'add_customer_events_delta');

CREATE TABLE crm_kpi.kpi_table_state (
    table_name name PRIMARY KEY REFERENCES crm_kpi.kpi_tables,
    watermark timestamptz,
    last_refresh_at timestamptz,
    last_duration interval,
    rows_touched bigint,
    last_error text,
    last_error_at timestamptz
);
INSERT INTO crm_kpi.kpi_table_state (table_name) SELECT table_name FROM crm_kpi.kpi_tables;
COMMENT ON TABLE crm_kpi.kpi_table_state IS
    'Per KPI table: watermark (every change committed before it is reflected), last refresh that touched it, its duration, rows written, last error';

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

-- Why the KPI tables need crm_kpi.rebuild(), or NULL.
CREATE FUNCTION crm_kpi.rebuild_reason() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT CASE
        WHEN crm_kpi.library_version() IS NULL THEN NULL  -- loads the library, which defines the settings
        WHEN e.built_at IS NULL THEN 'never built (first fill, or restored from a dump)'
        WHEN EXISTS (SELECT FROM crm_kpi.change_queue q WHERE q.target = '*') THEN 'a bound source was truncated, bound, unbound, or altered in what it reads'
        ELSE nullif(concat_ws('; ',
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
        END FROM crm_kpi.engine_state e);
COMMENT ON FUNCTION crm_kpi.rebuild_reason() IS
    'Why the KPI tables need crm_kpi.rebuild(): never built, a source truncated, bound, unbound or altered in what it reads, or a setting they depend on changed since; NULL when they do not';

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

-- Put the fresh rows of a KPI table for some keys (all when NULL) into its scratch table crm_kpi.staged_<table>.
CREATE FUNCTION crm_kpi.stage_fresh(table_name name, keys anyarray, compute name) RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    staged bigint;
BEGIN
    -- A full batch (others may follow in the same transaction) truncates: else every batch would leave its rows
    -- dead in the table (no vacuum before commit) for the next batches to scan. A smaller one deletes: a TRUNCATE
    -- costs a new file, a catalog update and the plans that read the table.
    EXECUTE format(CASE WHEN keys IS NULL OR cardinality(keys) >= current_setting('crm_kpi.refresh_batch_size')::integer
                        THEN 'TRUNCATE crm_kpi.%I' ELSE 'DELETE FROM crm_kpi.%I' END,
                   'staged_' || table_name);
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
    'Replaces the rows of the scratch table crm_kpi.staged_<table> (by TRUNCATE for a full batch of crm_kpi.refresh_batch_size keys, else DELETE) by the fresh rows crm_kpi.<compute>(keys) of a KPI table for some keys (all when NULL), and analyzes it (its row count and first key column) when they are 500 or more; callers hold the refresh lock';

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
        EXECUTE format('DELETE FROM crm_kpi.%I', 'staged_' || t);
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.clear_staged() IS
    'Empties the scratch tables crm_kpi.staged_<table> at the end of a refresh or rebuild run; callers hold the refresh lock';

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
AS $$
DECLARE
    key_column name := (SELECT t.key_columns[1] FROM crm_kpi.kpi_tables t WHERE t.table_name = apply_fresh.table_name);
    deleted bigint;
    inserted bigint;
BEGIN
    -- Rows equal to their fresh version (byte for byte) stay; the others are replaced.
    EXECUTE format('DELETE FROM crm_kpi.%1$I t WHERE t.%3$I = ANY($1) '
                   'AND NOT EXISTS (SELECT FROM crm_kpi.%2$I f WHERE f.%3$I = t.%3$I AND f OPERATOR(pg_catalog.*=) t)',
                   table_name, 'staged_' || table_name, key_column) USING keys;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    EXECUTE format('INSERT INTO crm_kpi.%1$I SELECT f.* FROM crm_kpi.%2$I f '
                   'WHERE NOT EXISTS (SELECT FROM crm_kpi.%1$I t WHERE t.%3$I = ANY($1) AND t.%3$I = f.%3$I '
                   '                  AND t OPERATOR(pg_catalog.*=) f)',
                   table_name, 'staged_' || table_name, key_column) USING keys;
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

-- One batch: up to crm_kpi.refresh_batch_size customers, or else as many days and months. Returns the keys taken.
CREATE FUNCTION crm_kpi.refresh_batch(INOUT tables jsonb, OUT keys bigint) RETURNS record
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer := current_setting('crm_kpi.refresh_batch_size')::integer;
    ids bigint[];
    t record;
    rows bigint;
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
            tables := jsonb_set(tables, ARRAY[t.table_name::text], to_jsonb(coalesce((tables ->> t.table_name)::bigint, 0) + rows));
        END LOOP;
        FOR t IN SELECT k.table_name FROM crm_kpi.kpi_tables k WHERE k.key_grain = 'customer' ORDER BY k.position LOOP
            rows := crm_kpi.apply_fresh(t.table_name, ids);
            tables := jsonb_set(tables, ARRAY[t.table_name::text], to_jsonb(coalesce((tables ->> t.table_name)::bigint, 0) + rows));
        END LOOP;
        keys := cardinality(ids);
        RETURN;
    END IF;
    keys := 0;
    FOR t IN
        WITH picked AS (SELECT DISTINCT q.target, q.day FROM crm_kpi.change_queue q
                        -- only keys of KPI families: a source's key committed since the routing above waits for the next batch
                        WHERE q.target IN (SELECT k.own_target FROM crm_kpi.kpi_tables k WHERE k.key_grain IN ('day', 'month'))
                          AND q.day IS NOT NULL LIMIT n),
        taken AS (DELETE FROM crm_kpi.change_queue q USING picked p
                  WHERE q.target = p.target AND q.day = p.day RETURNING q.target, q.day)
        SELECT k.table_name, k.position, k.key_grain, k.stage_function, array_agg(DISTINCT taken.day) AS days
        FROM taken JOIN crm_kpi.kpi_tables k ON k.own_target = taken.target
        GROUP BY k.table_name, k.position, k.key_grain, k.stage_function ORDER BY k.position
    LOOP
        PERFORM crm_kpi.report_activity(format('%s, %s %s (%s keys still queued)', t.table_name,
                                               cardinality(t.days), t.key_grain || 's',
                                               (SELECT count(*) FROM crm_kpi.change_queue)));
        PERFORM crm_kpi.stage_fresh(t.table_name, t.days, t.stage_function);
        rows := crm_kpi.apply_fresh(t.table_name, t.days);
        tables := jsonb_set(tables, ARRAY[t.table_name::text], to_jsonb(coalesce((tables ->> t.table_name)::bigint, 0) + rows));
        keys := keys + cardinality(t.days);
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.refresh_batch(jsonb) IS
    'Takes one batch of stale keys from the queue (customers first, then days and months, at most crm_kpi.refresh_batch_size) and recomputes them; adds the rows written to the per-table counts';

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
                                   concurrently boolean)
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
        END IF;
        LOOP
            EXIT WHEN max_batches IS NOT NULL AND batches >= max_batches;
            checked := clock_timestamp();
            b := crm_kpi.refresh_batch(tables);
            tables := b.tables;
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
    END;
    SELECT NULL, CASE WHEN full_rebuild THEN 'rebuild' ELSE 'refresh' END, started, clock_timestamp(), batches, keys,
           coalesce((SELECT sum(value::bigint) FROM jsonb_each_text(tables)), 0), tables,
           (SELECT count(*) FROM crm_kpi.change_queue), err
      INTO run;
    -- A run that found nothing to do is not recorded (a worker wakes every naptime).
    IF full_rebuild OR keys > 0 OR err IS NOT NULL THEN
        INSERT INTO crm_kpi.refresh_history (mode, started_at, finished_at, batches, stale_keys, rows_touched, tables,
                                             pending_after, error)
        VALUES (run.mode, run.started_at, run.finished_at, run.batches, run.stale_keys, run.rows_touched, run.tables,
                run.pending_after, run.error)
        RETURNING * INTO run;
    END IF;
    -- Every change committed before checked (the start of the last batch) was either refreshed or is pending, and a
    -- pending key was queued no later than its change committed: the watermark is the older of checked and the
    -- table's oldest pending key. (One pass over the queue, which may be large, for all the tables.)
    WITH pending AS MATERIALIZED (SELECT q.target, min(q.queued_at) AS oldest FROM crm_kpi.change_queue q GROUP BY q.target)
    UPDATE crm_kpi.kpi_table_state s SET
        watermark = CASE WHEN err IS NULL
                         THEN greatest(s.watermark,
                                       least(checked, (SELECT min(p.oldest) FROM pending p
                                                       WHERE p.target = ANY(k.queue_targets) OR p.target = '*')))
                         ELSE s.watermark END,
        last_refresh_at = CASE WHEN tables ? s.table_name THEN started ELSE s.last_refresh_at END,
        last_duration = CASE WHEN tables ? s.table_name THEN run.finished_at - started ELSE s.last_duration END,
        rows_touched = CASE WHEN tables ? s.table_name THEN (tables ->> s.table_name)::bigint ELSE s.rows_touched END,
        last_error = CASE WHEN err IS NULL THEN NULL ELSE err END,
        last_error_at = CASE WHEN err IS NULL THEN s.last_error_at ELSE run.finished_at END
    FROM crm_kpi.kpi_tables k
    WHERE k.table_name = s.table_name AND (err IS NULL OR failed_table IS NULL OR s.table_name = failed_table);
    IF run.run_id IS NOT NULL THEN
        DELETE FROM crm_kpi.refresh_history h
        WHERE h.run_id <= run.run_id - current_setting('crm_kpi.history_limit')::bigint;
    END IF;
    IF err IS NOT NULL THEN
        RAISE WARNING 'crm_kpi refresh failed: %', err
            USING HINT = 'Nothing was written; the stale keys stay queued. See crm_kpi.status.';
    END IF;
    RETURN run;
END $$;
COMMENT ON FUNCTION crm_kpi.run_engine(boolean, crm_kpi.engine_state, integer, boolean) IS
    'The work of crm_kpi.refresh() and crm_kpi.rebuild() under the settings the tables are built with (a rebuild first adopts the settings adopt, unless NULL; a failed one keeps the old; not concurrently, it holds every KPI table in ACCESS EXCLUSIVE mode): batches until the queue is empty (or max_batches), all or nothing, recorded in kpi_table_state and (unless there was nothing to do; run_id is then NULL) in refresh_history';

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
        RETURN crm_kpi.run_engine(true, crm_kpi.wanted_settings(now()), max_batches, true);
    END IF;
    RETURN crm_kpi.run_engine(false, NULL, max_batches, true);
END $$;
COMMENT ON FUNCTION crm_kpi.refresh(integer) IS
    'Brings the KPI tables up to date: recomputes the stale days, months and customers in batches (all, or max_batches) and what time alone changed; rebuilds instead when never built or a source was truncated, bound, unbound or altered in what it reads. One refresh at a time; writers never wait for it';

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
    RETURN crm_kpi.run_engine(true, crm_kpi.wanted_settings(now()), NULL, rebuild.concurrently);
END $$;
COMMENT ON FUNCTION crm_kpi.rebuild(boolean) IS
    'Recomputes every KPI table from scratch with the current settings (first fill, after a restore, after crm_kpi.timezone, churn_after or another setting they depend on changed). Concurrently (the default), readers keep the old rows until it commits; not concurrently, faster, and readers of the KPI tables wait for it, as for REFRESH MATERIALIZED VIEW';
-- deltas.sql: how a batch of recomputed customers changes the KPI tables summed over customers: by the difference
-- between their staged fresh rows (crm_kpi.staged_<table>) and their stored ones, never by rescanning days or months.
-- Each runs before the customer tables are replaced; counts and numeric sums make every difference exact.

-- Delete rows of a KPI table by their ctids (those an upsert left empty); returns how many.
CREATE FUNCTION crm_kpi.delete_emptied(target name, emptied tid[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    deleted bigint := 0;
BEGIN
    IF emptied IS NOT NULL THEN
        EXECUTE format('DELETE FROM crm_kpi.%I s WHERE s.ctid = ANY($1)', target) USING emptied;
        GET DIAGNOSTICS deleted = ROW_COUNT;
    END IF;
    RETURN deleted;
END $$;
COMMENT ON FUNCTION crm_kpi.delete_emptied(name, tid[]) IS
    'Deletes the rows of crm_kpi.<target> at the given ctids (rows a difference left with nothing to count, in this transaction); returns the rows deleted';

-- sales_daily and its sum over reps: the customers' parts (customer_days). A row left with no orders is deleted.
CREATE FUNCTION crm_kpi.add_sales_parts(ids bigint[], target name, keys text) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    written bigint;
    emptied tid[];
BEGIN
    EXECUTE format(
        'WITH d AS ( '
        '    SELECT %2$s, sum(x.orders)::bigint AS orders, sum(x.revenue) AS revenue, '
        '           sum(x.new_customers)::bigint AS new_customers, sum(x.reactivated_customers)::bigint AS reactivated_customers '
        '    FROM (SELECT %2$s, -c.orders AS orders, -c.revenue AS revenue, '
        '                 -c.new_customers AS new_customers, -c.reactivated_customers AS reactivated_customers '
        '          FROM crm_kpi.customer_days c WHERE c.customer_id = ANY($1) '
        '          UNION ALL '
        '          SELECT %2$s, f.orders, f.revenue, f.new_customers, f.reactivated_customers '
        '          FROM crm_kpi.staged_customer_days f) x '
        '    GROUP BY %2$s '
        '    HAVING sum(x.orders) <> 0 OR sum(x.revenue) <> 0 OR sum(x.new_customers) <> 0 OR sum(x.reactivated_customers) <> 0), '
        'up AS ( '
        '    INSERT INTO crm_kpi.%1$I AS s SELECT * FROM d '
        '    ON CONFLICT (%2$s) DO UPDATE SET '
        '        orders = s.orders + excluded.orders, revenue = s.revenue + excluded.revenue, '
        '        new_customers = s.new_customers + excluded.new_customers, '
        '        reactivated_customers = s.reactivated_customers + excluded.reactivated_customers '
        '    RETURNING s.ctid, s.orders) '
        'SELECT count(*), array_agg(up.ctid) FILTER (WHERE up.orders = 0) FROM up',
        target, keys) INTO written, emptied USING ids;
    RETURN written + crm_kpi.delete_emptied(target, emptied);
END $$;
COMMENT ON FUNCTION crm_kpi.add_sales_parts(bigint[], name, text) IS
    'Adds to a sales table (crm_kpi.<target>, keyed by the columns keys lists) the staged fresh customer_days of some customers minus their stored ones, deleting the rows left with no orders; returns the rows written';

CREATE FUNCTION crm_kpi.add_sales_delta(ids bigint[]) RETURNS bigint
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    RETURN crm_kpi.add_sales_parts(ids, 'sales_daily', 'day, rep_id, channel');
COMMENT ON FUNCTION crm_kpi.add_sales_delta(bigint[]) IS
    'Adds to crm_kpi.sales_daily what the staged fresh customer_days of some customers change in it; returns the rows written';

CREATE FUNCTION crm_kpi.add_sales_channel_delta(ids bigint[]) RETURNS bigint
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    RETURN crm_kpi.add_sales_parts(ids, 'sales_channel_daily', 'day, channel');
COMMENT ON FUNCTION crm_kpi.add_sales_channel_delta(bigint[]) IS
    'Adds to crm_kpi.sales_channel_daily what the staged fresh customer_days of some customers change in it; returns the rows written';

-- cohort_monthly: the customers' parts (crm_kpi.customer_month_parts). A cell left with no customers is deleted.
CREATE FUNCTION crm_kpi.add_cohort_delta(ids bigint[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    written bigint;
    emptied tid[];
BEGIN
    WITH d AS (
        SELECT x.month, x.cohort_month, sum(x.customers)::bigint AS customers, sum(x.revenue) AS revenue
        FROM (SELECT c.month, c.cohort_month, -1 AS customers, -c.revenue AS revenue
              FROM crm_kpi.customer_month_parts(false, ids, NULL) c
              UNION ALL
              SELECT f.month, f.cohort_month, 1, f.revenue FROM crm_kpi.customer_month_parts(true, NULL, NULL) f) x
        GROUP BY 1, 2
        HAVING sum(x.customers) <> 0 OR sum(x.revenue) <> 0),
    up AS (
        INSERT INTO crm_kpi.cohort_monthly AS s
        SELECT d.month, d.cohort_month, crm_kpi.month_offset(d.month, d.cohort_month), d.customers, d.revenue
        FROM d
        ON CONFLICT (month, cohort_month) DO UPDATE SET
            customers = s.customers + excluded.customers, revenue = s.revenue + excluded.revenue
        RETURNING s.ctid, s.customers)
    SELECT count(*), array_agg(up.ctid) FILTER (WHERE up.customers = 0) INTO written, emptied FROM up;
    RETURN written + crm_kpi.delete_emptied('cohort_monthly', emptied);
END $$;
COMMENT ON FUNCTION crm_kpi.add_cohort_delta(bigint[]) IS
    'Adds to crm_kpi.cohort_monthly the parts of some customers derived from their staged fresh customer_days and customer_stats minus those derived from their stored ones (crm_kpi.customer_month_parts), deleting the cells left with no customers; returns the rows written';

-- marketing_monthly: new customers per month of first order and channel, from customer_stats. A row whose new
-- customers fall to 0 may still stand for spend, or not: its month is queued, to be recomputed from the sources.
CREATE FUNCTION crm_kpi.add_marketing_delta(ids bigint[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
    written bigint;
    emptied date[];
BEGIN
    WITH d AS (
        SELECT x.month, x.channel, sum(x.n)::bigint AS n
        FROM (SELECT date_trunc('month', c.first_order_at AT TIME ZONE st.timezone)::date AS month,
                     c.acquisition_channel AS channel, -1 AS n
              FROM crm_kpi.customer_stats c WHERE c.customer_id = ANY(ids) AND c.first_order_at IS NOT NULL
              UNION ALL
              SELECT date_trunc('month', f.first_order_at AT TIME ZONE st.timezone)::date, f.acquisition_channel, 1
              FROM crm_kpi.staged_customer_stats f WHERE f.first_order_at IS NOT NULL) x
        GROUP BY 1, 2
        HAVING sum(x.n) <> 0),
    up AS (
        INSERT INTO crm_kpi.marketing_monthly AS s SELECT d.month, d.channel, 0, d.n FROM d
        ON CONFLICT (month, channel) DO UPDATE SET new_customers = s.new_customers + excluded.new_customers
        RETURNING s.month, s.new_customers)
    SELECT count(*), array_agg(DISTINCT up.month) FILTER (WHERE up.new_customers = 0) INTO written, emptied FROM up;
    IF emptied IS NOT NULL THEN
        INSERT INTO crm_kpi.change_queue (target, day) SELECT 'marketing', m FROM unnest(emptied) m;
    END IF;
    RETURN written;
END $$;
COMMENT ON FUNCTION crm_kpi.add_marketing_delta(bigint[]) IS
    'Adds to crm_kpi.marketing_monthly the new customers of the staged fresh customer_stats of some customers minus their stored ones; queues the months where a row''s new customers fell to 0 (recomputed from the sources: the row stays only if it has spend); returns the rows written';

-- customer_counts: each customer counts once, under its channel and stage. A row left with no customers is deleted.
CREATE FUNCTION crm_kpi.add_customer_counts_delta(ids bigint[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
    written bigint;
    emptied tid[];
BEGIN
    WITH d AS (
        SELECT x.channel, x.stage, date_trunc('month', x.created_at AT TIME ZONE st.timezone)::date AS lead_month,
               sum(x.sign)::bigint AS customers,
               sum(x.sign) FILTER (WHERE x.orders >= 1) AS buyers, sum(x.sign) FILTER (WHERE x.orders >= 2) AS repeaters,
               sum(x.sign * x.revenue) FILTER (WHERE x.orders >= 1) AS revenue
        FROM (SELECT -1 AS sign, c.acquisition_channel AS channel, c.stage, c.created_at, c.orders, c.revenue
              FROM crm_kpi.customer_stats c WHERE c.customer_id = ANY(ids)
              UNION ALL
              SELECT 1, f.acquisition_channel, f.stage, f.created_at, f.orders, f.revenue
              FROM crm_kpi.staged_customer_stats f) x
        GROUP BY 1, 2, 3),
    nonzero AS (
        SELECT d.channel, d.stage, d.lead_month, d.customers, coalesce(d.buyers, 0)::bigint AS buyers,
               coalesce(d.repeaters, 0)::bigint AS repeaters, coalesce(d.revenue, 0) AS revenue
        FROM d
        WHERE d.customers <> 0 OR coalesce(d.buyers, 0) <> 0 OR coalesce(d.repeaters, 0) <> 0 OR coalesce(d.revenue, 0) <> 0),
    up AS (
        INSERT INTO crm_kpi.customer_counts AS s SELECT * FROM nonzero
        ON CONFLICT (channel, stage, lead_month) DO UPDATE SET
            customers = s.customers + excluded.customers, buyers = s.buyers + excluded.buyers,
            repeat_buyers = s.repeat_buyers + excluded.repeat_buyers, buyer_revenue = s.buyer_revenue + excluded.buyer_revenue
        RETURNING s.ctid, s.customers)
    SELECT count(*), array_agg(up.ctid) FILTER (WHERE up.customers = 0) INTO written, emptied FROM up;
    RETURN written + crm_kpi.delete_emptied('customer_counts', emptied);
END $$;
COMMENT ON FUNCTION crm_kpi.add_customer_counts_delta(bigint[]) IS
    'Adds to crm_kpi.customer_counts the staged fresh customer_stats of some customers minus their stored ones, deleting the rows left with no customers; returns the rows written';

-- customer_events_daily: the events of the customers and of their spells, by day and channel. A row left with
-- nothing to count is deleted.
CREATE FUNCTION crm_kpi.add_customer_events_delta(ids bigint[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
    written bigint;
    emptied tid[];
BEGIN
    WITH ev AS (
        SELECT -1 AS sign, c.acquisition_channel AS channel, x.at, x.kind
        FROM crm_kpi.customer_stats c CROSS JOIN LATERAL crm_kpi.customer_events(c.created_at, c.first_order_at) x
        WHERE c.customer_id = ANY(ids)
        UNION ALL
        SELECT 1, f.acquisition_channel, x.at, x.kind
        FROM crm_kpi.staged_customer_stats f CROSS JOIN LATERAL crm_kpi.customer_events(f.created_at, f.first_order_at) x
        UNION ALL
        SELECT -1, c.acquisition_channel, x.at, x.kind
        FROM crm_kpi.customer_spells p JOIN crm_kpi.customer_stats c ON c.customer_id = p.customer_id
        CROSS JOIN LATERAL crm_kpi.spell_events(p.started_at, p.ended_at) x
        WHERE p.customer_id = ANY(ids)
        UNION ALL
        SELECT 1, f.acquisition_channel, x.at, x.kind
        FROM crm_kpi.staged_customer_spells p JOIN crm_kpi.staged_customer_stats f ON f.customer_id = p.customer_id
        CROSS JOIN LATERAL crm_kpi.spell_events(p.started_at, p.ended_at) x),
    d AS (
        SELECT (ev.at AT TIME ZONE st.timezone)::date AS day, ev.channel,
               coalesce(sum(ev.sign) FILTER (WHERE ev.kind = 1), 0)::bigint AS created,
               coalesce(sum(ev.sign) FILTER (WHERE ev.kind = 2), 0)::bigint AS first_bought,
               coalesce(sum(ev.sign) FILTER (WHERE ev.kind = 3), 0)::bigint AS leads_ended,
               coalesce(sum(ev.sign) FILTER (WHERE ev.kind = 4), 0)::bigint AS spells_started,
               coalesce(sum(ev.sign) FILTER (WHERE ev.kind = 5), 0)::bigint AS spells_ended
        FROM ev WHERE ev.at IS NOT NULL
        GROUP BY 1, 2),
    up AS (
        INSERT INTO crm_kpi.customer_events_daily AS s
        SELECT * FROM d
        WHERE d.created <> 0 OR d.first_bought <> 0 OR d.leads_ended <> 0 OR d.spells_started <> 0 OR d.spells_ended <> 0
        ON CONFLICT (day, channel) DO UPDATE SET
            created = s.created + excluded.created, first_bought = s.first_bought + excluded.first_bought,
            leads_ended = s.leads_ended + excluded.leads_ended, spells_started = s.spells_started + excluded.spells_started,
            spells_ended = s.spells_ended + excluded.spells_ended
        RETURNING s.ctid, s.created, s.first_bought, s.leads_ended, s.spells_started, s.spells_ended)
    SELECT count(*), array_agg(up.ctid) FILTER (WHERE up.created = 0 AND up.first_bought = 0 AND up.leads_ended = 0
                                                  AND up.spells_started = 0 AND up.spells_ended = 0)
      INTO written, emptied FROM up;
    RETURN written + crm_kpi.delete_emptied('customer_events_daily', emptied);
END $$;
COMMENT ON FUNCTION crm_kpi.add_customer_events_delta(bigint[]) IS
    'Adds to crm_kpi.customer_events_daily the events of the staged fresh customer_stats and customer_spells of some customers minus those of their stored ones, deleting the rows left with nothing to count; returns the rows written';

-- The spells of some customers that the staged fresh ones remove (sign -1) or add (sign 1).
CREATE FUNCTION crm_kpi.changed_spells(ids bigint[])
    RETURNS TABLE (sign integer, customer_id bigint, spell integer, started_at timestamptz, ended_at timestamptz)
    LANGUAGE plpgsql STABLE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    WITH o AS MATERIALIZED (SELECT * FROM crm_kpi.customer_spells s WHERE s.customer_id = ANY(ids))
    SELECT -1, o.* FROM o
    WHERE NOT EXISTS (SELECT FROM crm_kpi.staged_customer_spells f
                      WHERE f.customer_id = o.customer_id AND f.spell = o.spell
                        AND f.started_at = o.started_at AND f.ended_at = o.ended_at)
    UNION ALL
    SELECT 1, f.* FROM crm_kpi.staged_customer_spells f
    WHERE NOT EXISTS (SELECT FROM o
                      WHERE o.customer_id = f.customer_id AND o.spell = f.spell
                        AND o.started_at = f.started_at AND o.ended_at = f.ended_at);
END $$;
COMMENT ON FUNCTION crm_kpi.changed_spells(bigint[]) IS
    'The stored spells of some customers that their staged fresh spells (crm_kpi.staged_customer_spells) remove, with sign -1, and those they add, with sign 1';

-- churn_monthly: each spell counts at the start of every month it spans, in the month it churns (once that has
-- happened) and in the month it starts. When the change moves the first month (that of the first spell, from which
-- the table has a row per month), the months the spells touch are queued instead.
CREATE FUNCTION crm_kpi.add_churn_delta(ids bigint[]) RETURNS bigint
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st crm_kpi.engine_state := crm_kpi.engine_settings();
    first_month date := (SELECT min(c.month) FROM crm_kpi.churn_monthly c);
    written bigint;
    -- The first month after the change: that of the first spell of the other customers or of the fresh ones.
    new_first timestamptz := least((SELECT min(s.started_at) FROM crm_kpi.customer_spells s WHERE s.customer_id <> ALL(ids)),
                                   (SELECT min(f.started_at) FROM crm_kpi.staged_customer_spells f));
    new_first_month date := date_trunc('month', new_first AT TIME ZONE st.timezone)::date;
    last_month date := date_trunc('month', st.as_of AT TIME ZONE st.timezone)::date;
BEGIN
    IF first_month IS NULL AND new_first IS NULL THEN
        RETURN 0;  -- no spell before, none after
    END IF;
    IF first_month IS DISTINCT FROM new_first_month THEN
        -- The months the spells touch, and those that appear or disappear with the first month (all of them when
        -- the table was empty or will be).
        PERFORM crm_kpi.queue_spell_effects(ids);
        INSERT INTO crm_kpi.change_queue (target, day)
        SELECT 'churn', g::date
        FROM generate_series(least(first_month, new_first_month),
                             CASE WHEN first_month IS NULL OR new_first_month IS NULL THEN last_month
                                  ELSE greatest(first_month, new_first_month) END,
                             interval '1 month') g;
        RETURN 0;
    END IF;
    WITH c AS MATERIALIZED (SELECT * FROM crm_kpi.changed_spells(ids)),
    contribution AS (
        -- at the start of each month after the one it starts in, up to the one it ends in and that of as_of
        SELECT g::date AS month, c.sign AS at_start, 0 AS churned, 0 AS acquired, 0 AS reactivated
        FROM c
        CROSS JOIN generate_series(date_trunc('month', c.started_at AT TIME ZONE st.timezone) + interval '1 month',
                                   date_trunc('month', least(c.ended_at, st.as_of) AT TIME ZONE st.timezone),
                                   interval '1 month') g
        WHERE (g::timestamp AT TIME ZONE st.timezone) <= c.ended_at
        UNION ALL
        -- churned in the month it ends in, once that has happened, if it began before that month
        SELECT date_trunc('month', c.ended_at AT TIME ZONE st.timezone)::date, 0, c.sign, 0, 0
        FROM c
        WHERE c.ended_at <= st.as_of
          AND c.started_at < (date_trunc('month', c.ended_at AT TIME ZONE st.timezone)::timestamp AT TIME ZONE st.timezone)
        UNION ALL
        -- new or reactivated in the month it starts in
        SELECT date_trunc('month', c.started_at AT TIME ZONE st.timezone)::date, 0, 0,
               CASE WHEN c.spell = 1 THEN c.sign ELSE 0 END, CASE WHEN c.spell > 1 THEN c.sign ELSE 0 END
        FROM c),
    d AS (
        SELECT x.month, sum(x.at_start)::bigint AS at_start, sum(x.churned)::bigint AS churned,
               sum(x.acquired)::bigint AS acquired, sum(x.reactivated)::bigint AS reactivated
        FROM contribution x
        GROUP BY 1
        HAVING sum(x.at_start) <> 0 OR sum(x.churned) <> 0 OR sum(x.acquired) <> 0 OR sum(x.reactivated) <> 0),
    up AS (
        INSERT INTO crm_kpi.churn_monthly AS s SELECT * FROM d
        ON CONFLICT (month) DO UPDATE SET
            customers_at_start = s.customers_at_start + excluded.customers_at_start,
            churned = s.churned + excluded.churned, new_customers = s.new_customers + excluded.new_customers,
            reactivated = s.reactivated + excluded.reactivated
        RETURNING 1)
    SELECT count(*) INTO written FROM up;
    RETURN written;
END $$;
COMMENT ON FUNCTION crm_kpi.add_churn_delta(bigint[]) IS
    'Adds to crm_kpi.churn_monthly the counts of the staged fresh customer_spells of some customers minus their stored ones (customers at the start of each month they span, churned, new, reactivated); when the change moves the first month of the table (that of the first spell), queues the months they touch instead (crm_kpi.queue_spell_effects); returns the rows written';
-- verify.sql: crm_kpi.verify() (maintained vs from scratch) and the status view.

CREATE FUNCTION crm_kpi.verify()
    RETURNS TABLE (table_name name, key jsonb, column_name text, maintained text, fresh text)
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    SET TimeZone = 'UTC' SET crm_kpi.timezone = 'UTC' SET crm_kpi.active_window = '90 days'
    SET crm_kpi.churn_after = '180 days' SET crm_kpi.loyal_min_tenure = '365 days'
    SET crm_kpi.loyal_min_orders = 5 SET crm_kpi.resolution_sla = '72 hours' SET jit = off
AS $$
DECLARE
    t record;
    key_sql text;
BEGIN
    PERFORM crm_kpi.library_version();  -- loads the library, so that its settings are defined
    PERFORM crm_kpi.engine_apply(crm_kpi.engine_settings());
    FOR t IN SELECT * FROM crm_kpi.kpi_tables k ORDER BY k.position LOOP
        key_sql := (SELECT 'jsonb_build_object(' || string_agg(format('%L, x.%I', c, c), ', ') || ')'
                    FROM unnest(t.key_columns) c);
        RETURN QUERY EXECUTE format(
            'WITH m AS MATERIALIZED (SELECT %1$s AS k, to_jsonb(x) AS j FROM crm_kpi.%2$I x), '
            'f AS MATERIALIZED (SELECT %1$s AS k, to_jsonb(x) AS j FROM crm_kpi.%3$I(NULL::%4$s) x), '
            'differ AS MATERIALIZED (SELECT m.k AS mk, m.j AS mj, f.k AS fk, f.j AS fj FROM m FULL JOIN f ON f.k = m.k '
            '                        WHERE m.j IS DISTINCT FROM f.j) '
            'SELECT %2$L::name, coalesce(d.mk, d.fk), c.col, c.mv, c.fv '
            'FROM differ d '
            'CROSS JOIN LATERAL (SELECT e.key, d.mj -> e.key #>> ''{}'', d.fj -> e.key #>> ''{}'' FROM jsonb_each(d.mj) e '
            '                    WHERE d.fj IS NOT NULL AND (d.mj -> e.key) IS DISTINCT FROM (d.fj -> e.key) '
            '                    UNION ALL SELECT ''*'', d.mj::text, d.fj::text WHERE d.mj IS NULL OR d.fj IS NULL) AS c (col, mv, fv) '
            'ORDER BY 2, 3',
            key_sql, t.table_name, 'fresh_' || t.table_name,
            CASE t.key_grain WHEN 'customer' THEN 'bigint[]' ELSE 'date[]' END);
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.verify() IS
    'Recomputes every KPI table from scratch (settings and as_of of engine_state) and returns each difference from the maintained table: the row''s key, the column (* for a row only one side has, with the whole row), both values. No rows means exact';

CREATE VIEW crm_kpi.status AS
WITH pending AS MATERIALIZED (  -- one pass over the queue for all the tables
    SELECT q.target, count(*) AS keys, min(q.queued_at) AS oldest FROM crm_kpi.change_queue q GROUP BY q.target)
SELECT k.table_name, s.watermark,
       (SELECT coalesce(sum(p.keys), 0)::bigint FROM pending p WHERE p.target = ANY(k.queue_targets) OR p.target = '*')
           AS pending_keys,
       (SELECT min(p.oldest) FROM pending p WHERE p.target = ANY(k.queue_targets) OR p.target = '*') AS oldest_pending,
       now() - (SELECT min(p.oldest) FROM pending p WHERE p.target = ANY(k.queue_targets) OR p.target = '*') AS lag,
       s.last_refresh_at, s.last_duration, s.rows_touched, s.last_error, s.last_error_at,
       e.as_of, e.built_at, r.reason AS needs_rebuild,
       w.pid AS worker_pid, w.state AS worker_state, w.last_run_at AS worker_last_run_at,
       w.last_error AS worker_last_error
FROM crm_kpi.kpi_tables k
JOIN crm_kpi.kpi_table_state s ON s.table_name = k.table_name
CROSS JOIN crm_kpi.engine_state e
CROSS JOIN (SELECT crm_kpi.rebuild_reason() AS reason) r  -- once, not per table
CROSS JOIN crm_kpi.worker_status() w;
COMMENT ON VIEW crm_kpi.status IS
    'One row per KPI table: watermark (changes committed before it are reflected), stale keys pending, the oldest one''s queue time and age (lag), last refresh that touched it, its duration and rows written, last error, the instant time-dependent KPIs are taken at, why a rebuild is needed (NULL when not), and this database''s refresh worker (pid, state, last run, last error)';
-- reports.sql: analyst reports over the KPI tables (never the sources): headline KPIs per period, breakdowns, segments.

-- The periods of a grain that overlap [from_day, to_day]: first and next first day.
CREATE FUNCTION crm_kpi.report_periods(from_day date, to_day date, grain text)
    RETURNS TABLE (period date, next_period date)
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    step interval := CASE grain WHEN 'day' THEN interval '1 day' WHEN 'week' THEN interval '7 days'
                                WHEN 'month' THEN interval '1 month' WHEN 'quarter' THEN interval '3 months'
                                WHEN 'year' THEN interval '1 year' END;
BEGIN
    IF step IS NULL THEN
        RAISE EXCEPTION 'unknown period grain "%"', grain
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Grains are day, week (starting on Monday), month, quarter and year.';
    END IF;
    IF to_day < from_day THEN
        RAISE EXCEPTION 'the report ends (%) before it starts (%)', to_day, from_day USING ERRCODE = 'data_exception';
    END IF;
    IF to_day - from_day > 36600 THEN
        RAISE EXCEPTION 'a report spans at most 100 years, not % days', to_day - from_day USING ERRCODE = 'program_limit_exceeded';
    END IF;
    RETURN QUERY SELECT g::date, (g + step)::date
                 FROM generate_series(date_trunc(grain, from_day::timestamp), to_day::timestamp, step) g;
END $$;
COMMENT ON FUNCTION crm_kpi.report_periods(date, date, text) IS
    'The day, week (from Monday), month, quarter or year periods overlapping [from_day, to_day]: first day and first day of the next';

CREATE FUNCTION crm_kpi.report(from_day date, to_day date, grain text DEFAULT 'month')
    RETURNS TABLE (
        period date, next_period date,
        orders bigint, revenue numeric, aov numeric, new_customers bigint, reactivated_customers bigint,
        buyers bigint, purchase_frequency numeric,
        customers_at_start bigint, churned bigint, churn_rate numeric, retention_rate numeric,
        predictive_clv numeric, marketing_spend numeric, cac numeric, net_clv numeric,
        opportunities_created bigint, won bigint, lost bigint, win_rate numeric, won_amount numeric,
        sales_cycle_median_days numeric,
        tickets_opened bigint, resolution_rate numeric, resolved_within_sla_rate numeric, unanswered bigint,
        first_response_median interval, first_response_p90 interval, resolution_median interval,
        replies_per_resolved_ticket numeric, complaints bigint, complaint_rate numeric,
        nps numeric, nps_responses bigint, csat numeric, csat_mean numeric, csat_responses bigint)
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH p AS (SELECT * FROM crm_kpi.report_periods(from_day, to_day, grain)),
    e AS (SELECT timezone, as_of FROM crm_kpi.engine_state),
    s AS (SELECT p.period, sum(d.orders)::bigint AS orders, sum(d.revenue) AS revenue,
                 sum(d.new_customers)::bigint AS new_customers, sum(d.reactivated_customers)::bigint AS reactivated
          FROM p JOIN crm_kpi.sales_channel_daily d ON d.day >= p.period AND d.day < p.next_period GROUP BY p.period),
    -- distinct buyers: exact per month from the cohort table (a customer is in one cohort)
    b AS (SELECT p.period, sum(c.customers)::bigint AS buyers
          FROM p JOIN crm_kpi.cohort_monthly c ON c.month = p.period WHERE grain = 'month' GROUP BY p.period),
    ch AS (SELECT p.period,
                  (SELECT count(*) FROM crm_kpi.customer_spells x
                   WHERE x.started_at < ps.s AND x.ended_at >= ps.s) AS at_start,
                  (SELECT count(*) FROM crm_kpi.customer_spells x
                   WHERE x.started_at < ps.s AND x.ended_at >= ps.s AND x.ended_at < ps.n AND x.ended_at <= e.as_of) AS churned
           FROM p CROSS JOIN e
           CROSS JOIN LATERAL (SELECT p.period::timestamp AT TIME ZONE e.timezone AS s,
                                      p.next_period::timestamp AT TIME ZONE e.timezone AS n) ps
           WHERE ps.s <= e.as_of),
    m AS (SELECT p.period, sum(x.spend) AS spend, sum(x.new_customers)::bigint AS acquired
          FROM p JOIN crm_kpi.marketing_monthly x ON x.month >= p.period AND x.month < p.next_period
          WHERE grain IN ('month', 'quarter', 'year') GROUP BY p.period),
    o AS (SELECT p.period, sum(d.created)::bigint AS created, sum(d.won)::bigint AS won, sum(d.lost)::bigint AS lost,
                 sum(d.won_amount) AS won_amount, crm_kpi.rollup(d.sales_cycle) AS cycle
          FROM p JOIN crm_kpi.pipeline_total_daily d ON d.day >= p.period AND d.day < p.next_period GROUP BY p.period),
    t AS (SELECT p.period, sum(d.opened)::bigint AS opened, sum(d.resolved)::bigint AS resolved,
                 sum(d.resolved_within_sla)::bigint AS within_sla, sum(d.unanswered)::bigint AS unanswered,
                 crm_kpi.rollup(d.first_response) AS first_response, crm_kpi.rollup(d.resolution) AS resolution,
                 sum(d.replies_on_resolved)::bigint AS replies, sum(d.complaints)::bigint AS complaints
          FROM p JOIN crm_kpi.service_daily d ON d.day >= p.period AND d.day < p.next_period GROUP BY p.period),
    v AS (SELECT p.period, crm_kpi.rollup(d.nps) AS nps, crm_kpi.rollup(d.csat) AS csat
          FROM p JOIN crm_kpi.satisfaction_daily d ON d.day >= p.period AND d.day < p.next_period GROUP BY p.period),
    k AS (SELECT p.period, p.next_period,
                 coalesce(s.orders, 0) AS orders, coalesce(s.revenue, 0) AS revenue,
                 s.revenue / nullif(s.orders, 0) AS aov,
                 coalesce(s.new_customers, 0) AS new_customers, coalesce(s.reactivated, 0) AS reactivated,
                 b.buyers, s.orders::numeric / nullif(b.buyers, 0) AS frequency,
                 ch.at_start, ch.churned,
                 100 * ch.churned::numeric / nullif(ch.at_start, 0) AS churn_rate,
                 m.spend, m.spend / nullif(m.acquired, 0) AS cac,
                 o.created, o.won, o.lost, o.won_amount, o.cycle,
                 t.opened, t.resolved, t.within_sla, t.unanswered, t.first_response, t.resolution, t.replies, t.complaints,
                 v.nps, v.csat
          FROM p LEFT JOIN s USING (period) LEFT JOIN b USING (period) LEFT JOIN ch USING (period)
          LEFT JOIN m USING (period) LEFT JOIN o USING (period) LEFT JOIN t USING (period) LEFT JOIN v USING (period))
    SELECT k.period, k.next_period,
           k.orders, k.revenue, k.aov, k.new_customers, k.reactivated,
           k.buyers, k.frequency,
           k.at_start, k.churned, k.churn_rate, 100 - k.churn_rate,
           k.aov * k.frequency * 100 / nullif(k.churn_rate, 0),
           k.spend, k.cac, k.aov * k.frequency * 100 / nullif(k.churn_rate, 0) - k.cac,
           coalesce(k.created, 0), coalesce(k.won, 0), coalesce(k.lost, 0),
           100 * k.won::numeric / nullif(k.won + k.lost, 0), coalesce(k.won_amount, 0),
           (extract(epoch FROM crm_kpi.percentile_interval(k.cycle, 0.5)) / 86400)::numeric,
           coalesce(k.opened, 0), 100 * k.resolved::numeric / nullif(k.opened, 0),
           100 * k.within_sla::numeric / nullif(k.opened, 0), coalesce(k.unanswered, 0),
           crm_kpi.percentile_interval(k.first_response, 0.5), crm_kpi.percentile_interval(k.first_response, 0.9),
           crm_kpi.percentile_interval(k.resolution, 0.5),
           k.replies::numeric / nullif(k.resolved, 0), coalesce(k.complaints, 0),
           100 * k.complaints::numeric / nullif(k.at_start, 0),
           crm_kpi.nps(k.nps), crm_kpi.responses(k.nps), crm_kpi.csat(k.csat), crm_kpi.csat_mean(k.csat),
           crm_kpi.responses(k.csat)
    FROM k ORDER BY k.period;
END;
COMMENT ON FUNCTION crm_kpi.report(date, date, text) IS
    'One row per day, week, month, quarter or year overlapping [from_day, to_day] with every headline KPI, read from the KPI tables: sales (orders, revenue, AOV, new and reactivated customers; buyers and purchase frequency at month grain), churn and retention (%), predictive and net CLV (month grain), marketing spend and CAC (month, quarter, year), pipeline (win rate, won amount, median sales cycle in days), service (resolution and SLA rates, response and resolution times, replies per resolved ticket, complaint rate per customer active at the start), NPS and CSAT. Ratios with a zero denominator are NULL';

CREATE FUNCTION crm_kpi.report_by_rep(from_day date, to_day date, grain text DEFAULT 'month')
    RETURNS TABLE (period date, rep_id bigint, orders bigint, revenue numeric, aov numeric, new_customers bigint,
                   opportunities_created bigint, won bigint, lost bigint, win_rate numeric, won_amount numeric)
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH p AS (SELECT * FROM crm_kpi.report_periods(from_day, to_day, grain)),
    s AS (SELECT p.period, d.rep_id, sum(d.orders)::bigint AS orders, sum(d.revenue) AS revenue,
                 sum(d.new_customers)::bigint AS new_customers
          FROM p JOIN crm_kpi.sales_daily d ON d.day >= p.period AND d.day < p.next_period GROUP BY 1, 2),
    o AS (SELECT p.period, d.rep_id, sum(d.created)::bigint AS created, sum(d.won)::bigint AS won,
                 sum(d.lost)::bigint AS lost, sum(d.won_amount) AS won_amount
          FROM p JOIN crm_kpi.pipeline_daily d ON d.day >= p.period AND d.day < p.next_period GROUP BY 1, 2)
    SELECT coalesce(s.period, o.period), coalesce(s.rep_id, o.rep_id),
           coalesce(s.orders, 0), coalesce(s.revenue, 0), s.revenue / nullif(s.orders, 0), coalesce(s.new_customers, 0),
           coalesce(o.created, 0), coalesce(o.won, 0), coalesce(o.lost, 0),
           100 * o.won::numeric / nullif(o.won + o.lost, 0), coalesce(o.won_amount, 0)
    FROM s FULL JOIN o ON o.period = s.period AND o.rep_id IS NOT DISTINCT FROM s.rep_id
    ORDER BY 1, 2 NULLS LAST;
END;
COMMENT ON FUNCTION crm_kpi.report_by_rep(date, date, text) IS
    'Per period and rep (NULL: orders and opportunities without one): orders, revenue, AOV, new customers acquired by the rep''s orders, opportunities created, won, lost, win rate, won amount';

CREATE FUNCTION crm_kpi.report_by_channel(from_day date, to_day date, grain text DEFAULT 'month')
    RETURNS TABLE (period date, channel text, orders bigint, revenue numeric, aov numeric, new_customers bigint,
                   marketing_spend numeric, cac numeric)
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH p AS (SELECT * FROM crm_kpi.report_periods(from_day, to_day, grain)),
    s AS (SELECT p.period, d.channel, sum(d.orders)::bigint AS orders, sum(d.revenue) AS revenue,
                 sum(d.new_customers)::bigint AS new_customers
          FROM p JOIN crm_kpi.sales_channel_daily d ON d.day >= p.period AND d.day < p.next_period GROUP BY 1, 2),
    m AS (SELECT p.period, x.channel, sum(x.spend) AS spend, sum(x.new_customers)::bigint AS acquired
          FROM p JOIN crm_kpi.marketing_monthly x ON x.month >= p.period AND x.month < p.next_period
          WHERE grain IN ('month', 'quarter', 'year') GROUP BY 1, 2)
    SELECT coalesce(s.period, m.period), coalesce(s.channel, m.channel),
           coalesce(s.orders, 0), coalesce(s.revenue, 0), s.revenue / nullif(s.orders, 0), coalesce(s.new_customers, 0),
           m.spend, m.spend / nullif(m.acquired, 0)
    FROM s FULL JOIN m ON m.period = s.period AND m.channel IS NOT DISTINCT FROM s.channel
    ORDER BY 1, 2 NULLS LAST;
END;
COMMENT ON FUNCTION crm_kpi.report_by_channel(date, date, text) IS
    'Per period and acquisition channel (NULL: customers without one): orders, revenue, AOV, new customers, and at month, quarter or year grain the marketing spend and CAC';

CREATE FUNCTION crm_kpi.rfm_report()
    RETURNS TABLE (segment text, customers bigint, share numeric, revenue numeric, mean_revenue numeric,
                   mean_orders numeric, mean_days_since_last_order numeric, early_warnings bigint)
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT g.segment, count(k.customer_id), 100 * count(k.customer_id)::numeric / nullif(sum(count(k.customer_id)) OVER (), 0),
           coalesce(sum(k.revenue), 0), avg(k.revenue), avg(k.orders), avg(k.days_since_last_order)::numeric,
           count(*) FILTER (WHERE k.early_warning)
    FROM crm_kpi.rfm_segments g LEFT JOIN crm_kpi.customer_kpis k ON k.segment = g.segment
    GROUP BY g.segment, g.recency_scores, g.frequency_scores
    ORDER BY upper(g.recency_scores) + upper(g.frequency_scores) DESC, g.segment;
END;
COMMENT ON FUNCTION crm_kpi.rfm_report() IS
    'RFM segment sizes (and share of buyers, %) and values: revenue, mean revenue and orders, mean days since the last order, early warnings';

CREATE FUNCTION crm_kpi.early_warnings(max_rows integer DEFAULT 100)
    RETURNS TABLE (customer_id bigint, stage crm_kpi.lifecycle_stage, warning_ratio double precision,
                   days_since_last_order numeric, mean_gap interval, orders bigint, revenue numeric, segment text)
    LANGUAGE sql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT k.customer_id, k.stage, k.warning_ratio, k.days_since_last_order::numeric, k.mean_gap, k.orders, k.revenue, k.segment
    FROM crm_kpi.customer_kpis k WHERE k.early_warning
    ORDER BY k.warning_ratio DESC, k.revenue DESC, k.customer_id
    LIMIT max_rows;
END;
COMMENT ON FUNCTION crm_kpi.early_warnings(integer) IS
    'The customers the churn early warning flags, most at risk first (highest ratio of days since the last order to their usual gap), then by revenue';
-- quality.sql: the data-quality report (completeness, orphans, consistency, future dates), read from the KPI tables only.

CREATE FUNCTION crm_kpi.data_quality()
    RETURNS TABLE (check_name text, category text, source text, affected bigint, total bigint, pct numeric, detail text)
    LANGUAGE sql STABLE PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH e AS (SELECT (as_of AT TIME ZONE timezone)::date AS today,
                      coalesce(((as_of AT TIME ZONE timezone)::date)::text, 'none yet') AS today_text,
                      'after the day of the last refresh (' || coalesce(((as_of AT TIME ZONE timezone)::date)::text, 'none yet')
                          || ')' AS after
               FROM crm_kpi.engine_state),
    cs AS (SELECT count(*) AS customers,
                  count(*) FILTER (WHERE s.acquisition_channel IS NULL) AS no_channel,
                  count(*) FILTER (WHERE s.created_at IS NULL) AS no_created,
                  count(*) FILTER (WHERE s.orders > 0) AS buyers,
                  count(*) FILTER (WHERE s.orders > 0 AND s.interactions = 0) AS silent_buyers,
                  count(*) FILTER (WHERE s.created_at > s.first_order_at) AS created_late,
                  coalesce(sum(s.orders), 0)::bigint AS orders, coalesce(sum(s.revenue), 0) AS revenue
           FROM crm_kpi.customer_stats s),
    sd AS (SELECT coalesce(sum(d.orders), 0)::bigint AS orders, coalesce(sum(d.revenue), 0) AS revenue,
                  coalesce(sum(d.orders) FILTER (WHERE d.rep_id IS NULL), 0)::bigint AS no_rep,
                  coalesce(sum(d.revenue) FILTER (WHERE d.rep_id IS NULL), 0) AS no_rep_revenue,
                  coalesce(sum(d.orders) FILTER (WHERE d.channel IS NULL), 0)::bigint AS no_channel,
                  coalesce(sum(d.revenue) FILTER (WHERE d.channel IS NULL), 0) AS no_channel_revenue,
                  coalesce(sum(d.orders) FILTER (WHERE d.day <= e.today), 0)::bigint AS to_date,
                  coalesce(sum(d.revenue) FILTER (WHERE d.day <= e.today), 0) AS to_date_revenue,
                  coalesce(sum(d.orders) FILTER (WHERE d.day > e.today), 0)::bigint AS future,
                  max(d.day) FILTER (WHERE d.day > e.today AND d.orders > 0) AS last_future
           FROM crm_kpi.sales_daily d CROSS JOIN e),
    pd AS (SELECT coalesce(sum(d.created), 0)::bigint AS created,
                  coalesce(sum(d.created) FILTER (WHERE d.rep_id IS NULL), 0)::bigint AS no_rep,
                  coalesce(sum(d.won), 0)::bigint AS won,
                  coalesce(sum(crm_kpi.count(d.sales_cycle)), 0)::bigint AS won_with_cycle,
                  coalesce(sum(d.created) FILTER (WHERE d.day > e.today), 0)::bigint AS future,
                  max(d.day) FILTER (WHERE d.day > e.today AND d.created > 0) AS last_future
           FROM crm_kpi.pipeline_daily d CROSS JOIN e),
    td AS (SELECT coalesce(sum(d.opened), 0)::bigint AS opened,
                  coalesce(sum(d.unanswered), 0)::bigint AS unanswered,
                  coalesce(sum(d.opened) FILTER (WHERE d.day > e.today), 0)::bigint AS future,
                  max(d.day) FILTER (WHERE d.day > e.today) AS last_future
           FROM crm_kpi.service_daily d CROSS JOIN e),
    vd AS (SELECT coalesce(sum(coalesce(crm_kpi.responses(d.nps), 0) + coalesce(crm_kpi.responses(d.csat), 0)), 0)::bigint
                      AS responses,
                  coalesce(sum(coalesce(crm_kpi.responses(d.nps), 0) + coalesce(crm_kpi.responses(d.csat), 0))
                      FILTER (WHERE d.day > e.today), 0)::bigint AS future,
                  max(d.day) FILTER (WHERE d.day > e.today) AS last_future
           FROM crm_kpi.satisfaction_daily d CROSS JOIN e),
    mc AS (SELECT m.channel, sum(m.spend) AS spend, sum(m.new_customers) AS acquired
           FROM crm_kpi.marketing_monthly m WHERE m.channel IS NOT NULL GROUP BY m.channel),
    mk AS (SELECT count(*) FILTER (WHERE mc.spend > 0) AS spending,
                  count(*) FILTER (WHERE mc.spend > 0 AND mc.acquired = 0) AS spend_no_customers,
                  string_agg(format('%s (spend: %s)', mc.channel, mc.spend), ', ' ORDER BY mc.channel)
                      FILTER (WHERE mc.spend > 0 AND mc.acquired = 0) AS spend_no_customers_list,
                  count(*) FILTER (WHERE mc.acquired > 0) AS acquiring,
                  count(*) FILTER (WHERE mc.acquired > 0 AND mc.spend = 0) AS customers_no_spend,
                  string_agg(format('%s (new customers: %s)', mc.channel, mc.acquired), ', ' ORDER BY mc.channel)
                      FILTER (WHERE mc.acquired > 0 AND mc.spend = 0) AS customers_no_spend_list
           FROM mc)
    SELECT c.check_name, c.category, c.source, c.affected, c.total, 100 * c.affected::numeric / nullif(c.total, 0), c.detail
    FROM cs, sd, pd, td, vd, mk, e, LATERAL (VALUES
        (1, 'customers without acquisition channel', 'completeness', 'customers', cs.no_channel, cs.customers,
         'customers whose acquisition_channel is NULL: their orders, new customers and CAC have no channel'),
        (2, 'customers without creation date', 'completeness', 'customers', cs.no_created, cs.customers,
         'customers whose created_at is NULL: they are in no lead cohort (lead-to-customer conversion)'),
        (3, 'completed orders without rep', 'completeness', 'orders', sd.no_rep, sd.orders,
         format('completed orders whose rep_id is NULL, %s of revenue %s', sd.no_rep_revenue, sd.revenue)),
        (4, 'completed orders without acquisition channel', 'completeness', 'orders', sd.no_channel, sd.orders,
         format('completed orders of customers without acquisition channel or not in the customers source, %s of revenue %s',
                sd.no_channel_revenue, sd.revenue)),
        (5, 'opportunities without rep', 'completeness', 'opportunities', pd.no_rep, pd.created,
         'opportunities (with a creation date) whose rep_id is NULL'),
        (6, 'won opportunities without creation date', 'completeness', 'opportunities', pd.won - pd.won_with_cycle, pd.won,
         'won opportunities whose created_at is NULL: no sales cycle, and not counted as created'),
        (7, 'tickets without first response', 'completeness', 'tickets', td.unanswered, td.opened,
         'tickets whose first_response_at is NULL (never answered, or not yet)'),
        (8, 'buyers without interaction', 'completeness', 'interactions', cs.silent_buyers, cs.buyers,
         'customers with a completed order up to the last refresh and no interaction logged'),
        (9, 'completed orders of unknown customers', 'orphans', 'orders', sd.to_date - cs.orders, sd.to_date,
         format('completed orders dated up to the day of the last refresh (%s) whose customer_id is not in the '
                'customers source, %s of revenue %s', e.today_text, sd.to_date_revenue - cs.revenue, sd.to_date_revenue)),
        (10, 'customers created after their first order', 'consistency', 'customers', cs.created_late, cs.buyers,
         'customers who have bought and whose created_at (lead created) is later than their first completed order'),
        (11, 'marketing channels without new customers', 'consistency', 'marketing_spend', mk.spend_no_customers, mk.spending,
         coalesce('channels with spend that acquired no customer (CAC undefined): ' || mk.spend_no_customers_list,
                  'every channel with spend acquired customers')),
        (12, 'acquisition channels without marketing spend', 'consistency', 'customers', mk.customers_no_spend, mk.acquiring,
         coalesce('channels of new customers with no spend (CAC 0): ' || mk.customers_no_spend_list,
                  'every channel that acquired customers has spend')),
        (13, 'completed orders dated in the future', 'timeliness', 'orders', sd.future, sd.orders,
         'completed orders dated ' || e.after || coalesce(', the latest on ' || sd.last_future, '')),
        (14, 'opportunities created in the future', 'timeliness', 'opportunities', pd.future, pd.created,
         'opportunities created ' || e.after || coalesce(', the latest on ' || pd.last_future, '')),
        (15, 'tickets opened in the future', 'timeliness', 'tickets', td.future, td.opened,
         'tickets opened ' || e.after || coalesce(', the latest on ' || td.last_future, '')),
        (16, 'survey responses answered in the future', 'timeliness', 'survey_responses', vd.future, vd.responses,
         'NPS and CSAT responses answered ' || e.after || coalesce(', the latest on ' || vd.last_future, ''))
    ) AS c (ord, check_name, category, source, affected, total, detail)
    ORDER BY c.ord;
END;
COMMENT ON FUNCTION crm_kpi.data_quality() IS
    'Data-quality checks read from the KPI tables (never the sources), one row each: rows affected out of total and their share (%, NULL when total is 0). Completeness (customers without channel or creation date, orders and opportunities without rep, orders without channel, won opportunities without creation date, unanswered tickets, buyers without interaction), orphans (completed orders whose customer is not in the customers source), consistency (customers created after their first order, channels with spend and no new customers or the reverse), timeliness (orders, opportunities, tickets, responses dated after the day of the last refresh). Exact as of the last finished refresh';
-- reference_schema.sql: crm_kpi.create_reference_schema(), the source contract as real tables.

CREATE FUNCTION crm_kpi.create_reference_schema(schema_name name DEFAULT 'crm') RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s text := quote_ident(schema_name);
    k text;
BEGIN
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %s', s);
    EXECUTE replace($ddl$
        CREATE TABLE @s.customers (
            customer_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            created_at timestamptz NOT NULL DEFAULT now(),
            acquisition_channel text,
            name text,
            email text CHECK (email IS NULL OR email LIKE '%_@_%'),
            phone text
        );
        CREATE INDEX ON @s.customers (created_at);
        CREATE TABLE @s.sales_reps (
            rep_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            name text NOT NULL,
            team text
        );
        CREATE TABLE @s.opportunities (
            opportunity_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            customer_id bigint NOT NULL REFERENCES @s.customers,
            rep_id bigint REFERENCES @s.sales_reps,
            status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'won', 'lost')),
            stage text,
            amount numeric NOT NULL CHECK (amount >= 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            closed_at timestamptz,
            CHECK ((status = 'open') = (closed_at IS NULL)),
            CHECK (closed_at >= created_at)
        );
        CREATE INDEX ON @s.opportunities (closed_at) WHERE closed_at IS NOT NULL;
        CREATE INDEX ON @s.opportunities (created_at);
        CREATE INDEX ON @s.opportunities (customer_id);
        CREATE TABLE @s.orders (
            order_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            customer_id bigint NOT NULL REFERENCES @s.customers,
            rep_id bigint REFERENCES @s.sales_reps,
            status text NOT NULL DEFAULT 'completed' CHECK (status IN ('completed', 'refunded', 'cancelled')),
            amount numeric NOT NULL CHECK (amount >= 0),
            ordered_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ON @s.orders (ordered_at);
        CREATE INDEX ON @s.orders (customer_id, ordered_at);
        CREATE TABLE @s.interactions (
            interaction_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            customer_id bigint NOT NULL REFERENCES @s.customers,
            rep_id bigint REFERENCES @s.sales_reps,
            channel text,
            occurred_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ON @s.interactions (occurred_at);
        CREATE INDEX ON @s.interactions (customer_id, occurred_at);
        CREATE TABLE @s.tickets (
            ticket_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            customer_id bigint NOT NULL REFERENCES @s.customers,
            opened_at timestamptz NOT NULL DEFAULT now(),
            first_response_at timestamptz CHECK (first_response_at >= opened_at),
            resolved_at timestamptz CHECK (resolved_at >= opened_at),
            replies integer NOT NULL DEFAULT 0 CHECK (replies >= 0),
            is_complaint boolean NOT NULL DEFAULT false
        );
        CREATE INDEX ON @s.tickets (opened_at);
        CREATE INDEX ON @s.tickets (customer_id);
        CREATE TABLE @s.survey_responses (
            response_id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            customer_id bigint NOT NULL REFERENCES @s.customers,
            kind text NOT NULL CHECK (kind IN ('nps', 'csat')),
            score integer NOT NULL,
            answered_at timestamptz NOT NULL DEFAULT now(),
            ticket_id bigint REFERENCES @s.tickets,
            CHECK (CASE kind WHEN 'nps' THEN score BETWEEN 0 AND 10 ELSE score BETWEEN 1 AND 5 END)
        );
        CREATE INDEX ON @s.survey_responses (answered_at);
        CREATE TABLE @s.marketing_spend (
            channel text NOT NULL,
            day date NOT NULL,
            amount numeric NOT NULL CHECK (amount >= 0),
            PRIMARY KEY (channel, day)
        );
        CREATE INDEX ON @s.marketing_spend (day);
    $ddl$, '@s', s);
    FOR k IN SELECT DISTINCT kind FROM crm_kpi.source_contract ORDER BY kind LOOP
        EXECUTE format('COMMENT ON TABLE %s.%I IS %L', s, k,
                       format('crm_kpi reference schema: the %s source (see crm_kpi.source_contract)', k));
        PERFORM crm_kpi.bind_source(k, format('%s.%I', s, k)::regclass,
                                    (SELECT jsonb_object_agg(c.column_name, c.column_name)
                                     FROM crm_kpi.source_contract c WHERE c.kind = k));
    END LOOP;
END $$;
COMMENT ON FUNCTION crm_kpi.create_reference_schema(name) IS
    'Creates the reference CRM schema (the source contract as tables with keys, foreign keys, checks and indexes) and binds its tables; they belong to the caller, and DROP EXTENSION never drops them';
-- sample_data.sql: crm_kpi.generate_sample_data(), a seeded, set-based generator of a realistic CRM.
--
-- Every pseudo-random number is a hash of (seed, row key, salt): the same arguments give the
-- same rows whatever the plan, the number of parallel workers or the session's settings.

-- A uniform number in (0, 1) from (seed, n, salt).
CREATE FUNCTION crm_kpi.sample_uniform(seed bigint, n bigint, salt int) RETURNS float8
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ((pg_catalog.hashint8extended(n, seed # (salt::bigint << 32)) >> 11) & 9007199254740991)::float8
           / 9007199254740992.0 + 0.5 / 9007199254740992.0;
COMMENT ON FUNCTION crm_kpi.sample_uniform(bigint, bigint, int) IS
    'Sample-data helper: a pseudo-random uniform number in (0, 1), a hash of (seed, n, salt); the same arguments always give the same number';

-- A standard normal number from (seed, n, salt) (Box-Muller on salts salt and -1 - salt).
CREATE FUNCTION crm_kpi.sample_normal(seed bigint, n bigint, salt int) RETURNS float8
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN pg_catalog.sqrt(-2.0 * pg_catalog.ln(crm_kpi.sample_uniform(seed, n, salt)))
           * pg_catalog.cos(2.0 * pg_catalog.pi() * crm_kpi.sample_uniform(seed, n, -1 - salt));
COMMENT ON FUNCTION crm_kpi.sample_normal(bigint, bigint, int) IS
    'Sample-data helper: a pseudo-random standard normal number (Box-Muller over two sample_uniform numbers, salts salt and -1 - salt)';

-- A log-normal number with the given median and sigma (of its logarithm).
CREATE FUNCTION crm_kpi.sample_lognormal(seed bigint, n bigint, salt int, median float8, sigma float8) RETURNS float8
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN median * pg_catalog.exp(sigma * crm_kpi.sample_normal(seed, n, salt));
COMMENT ON FUNCTION crm_kpi.sample_lognormal(bigint, bigint, int, float8, float8) IS
    'Sample-data helper: a pseudo-random log-normal number with the given median and sigma of its logarithm';

-- The time (Unix epoch seconds) of a customer's order number j (0 = first): a mean gap per
-- customer with +-40 % jitter per order, so that times strictly increase with j, and a pause
-- (a churn then a reactivation) after order pause_after.
CREATE FUNCTION crm_kpi.sample_order_epoch(seed bigint, customer_id bigint, j int, first_epoch float8,
                                           gap_days float8, pause_after int, pause_days float8) RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN first_epoch
           + 86400.0 * gap_days * (j + CASE WHEN j > 0
                                            THEN 0.8 * (crm_kpi.sample_uniform(seed, customer_id * 256 + j, 11) - 0.5)
                                            ELSE 0 END)
           + CASE WHEN j > pause_after THEN 86400.0 * pause_days ELSE 0 END;
COMMENT ON FUNCTION crm_kpi.sample_order_epoch(bigint, bigint, int, float8, float8, int, float8) IS
    'Sample-data helper: epoch seconds of order number j of a customer (mean gap with jitter, optional pause after order pause_after); strictly increasing in j';

CREATE FUNCTION crm_kpi.generate_sample_data(schema_name name DEFAULT 'crm', customers bigint DEFAULT 10000,
                                             seed bigint DEFAULT 1, start_date date DEFAULT '2023-01-01',
                                             days int DEFAULT 730)
    RETURNS TABLE (table_name name, row_count bigint, seconds numeric)
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    SET jit = off
AS $$
DECLARE
    s text := quote_ident(schema_name);
    tables name[] := ARRAY['customers', 'sales_reps', 'opportunities', 'orders', 'interactions',
                           'tickets', 'survey_responses', 'marketing_spend'];
    t name;
    pair name[];
    deferred text[] := '{}';  -- foreign keys and secondary indexes to rebuild after the load
    ddl text;
    t0 float8;   -- start of the period, epoch seconds (UTC midnight of start_date)
    t1 float8;   -- end of the period (excluded)
    reps bigint;
    n bigint;
    has_rows boolean;
    started timestamptz;
    total_started timestamptz := clock_timestamp();
BEGIN
    IF schema_name IS NULL OR customers IS NULL OR seed IS NULL OR start_date IS NULL OR days IS NULL THEN
        RAISE EXCEPTION 'generate_sample_data: arguments must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF customers < 1 OR customers > 1000000000 THEN
        RAISE EXCEPTION 'generate_sample_data: customers = % is out of range 1 to 1000000000', customers
            USING ERRCODE = '22003';
    END IF;
    IF days < 1 OR days > 36500 THEN
        RAISE EXCEPTION 'generate_sample_data: days = % is out of range 1 to 36500', days USING ERRCODE = '22003';
    END IF;
    -- The refresh engine's lock: a refresh reading these tables and the ALTER TABLEs below would deadlock.
    PERFORM pg_advisory_xact_lock(7226110472398251520);
    IF NOT isfinite(start_date) THEN
        RAISE EXCEPTION 'generate_sample_data: start_date must be finite' USING ERRCODE = '22008';
    END IF;

    -- A schema without tables (or no schema yet) gets the reference schema.
    IF NOT EXISTS (SELECT FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
                   WHERE ns.nspname = schema_name AND c.relkind IN ('r', 'p')) THEN
        PERFORM crm_kpi.create_reference_schema(schema_name);
    END IF;
    FOREACH t IN ARRAY tables LOOP
        IF to_regclass(format('%s.%I', s, t)) IS NULL THEN
            RAISE EXCEPTION 'generate_sample_data: schema % has tables but no table %', s, quote_ident(t)
                USING ERRCODE = '42P01',
                      HINT = 'Generate into a new schema, or one made by crm_kpi.create_reference_schema().';
        END IF;
        EXECUTE format('SELECT EXISTS (SELECT FROM %s.%I)', s, t) INTO has_rows;
        IF has_rows THEN
            RAISE EXCEPTION 'generate_sample_data: table %.% already holds rows', s, quote_ident(t)
                USING ERRCODE = '55000',
                      DETAIL = 'Sample data is only generated into empty tables.',
                      HINT = 'Use a new schema name, or empty the reference tables first.';
        END IF;
    END LOOP;

    t0 := extract(epoch FROM start_date::timestamp AT TIME ZONE 'UTC');
    t1 := t0 + 86400.0 * days;
    reps := greatest(3, customers / 200);

    -- Per-customer parameters, all functions of (seed, customer_id); days of creation follow a
    -- weekly and yearly season with growth, by quantiles of the days' cumulative weights, so
    -- customer ids increase with their creation time.
    started := clock_timestamp();
    IF to_regclass('pg_temp.crm_kpi_sample_customers') IS NOT NULL THEN
        DROP TABLE pg_temp.crm_kpi_sample_customers;
    END IF;
    CREATE TEMP TABLE crm_kpi_sample_customers ON COMMIT DROP AS
    WITH w AS (
        SELECT d, (1 + 0.25 * cos(2 * pi() * (extract(doy FROM start_date + d) - 345) / 365.25))
                  * CASE extract(isodow FROM start_date + d) WHEN 6 THEN 0.7 WHEN 7 THEN 0.55 ELSE 1.15 END
                  * (1 + 0.6 * d / days) AS weight
        FROM generate_series(0, days - 1) d
    ), cdf AS MATERIALIZED (
        SELECT array_agg(cum ORDER BY d) AS starts
        FROM (SELECT d, (sum(weight) OVER (ORDER BY d) - weight) / sum(weight) OVER () AS cum FROM w) x
    ), base AS MATERIALIZED (
        SELECT i AS id,
               t0 + 86400.0 * (width_bucket((i - 0.5::float8) / customers, cdf.starts) - 1
                               + 0.25 + 0.6 * crm_kpi.sample_uniform(seed, i, 1)) AS created,
               crm_kpi.sample_uniform(seed, i, 2) AS u_channel,
               crm_kpi.sample_uniform(seed, i, 3) AS u_buy
        FROM generate_series(1, customers) i, cdf
    ), p AS (
        SELECT id, created,
               CASE WHEN u_channel < 0.35 THEN 'organic' WHEN u_channel < 0.60 THEN 'paid_search'
                    WHEN u_channel < 0.75 THEN 'social' WHEN u_channel < 0.85 THEN 'referral'
                    ELSE 'email' END AS channel,
               u_buy < CASE WHEN u_channel < 0.35 THEN 0.35 WHEN u_channel < 0.60 THEN 0.30
                            WHEN u_channel < 0.75 THEN 0.18 WHEN u_channel < 0.85 THEN 0.50
                            ELSE 0.40 END AS converts,
               created + 3600.0 + 86400.0 * crm_kpi.sample_lognormal(seed, id, 4, 6, 1.3) AS first_epoch,
               -- orders the customer would place before dropping out: geometric, per-customer stop rate
               least(255, 1 + floor(ln(crm_kpi.sample_uniform(seed, id, 5))
                                    / ln(1 - (0.02 + 0.23 * crm_kpi.sample_uniform(seed, id, 6)))))::int AS planned,
               greatest(1.0, crm_kpi.sample_lognormal(seed, id, 7, 28, 0.6)) AS gap_days,
               crm_kpi.sample_uniform(seed, id, 9) AS u_pause,
               crm_kpi.sample_uniform(seed, id, 10) AS u_pause_at,
               200 + 300 * crm_kpi.sample_uniform(seed, id, 16) AS pause_days,
               1 + (hashint8extended(id, seed # (17::bigint << 32)) & 9223372036854775807) % reps AS rep_id,
               0.3 * crm_kpi.sample_normal(seed, id, 15) AS spend_level
        FROM base
    ), b AS (
        SELECT p.*, converts AND first_epoch < t1 AS buyer,
               CASE WHEN u_pause < 0.15 THEN floor(u_pause_at * planned)::int END AS pause_after
        FROM p
    ), o AS MATERIALIZED (
        SELECT b.*,
               CASE WHEN buyer THEN (SELECT count(*) FROM generate_series(0, planned - 1) j
                                     WHERE crm_kpi.sample_order_epoch(seed, b.id, j, first_epoch, gap_days,
                                                                      pause_after, pause_days) < t1)
                    ELSE 0 END::int AS n_orders
        FROM b
    ), c AS (
        SELECT o.*,
               CASE WHEN n_orders > 0 THEN crm_kpi.sample_order_epoch(seed, id, n_orders - 1, first_epoch, gap_days,
                                                                      pause_after, pause_days) END AS last_epoch,
               CASE WHEN buyer THEN 1 + floor(3 * crm_kpi.sample_uniform(seed, id, 18))
                    WHEN crm_kpi.sample_uniform(seed, id, 19) < 0.55 THEN 1 + floor(3 * crm_kpi.sample_uniform(seed, id, 18))
                    ELSE 0 END::int AS n_pre,
               (n_orders / 2)::int AS n_post,
               CASE WHEN buyer THEN floor(0.35 * n_orders + crm_kpi.sample_uniform(seed, id, 20)) ELSE 0 END::int AS n_tickets,
               (CASE WHEN crm_kpi.sample_uniform(seed, id, 40) < CASE WHEN buyer THEN 0.45 ELSE 0.20 END THEN 1 ELSE 0 END
                + CASE WHEN crm_kpi.sample_uniform(seed, id, 41) < 0.08 THEN 1 ELSE 0 END)::int AS n_opps
        FROM o
    )
    SELECT c.*,
           coalesce(sum(n_orders) OVER w - n_orders, 0)::bigint AS order_base,
           coalesce(sum(n_pre + n_post) OVER w - n_pre - n_post, 0)::bigint AS interaction_base,
           coalesce(sum(n_tickets) OVER w - n_tickets, 0)::bigint AS ticket_base,
           coalesce(sum(n_opps) OVER w - n_opps, 0)::bigint AS opportunity_base
    FROM c
    WINDOW w AS (ORDER BY id);
    ANALYZE pg_temp.crm_kpi_sample_customers;
    RAISE NOTICE 'generate_sample_data: planned % customers in % s', customers,
        round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- Loading is faster without per-row foreign-key checks and index maintenance: drop the
    -- foreign keys and the indexes that back no constraint, and rebuild them, unchanged, once
    -- the tables are full (in this same transaction, so nobody sees them missing).
    started := clock_timestamp();
    SELECT coalesce(array_agg(format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname,
                                     pg_get_constraintdef(c.oid)) ORDER BY c.oid), '{}')
      INTO deferred
      FROM pg_constraint c
     WHERE c.contype = 'f' AND c.conrelid IN (SELECT format('%s.%I', s, x)::regclass FROM unnest(tables) x);
    SELECT deferred || coalesce(array_agg(pg_get_indexdef(i.indexrelid) ORDER BY i.indexrelid), '{}')
      INTO deferred
      FROM pg_index i
     WHERE i.indrelid IN (SELECT format('%s.%I', s, x)::regclass FROM unnest(tables) x)
       AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)
       AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.refclassid = 'pg_class'::regclass
                       AND d.refobjid = i.indexrelid AND d.classid <> 'pg_class'::regclass);
    FOR ddl IN
        SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname)
          FROM pg_constraint c
         WHERE c.contype = 'f' AND c.conrelid IN (SELECT format('%s.%I', s, x)::regclass FROM unnest(tables) x)
        UNION ALL
        SELECT format('DROP INDEX %s', i.indexrelid::regclass)
          FROM pg_index i
         WHERE i.indrelid IN (SELECT format('%s.%I', s, x)::regclass FROM unnest(tables) x)
           AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)
           AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.refclassid = 'pg_class'::regclass
                           AND d.refobjid = i.indexrelid AND d.classid <> 'pg_class'::regclass)
    LOOP
        EXECUTE ddl;
    END LOOP;

    -- customers
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.customers (customer_id, created_at, acquisition_channel, name, email, phone)
        SELECT id, to_timestamp(floor(created)), channel, 'Customer ' || id,
               CASE WHEN crm_kpi.sample_uniform($1, id, 21) >= 0.04 THEN 'customer' || id || '@example.com' END,
               CASE WHEN crm_kpi.sample_uniform($1, id, 22) >= 0.30
                    THEN '+1-555-' || lpad(((hashint8extended(id, $1 # (23::bigint << 32)) & 9223372036854775807) %% 10000000)::text, 7, '0') END
        FROM pg_temp.crm_kpi_sample_customers$q$, s) USING seed;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT 'customers'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.customers in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- sales reps, in four teams
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.sales_reps (rep_id, name, team)
        SELECT r, 'Rep ' || r, (ARRAY['North', 'South', 'East', 'West'])[1 + floor(4 * crm_kpi.sample_uniform($2, r, 61))::int]
        FROM generate_series(1, $1) r$q$, s) USING reps, seed;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT 'sales_reps'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.sales_reps in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- opportunities: created soon after the customer; won more often by customers who buy
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.opportunities (opportunity_id, customer_id, rep_id, status, stage, amount, created_at, closed_at)
        SELECT opportunity_id, id, rep_id, status,
               CASE WHEN status = 'won' THEN CASE WHEN u_stage < 0.70 THEN 'negotiation' WHEN u_stage < 0.95 THEN 'proposal' ELSE 'qualification' END
                    WHEN status = 'lost' THEN CASE WHEN u_stage < 0.45 THEN 'qualification' WHEN u_stage < 0.80 THEN 'proposal' ELSE 'negotiation' END
                    ELSE CASE WHEN u_stage < 0.40 THEN 'qualification' WHEN u_stage < 0.75 THEN 'proposal' ELSE 'negotiation' END END,
               amount, to_timestamp(floor(created_epoch)),
               CASE WHEN status <> 'open' THEN to_timestamp(floor(closed_epoch)) END
        FROM (SELECT x.*, CASE WHEN closed_epoch >= $3 OR crm_kpi.sample_uniform($1, k, 44) < 0.08 THEN 'open'
                               WHEN crm_kpi.sample_uniform($1, k, 45) < CASE WHEN buyer THEN 0.65 ELSE 0.12 END THEN 'won'
                               ELSE 'lost' END AS status
              FROM (SELECT c.opportunity_base + j + 1 AS opportunity_id, c.id, c.rep_id, c.buyer, c.id * 256 + j AS k,
                           crm_kpi.sample_uniform($1, c.id * 256 + j, 46) AS u_stage,
                           round(crm_kpi.sample_lognormal($1, c.id * 256 + j, 47, 800, 0.8)::numeric, 2) AS amount,
                           oc.created_epoch,
                           oc.created_epoch + 86400.0 * crm_kpi.sample_lognormal($1, c.id * 256 + j, 43, 21, 0.7) AS closed_epoch
                    FROM pg_temp.crm_kpi_sample_customers c, generate_series(0, c.n_opps - 1) j,
                         LATERAL (SELECT c.created + least(3600.0 + 86400.0 * crm_kpi.sample_lognormal($1, c.id * 256 + j, 42, 2 + 20 * j, 1.0),
                                                           0.9 * ($3 - c.created)) AS created_epoch) oc) x) y$q$,
        s) USING seed, t0, t1;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT 'opportunities'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.opportunities in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- orders: log-normal amounts per channel, ~5 %% refunded, ~3 %% cancelled
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.orders (order_id, customer_id, rep_id, status, amount, ordered_at)
        SELECT c.order_base + j + 1, c.id,
               CASE WHEN crm_kpi.sample_uniform($1, c.id * 256 + j, 12) < 0.7 THEN c.rep_id END,
               CASE WHEN crm_kpi.sample_uniform($1, c.id * 256 + j, 13) < 0.05 THEN 'refunded'
                    WHEN crm_kpi.sample_uniform($1, c.id * 256 + j, 13) < 0.08 THEN 'cancelled'
                    ELSE 'completed' END,
               round((CASE c.channel WHEN 'organic' THEN 60 WHEN 'paid_search' THEN 55 WHEN 'social' THEN 40
                                     WHEN 'referral' THEN 80 ELSE 50 END
                      * exp(c.spend_level + 0.55 * crm_kpi.sample_normal($1, c.id * 256 + j, 14)))::numeric, 2),
               to_timestamp(floor(crm_kpi.sample_order_epoch($1, c.id, j, c.first_epoch, c.gap_days,
                                                             c.pause_after, c.pause_days)))
        FROM pg_temp.crm_kpi_sample_customers c, generate_series(0, c.n_orders - 1) j
        WHERE c.n_orders > 0$q$, s) USING seed;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT 'orders'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.orders in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- interactions: before the first order (or soon after creation for those who never buy), then
    -- about one for every two orders while the customer buys
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.interactions (interaction_id, customer_id, rep_id, channel, occurred_at)
        SELECT c.interaction_base + j + 1, c.id,
               CASE WHEN crm_kpi.sample_uniform($1, c.id * 256 + j, 24) < 0.85 THEN c.rep_id END,
               (ARRAY['email', 'call', 'meeting', 'chat'])[1 + floor(4 * crm_kpi.sample_uniform($1, c.id * 256 + j, 25))::int],
               to_timestamp(floor(CASE WHEN j < c.n_pre
                   THEN c.created + (CASE WHEN c.buyer THEN c.first_epoch ELSE least(c.created + 30 * 86400.0, $2) END - c.created)
                                    * (j + crm_kpi.sample_uniform($1, c.id * 256 + j, 26)) / c.n_pre
                   ELSE c.first_epoch + (least(c.last_epoch + 14 * 86400.0, $2) - c.first_epoch)
                                        * crm_kpi.sample_uniform($1, c.id * 256 + j, 26) END))
        FROM pg_temp.crm_kpi_sample_customers c, generate_series(0, c.n_pre + c.n_post - 1) j
        WHERE c.n_pre + c.n_post > 0$q$, s) USING seed, t1;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT 'interactions'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.interactions in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- tickets: log-normal first response (median 3 h) and resolution (median 20 h more);
    -- some unanswered, some unresolved; slow ones more often complaints
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.tickets (ticket_id, customer_id, opened_at, first_response_at, resolved_at, replies, is_complaint)
        SELECT ticket_id, id, to_timestamp(floor(opened)), to_timestamp(floor(responded)), to_timestamp(floor(resolved)),
               CASE WHEN resolved IS NOT NULL THEN 1 + floor(crm_kpi.sample_lognormal($1, k, 34, 1.5, 0.7))::int
                    WHEN responded IS NOT NULL THEN 1 ELSE 0 END,
               crm_kpi.sample_uniform($1, k, 35) < CASE WHEN coalesce(resolved, $2) - opened > 72 * 3600.0 THEN 0.15 ELSE 0.04 END
        FROM (SELECT x.*, CASE WHEN responded IS NOT NULL AND crm_kpi.sample_uniform($1, k, 32) >= 0.07
                                    AND responded + 3600.0 * crm_kpi.sample_lognormal($1, k, 33, 20, 1.1) < $2
                               THEN responded + 3600.0 * crm_kpi.sample_lognormal($1, k, 33, 20, 1.1) END AS resolved
              FROM (SELECT o.*, CASE WHEN crm_kpi.sample_uniform($1, k, 30) >= 0.04
                                          AND opened + 3600.0 * crm_kpi.sample_lognormal($1, k, 31, 3, 1.3) < $2
                                     THEN opened + 3600.0 * crm_kpi.sample_lognormal($1, k, 31, 3, 1.3) END AS responded
                    FROM (SELECT c.ticket_base + j + 1 AS ticket_id, c.id, c.id * 256 + j AS k,
                                 c.first_epoch + (least(c.last_epoch + 30 * 86400.0, $2) - c.first_epoch)
                                                 * crm_kpi.sample_uniform($1, c.id * 256 + j, 29) AS opened
                          FROM pg_temp.crm_kpi_sample_customers c, generate_series(0, c.n_tickets - 1) j
                          WHERE c.n_tickets > 0) o) x) y$q$, s) USING seed, t1;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT 'tickets'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.tickets in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- survey responses: 40 %% of resolved tickets, scores falling with the resolution time
    -- (NPS 0-10 or CSAT 1-5); then a relationship NPS from about a quarter of the buyers
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.survey_responses (response_id, customer_id, kind, score, answered_at, ticket_id)
        SELECT row_number() OVER (ORDER BY ticket_id), customer_id, kind,
               CASE WHEN kind = 'nps'
                    THEN greatest(0, least(10, round(8.6 - 1.4 * z - 2.5 * c + 1.6 * crm_kpi.sample_normal($1, ticket_id, 51))))
                    ELSE greatest(1, least(5, round(4.2 - 0.6 * z - 1.0 * c + 0.8 * crm_kpi.sample_normal($1, ticket_id, 51)))) END::int,
               to_timestamp(floor(r + least(3600.0 * crm_kpi.sample_lognormal($1, ticket_id, 52, 6, 1.0), 0.5 * ($2 - r)))),
               ticket_id
        FROM (SELECT ticket_id, customer_id,
                     CASE WHEN crm_kpi.sample_uniform($1, ticket_id, 50) < 0.5 THEN 'nps' ELSE 'csat' END AS kind,
                     ln(greatest(extract(epoch FROM resolved_at - opened_at), 60) / 86400.0) AS z,
                     is_complaint::int AS c,
                     extract(epoch FROM resolved_at)::float8 AS r
              FROM %s.tickets
              WHERE resolved_at IS NOT NULL AND crm_kpi.sample_uniform($1, ticket_id, 49) < 0.4) t$q$, s, s)
        USING seed, t1;
    GET DIAGNOSTICS n = ROW_COUNT;
    EXECUTE format($q$
        INSERT INTO %s.survey_responses (response_id, customer_id, kind, score, answered_at, ticket_id)
        SELECT $3 + row_number() OVER (ORDER BY id), id, 'nps',
               greatest(0, least(10, round(7.8 + 1.8 * crm_kpi.sample_normal($1, id, 54))))::int,
               to_timestamp(floor(first_epoch + ($2 - first_epoch) * crm_kpi.sample_uniform($1, id, 55))), NULL
        FROM pg_temp.crm_kpi_sample_customers
        WHERE buyer AND crm_kpi.sample_uniform($1, id, 53) < 0.25$q$, s) USING seed, t1, n;
    EXECUTE format('SELECT count(*) FROM %s.survey_responses', s) INTO n;
    RETURN QUERY SELECT 'survey_responses'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.survey_responses in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- marketing spend: every day, every channel, scaled to the customers, with the season
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.marketing_spend (channel, day, amount)
        SELECT ch, $2 + d,
               round((base * $4 / 10000.0
                      * (1 + 0.25 * cos(2 * pi() * (extract(doy FROM $2 + d) - 345) / 365.25))
                      * exp(0.2 * crm_kpi.sample_normal($1, d * 8 + ci, 60)))::numeric, 2)
        FROM generate_series(0, $3 - 1) d,
             (VALUES (1, 'organic', 150.0), (2, 'paid_search', 900.0), (3, 'social', 450.0),
                     (4, 'referral', 120.0), (5, 'email', 80.0)) v(ci, ch, base)
        ORDER BY d, ci$q$, s) USING seed, start_date, days, customers;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT 'marketing_spend'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.marketing_spend in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- Foreign keys (validated in one pass each) and indexes back.
    started := clock_timestamp();
    FOREACH ddl IN ARRAY deferred LOOP
        EXECUTE ddl;
    END LOOP;
    RAISE NOTICE 'generate_sample_data: % foreign keys and indexes rebuilt in % s', cardinality(deferred),
        round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- Later inserts that take the identity default must not collide with the ids given here.
    FOREACH pair SLICE 1 IN ARRAY ARRAY[['customers', 'customer_id'], ['sales_reps', 'rep_id'],
                                  ['opportunities', 'opportunity_id'], ['orders', 'order_id'],
                                  ['interactions', 'interaction_id'], ['tickets', 'ticket_id'],
                                  ['survey_responses', 'response_id']]::name[] LOOP
        EXECUTE format('SELECT setval(pg_get_serial_sequence(%L, %L), coalesce(max(%I), 1), max(%I) IS NOT NULL) FROM %s.%I',
                       format('%s.%I', s, pair[1]), pair[2], pair[2], pair[2], s, pair[1]);
    END LOOP;
    DROP TABLE pg_temp.crm_kpi_sample_customers;
    -- Statistics for the planner, as autovacuum would gather them later.
    FOREACH pair SLICE 1 IN ARRAY ARRAY[['customers', ''], ['sales_reps', ''], ['opportunities', ''], ['orders', ''],
                                  ['interactions', ''], ['tickets', ''], ['survey_responses', ''],
                                  ['marketing_spend', '']]::name[] LOOP
        EXECUTE format('ANALYZE %s.%I', s, pair[1]);
    END LOOP;
    RAISE NOTICE 'generate_sample_data: done in % s', round(extract(epoch FROM clock_timestamp() - total_started)::numeric, 1);
END $$;
COMMENT ON FUNCTION crm_kpi.generate_sample_data(name, bigint, bigint, date, int) IS
    'Fills an empty reference CRM schema (made when the schema has no tables) with realistic sample data, the same rows for the same arguments; returns rows and seconds per table';
-- odoo.sql: a worked binding for Odoo's PostgreSQL tables (res_partner, crm_lead with crm_stage, sale_order).

CREATE FUNCTION crm_kpi.bind_odoo(schema_name name DEFAULT 'public') RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s text := quote_ident(schema_name);
BEGIN
    -- Odoo stores datetimes as timestamp without time zone, in UTC.
    PERFORM crm_kpi.bind_source('customers', format('%s.res_partner', s)::regclass, jsonb_build_object(
        'customer_id', 'id',
        'created_at', jsonb_build_object('expr', 'create_date AT TIME ZONE ''UTC'''),
        'name', 'name', 'email', 'email', 'phone', 'phone'));
    -- A lead converted to an opportunity; won when its stage is a won stage; lost when
    -- archived with probability 0 (what Odoo's "mark as lost" does); open otherwise.
    PERFORM crm_kpi.bind_source('opportunities', format('%s.crm_lead', s)::regclass, jsonb_build_object(
        'opportunity_id', 'id',
        'customer_id', 'partner_id',
        'rep_id', 'user_id',
        'status', jsonb_build_object('expr', format(
            'CASE WHEN (SELECT st.is_won FROM %s.crm_stage st WHERE st.id = src.stage_id) THEN ''won'' '
            'WHEN NOT src.active AND src.probability = 0 THEN ''lost'' ELSE ''open'' END', s)),
        'stage', jsonb_build_object('expr', format(
            '(SELECT st.name ->> ''en_US'' FROM %s.crm_stage st WHERE st.id = src.stage_id)', s)),
        'amount', jsonb_build_object('expr', 'coalesce(expected_revenue, 0)'),
        'created_at', jsonb_build_object('expr', 'create_date AT TIME ZONE ''UTC'''),
        'closed_at', jsonb_build_object('expr', format(
            'CASE WHEN (SELECT st.is_won FROM %s.crm_stage st WHERE st.id = src.stage_id) '
            'OR (NOT src.active AND src.probability = 0) THEN date_closed AT TIME ZONE ''UTC'' END', s)),
        '_filter', jsonb_build_object('expr', 'type = ''opportunity''')));
    -- Confirmed sales orders ('sale', 'done') are completed; cancelled ones count for nothing;
    -- quotations ('draft', 'sent') are not orders yet.
    PERFORM crm_kpi.bind_source('orders', format('%s.sale_order', s)::regclass, jsonb_build_object(
        'order_id', 'id',
        'customer_id', 'partner_id',
        'rep_id', 'user_id',
        'status', jsonb_build_object('expr', 'CASE WHEN state IN (''sale'', ''done'') THEN ''completed'' ELSE ''cancelled'' END'),
        'amount', 'amount_total',
        'ordered_at', jsonb_build_object('expr', 'date_order AT TIME ZONE ''UTC'''),
        '_filter', jsonb_build_object('expr', 'state IN (''sale'', ''done'', ''cancel'')')));
END $$;
COMMENT ON FUNCTION crm_kpi.bind_odoo(name) IS
    'Binds an Odoo database''s res_partner (customers), crm_lead with crm_stage (opportunities) and sale_order (orders) in the given schema';
-- reader.sql: the read-only role of dashboards and reports.

CREATE FUNCTION crm_kpi.grant_reader(reader regrole) RETURNS void
    LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r text := reader::text;
    obj record;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA crm_kpi TO %s', r);
    -- The KPI tables and their views, read only.
    FOR obj IN
        SELECT c.oid::regclass AS rel FROM pg_class c
        WHERE c.relnamespace = 'crm_kpi'::regnamespace AND c.relkind IN ('r', 'v')
          AND (c.relname IN (SELECT k.table_name FROM crm_kpi.kpi_tables k)
               OR c.relkind = 'v'
               OR c.relname IN ('rfm_segments', 'kpi_table_state', 'refresh_history', 'engine_state', 'change_queue',
                                'kpi_tables', 'lifecycle_history'))
    LOOP
        EXECUTE format('GRANT SELECT ON %s TO %s', obj.rel, r);
    END LOOP;
    -- Report functions and the accessors of the summary types: they only read.
    FOR obj IN
        SELECT p.oid::regprocedure AS fn FROM pg_proc p
        WHERE p.pronamespace = 'crm_kpi'::regnamespace AND p.provolatile IN ('i', 's') AND p.prokind IN ('f', 'a')
    LOOP
        EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO %s', obj.fn, r);
    END LOOP;
    -- The worker's status (for crm_kpi.status): volatile, but it only reads shared memory.
    EXECUTE format('GRANT EXECUTE ON FUNCTION crm_kpi.worker_status() TO %s', r);
END $$;
COMMENT ON FUNCTION crm_kpi.grant_reader(regrole) IS
    'Grants a role what dashboards and reports need: USAGE on schema crm_kpi, SELECT on the KPI tables, their views and the status tables, EXECUTE on the read-only functions; nothing that writes, refreshes or binds';

-- Nothing that writes, refreshes or binds is executable by PUBLIC: every volatile function of the
-- extension is for its owner (superusers) only, but for the four that a table's owner calls on her
-- own table (they run as the extension's owner, through crm_kpi.<name>_by, which check she owns it).
-- Triggers and event triggers still fire for everyone.
DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN SELECT p.oid FROM pg_proc p
              WHERE p.pronamespace = 'crm_kpi'::regnamespace AND p.provolatile = 'v' AND p.prokind IN ('f', 'p')
                AND p.proname NOT IN ('bind_source', 'unbind_source', 'track_lifecycle', 'untrack_lifecycle')
    LOOP
        EXECUTE format('REVOKE EXECUTE ON ROUTINE %s FROM PUBLIC', fn);
    END LOOP;
END $$;
