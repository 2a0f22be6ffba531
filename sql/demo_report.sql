-- demo_report: the demo's report (scripts/demo_report.sql) runs on generated sample data,
-- so the main job's queries cannot rot. Its numbers are checked elsewhere; here it must run.
CREATE EXTENSION crm_kpi;
SET client_min_messages = warning;
SELECT crm_kpi.create_reference_schema('crm');
SELECT table_name, row_count > 0 AS filled FROM crm_kpi.generate_sample_data('crm', 500, 42);
SELECT mode, error FROM crm_kpi.refresh();
\set ON_ERROR_STOP 1
\o /dev/null
\i scripts/demo_report.sql
\o
DROP SCHEMA crm CASCADE;
DROP EXTENSION crm_kpi;
