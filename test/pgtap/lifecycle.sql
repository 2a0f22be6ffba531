-- lifecycle.sql: the lifecycle type, its functions and their declared behaviour.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(24);

SELECT has_type('crm_kpi', 'lifecycle_stage', 'type crm_kpi.lifecycle_stage');
SELECT has_enum('crm_kpi', 'lifecycle_stage', 'crm_kpi.lifecycle_stage is an enum');
SELECT enum_has_labels('crm_kpi', 'lifecycle_stage',
                       ARRAY['prospect', 'contacted', 'customer', 'active', 'loyal', 'at_risk', 'churned'],
                       'the stages, in lifecycle order');
SELECT ok('prospect'::crm_kpi.lifecycle_stage < 'churned'::crm_kpi.lifecycle_stage, 'stages are ordered');

SELECT has_function('crm_kpi', 'lifecycle_can_move', ARRAY['crm_kpi.lifecycle_stage', 'crm_kpi.lifecycle_stage']);
SELECT volatility_is('crm_kpi', 'lifecycle_can_move', ARRAY['crm_kpi.lifecycle_stage', 'crm_kpi.lifecycle_stage'], 'immutable');
SELECT is_strict('crm_kpi', 'lifecycle_can_move', ARRAY['crm_kpi.lifecycle_stage', 'crm_kpi.lifecycle_stage']);
SELECT function_returns('crm_kpi', 'lifecycle_moves_from', ARRAY['crm_kpi.lifecycle_stage'], 'crm_kpi.lifecycle_stage[]');

SELECT has_function('crm_kpi', 'lifecycle_classify',
                    ARRAY['timestamp with time zone', 'bigint', 'bigint', 'timestamp with time zone', 'timestamp with time zone']);
-- Classification reads settings and the session's time zone: stable, not immutable.
SELECT volatility_is('crm_kpi', 'lifecycle_classify',
                     ARRAY['timestamp with time zone', 'bigint', 'bigint', 'timestamp with time zone', 'timestamp with time zone'], 'stable');
SELECT isnt_strict('crm_kpi', 'lifecycle_classify',
                   ARRAY['timestamp with time zone', 'bigint', 'bigint', 'timestamp with time zone', 'timestamp with time zone']);
SELECT function_returns('crm_kpi', 'lifecycle_classify',
                        ARRAY['timestamp with time zone', 'bigint', 'crm_kpi.purchase_summary'], 'crm_kpi.lifecycle_stage');

SELECT has_function('crm_kpi', 'track_lifecycle', ARRAY['regclass', 'name', 'name', 'text']);
SELECT volatility_is('crm_kpi', 'track_lifecycle', ARRAY['regclass', 'name', 'name', 'text'], 'volatile');
SELECT has_function('crm_kpi', 'untrack_lifecycle', ARRAY['regclass']);
SELECT is_definer('crm_kpi', 'lifecycle_guard', ARRAY[]::name[]);
SELECT is((SELECT proconfig FROM pg_proc WHERE oid = 'crm_kpi.lifecycle_guard()'::regprocedure),
          ARRAY['search_path=pg_catalog, pg_temp'], 'the SECURITY DEFINER trigger pins search_path');

SELECT has_table('crm_kpi', 'lifecycle_history', 'table crm_kpi.lifecycle_history');
SELECT columns_are('crm_kpi', 'lifecycle_history',
                   ARRAY['id', 'source', 'customer_key', 'from_stage', 'to_stage', 'changed_at', 'changed_by']);
SELECT col_type_is('crm_kpi', 'lifecycle_history', 'to_stage', 'crm_kpi.lifecycle_stage', 'to_stage is a stage');
SELECT ok(EXISTS (SELECT FROM pg_extension e WHERE e.extname = 'crm_kpi'
                  AND 'crm_kpi.lifecycle_history'::regclass = ANY (e.extconfig)),
          'pg_dump keeps the history');

SELECT has_function('crm_kpi', 'funnel', ARRAY['crm_kpi.lifecycle_stage']);
SELECT is((SELECT proparallel FROM pg_proc WHERE oid = 'crm_kpi.funnel(crm_kpi.lifecycle_stage)'::regprocedure),
          's'::"char", 'the funnel aggregate is parallel safe');
SELECT volatility_is('crm_kpi', 'stage_at', ARRAY['text', 'text', 'timestamp with time zone'], 'stable');

SELECT * FROM finish();
ROLLBACK;
