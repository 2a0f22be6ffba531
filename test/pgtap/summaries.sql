-- summaries.sql: the catalogue of the summary types and their aggregates: every aggregate
-- can run in parallel (combine, serialize, deserialize), the windowed KPIs have inverse
-- transitions, and every function declares honest volatility, strictness and parallel safety.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(32);

SELECT has_type('crm_kpi', t, 'type crm_kpi.' || t)
FROM unnest(ARRAY['nps_summary', 'csat_summary', 'rate_summary', 'purchase_summary']) t;

-- One-step and two-step aggregates exist with their signatures.
SELECT has_function('crm_kpi', 'nps', ARRAY['integer']);
SELECT has_function('crm_kpi', 'nps_agg', ARRAY['integer']);
SELECT has_function('crm_kpi', 'csat', ARRAY['integer']);
SELECT has_function('crm_kpi', 'csat_mean', ARRAY['integer']);
SELECT has_function('crm_kpi', 'csat_agg', ARRAY['integer']);
SELECT has_function('crm_kpi', 'rate', ARRAY['boolean']);
SELECT has_function('crm_kpi', 'rate_agg', ARRAY['boolean']);
SELECT has_function('crm_kpi', 'purchase_agg', ARRAY['numeric', 'timestamp with time zone']);
SELECT has_function('crm_kpi', 'rollup', ARRAY[t])
FROM unnest(ARRAY['crm_kpi.nps_summary', 'crm_kpi.csat_summary', 'crm_kpi.rate_summary', 'crm_kpi.purchase_summary']) t;
SELECT isa_ok(crm_kpi.nps(9), 'numeric', 'nps(integer) result');
SELECT isa_ok(crm_kpi.nps_agg(9), 'crm_kpi.nps_summary', 'nps_agg(integer) result');
SELECT function_returns('crm_kpi', 'nps', ARRAY['crm_kpi.nps_summary'], 'numeric');
SELECT function_returns('crm_kpi', 'mean_gap', ARRAY['crm_kpi.purchase_summary'], 'interval');

-- Every aggregate of the extension is parallel safe and can be split: a combine function,
-- and serialize/deserialize where the state is internal.
SELECT is(count(*)::int, 0, 'every crm_kpi aggregate has a combine function')
FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
WHERE p.pronamespace = 'crm_kpi'::regnamespace AND a.aggcombinefn = 0;
SELECT is(count(*)::int, 0, 'every internal-state aggregate serializes and deserializes')
FROM pg_aggregate a JOIN pg_proc p ON p.oid = a.aggfnoid
WHERE p.pronamespace = 'crm_kpi'::regnamespace AND a.aggtranstype = 'internal'::regtype
  AND (a.aggserialfn = 0 OR a.aggdeserialfn = 0);
SELECT is(count(*)::int, 0, 'every crm_kpi aggregate is parallel safe')
FROM pg_proc p WHERE p.pronamespace = 'crm_kpi'::regnamespace AND p.prokind = 'a' AND p.proparallel <> 's';

-- Moving-aggregate support (O(1) per row in a sliding window) for the windowed KPIs.
SELECT isnt((SELECT a.aggminvtransfn::text FROM pg_aggregate a WHERE a.aggfnoid = f::regprocedure), '-',
            f || ' has an inverse transition')
FROM unnest(ARRAY['crm_kpi.nps(integer)', 'crm_kpi.nps_agg(integer)', 'crm_kpi.csat(integer)',
                  'crm_kpi.csat_mean(integer)', 'crm_kpi.csat_agg(integer)', 'crm_kpi.rate(boolean)',
                  'crm_kpi.rate_agg(boolean)']) f;

-- Accessors are immutable and strict; functions other than aggregates are never volatile.
SELECT is(count(*)::int, 0, 'accessors of summaries are immutable and strict')
FROM pg_proc p
WHERE p.pronamespace = 'crm_kpi'::regnamespace AND p.prokind = 'f'
  AND p.proargtypes[0] IN ('crm_kpi.nps_summary'::regtype, 'crm_kpi.csat_summary'::regtype,
                           'crm_kpi.rate_summary'::regtype, 'crm_kpi.purchase_summary'::regtype)
  AND p.prorettype <> 'cstring'::regtype AND p.prorettype <> 'bytea'::regtype
  AND (p.provolatile <> 'i' OR NOT p.proisstrict);
SELECT volatility_is('crm_kpi', 'purchase_summary_in', ARRAY['cstring'], 'stable',
                     'purchase_summary input reads times like timestamptz input: stable');

SELECT * FROM finish();
ROLLBACK;
