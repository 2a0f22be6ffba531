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
