-- sketch.sql: the catalogue of crm_kpi.sketch: its type, aggregates (with
-- combine, serialize and deserialize functions) and accessors, their
-- signatures, volatility, strictness and parallel safety.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(48);

SELECT has_type('crm_kpi', 'sketch', 'type crm_kpi.sketch exists');
SELECT is((SELECT typstorage FROM pg_type WHERE oid = 'crm_kpi.sketch'::regtype), 'x'::"char",
          'crm_kpi.sketch is stored extended');
SELECT is((SELECT typlen FROM pg_type WHERE oid = 'crm_kpi.sketch'::regtype), -1::smallint,
          'crm_kpi.sketch is a varlena');
SELECT ok((SELECT typreceive <> 0 AND typsend <> 0 FROM pg_type WHERE oid = 'crm_kpi.sketch'::regtype),
          'crm_kpi.sketch has binary send and receive');

-- Aggregates.
SELECT has_function('crm_kpi', 'sketch_agg', ARRAY['double precision']);
SELECT has_function('crm_kpi', 'sketch_agg', ARRAY['double precision', 'double precision']);
SELECT has_function('crm_kpi', 'sketch_agg', ARRAY['interval']);
SELECT has_function('crm_kpi', 'sketch_agg', ARRAY['interval', 'double precision']);
SELECT has_function('crm_kpi', 'rollup', ARRAY['crm_kpi.sketch']);
SELECT has_function('crm_kpi', 'approx_percentile', ARRAY['double precision', 'double precision']);
SELECT function_returns('crm_kpi', 'sketch_agg', ARRAY['double precision'], 'crm_kpi.sketch');
SELECT function_returns('crm_kpi', 'sketch_agg', ARRAY['interval', 'double precision'], 'crm_kpi.sketch');
SELECT function_returns('crm_kpi', 'rollup', ARRAY['crm_kpi.sketch'], 'crm_kpi.sketch');
SELECT function_returns('crm_kpi', 'approx_percentile', ARRAY['double precision', 'double precision'], 'double precision');
SELECT is_aggregate('crm_kpi', 'sketch_agg', ARRAY['double precision']);
SELECT is_aggregate('crm_kpi', 'sketch_agg', ARRAY['double precision', 'double precision']);
SELECT is_aggregate('crm_kpi', 'sketch_agg', ARRAY['interval']);
SELECT is_aggregate('crm_kpi', 'sketch_agg', ARRAY['interval', 'double precision']);
SELECT is_aggregate('crm_kpi', 'rollup', ARRAY['crm_kpi.sketch']);
SELECT is_aggregate('crm_kpi', 'approx_percentile', ARRAY['double precision', 'double precision']);

-- Every sketch aggregate can run in parallel: combine, serialize and deserialize functions.
SELECT is(
    (SELECT count(*)::int FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
     WHERE p.pronamespace = 'crm_kpi'::regnamespace
       AND (p.proname IN ('sketch_agg', 'approx_percentile')
            OR (p.proname = 'rollup' AND p.proargtypes[0] = 'crm_kpi.sketch'::regtype))
       AND a.aggcombinefn <> 0 AND a.aggserialfn <> 0 AND a.aggdeserialfn <> 0
       AND a.aggtranstype = 'internal'::regtype AND p.proparallel = 's'),
    6, 'the six sketch aggregates have internal state, combine, serialize and deserialize and are parallel safe');

-- Accessors.
SELECT has_function('crm_kpi', 'percentile', ARRAY['crm_kpi.sketch', 'double precision']);
SELECT has_function('crm_kpi', 'percentile', ARRAY['crm_kpi.sketch', 'double precision[]']);
SELECT has_function('crm_kpi', 'percentile_interval', ARRAY['crm_kpi.sketch', 'double precision']);
SELECT has_function('crm_kpi', 'count', ARRAY['crm_kpi.sketch']);
SELECT has_function('crm_kpi', 'min', ARRAY['crm_kpi.sketch']);
SELECT has_function('crm_kpi', 'max', ARRAY['crm_kpi.sketch']);
SELECT has_function('crm_kpi', 'sum', ARRAY['crm_kpi.sketch']);
SELECT has_function('crm_kpi', 'mean', ARRAY['crm_kpi.sketch']);
SELECT has_function('crm_kpi', 'relative_error', ARRAY['crm_kpi.sketch']);
SELECT function_returns('crm_kpi', 'percentile', ARRAY['crm_kpi.sketch', 'double precision'], 'double precision');
SELECT function_returns('crm_kpi', 'percentile', ARRAY['crm_kpi.sketch', 'double precision[]'], 'double precision[]');
SELECT function_returns('crm_kpi', 'percentile_interval', ARRAY['crm_kpi.sketch', 'double precision'], 'interval');
SELECT function_returns('crm_kpi', 'count', ARRAY['crm_kpi.sketch'], 'bigint');
SELECT function_returns('crm_kpi', 'mean', ARRAY['crm_kpi.sketch'], 'double precision');
SELECT function_returns('crm_kpi', 'relative_error', ARRAY['crm_kpi.sketch'], 'double precision');
SELECT volatility_is('crm_kpi', 'percentile', ARRAY['crm_kpi.sketch', 'double precision'], 'immutable');
SELECT volatility_is('crm_kpi', 'percentile', ARRAY['crm_kpi.sketch', 'double precision[]'], 'immutable');
SELECT volatility_is('crm_kpi', 'relative_error', ARRAY['crm_kpi.sketch'], 'immutable');
SELECT is_strict('crm_kpi', 'percentile', ARRAY['crm_kpi.sketch', 'double precision']);
SELECT is_strict('crm_kpi', 'count', ARRAY['crm_kpi.sketch']);
SELECT is_strict('crm_kpi', 'mean', ARRAY['crm_kpi.sketch']);

-- Every function taking or returning a sketch, and every support function, is
-- immutable and parallel safe; the accessors and type I/O are strict; the
-- transition and final functions are not (they see NULL states).
SELECT is(
    (SELECT array_agg(p.oid::regprocedure::text ORDER BY 1) FROM pg_proc p
     WHERE p.pronamespace = 'crm_kpi'::regnamespace AND p.prokind = 'f'
       AND (p.proname LIKE 'sketch%' OR p.proname LIKE 'approx_percentile%'
            OR 'crm_kpi.sketch'::regtype = ANY (p.proargtypes::regtype[]))
       AND (p.provolatile <> 'i' OR p.proparallel <> 's')),
    NULL, 'sketch functions are all immutable and parallel safe');
SELECT is(
    (SELECT array_agg(p.proname::text ORDER BY 1) FROM pg_proc p
     WHERE p.pronamespace = 'crm_kpi'::regnamespace AND p.prokind = 'f'
       AND p.proname IN ('percentile', 'percentile_interval', 'count', 'min', 'max', 'sum', 'mean',
                         'relative_error', 'sketch_in', 'sketch_out', 'sketch_recv', 'sketch_send',
                         'sketch_serialize', 'sketch_deserialize', 'approx_percentile_serialize',
                         'approx_percentile_deserialize')
       AND NOT p.proisstrict),
    NULL, 'accessors, type I/O and (de)serialize functions are strict');
SELECT is(
    (SELECT array_agg(p.proname::text ORDER BY 1) FROM pg_proc p
     WHERE p.pronamespace = 'crm_kpi'::regnamespace AND p.prokind = 'f'
       AND p.proname IN ('sketch_trans', 'sketch_interval_trans', 'sketch_rollup_trans',
                         'sketch_combine', 'sketch_final', 'approx_percentile_trans', 'approx_percentile_final')
       AND p.proisstrict),
    NULL, 'transition, combine and final functions are not strict');

-- count, min, max and sum on a sketch do not shadow the built-in aggregates.
SELECT is((SELECT count(x) FROM (VALUES (1), (2)) v(x)), 2::bigint, 'count() of integers is still the aggregate');
SELECT is(crm_kpi.count(crm_kpi.sketch_agg(x)), 2::bigint, 'crm_kpi.count(sketch) reads the sketch')
FROM (VALUES (1::float8), (2)) v(x);
SELECT is(crm_kpi.percentile(crm_kpi.sketch_agg(x), 1), 2::float8, 'percentile(sketch, 1) is the maximum')
FROM (VALUES (1::float8), (2)) v(x);

SELECT * FROM finish();
ROLLBACK;
