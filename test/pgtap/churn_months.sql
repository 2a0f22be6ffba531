-- churn_months.sql: crm_kpi.churn_monthly (KPI_SPEC.md: active customers entering the month, how many of them
-- churned in it, new and reactivated customers; a customer churns churn_after, 180 days, after the last order of a
-- spell) on four customers worked out by hand below, one of whom has an order mistyped in year 1: a row for each of
-- its ~24,300 months, kept by refresh() and computed by fresh_churn_monthly() in one pass over the spells.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(12);
SET client_min_messages = warning;
-- Months are New York months: 2020-01-31 22:00 there is 2020-02-01 03:00 UTC.
SET crm_kpi.timezone = 'America/New_York';
SELECT crm_kpi.create_reference_schema('crm');

INSERT INTO crm.customers (customer_id, created_at, acquisition_channel)
SELECT i, '2019-06-01 00:00+00', 'email' FROM generate_series(1, 4) i;
INSERT INTO crm.orders (customer_id, status, amount, ordered_at) VALUES
    (1, 'completed', 10, '2020-01-15 12:00 America/New_York'),
    (1, 'completed', 10, '2020-03-10 12:00 America/New_York'),
    (2, 'completed', 10, '2020-01-31 22:00 America/New_York'),
    (3, 'completed', 10, '2020-01-10 12:00 America/New_York'),
    (3, 'completed', 10, '2020-10-01 12:00 America/New_York'),
    (4, 'completed', 10, '2020-05-05 12:00 America/New_York');
SELECT crm_kpi.refresh();

-- By hand, spells (start .. last order + 180 days):
--   c1 2020-01-15 .. 2020-09-06; c2 2020-01-31 (January in New York) .. 2020-07-29;
--   c3 2020-01-10 .. 2020-07-08, then (after 264 days) 2020-10-01 .. 2021-03-30; c4 2020-05-05 .. 2020-11-01 12:00.
-- A spell counts at the start of each month after the one it starts in up to the one it ends in (c4 at the start
-- of November: it ends at noon on the 1st), churns in the month it ends in.
CREATE TEMP TABLE expected (month date, at_start bigint, churned bigint, new_customers bigint, reactivated bigint);
INSERT INTO expected VALUES
    ('2020-01-01', 0, 0, 3, 0), ('2020-02-01', 3, 0, 0, 0), ('2020-03-01', 3, 0, 0, 0), ('2020-04-01', 3, 0, 0, 0),
    ('2020-05-01', 3, 0, 1, 0), ('2020-06-01', 4, 0, 0, 0), ('2020-07-01', 4, 2, 0, 0), ('2020-08-01', 2, 0, 0, 0),
    ('2020-09-01', 2, 1, 0, 0), ('2020-10-01', 1, 0, 0, 1), ('2020-11-01', 2, 1, 0, 0), ('2020-12-01', 1, 0, 0, 0),
    ('2021-01-01', 1, 0, 0, 0), ('2021-02-01', 1, 0, 0, 0), ('2021-03-01', 1, 1, 0, 0);
-- Every month from the first to the current one (New York), zeros where the list has none.
CREATE TEMP VIEW expected_rows AS
SELECT g::date AS month, coalesce(e.at_start, 0) AS at_start, coalesce(e.churned, 0) AS churned,
       coalesce(e.new_customers, 0) AS new_customers, coalesce(e.reactivated, 0) AS reactivated
FROM generate_series((SELECT min(month) FROM expected)::timestamp,
                     date_trunc('month', now() AT TIME ZONE 'America/New_York'), interval '1 month') g
LEFT JOIN expected e ON e.month = g::date;

SELECT results_eq($$SELECT * FROM crm_kpi.churn_monthly ORDER BY month$$,
                  $$SELECT * FROM expected_rows ORDER BY month$$,
                  'churn_monthly: a row per New York month from January 2020, with the counts worked out by hand');

-- c4 had an order typed in year 1, 0001-06-01 (a spell of its own to 0001-11-28; the 2020 one becomes a reactivation).
INSERT INTO crm.orders (customer_id, status, amount, ordered_at) VALUES (4, 'completed', 10, '0001-06-01 12:00 America/New_York');
SELECT crm_kpi.refresh();
UPDATE expected SET new_customers = 0, reactivated = 1 WHERE month = '2020-05-01';
INSERT INTO expected VALUES ('0001-06-01', 0, 0, 1, 0), ('0001-07-01', 1, 0, 0, 0), ('0001-08-01', 1, 0, 0, 0),
    ('0001-09-01', 1, 0, 0, 0), ('0001-10-01', 1, 0, 0, 0), ('0001-11-01', 1, 1, 0, 0);

SELECT is((SELECT count(*) FROM crm_kpi.churn_monthly), (SELECT count(*) FROM expected_rows),
          'an order in year 1: refresh() adds a row for every month since (about 24,300)');
SELECT results_eq($$SELECT * FROM crm_kpi.churn_monthly ORDER BY month$$,
                  $$SELECT * FROM expected_rows ORDER BY month$$,
                  'and their counts are those worked out by hand');
SELECT is_empty($$SELECT * FROM crm_kpi.verify()$$, 'verify(): the kept tables equal a computation from scratch');

-- The two ways fresh_churn_monthly() counts: one month from the spells its index ranges select, several in one
-- pass over the spells. Both give the hand-made rows.
SELECT results_eq($$SELECT f.* FROM unnest('{0001-06-01,0001-11-01,0001-12-01,2020-01-01,2020-07-01,2020-11-01,2021-03-01,2021-04-01}'::date[]) m,
                         LATERAL crm_kpi.fresh_churn_monthly(ARRAY[m]) f ORDER BY 1$$,
                  $$SELECT * FROM expected_rows WHERE month IN ('0001-06-01', '0001-11-01', '0001-12-01', '2020-01-01',
                                                                '2020-07-01', '2020-11-01', '2021-03-01', '2021-04-01')
                    ORDER BY 1$$,
                  'fresh_churn_monthly() of one month, for 8 months');
SELECT results_eq($$SELECT * FROM crm_kpi.fresh_churn_monthly(ARRAY(SELECT month FROM expected) || '{1999-12-01,0001-05-01}') ORDER BY 1$$,
                  $$SELECT * FROM expected_rows WHERE month IN (SELECT month FROM expected) OR month = '1999-12-01' ORDER BY 1$$,
                  'fresh_churn_monthly() of 23 months in one pass (one of zeros; one before the first has no row)');
SELECT is((SELECT count(*) FROM crm_kpi.fresh_churn_monthly('{0001-05-01,2999-01-01}')), 0::bigint,
          'months outside the first and the current one have no row');

-- One pass: the spells are read a fixed number of times, not once per month (that took over ten minutes on half a
-- million customers with an order in year 1).
CREATE TEMP TABLE scans AS
SELECT seq_scan + coalesce(idx_scan, 0) AS n FROM pg_stat_xact_user_tables WHERE relid = 'crm_kpi.customer_spells'::regclass;
SELECT is((SELECT count(*) FROM crm_kpi.fresh_churn_monthly()), (SELECT count(*) FROM expected_rows),
          'fresh_churn_monthly(): every month');
SELECT cmp_ok((SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables WHERE relid = 'crm_kpi.customer_spells'::regclass)
              - (SELECT n FROM scans), '<=', 3::bigint,
              'reading customer_spells at most 3 times for ~24,300 months');

-- The mistyped order is corrected: the first month moves back to January 2020.
DELETE FROM crm.orders WHERE ordered_at < '1000-01-01';
SELECT crm_kpi.refresh();
DELETE FROM expected WHERE month < '1000-01-01';
UPDATE expected SET new_customers = 1, reactivated = 0 WHERE month = '2020-05-01';
SELECT results_eq($$SELECT * FROM crm_kpi.churn_monthly ORDER BY month$$,
                  $$SELECT * FROM expected_rows ORDER BY month$$,
                  'the order deleted: the months before 2020 go, c4 is new again in May 2020');
SELECT is_empty($$SELECT * FROM crm_kpi.verify()$$, 'verify() is empty');

-- The time zone decides the month: in UTC, c2's first order falls in February.
SELECT is((SELECT new_customers FROM crm_kpi.churn_monthly WHERE month = '2020-02-01'), 0::bigint,
          'c2, who ordered on 31 January at 22:00 in New York (1 February in UTC), is new in January');

SELECT * FROM finish();
ROLLBACK;
