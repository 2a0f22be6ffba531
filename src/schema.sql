-- schema.sql: the extension's schema.

COMMENT ON SCHEMA crm_kpi IS 'crm_kpi: CRM KPI aggregates, customer lifecycle and maintained KPI tables';
