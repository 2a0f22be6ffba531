-- odoo.sql: a worked binding for Odoo's PostgreSQL tables (res_partner, crm_lead with crm_stage, sale_order).

CREATE FUNCTION crm_kpi.bind_odoo(schema_name name DEFAULT 'public') RETURNS void
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s text := quote_ident(schema_name);
BEGIN
    -- Odoo stores datetimes as timestamp without time zone, in UTC.
    PERFORM crm_kpi.bind_source('customers', format('%s.res_partner', s)::regclass, jsonb_build_object(
        'customer_id', 'id',
        'created_at', jsonb_build_object('expr', 'create_date AT TIME ZONE ''UTC'''),
        'name', 'name', 'email', 'email', 'phone', 'phone'));
    -- A lead converted to an opportunity; won when its stage is a won stage; lost when
    -- archived with probability 0 (what Odoo's "mark as lost" does); open otherwise.
    PERFORM crm_kpi.bind_source('opportunities', format('%s.crm_lead', s)::regclass, jsonb_build_object(
        'opportunity_id', 'id',
        'customer_id', 'partner_id',
        'rep_id', 'user_id',
        'status', jsonb_build_object('expr', format(
            'CASE WHEN (SELECT st.is_won FROM %s.crm_stage st WHERE st.id = src.stage_id) THEN ''won'' '
            'WHEN NOT src.active AND src.probability = 0 THEN ''lost'' ELSE ''open'' END', s)),
        'stage', jsonb_build_object('expr', format(
            '(SELECT st.name ->> ''en_US'' FROM %s.crm_stage st WHERE st.id = src.stage_id)', s)),
        'amount', jsonb_build_object('expr', 'coalesce(expected_revenue, 0)'),
        'created_at', jsonb_build_object('expr', 'create_date AT TIME ZONE ''UTC'''),
        'closed_at', jsonb_build_object('expr', format(
            'CASE WHEN (SELECT st.is_won FROM %s.crm_stage st WHERE st.id = src.stage_id) '
            'OR (NOT src.active AND src.probability = 0) THEN date_closed AT TIME ZONE ''UTC'' END', s)),
        '_filter', jsonb_build_object('expr', 'type = ''opportunity''')));
    -- Confirmed sales orders ('sale', 'done') are completed; cancelled ones count for nothing;
    -- quotations ('draft', 'sent') are not orders yet.
    PERFORM crm_kpi.bind_source('orders', format('%s.sale_order', s)::regclass, jsonb_build_object(
        'order_id', 'id',
        'customer_id', 'partner_id',
        'rep_id', 'user_id',
        'status', jsonb_build_object('expr', 'CASE WHEN state IN (''sale'', ''done'') THEN ''completed'' ELSE ''cancelled'' END'),
        'amount', 'amount_total',
        'ordered_at', jsonb_build_object('expr', 'date_order AT TIME ZONE ''UTC'''),
        '_filter', jsonb_build_object('expr', 'state IN (''sale'', ''done'', ''cancel'')')));
END $$;
COMMENT ON FUNCTION crm_kpi.bind_odoo(name) IS
    'Binds an Odoo database''s res_partner (customers), crm_lead with crm_stage (opportunities) and sale_order (orders) in the given schema';
