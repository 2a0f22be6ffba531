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
