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
