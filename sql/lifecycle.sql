-- lifecycle: the stage type, legal moves, classification at every boundary, GUCs, the guard
-- trigger with its history, as-of stages, durations, reactivations and the funnel.
CREATE EXTENSION crm_kpi;
\i test/fixtures/errors.sql
SET TimeZone = 'UTC';

-- All 49 (from, to) pairs against the legal moves of KPI_SPEC.md, typed in by hand:
-- prospect->contacted, prospect->customer, contacted->customer, customer->active, active->loyal,
-- customer/active/loyal->at_risk, at_risk->active/loyal/customer, at_risk->churned,
-- customer/active/loyal->churned, churned->customer.
CREATE TEMP TABLE spec_moves (from_stage text, to_stage text);
INSERT INTO spec_moves VALUES
    ('prospect', 'contacted'), ('prospect', 'customer'), ('contacted', 'customer'),
    ('customer', 'active'), ('active', 'loyal'),
    ('customer', 'at_risk'), ('active', 'at_risk'), ('loyal', 'at_risk'),
    ('at_risk', 'active'), ('at_risk', 'loyal'), ('at_risk', 'customer'), ('at_risk', 'churned'),
    ('customer', 'churned'), ('active', 'churned'), ('loyal', 'churned'),
    ('churned', 'customer');
SELECT count(*) AS pairs, count(*) FILTER (WHERE crm_kpi.lifecycle_can_move(f, t)) AS legal,
       count(*) FILTER (WHERE crm_kpi.lifecycle_can_move(f, t)
                        IS DISTINCT FROM EXISTS (SELECT FROM spec_moves m WHERE m.from_stage = f::text AND m.to_stage = t::text))
           AS disagreements_with_spec
FROM unnest(enum_range(NULL::crm_kpi.lifecycle_stage)) f, unnest(enum_range(NULL::crm_kpi.lifecycle_stage)) t;
SELECT f AS from_stage, crm_kpi.lifecycle_moves_from(f) AS legal_moves
FROM unnest(enum_range(NULL::crm_kpi.lifecycle_stage)) f;
SELECT crm_kpi.lifecycle_can_move(NULL, 'customer') IS NULL AS null_in_null_out;

-- Classification at every boundary, default settings (90 days, 180 days, 5 orders, 365 days).
-- at = 2024-07-01; one order at exactly at - 90 days is still within the active window.
CREATE TEMP TABLE cases (name text, interactions bigint, orders bigint, first_order timestamptz, last_order timestamptz);
INSERT INTO cases VALUES
    ('never contacted', 0, 0, NULL, NULL),
    ('one interaction', 1, 0, NULL, NULL),
    ('NULL counts', NULL, NULL, NULL, NULL),
    ('one order, today', 0, 1, '2024-07-01', '2024-07-01'),
    ('one order, window - 1us', 0, 1, '2024-04-02 00:00:00.000001', '2024-04-02 00:00:00.000001'),
    ('one order, exactly window', 0, 1, '2024-04-02', '2024-04-02'),
    ('one order, window + 1us', 0, 1, '2024-04-01 23:59:59.999999', '2024-04-01 23:59:59.999999'),
    ('one order, churn - 1us', 0, 1, '2024-01-03 00:00:00.000001', '2024-01-03 00:00:00.000001'),
    ('one order, exactly churn', 0, 1, '2024-01-03', '2024-01-03'),
    ('two orders, recent', 4, 2, '2024-05-01', '2024-06-30'),
    ('5 orders, tenure exactly', 0, 5, '2023-07-02', '2024-06-01'),
    ('5 orders, tenure - 1us', 0, 5, '2023-07-02 00:00:00.000001', '2024-06-01'),
    ('4 orders, long tenure', 0, 4, '2020-01-01', '2024-06-01'),
    ('loyal but silent', 0, 9, '2020-01-01', '2024-03-01'),
    ('loyal, churned', 0, 9, '2020-01-01', '2023-12-01');
SELECT name, crm_kpi.lifecycle_classify('2024-07-01', interactions, orders, first_order, last_order) AS stage
FROM cases;

-- The same through a purchase summary.
SELECT crm_kpi.lifecycle_classify('2024-07-01', 0, crm_kpi.purchase_agg(a, t)) AS from_summary
FROM (VALUES (10, '2023-07-01'::timestamptz), (10, '2023-09-01'), (10, '2024-01-01'), (10, '2024-03-01'), (10, '2024-06-01')) v(a, t);

-- Changed settings: a 30-day window, churn after 60 days, loyal from 3 orders and 100 days.
SET crm_kpi.active_window = '30 days';
SET crm_kpi.churn_after = '60 days';
SET crm_kpi.loyal_min_orders = 3;
SET crm_kpi.loyal_min_tenure = '100 days';
SELECT name, crm_kpi.lifecycle_classify('2024-07-01', interactions, orders, first_order, last_order) AS stage
FROM cases WHERE orders > 0;
SELECT crm_kpi.lifecycle_classify('2024-07-01', 0, 1, '2024-05-02', '2024-05-02') AS at_60_days,
       crm_kpi.lifecycle_classify('2024-07-01', 0, 1, '2024-05-02 00:00:00.000001', '2024-05-02 00:00:00.000001') AS under_60_days;
RESET ALL;
SET TimeZone = 'UTC';

-- Settings are validated: bad intervals at SET, contradictory ones when used.
SELECT pg_temp.sqlstate_of($$SET crm_kpi.active_window = 'ninety days'$$);
SELECT pg_temp.sqlstate_of($$SET crm_kpi.active_window = '-90 days'$$);
SELECT pg_temp.sqlstate_of($$SET crm_kpi.churn_after = '0'$$);
SELECT pg_temp.sqlstate_of($$SET crm_kpi.loyal_min_orders = 0$$);
SET crm_kpi.churn_after = '60 days';
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.lifecycle_classify('2024-07-01', 0, 1, '2024-06-01', '2024-06-01')$$);
RESET crm_kpi.churn_after;
SET crm_kpi.active_window = 'P2M';
SHOW crm_kpi.active_window;
SELECT crm_kpi.lifecycle_classify('2024-07-01', 0, 1, '2024-05-01', '2024-05-01') AS two_months_iso;
RESET crm_kpi.active_window;
-- Per database.
ALTER DATABASE contrib_regression SET crm_kpi.active_window = '45 days';
\c
SET TimeZone = 'UTC';
SHOW crm_kpi.active_window;
SELECT crm_kpi.lifecycle_classify('2024-07-01', 0, 1, '2024-05-01', '2024-05-01') AS with_45_days;
ALTER DATABASE contrib_regression RESET crm_kpi.active_window;
\c
SET TimeZone = 'UTC';
\i test/fixtures/errors.sql

-- Impossible activity is an error.
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.lifecycle_classify('2024-07-01', 0, 2, NULL, '2024-06-01')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.lifecycle_classify('2024-07-01', 0, 2, '2024-06-01', '2024-08-01')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.lifecycle_classify('2024-07-01', 0, 2, '2024-06-02', '2024-06-01')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.lifecycle_classify('2024-07-01', -1, 0, NULL, NULL)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.lifecycle_classify('infinity', 0, 0, NULL, NULL)$$);

-- The guard: a CRM table with a text stage column.
CREATE TABLE crm_contacts (contact_id int PRIMARY KEY, name text, lifecycle text);
INSERT INTO crm_contacts VALUES (1, 'Ada', 'prospect');  -- before tracking: no history
SELECT crm_kpi.track_lifecycle('crm_contacts', 'contact_id', 'lifecycle', 'crm');
INSERT INTO crm_contacts VALUES (2, 'Bo', 'prospect'), (3, 'Cy', NULL);
UPDATE crm_contacts SET lifecycle = 'contacted' WHERE contact_id = 1;
UPDATE crm_contacts SET lifecycle = 'customer' WHERE contact_id IN (1, 2);
UPDATE crm_contacts SET name = 'Ada L.' WHERE contact_id = 1;          -- no change of stage
UPDATE crm_contacts SET lifecycle = 'customer' WHERE contact_id = 1;   -- same stage: nothing
UPDATE crm_contacts SET lifecycle = 'contacted' WHERE contact_id = 1;  -- illegal
UPDATE crm_contacts SET lifecycle = 'loyal' WHERE contact_id = 2;      -- illegal: customer -> loyal
-- One illegal row fails the whole statement: nothing half-written.
UPDATE crm_contacts SET lifecycle = CASE contact_id WHEN 1 THEN 'active' ELSE 'prospect' END WHERE contact_id IN (1, 2);
UPDATE crm_contacts SET lifecycle = 'bogus' WHERE contact_id = 1;
SELECT contact_id, lifecycle FROM crm_contacts ORDER BY 1;
SELECT source, customer_key, from_stage, to_stage, changed_by = session_user AS by_me
FROM crm_kpi.lifecycle_history ORDER BY id;
SELECT * FROM crm_kpi.lifecycle_tracking;

-- Binding errors.
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.track_lifecycle('crm_contacts', 'contact_id', 'lifecycle')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.track_lifecycle('crm_contacts', 'nope', 'lifecycle')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.track_lifecycle('crm_contacts', 'contact_id', 'nope')$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.track_lifecycle('crm_contacts', 'contact_id', 'contact_id')$$);
CREATE TABLE not_tracked (id int);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.untrack_lifecycle('not_tracked')$$);
CREATE ROLE crm_kpi_regress_other;
GRANT USAGE ON SCHEMA crm_kpi TO crm_kpi_regress_other;
SET ROLE crm_kpi_regress_other;
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.untrack_lifecycle('crm_contacts')$$);
RESET ROLE;

-- Detaching leaves the table as it was and keeps the history; moves are no longer checked.
SELECT crm_kpi.untrack_lifecycle('crm_contacts');
SELECT count(*) AS guard_triggers FROM pg_trigger WHERE tgrelid = 'crm_contacts'::regclass;
UPDATE crm_contacts SET lifecycle = 'prospect' WHERE contact_id = 2;
SELECT count(*) AS history_rows_kept FROM crm_kpi.lifecycle_history;
SELECT count(*) AS tracked FROM crm_kpi.lifecycle_tracking;

-- As-of stages, durations and reactivations from a history with known times.
INSERT INTO crm_kpi.lifecycle_history (source, customer_key, from_stage, to_stage, changed_at) VALUES
    ('shop', 'a', NULL, 'prospect', '2024-01-01'),
    ('shop', 'a', 'prospect', 'customer', '2024-01-11'),
    ('shop', 'a', 'customer', 'churned', '2024-07-09'),
    ('shop', 'a', 'churned', 'customer', '2024-09-01'),
    ('shop', 'b', NULL, 'prospect', '2024-01-01'),
    ('shop', 'b', 'prospect', 'contacted', '2024-01-05'),
    ('shop', 'b', 'contacted', 'customer', '2024-01-25');
SELECT at, crm_kpi.stage_at('shop', 'a', at) AS a, crm_kpi.stage_at('shop', 'b', at) AS b
FROM (VALUES ('2023-12-31'::timestamptz), ('2024-01-01'), ('2024-01-10 23:59:59.999999'), ('2024-01-11'),
             ('2024-08-01'), ('2024-09-01')) v(at);
-- By hand: prospect stays 10 days (a) and 4 days (b): mean 7, median 7; contacted 20 days;
-- customer 180 days (a, Jan 11 -> Jul 9); churned 54 days (Jul 9 -> Sep 1).
SELECT * FROM crm_kpi.stage_durations('shop');
SELECT crm_kpi.reactivations('2024-01-01', '2025-01-01', 'shop') AS in_2024,
       crm_kpi.reactivations('2024-09-02', '2025-01-01') AS after,
       crm_kpi.reactivations('2024-09-01', '2024-09-01 00:00:00.000001') AS half_open;

-- The funnel over current stages: 2 prospects, 1 contacted, 1 customer, 1 active, 1 loyal,
-- 0 at_risk, 1 churned. Reached: prospect 7, contacted 5, customer 4, active 2, loyal 1.
SELECT (unnest(crm_kpi.funnel(s))).*
FROM (VALUES ('prospect'::crm_kpi.lifecycle_stage), ('prospect'), ('contacted'), ('customer'),
             ('active'), ('loyal'), ('churned'), (NULL)) v(s);
SELECT (unnest(crm_kpi.funnel(s))).* FROM (SELECT NULL::crm_kpi.lifecycle_stage WHERE false) v(s);

-- Dropping a tracked table forgets its tracking, and keeps its history.
CREATE TABLE short_lived (id int, stage crm_kpi.lifecycle_stage);
SELECT crm_kpi.track_lifecycle('short_lived', 'id', 'stage', 'short');
INSERT INTO short_lived VALUES (1, 'prospect');
DROP TABLE short_lived;
SELECT count(*) AS still_tracked FROM crm_kpi.lifecycle_tracking WHERE source = 'short';
SELECT count(*) AS history_kept FROM crm_kpi.lifecycle_history WHERE source = 'short';
DROP TABLE crm_contacts, not_tracked;
REVOKE USAGE ON SCHEMA crm_kpi FROM crm_kpi_regress_other;
DROP ROLE crm_kpi_regress_other;
DROP EXTENSION crm_kpi;
