-- install: CREATE EXTENSION installs a commented, consistent set of objects,
-- and DROP EXTENSION leaves nothing behind.
\set VERBOSITY terse
-- Start where a new database starts: tests that ran before leave the empty schema.
DROP SCHEMA IF EXISTS crm_kpi;
\i test/fixtures/catalog_fingerprint.sql
SELECT :'fingerprint' AS before \gset

CREATE EXTENSION crm_kpi;

-- The loaded library and the installed SQL are the same version.
SELECT crm_kpi.library_version() = extversion AS versions_agree
FROM pg_extension WHERE extname = 'crm_kpi';

-- The schema is the one the control file names, and the extension is fixed there.
SELECT extnamespace::regnamespace AS schema, extrelocatable
FROM pg_extension WHERE extname = 'crm_kpi';

-- preloaded() tells the truth about shared_preload_libraries.
SELECT crm_kpi.preloaded() = (current_setting('shared_preload_libraries') ~ '(^|[ ,])crm_kpi($|[ ,])')
       AS preload_reported;

-- Every object of the extension has a comment (lists the ones that do not).
SELECT pg_describe_object(d.classid, d.objid, 0) AS uncommented
FROM pg_depend d
WHERE d.refclassid = 'pg_extension'::regclass
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'crm_kpi')
  AND d.deptype = 'e'
  AND obj_description(d.objid, d.classid::regclass::name) IS NULL
ORDER BY 1;
SELECT obj_description('crm_kpi'::regnamespace, 'pg_namespace') IS NOT NULL AS schema_commented;

-- The functions that are not parallel safe: only those that must not run in a
-- parallel worker (DDL, triggers). A new one shows here and must be justified.
SELECT p.oid::regprocedure AS parallel_unsafe
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'crm_kpi')
  AND p.proparallel = 'u'
ORDER BY 1;

DROP EXTENSION crm_kpi;

-- Every object of the extension is gone. What remains is the schema the
-- control file names, with its comment: PostgreSQL creates it for CREATE
-- EXTENSION but never drops a schema an extension lives in, as it may hold
-- the user's own objects.
\i test/fixtures/catalog_fingerprint.sql
SELECT :'fingerprint' AS after \gset
\i test/fixtures/catalog_difference.sql
SELECT count(*) AS objects_in_schema FROM pg_class WHERE relnamespace = 'crm_kpi'::regnamespace;
SELECT count(*) AS functions_in_schema FROM pg_proc WHERE pronamespace = 'crm_kpi'::regnamespace;

-- With that empty schema dropped, the catalogue is exactly as before.
DROP SCHEMA crm_kpi;
\i test/fixtures/catalog_fingerprint.sql
SELECT :'fingerprint' AS after \gset
\i test/fixtures/catalog_difference.sql

-- Installing again after the drop works.
CREATE EXTENSION crm_kpi;
SELECT extversion = crm_kpi.library_version() AS reinstalled FROM pg_extension WHERE extname = 'crm_kpi';
DROP EXTENSION crm_kpi;
