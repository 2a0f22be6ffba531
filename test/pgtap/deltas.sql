-- deltas.sql: the tables that add customers up (sales_daily, cohort_monthly, marketing_monthly, churn_monthly)
-- change by the difference of a recomputed customer's parts: values worked out by hand after each write, and
-- verify() (everything recomputed from the sources) empty. Edge cases: a row emptied, a marketing row left with
-- spend and no new customer, orders without a customer, a customer bound after its orders, the first month moved.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(34);
SET client_min_messages = warning;

CREATE TABLE cu (id bigint, created timestamptz, ch text);
CREATE TABLE od (id bigint, cust bigint, rep bigint, st text, amt numeric, at timestamptz);
CREATE TABLE ms (ch text, d date, amt numeric);
SELECT crm_kpi.bind_source('customers', 'cu', '{"customer_id": "id", "created_at": "created", "acquisition_channel": "ch"}');
SELECT crm_kpi.bind_source('orders', 'od', '{"order_id": "id", "customer_id": "cust", "rep_id": "rep", "status": "st",
                                              "amount": "amt", "ordered_at": "at"}');
SELECT crm_kpi.bind_source('marketing_spend', 'ms', '{"channel": "ch", "day": "d", "amount": "amt"}');

INSERT INTO cu VALUES (1, '2024-01-01', 'web'), (2, '2024-01-01', 'ads'), (3, '2024-01-01', 'web');
INSERT INTO od VALUES
    (1, 1, 10, 'completed', 100, '2024-01-10 12:00+00'),
    (2, 2, 10, 'completed', 50, '2024-02-05 12:00+00'),
    (3, 3, 11, 'completed', 30, '2024-02-05 13:00+00'),
    (4, 1, 10, 'completed', 20, '2024-02-05 14:00+00');
INSERT INTO ms VALUES ('web', '2024-02-01', 500), ('ads', '2024-03-01', 80);
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'the first refresh builds the tables');

CREATE FUNCTION pg_temp.sales(d date, r bigint, c text) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce((SELECT format('%s %s %s %s', orders, revenue, new_customers, reactivated_customers)
                     FROM crm_kpi.sales_daily WHERE day = d AND rep_id IS NOT DISTINCT FROM r AND channel IS NOT DISTINCT FROM c),
                    'none')
$$;
CREATE FUNCTION pg_temp.marketing(m date, c text) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce((SELECT format('%s %s', spend, new_customers) FROM crm_kpi.marketing_monthly
                     WHERE month = m AND channel IS NOT DISTINCT FROM c), 'none')
$$;
CREATE FUNCTION pg_temp.cohort(m date, c date) RETURNS text LANGUAGE sql AS $$
    SELECT coalesce((SELECT format('%s %s', customers, revenue) FROM crm_kpi.cohort_monthly
                     WHERE month = m AND cohort_month = c), 'none')
$$;

-- A second order of customer 2 on its first day: one customer recomputed, its day's row changed by the difference.
INSERT INTO od VALUES (5, 2, 10, 'completed', 70.50, '2024-02-05 15:00+00');
SELECT is((SELECT stale_keys FROM crm_kpi.refresh()), 1::bigint, 'an order makes one key stale: its customer');
SELECT is(pg_temp.sales('2024-02-05', 10, 'ads'), '2 120.50 1 0', 'sales: customer 2''s day has both orders, one new customer');
SELECT is(pg_temp.cohort('2024-02-01', '2024-02-01'), '2 150.50', 'cohort February: customers 2 and 3, 50 + 70.50 + 30');
SELECT is((SELECT count(*) FROM crm_kpi.verify()), 0::bigint, 'verify: exact');

-- Customer 3's only order deleted: its sales row goes; February's web marketing row keeps its spend, no new customer.
DELETE FROM od WHERE id = 3;
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL::text, 'refresh after a delete');
SELECT is(pg_temp.sales('2024-02-05', 11, 'web'), 'none', 'sales: the emptied row is gone');
SELECT is(pg_temp.marketing('2024-02-01', 'web'), '500 0', 'marketing: the spend stays, no new customer');
SELECT is(pg_temp.cohort('2024-02-01', '2024-02-01'), '1 120.50', 'cohort February: customer 2 alone');
SELECT is((SELECT count(*) FROM crm_kpi.verify()), 0::bigint, 'verify: exact');

-- Customer 2's orders move to March: February's ads row (no spend) goes, March's gets the new customer.
SELECT is(pg_temp.marketing('2024-02-01', 'ads'), '0 1', 'marketing before: February ads, a new customer, no spend');
UPDATE od SET at = at + interval '1 month' WHERE cust = 2;
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL::text, 'refresh after moving a customer''s orders');
SELECT is(pg_temp.marketing('2024-02-01', 'ads'), 'none', 'marketing: February ads is gone');
SELECT is(pg_temp.marketing('2024-03-01', 'ads'), '80 1', 'marketing: March ads has its spend and the new customer');
SELECT is((SELECT count(*) FROM crm_kpi.verify()), 0::bigint, 'verify: exact');

-- An order without a customer counts by its day; one of a customer not bound yet counts without a channel, then
-- moves to the channel and counts as new when the customer is bound.
INSERT INTO od VALUES (6, NULL, 12, 'completed', 9, '2024-02-06 10:00+00'), (7, 99, 10, 'completed', 15, '2024-02-07 10:00+00');
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL::text, 'refresh after orders without a bound customer');
SELECT is(pg_temp.sales('2024-02-06', 12, NULL), '1 9 0 0', 'sales: the order without a customer');
SELECT is(pg_temp.sales('2024-02-07', 10, NULL), '1 15 0 0', 'sales: the order of an unknown customer, no channel, not new');
INSERT INTO cu VALUES (99, '2024-02-01', 'mail');
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL::text, 'refresh after binding the customer');
SELECT is(pg_temp.sales('2024-02-07', 10, 'mail') || ' / ' || pg_temp.sales('2024-02-07', 10, NULL), '1 15 1 0 / none',
          'sales: the order moved to the customer''s channel and counts as new');
SELECT is((SELECT count(*) FROM crm_kpi.verify()), 0::bigint, 'verify: exact');

-- Customer 1 comes back after 180 days (reactivated), customer 3 orders before anyone did (the first month moves).
INSERT INTO od VALUES (8, 1, 10, 'completed', 40, '2024-09-01 10:00+00'), (9, 3, 11, 'completed', 5, '2023-06-01 10:00+00');
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL::text, 'refresh after a reactivation and an order before all others');
SELECT is(pg_temp.sales('2024-09-01', 10, 'web'), '1 40 0 1', 'sales: the reactivating order');
SELECT is((SELECT format('%s %s', min(month), count(*)) FROM crm_kpi.churn_monthly),
          format('2023-06-01 %s', 12 * (extract(year FROM now()) - 2023) + extract(month FROM now()) - 5),
          'churn: a row per month from the new first month to now');
SELECT is((SELECT format('%s %s %s %s', customers_at_start, churned, new_customers, reactivated)
           FROM crm_kpi.churn_monthly WHERE month = '2024-09-01'), '1 1 0 1',
          'churn: September 2024, customer 2 active entering it and churned on the 1st at 15:00 (last order 2024-03-05 15:00 + 180 days), customer 1 reactivated');
SELECT is((SELECT count(*) FROM crm_kpi.verify()), 0::bigint, 'verify: exact');

-- customer_counts per channel and lead month (the month of created_at in the tables' zone): customers, and buyers
-- (a completed order up to as_of), counted here straight from the source tables.
SELECT results_eq(
    $$SELECT channel, lead_month, sum(customers)::bigint, sum(buyers)::bigint FROM crm_kpi.customer_counts
      GROUP BY 1, 2 ORDER BY 1, 2$$,
    $$SELECT c.ch, date_trunc('month', c.created AT TIME ZONE e.timezone)::date, count(*),
             count(*) FILTER (WHERE EXISTS (SELECT FROM od WHERE od.cust = c.id AND od.st = 'completed' AND od.at <= e.as_of))
      FROM cu c CROSS JOIN crm_kpi.engine_state e GROUP BY 1, 2 ORDER BY 1, 2$$,
    'customer_counts: customers and buyers per channel and lead month, as the source tables count them');

-- customer_events_daily per day (in the tables' zone) and channel: customers created, first completed orders (up to
-- as_of) and leads ended (the later of the two), counted here straight from the source tables.
SELECT results_eq(
    $$SELECT day, channel, created, first_bought, leads_ended FROM crm_kpi.customer_events_daily
      WHERE created <> 0 OR first_bought <> 0 OR leads_ended <> 0 ORDER BY 1, 2$$,
    $$WITH f AS (SELECT c.ch, c.created,
                        (SELECT min(od.at) FROM od WHERE od.cust = c.id AND od.st = 'completed' AND od.at <= e.as_of) AS first
                 FROM cu c CROSS JOIN crm_kpi.engine_state e),
      ev AS (SELECT f.ch, f.created AS at, 1 AS kind FROM f
             UNION ALL SELECT f.ch, f.first, 2 FROM f
             UNION ALL SELECT f.ch, greatest(f.created, f.first), 3 FROM f WHERE f.created IS NOT NULL AND f.first IS NOT NULL)
      SELECT (ev.at AT TIME ZONE e.timezone)::date, ev.ch, count(*) FILTER (WHERE ev.kind = 1),
             count(*) FILTER (WHERE ev.kind = 2), count(*) FILTER (WHERE ev.kind = 3)
      FROM ev CROSS JOIN crm_kpi.engine_state e WHERE ev.at IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2$$,
    'customer_events_daily: customers created, first orders and leads ended per day and channel, as the source tables count them');
-- cohort_monthly by month (a cohort key, as a repair queues one): each customer's months derived from customer_days
-- and customer_stats give, per month and cohort, what the orders give counted here from the source tables.
SELECT results_eq(
    $$SELECT month, cohort_month, customers, revenue FROM crm_kpi.rollup_cohort_monthly('{2024-01-01,2024-03-01}')
      ORDER BY 1, 2$$,
    $$WITH b AS (SELECT od.cust, od.amt, date_trunc('month', od.at AT TIME ZONE e.timezone)::date AS month,
                        (SELECT date_trunc('month', min(f.at) AT TIME ZONE e.timezone)::date FROM od f
                         WHERE f.cust = od.cust AND f.st = 'completed' AND f.at <= e.as_of) AS cohort
                 FROM od CROSS JOIN crm_kpi.engine_state e
                 WHERE od.st = 'completed' AND od.cust IN (SELECT id FROM cu))
      SELECT month, cohort, count(DISTINCT cust), sum(amt) FROM b
      WHERE cohort IS NOT NULL AND month IN ('2024-01-01', '2024-03-01') GROUP BY 1, 2 ORDER BY 1, 2$$,
    'cohort_monthly of two months from the customers'' parts, as the source tables count them');
INSERT INTO crm_kpi.change_queue (target, day) VALUES ('cohort', '2024-03-01');
SELECT is((SELECT (stale_keys, error)::text FROM crm_kpi.refresh()), '(1,)', 'a cohort month key is refreshed');
SELECT is((SELECT count(*) FROM crm_kpi.verify()), 0::bigint, 'verify: exact');
-- The scratch tables as autovacuum may leave them: analyzed while empty, pages kept (every row count then estimates
-- to 1). A batch of 600 customers measures its own rows before the deltas join them.
INSERT INTO cu SELECT g, '2024-01-01', 'web' FROM generate_series(1001, 1600) g;
INSERT INTO od SELECT 1000 + g, g, 10, 'completed', 10, '2024-05-01 12:00+00' FROM generate_series(1001, 1600) g;
ANALYZE crm_kpi.staged_customer_stats;
SELECT is((SELECT (stale_keys, error)::text FROM crm_kpi.refresh()), '(600,)', 'a batch of 600 new customers is refreshed');
SELECT ok((SELECT reltuples >= 600 FROM pg_class WHERE oid = 'crm_kpi.staged_customer_stats'::regclass),
          'the scratch table of customer_stats was analyzed with the batch''s 600 rows');
SELECT is((SELECT count(*) FROM crm_kpi.verify()), 0::bigint, 'verify: exact');
SELECT * FROM finish();
ROLLBACK;
