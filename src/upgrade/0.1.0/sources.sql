-- sources.sql: the source contract, the reference CRM schema, and bindings of a CRM's own tables.

-- What each kind of source provides to the KPIs: one row per column.
CREATE TABLE crm_kpi.source_contract (
    kind text NOT NULL,
    column_name name NOT NULL,
    data_type regtype NOT NULL,
    required boolean NOT NULL,
    position int NOT NULL,
    description text NOT NULL,
    PRIMARY KEY (kind, column_name)
);
COMMENT ON TABLE crm_kpi.source_contract IS
    'The source contract: for each kind of source, the columns the KPIs read, their types, and whether a binding must map them';

INSERT INTO crm_kpi.source_contract (kind, column_name, data_type, required, position, description) VALUES
    ('customers', 'customer_id', 'bigint', true, 1, 'key of the customer (or lead)'),
    ('customers', 'created_at', 'timestamptz', true, 2, 'when the customer became known (lead created)'),
    ('customers', 'acquisition_channel', 'text', false, 3, 'marketing channel that acquired the customer'),
    ('customers', 'name', 'text', false, 4, 'contact name (data quality)'),
    ('customers', 'email', 'text', false, 5, 'contact e-mail (data quality)'),
    ('customers', 'phone', 'text', false, 6, 'contact phone (data quality)'),
    ('sales_reps', 'rep_id', 'bigint', true, 1, 'key of the sales rep'),
    ('sales_reps', 'name', 'text', true, 2, 'name of the rep'),
    ('sales_reps', 'team', 'text', false, 3, 'team of the rep'),
    ('opportunities', 'opportunity_id', 'bigint', true, 1, 'key of the opportunity'),
    ('opportunities', 'customer_id', 'bigint', true, 2, 'customer the opportunity is for'),
    ('opportunities', 'rep_id', 'bigint', false, 3, 'rep owning the opportunity'),
    ('opportunities', 'status', 'text', true, 4, '''open'', ''won'' or ''lost'''),
    ('opportunities', 'stage', 'text', false, 5, 'pipeline stage name (for stage win rates)'),
    ('opportunities', 'amount', 'numeric', true, 6, 'expected or won amount, >= 0'),
    ('opportunities', 'created_at', 'timestamptz', true, 7, 'when the opportunity was created'),
    ('opportunities', 'closed_at', 'timestamptz', false, 8, 'when it was won or lost; NULL while open'),
    ('orders', 'order_id', 'bigint', true, 1, 'key of the order'),
    ('orders', 'customer_id', 'bigint', true, 2, 'customer who ordered'),
    ('orders', 'rep_id', 'bigint', false, 3, 'rep the revenue is attributed to'),
    ('orders', 'status', 'text', true, 4, '''completed'', ''refunded'' or ''cancelled''; only completed orders count'),
    ('orders', 'amount', 'numeric', true, 5, 'order value, >= 0'),
    ('orders', 'ordered_at', 'timestamptz', true, 6, 'when the order was placed'),
    ('interactions', 'interaction_id', 'bigint', true, 1, 'key of the interaction'),
    ('interactions', 'customer_id', 'bigint', true, 2, 'customer interacted with'),
    ('interactions', 'rep_id', 'bigint', false, 3, 'rep who interacted'),
    ('interactions', 'channel', 'text', false, 4, 'call, e-mail, meeting, ...'),
    ('interactions', 'occurred_at', 'timestamptz', true, 5, 'when it happened'),
    ('tickets', 'ticket_id', 'bigint', true, 1, 'key of the support ticket'),
    ('tickets', 'customer_id', 'bigint', true, 2, 'customer who opened it'),
    ('tickets', 'opened_at', 'timestamptz', true, 3, 'when it was opened'),
    ('tickets', 'first_response_at', 'timestamptz', false, 4, 'first response; NULL while unanswered'),
    ('tickets', 'resolved_at', 'timestamptz', false, 5, 'resolution; NULL while unresolved'),
    ('tickets', 'replies', 'integer', false, 6, 'number of replies on the ticket'),
    ('tickets', 'is_complaint', 'boolean', false, 7, 'whether the ticket is a complaint'),
    ('survey_responses', 'response_id', 'bigint', true, 1, 'key of the response'),
    ('survey_responses', 'customer_id', 'bigint', true, 2, 'customer who answered'),
    ('survey_responses', 'kind', 'text', true, 3, '''nps'' (score 0-10) or ''csat'' (score 1-5)'),
    ('survey_responses', 'score', 'integer', true, 4, 'the score'),
    ('survey_responses', 'answered_at', 'timestamptz', true, 5, 'when it was answered'),
    ('survey_responses', 'ticket_id', 'bigint', false, 6, 'ticket the survey followed, if any'),
    ('marketing_spend', 'channel', 'text', true, 1, 'marketing channel'),
    ('marketing_spend', 'day', 'date', true, 2, 'day of the spend'),
    ('marketing_spend', 'amount', 'numeric', true, 3, 'amount spent, >= 0');

-- The bound sources. pg_dump keeps them.
CREATE TABLE crm_kpi.source_bindings (
    kind text NOT NULL,
    source regclass NOT NULL,
    mapping jsonb NOT NULL,
    bound_by name NOT NULL DEFAULT current_user,
    bound_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, source)
);
COMMENT ON TABLE crm_kpi.source_bindings IS
    'Bound sources: a CRM table bound to a kind of the source contract, with the mapping of each contract column to a column or SQL expression of it';
SELECT pg_catalog.pg_extension_config_dump('crm_kpi.source_bindings', '');

-- Bindings restored from a dump before their capture triggers: held here until the restore
-- creates those triggers, so that no refresh reads a source whose changes are not yet captured.
CREATE TABLE crm_kpi.pending_bindings (
    kind text NOT NULL,
    source regclass NOT NULL,
    mapping jsonb NOT NULL,
    bound_by name NOT NULL,
    bound_at timestamptz NOT NULL,
    PRIMARY KEY (kind, source)
);
COMMENT ON TABLE crm_kpi.pending_bindings IS
    'Bindings restored (pg_restore, psql) into crm_kpi.source_bindings before the capture triggers of their table: held here, unused, until the restore has created those triggers, then bound, and the KPI tables rebuilt';
SELECT pg_catalog.pg_extension_config_dump('crm_kpi.pending_bindings', '');
