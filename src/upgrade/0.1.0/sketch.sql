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
