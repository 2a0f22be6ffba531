-- info.sql: what the loaded library knows about itself (see info.c).

CREATE FUNCTION crm_kpi.library_version() RETURNS text
    AS 'MODULE_PATHNAME', 'crm_kpi_library_version'
    LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.library_version() IS
    'Version the loaded crm_kpi shared library was built as; equals the installed extension version unless an upgrade is pending';

CREATE FUNCTION crm_kpi.preloaded() RETURNS boolean
    AS 'MODULE_PATHNAME', 'crm_kpi_preloaded'
    LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION crm_kpi.preloaded() IS
    'True when crm_kpi is in shared_preload_libraries (required for the background worker)';
