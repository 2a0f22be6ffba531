-- schema.sql: the extension's schema.

-- A schema crm_kpi made beforehand by a role that is not a superuser would let that role add objects
-- (a better-matching overload, say) that the extension's functions would then call: refused.
DO $$
DECLARE
    owner_name name := (SELECT r.rolname FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                        WHERE n.nspname = 'crm_kpi');
BEGIN
    IF owner_name IS DISTINCT FROM current_user
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = owner_name) THEN
        RAISE EXCEPTION 'schema crm_kpi belongs to %, who is not a superuser', owner_name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Its owner could put objects in it that crm_kpi''s functions would run.',
                  HINT = 'Drop the schema, or give it to a superuser, before CREATE EXTENSION crm_kpi.';
    END IF;
END $$;

COMMENT ON SCHEMA crm_kpi IS 'crm_kpi: CRM KPI aggregates, customer lifecycle and maintained KPI tables';
