-- sources.sql: the catalogue of the source contract and the binding functions.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(16);

SELECT has_table('crm_kpi', 'source_contract', 'table crm_kpi.source_contract');
SELECT has_table('crm_kpi', 'source_bindings', 'table crm_kpi.source_bindings');
SELECT has_view('crm_kpi', 'bindings', 'view crm_kpi.bindings');
SELECT set_eq('SELECT DISTINCT kind FROM crm_kpi.source_contract',
              ARRAY['customers', 'sales_reps', 'opportunities', 'orders', 'interactions', 'tickets',
                    'survey_responses', 'marketing_spend'],
              'the contract has the eight kinds of source');
SELECT ok(EXISTS (SELECT FROM pg_extension e WHERE e.extname = 'crm_kpi'
                  AND 'crm_kpi.source_bindings'::regclass = ANY (e.extconfig)),
          'pg_dump keeps the bindings');
SELECT ok(NOT EXISTS (SELECT FROM pg_extension e WHERE e.extname = 'crm_kpi'
                      AND 'crm_kpi.source_contract'::regclass = ANY (e.extconfig)),
          'the contract is the extension''s own, not configuration');

SELECT has_function('crm_kpi', 'bind_source', ARRAY['text', 'regclass', 'jsonb']);
SELECT volatility_is('crm_kpi', 'bind_source', ARRAY['text', 'regclass', 'jsonb'], 'volatile');
SELECT isnt_definer('crm_kpi', 'bind_source', ARRAY['text', 'regclass', 'jsonb'],
                    'bind_source runs with the caller''s rights');
SELECT has_function('crm_kpi', 'unbind_source', ARRAY['text', 'regclass']);
SELECT has_function('crm_kpi', 'create_reference_schema', ARRAY['name']);
SELECT isnt_definer('crm_kpi', 'create_reference_schema', ARRAY['name'],
                    'the reference schema is created as, and owned by, the caller');
SELECT has_function('crm_kpi', 'bind_odoo', ARRAY['name']);
SELECT function_returns('crm_kpi', 'source_query', ARRAY['text', 'regclass'], 'text');
SELECT volatility_is('crm_kpi', 'expression_problem', ARRAY['regclass', 'text'], 'stable');
SELECT is(
    (SELECT count(*)::int FROM pg_proc p
     WHERE p.pronamespace = 'crm_kpi'::regnamespace AND p.prosecdef
       AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)),
    0, 'every SECURITY DEFINER function pins search_path');

SELECT * FROM finish();
ROLLBACK;
