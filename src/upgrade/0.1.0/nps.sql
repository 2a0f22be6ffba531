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
