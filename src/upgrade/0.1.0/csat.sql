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
