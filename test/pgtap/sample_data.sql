-- sample_data.sql: the sample-data generator and its helpers: signatures, declared behaviour,
-- and the same rows for the same seed.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(17);

SELECT has_function('crm_kpi', 'generate_sample_data', ARRAY['name', 'bigint', 'bigint', 'date', 'integer']);
SELECT function_returns('crm_kpi', 'generate_sample_data', ARRAY['name', 'bigint', 'bigint', 'date', 'integer'], 'setof record');
SELECT volatility_is('crm_kpi', 'generate_sample_data', ARRAY['name', 'bigint', 'bigint', 'date', 'integer'], 'volatile');
SELECT is((SELECT proparallel FROM pg_proc WHERE oid = 'crm_kpi.generate_sample_data(name, bigint, bigint, date, integer)'::regprocedure),
          'u'::"char", 'the generator writes: parallel unsafe');
SELECT is((SELECT proconfig FROM pg_proc WHERE oid = 'crm_kpi.generate_sample_data(name, bigint, bigint, date, integer)'::regprocedure),
          ARRAY['search_path=pg_catalog, pg_temp', 'jit=off'], 'the generator pins search_path (and skips JIT compilation)');
SELECT is((SELECT pg_get_function_arguments('crm_kpi.generate_sample_data(name, bigint, bigint, date, integer)'::regprocedure)),
          'schema_name name DEFAULT ''crm''::name, customers bigint DEFAULT 10000, seed bigint DEFAULT 1, start_date date DEFAULT ''2023-01-01''::date, days integer DEFAULT 730',
          'arguments and defaults');

SELECT volatility_is('crm_kpi', 'sample_uniform', ARRAY['bigint', 'bigint', 'integer'], 'immutable');
SELECT is_strict('crm_kpi', 'sample_uniform', ARRAY['bigint', 'bigint', 'integer']);
SELECT volatility_is('crm_kpi', 'sample_normal', ARRAY['bigint', 'bigint', 'integer'], 'immutable');
SELECT volatility_is('crm_kpi', 'sample_lognormal', ARRAY['bigint', 'bigint', 'integer', 'double precision', 'double precision'], 'immutable');
SELECT volatility_is('crm_kpi', 'sample_order_epoch',
                     ARRAY['bigint', 'bigint', 'integer', 'double precision', 'double precision', 'integer', 'double precision'], 'immutable');
SELECT is((SELECT array_agg(DISTINCT proparallel) FROM pg_proc
           WHERE pronamespace = 'crm_kpi'::regnamespace
             AND proname IN ('sample_uniform', 'sample_normal', 'sample_lognormal', 'sample_order_epoch')),
          ARRAY['s']::"char"[], 'the random-number helpers are parallel safe');

-- Determinism: two schemas from the same seed hold the same rows, another seed other rows.
SET LOCAL client_min_messages = warning;
SELECT lives_ok($$SELECT crm_kpi.generate_sample_data('tap_a', 200, 5)$$, 'generates into a new schema');
SELECT lives_ok($$SELECT crm_kpi.generate_sample_data('tap_b', 200, 5)$$, 'again with the same seed');
SELECT lives_ok($$SELECT crm_kpi.generate_sample_data('tap_c', 200, 6)$$, 'with another seed');
SELECT is((SELECT md5(string_agg(o::text, ',' ORDER BY order_id)) FROM tap_a.orders o)
          || (SELECT md5(string_agg(t::text, ',' ORDER BY ticket_id)) FROM tap_a.tickets t)
          || (SELECT md5(string_agg(c::text, ',' ORDER BY customer_id)) FROM tap_a.customers c),
          (SELECT md5(string_agg(o::text, ',' ORDER BY order_id)) FROM tap_b.orders o)
          || (SELECT md5(string_agg(t::text, ',' ORDER BY ticket_id)) FROM tap_b.tickets t)
          || (SELECT md5(string_agg(c::text, ',' ORDER BY customer_id)) FROM tap_b.customers c),
          'the same seed gives the same customers, orders and tickets');
SELECT isnt((SELECT md5(string_agg(o::text, ',' ORDER BY order_id)) FROM tap_a.orders o),
            (SELECT md5(string_agg(o::text, ',' ORDER BY order_id)) FROM tap_c.orders o),
            'another seed gives other orders');

SELECT * FROM finish();
ROLLBACK;
