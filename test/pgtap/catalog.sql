-- catalog.sql: the extension's catalogue: schema, functions, their signatures,
-- volatility, strictness and parallel safety.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(13);

SELECT has_extension('crm_kpi');
SELECT has_schema('crm_kpi');
SELECT schema_owner_is('crm_kpi', current_user);
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'crm_kpi'), false,
          'crm_kpi is not relocatable');

SELECT has_function('crm_kpi', 'library_version', ARRAY[]::name[]);
SELECT function_returns('crm_kpi', 'library_version', ARRAY[]::name[], 'text');
SELECT volatility_is('crm_kpi', 'library_version', ARRAY[]::name[], 'stable');
SELECT is_strict('crm_kpi', 'library_version', ARRAY[]::name[]);

SELECT has_function('crm_kpi', 'preloaded', ARRAY[]::name[]);
SELECT function_returns('crm_kpi', 'preloaded', ARRAY[]::name[], 'boolean');
SELECT volatility_is('crm_kpi', 'preloaded', ARRAY[]::name[], 'stable');

SELECT is(
    (SELECT array_agg(DISTINCT p.proparallel) FROM pg_proc p
     WHERE p.pronamespace = 'crm_kpi'::regnamespace AND p.proname IN ('library_version', 'preloaded')),
    ARRAY['s']::"char"[],
    'the informational functions are parallel safe');

SELECT is(crm_kpi.library_version(),
          (SELECT extversion FROM pg_extension WHERE extname = 'crm_kpi'),
          'library and SQL versions agree');

SELECT * FROM finish();
ROLLBACK;
