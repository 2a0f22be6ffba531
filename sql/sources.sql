-- sources: the reference schema, bindings of a CRM's own tables (Odoo-shaped too), every
-- binding error, hostile names, and tables that outlive DROP EXTENSION.
CREATE EXTENSION crm_kpi;
\i test/fixtures/errors.sql
SET TimeZone = 'America/New_York';  -- bindings must not depend on the session's zone

-- Rows of a query, as text, for comparisons.
CREATE FUNCTION pg_temp.rows_of(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE 'SELECT t::text FROM (' || query || ') t';
END $$;

-- The contract: 8 kinds.
SELECT kind, count(*) AS columns, count(*) FILTER (WHERE required) AS required
FROM crm_kpi.source_contract GROUP BY kind ORDER BY kind;

-- The reference schema is created and bound.
SELECT crm_kpi.create_reference_schema('ref');
SELECT kind, source, owner = current_user AS mine, missing_columns FROM crm_kpi.bindings ORDER BY kind;
\i test/fixtures/reference_data.sql
-- Its checks reject impossible data.
SELECT pg_temp.sqlstate_of($$INSERT INTO ref.tickets (ticket_id, customer_id, opened_at, resolved_at) VALUES (9, 1, '2024-01-02', '2024-01-01')$$);
SELECT pg_temp.sqlstate_of($$INSERT INTO ref.survey_responses (response_id, customer_id, kind, score, answered_at) VALUES (9, 1, 'nps', 11, '2024-01-05')$$);
SELECT pg_temp.sqlstate_of($$INSERT INTO ref.survey_responses (response_id, customer_id, kind, score, answered_at) VALUES (9, 1, 'csat', 0, '2024-01-05')$$);
SELECT pg_temp.sqlstate_of($$INSERT INTO ref.orders (order_id, customer_id, amount, ordered_at) VALUES (9, 1, -5, '2024-01-05')$$);
SELECT pg_temp.sqlstate_of($$INSERT INTO ref.orders (order_id, customer_id, amount, ordered_at) VALUES (9, 99, 5, '2024-01-05')$$);
SELECT pg_temp.sqlstate_of($$INSERT INTO ref.opportunities (opportunity_id, customer_id, amount, status, created_at) VALUES (9, 1, 5, 'won', '2024-01-05')$$);

-- The same data in Odoo-shaped tables, bound with crm_kpi.bind_odoo: identical rows.
\i test/fixtures/odoo_tables.sql
SELECT crm_kpi.bind_odoo('odoo');
SELECT kind, source FROM crm_kpi.bindings WHERE source::text LIKE 'odoo.%' ORDER BY kind;
SELECT k AS kind,
       (SELECT count(*) FROM pg_temp.rows_of(crm_kpi.source_query(k, r))) AS rows,
       (SELECT count(*) FROM (SELECT * FROM pg_temp.rows_of(crm_kpi.source_query(k, r))
                              EXCEPT SELECT * FROM pg_temp.rows_of(crm_kpi.source_query(k, o))) x) AS only_in_reference,
       (SELECT count(*) FROM (SELECT * FROM pg_temp.rows_of(crm_kpi.source_query(k, o))
                              EXCEPT SELECT * FROM pg_temp.rows_of(crm_kpi.source_query(k, r))) x) AS only_in_odoo
FROM (VALUES ('customers', 'ref.customers'::regclass, 'odoo.res_partner'::regclass),
             ('opportunities', 'ref.opportunities', 'odoo.crm_lead'),
             ('orders', 'ref.orders', 'odoo.sale_order')) v(k, r, o);
SET TimeZone = 'UTC';
SELECT * FROM pg_temp.rows_of(crm_kpi.source_query('orders', 'odoo.sale_order')) ORDER BY 1;
-- Both bindings of a kind are read together.
SELECT count(*) AS orders_from_both FROM pg_temp.rows_of(crm_kpi.source_query('orders'));

-- Every problem of a binding is reported at once, with SQLSTATE 22023.
CREATE FUNCTION public.double_it(int) RETURNS bigint LANGUAGE sql IMMUTABLE RETURN $1 * 2;
CREATE TABLE legacy_orders (id int, client int, state varchar, total text, placed timestamp, seller text);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.bind_source('orders', 'legacy_orders',
    '{"order_id": "id", "customer_id": "client", "status": "state", "amount": "total", "ordered_at": "placed",
      "rep_id": "seller", "discount": "id", "_filter": {"expr": "random() < 0.5"}}')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.bind_source('orders', 'legacy_orders', '{"order_id": "id"}')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.bind_source('ordres', 'legacy_orders', '{}')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.bind_source('orders', 'legacy_orders', '["id"]')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.bind_source('orders', 'legacy_orders', NULL)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.bind_source('orders', 'no_such_table', '{}')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.bind_source('orders', 'legacy_orders',
    '{"order_id": "id", "customer_id": "client", "status": {"expr": "lower(state"},
      "amount": {"expr": "sum(total::numeric)"}, "ordered_at": {"expr": "clock_timestamp()"},
      "rep_id": {"expr": "public.double_it(id)"}}')$$);
-- Expressions cannot smuggle in statements, writes, or reads of what the binder cannot read.
CREATE TABLE victim (id int);
INSERT INTO victim VALUES (1);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.bind_source('orders', 'legacy_orders',
    '{"order_id": "id", "customer_id": "client", "amount": {"expr": "0"}, "ordered_at": {"expr": "placed AT TIME ZONE ''UTC''"},
      "status": {"expr": "1) FROM legacy_orders; DELETE FROM victim; SELECT (''x''"}}')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.bind_source('orders', 'legacy_orders',
    '{"order_id": "id", "customer_id": "client", "amount": {"expr": "0"}, "ordered_at": {"expr": "placed AT TIME ZONE ''UTC''"},
      "status": {"expr": "(WITH d AS (DELETE FROM public.victim RETURNING 1) SELECT ''x'')"}}')$$);
SELECT count(*) AS victim_rows FROM victim;
-- A valid mapping with expressions, and a filter.
SELECT crm_kpi.bind_source('orders', 'legacy_orders',
    '{"order_id": "id", "customer_id": "client", "amount": {"expr": "nullif(total, '''')::numeric"},
      "ordered_at": {"expr": "placed AT TIME ZONE ''UTC''"},
      "status": {"expr": "CASE state WHEN ''paid'' THEN ''completed'' ELSE ''cancelled'' END"},
      "_filter": {"expr": "state <> ''draft''"}}');
INSERT INTO legacy_orders VALUES (1, 1, 'paid', '10.5', '2024-05-01 12:00', 'x'), (2, 1, 'draft', '1', '2024-05-02', 'x');
SELECT * FROM pg_temp.rows_of(crm_kpi.source_query('orders', 'legacy_orders'));

-- Only the owner binds.
CREATE ROLE crm_kpi_regress_binder;
GRANT USAGE ON SCHEMA crm_kpi TO crm_kpi_regress_binder;
SET ROLE crm_kpi_regress_binder;
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.bind_source('orders', 'legacy_orders', '{}')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.unbind_source('orders', 'legacy_orders')$$);
RESET ROLE;

-- Hostile names are quoted everywhere: nothing runs but the read.
CREATE TABLE "Robert'); DROP TABLE victim;--" ("id""; DROP TABLE victim; --" int, "who" int, "st" text, "amt" numeric, "at" timestamptz);
INSERT INTO "Robert'); DROP TABLE victim;--" VALUES (1, 2, 'completed', 3, '2024-01-01 00:00+00');
SELECT crm_kpi.bind_source('orders', '"Robert''); DROP TABLE victim;--"',
    '{"order_id": "id\"; DROP TABLE victim; --", "customer_id": "who", "status": "st", "amount": "amt", "ordered_at": "at"}');
SELECT * FROM pg_temp.rows_of(crm_kpi.source_query('orders', '"Robert''); DROP TABLE victim;--"'));
SELECT count(*) AS victim_rows FROM victim;

-- Partitioned sources.
CREATE TABLE part_orders (id bigint, customer bigint, status text, amount numeric, at timestamptz) PARTITION BY RANGE (at);
CREATE TABLE part_orders_2024 PARTITION OF part_orders FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE part_orders_2025 PARTITION OF part_orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO part_orders VALUES (1, 1, 'completed', 10, '2024-06-01'), (2, 1, 'completed', 20, '2025-06-01');
SELECT crm_kpi.bind_source('orders', 'part_orders',
    '{"order_id": "id", "customer_id": "customer", "status": "status", "amount": "amount", "ordered_at": "at"}');
SELECT * FROM pg_temp.rows_of(crm_kpi.source_query('orders', 'part_orders')) ORDER BY 1;

-- A value a binding cannot convert never fails the CRM's write: a WARNING, and everything the kind feeds is queued
-- as stale (the refresh then reports the error until the row is fixed).
CREATE TABLE text_orders (id bigint, who text, st text, amt numeric, at timestamptz);
SELECT crm_kpi.bind_source('orders', 'text_orders',
    '{"order_id": "id", "customer_id": {"expr": "src.who::bigint"}, "status": "st", "amount": "amt", "ordered_at": "at"}');
DELETE FROM crm_kpi.change_queue;
INSERT INTO text_orders VALUES (1, 'oops', 'completed', 1, '2024-06-01');
SELECT target, day, customer_id FROM crm_kpi.change_queue;
SELECT count(*) AS text_orders_rows FROM text_orders;

-- Unbinding, and dropping a bound table, forget the binding; the tables stay.
SELECT crm_kpi.unbind_source('orders', 'part_orders');
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.unbind_source('orders', 'part_orders')$$);
DROP TABLE legacy_orders;
SELECT kind, source FROM crm_kpi.bindings ORDER BY kind, source::text;

-- DROP EXTENSION never drops the CRM's tables or data.
DROP EXTENSION crm_kpi;
SELECT count(*) AS ref_orders, (SELECT count(*) FROM ref.customers) AS ref_customers,
       (SELECT count(*) FROM odoo.sale_order) AS odoo_orders FROM ref.orders;
DROP SCHEMA ref CASCADE;
DROP SCHEMA odoo CASCADE;
DROP TABLE victim, part_orders, text_orders, "Robert'); DROP TABLE victim;--";
DROP FUNCTION public.double_it(int);
REVOKE USAGE ON SCHEMA crm_kpi FROM crm_kpi_regress_binder;
DROP ROLE crm_kpi_regress_binder;
