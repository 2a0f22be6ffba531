-- kpi_tables: every KPI table and view of the refresh engine, on the small CRM of
-- test/fixtures/kpi_fixture.sql, against values computed by hand from KPI_SPEC.md; then
-- changes to every kind of source (inserts, an order moved to another day, an order given to
-- another customer, a delete, a refund, a channel changed, an opportunity won, a ticket
-- resolved) and an incremental refresh, whose changed rows are checked by hand too.
-- Days, weeks, months and quarters are in America/New_York (EST = UTC-5, EDT = UTC-4 from
-- 2024-03-10); timestamps print in that zone. Interval sketches count seconds.
CREATE EXTENSION crm_kpi;
SET DateStyle = ISO;
SET IntervalStyle = postgres;
SET TimeZone = 'America/New_York';
SET extra_float_digits = 0;
-- The engine adopts these at its first refresh (a rebuild).
SET crm_kpi.timezone = 'America/New_York';
SET crm_kpi.churn_after = '20 days';
SET crm_kpi.active_window = '7 days';
SET crm_kpi.loyal_min_orders = 5;
SET crm_kpi.loyal_min_tenure = '365 days';
SET crm_kpi.resolution_sla = '72 hours';
SELECT crm_kpi.create_reference_schema('crm');
\i test/fixtures/kpi_fixture.sql

-- The first refresh rebuilds everything with the settings above and leaves nothing queued.
SELECT mode, error, pending_after FROM crm_kpi.refresh();
SELECT timezone, active_window, churn_after, loyal_min_tenure, loyal_min_orders, resolution_sla,
       as_of > '2025-01-01' AS as_of_after_the_data
FROM crm_kpi.engine_state;
SELECT * FROM crm_kpi.verify();

-- Sketches of intervals as readable intervals (seconds, justified to days).
CREATE FUNCTION pg_temp.secs(seconds double precision) RETURNS interval
LANGUAGE sql IMMUTABLE RETURN justify_hours(make_interval(secs => seconds));

-- What the checks print of each KPI table (accessors instead of raw summaries): also what
-- is compared before and after the changes further down.
CREATE TEMP VIEW sales AS SELECT * FROM crm_kpi.sales_daily;
CREATE TEMP VIEW pipeline AS
SELECT day, rep_id, created, won, lost, won_amount, crm_kpi.count(sales_cycle) AS cycles,
       pg_temp.secs(crm_kpi.mean(sales_cycle)) AS mean_cycle, pg_temp.secs(crm_kpi.percentile(sales_cycle, 0.5)) AS median_cycle
FROM crm_kpi.pipeline_daily;
CREATE TEMP VIEW service AS
SELECT day, opened, unanswered, resolved, resolved_within_sla AS in_sla,
       crm_kpi.count(first_response) AS responses, pg_temp.secs(crm_kpi.mean(first_response)) AS mean_response,
       pg_temp.secs(crm_kpi.percentile(first_response, 0.5)) AS median_response,
       crm_kpi.count(resolution) AS resolutions, pg_temp.secs(crm_kpi.mean(resolution)) AS mean_resolution,
       pg_temp.secs(crm_kpi.percentile(resolution, 0.5)) AS median_resolution,
       replies_on_resolved AS replies, complaints
FROM crm_kpi.service_daily;
CREATE TEMP VIEW satisfaction AS
SELECT day, nps::text AS nps_summary, crm_kpi.nps(nps) AS nps, csat::text AS csat_summary, crm_kpi.csat(csat) AS csat,
       crm_kpi.csat_mean(csat) AS csat_mean
FROM crm_kpi.satisfaction_daily;
CREATE TEMP VIEW stats AS
SELECT customer_id AS id, acquisition_channel AS channel, interactions, orders, revenue, first_order_at, last_order_at,
       mean_gap, stage, stage_until, new_day, reactivation_days,
       crm_kpi.orders(purchases) IS NOT DISTINCT FROM nullif(orders, 0)
       AND crm_kpi.revenue(purchases) IS NOT DISTINCT FROM nullif(revenue, 0) AS summary_agrees
FROM crm_kpi.customer_stats;
CREATE TEMP VIEW spells AS SELECT * FROM crm_kpi.customer_spells;
CREATE TEMP VIEW cohorts AS
SELECT r.*, m.revenue FROM crm_kpi.cohort_retention r JOIN crm_kpi.cohort_monthly m USING (month, cohort_month);
CREATE TEMP VIEW cac AS SELECT * FROM crm_kpi.marketing_cac;
CREATE TEMP VIEW churn AS SELECT * FROM crm_kpi.churn_rates WHERE month < '2024-07-01';

-- sales_daily, by the local day of each completed order, its rep and the customer's channel.
-- Refunded order 33 (Feb 5) and cancelled order 81 (Mar 3) count for nothing: no row.
--   Jan 10 rep 1 ads: order 11, 100, customer 1's first                  1, 100, new 1
--   Jan 15 rep 1 ads: order 31, 60, customer 3's first                   1, 60, new 1
--   Jan 22 rep 2 seo: order 41, 200, customer 4's first                  1, 200, new 1
--   Jan 25 rep 1 ads: order 12, 50                                       1, 50
--   Jan 28 rep 1 ads: order 32, 40                                       1, 40
--   Feb 10 rep 2 ads: order 13, 40                                       1, 40
--   Feb 17 rep 2 ads: order 34, 70, exactly 20 days after order 32       1, 70, reactivated 1
--   Feb 20 rep 1 ads: orders 61 (90, customer 6's first) and 62 (10, at 03:00 UTC on Feb 21)
--                                                                        2, 100, new 1
--   Feb 29 rep 2 ads: order 14 (Mar 1 03:30 UTC), 30                     1, 30
--   Mar 8 rep 1 ads: order 63, 60                                        1, 60
--   Mar 20 no rep, no channel: order 51, 45, customer 5's first          1, 45, new 1
--   Mar 27 rep 1 ads: order 64, 30                                       1, 30
--   Apr 2 rep 2 seo: order 21, 80, customer 2's first                    1, 80, new 1
--   Apr 11 rep 2 ads: order 91 at local midnight (04:00 UTC), 25, 9's first 1, 25, new 1
--   Apr 20 rep 1 seo: order 42, 150, 88 days 23 h after order 41        1, 150, reactivated 1
SELECT * FROM sales ORDER BY day, rep_id, channel;

-- pipeline_daily: created by the local day of created_at, won and lost by that of closed_at.
--   Jan 2 rep 1: opportunity 1 created; Jan 3 rep 1: 2 created; Jan 5 rep 2: 3 created
--   Jan 12 rep 1: 7 created; 1 (10 days) and 7 (6 h) won, 500 + 120 = 620; 2 lost;
--                 cycles 864000 and 21600 s, mean = median (two values) 442800 s = 5 days 03:00
--   Jan 31 rep 2: 3 won (closed Feb 1 03:00 UTC), 1000, cycle 26 days 10:00
--   Feb 1 rep 1: 4 created; Feb 20 rep 1: 4 won, 250, cycle 19 days
--   Feb 29 no rep: 6 created (Mar 1 02:00 UTC); Mar 4 no rep: 6 lost, no cycle
--   Mar 30 rep 2: 5 created (still open)
SELECT * FROM pipeline ORDER BY day, rep_id;

-- service_daily, by the local day tickets were opened (SLA 72 hours):
--   Jan 11: tickets 1, 2 (Jan 12 01:00 UTC) and 3 -> opened 3, unanswered 1 (3), resolved 2,
--           in SLA 1 (ticket 1; ticket 2 took 96 h); responses 1 h and 2 h, mean = median 1:30;
--           resolutions 24 h and 96 h, mean = median 60 h = 2 days 12:00; replies on resolved
--           3 + 5 = 8; complaints 2 (2 and 3)
--   Feb 21: ticket 4 -> 1 opened, resolved in exactly 72 h: in SLA; response 00:30; 2 replies
--   Mar 21: ticket 5 -> answered in 4 h, unresolved: no resolution, its reply not counted
SELECT * FROM service ORDER BY day;

-- satisfaction_daily, by the local day of the answer:
--   Jan 12: NPS 10, 9, 7, 3 (23:00 EST = Jan 13 04:00 UTC): 2 promoters, 1 passive,
--           1 detractor -> 50 - 25 = 25; CSAT 5, 4, 2: 2 of 3 -> 66.67, mean 11/3 = 3.67
--   Feb 22: NPS 6, 0 -> -100; CSAT 3 -> 0, mean 3
--   Mar 22: no NPS (NULL); CSAT 5 -> 100, mean 5
SELECT * FROM satisfaction ORDER BY day;
SELECT crm_kpi.csat(csat) = 200.0 / 3 AS csat_exact, crm_kpi.csat_mean(csat) = 11.0 / 3 AS mean_exact
FROM crm_kpi.satisfaction_daily WHERE day = '2024-01-12';

-- customer_stats as of now (long after 2024): whoever bought is churned, and nothing changes
-- with time alone any more (stage_until NULL). Mean gap = (last - first) / (orders - 1):
--   1: 4 orders, 220; Jan 10 10:00 EST -> Feb 29 22:30 EST = 50 days 12:30 / 3 = 16 days 20:10;
--      one interaction; new Jan 10, no reactivation
--   2: 1 order, 80, Apr 2; no mean gap
--   3: 3 orders (not the refund), 170; Jan 15 -> Feb 17 = 33 days / 2 = 16 days 12:00;
--      reactivated Feb 17
--   4: 2 orders, 350; Jan 22 09:00 EST -> Apr 20 09:00 EDT = 89 days - 1 h = 88 days 23:00;
--      reactivated Apr 20
--   5: 1 order, 45, Mar 20, no channel
--   6: 4 orders, 190; Feb 20 10:00 EST -> Mar 27 10:00 EDT = 36 days - 1 h = 863 h / 3 =
--      287:40 = 11 days 23:40
--   7: prospect (nothing); 8: contacted (2 interactions, the cancelled order is no purchase)
--   9: 1 order, 25, Apr 11 00:00 EDT
SELECT * FROM stats ORDER BY id;

-- customer_spells: a spell starts at a first order or one placed 20 days or more after the
-- previous; it ends at its last order + 20 days (local wall-clock days, so 19 days 23 hours
-- of elapsed time when the clocks go forward on Mar 10):
--   1: Jan 10 10:00 EST -> Feb 29 22:30 EST + 20 days = Mar 20 22:30 EDT
--   2: Apr 2 10:00 -> Apr 22 10:00
--   3: Jan 15 -> Jan 28 12:00 + 20 days = Feb 17 12:00 EST; Feb 17 12:00 -> Mar 8 12:00 EST
--   4: Jan 22 09:00 -> Feb 11 09:00 EST; Apr 20 09:00 -> May 10 09:00 EDT
--   5: Mar 20 11:00 -> Apr 9 11:00 EDT
--   6: Feb 20 10:00 EST -> Mar 27 10:00 + 20 days = Apr 16 10:00 EDT
--   9: Apr 11 00:00 -> May 1 00:00 EDT
SELECT * FROM spells ORDER BY customer_id, spell;

-- customer_events_daily, by local day and the customer's channel: created (created_at), first completed order,
-- lead ended (the later of the two), spells started and ended (from the spells above). Customers:
--   1 ads: created Dec 1, first order Jan 10;  2 seo: Mar 25, Apr 2;  3 ads: Dec 15, Jan 15;  4 seo: Jan 2, Jan 22;
--   5 no channel: Mar 1, Mar 20;  6 ads: Feb 1, Feb 20;  7 seo: Feb 15, none;  8 ads: Feb 20, none (cancelled);
--   9 ads: Apr 1, Apr 11
--   Dec 1 ads, Dec 15 ads, Jan 2 seo, Feb 1 ads, Feb 15 seo, Mar 1 none, Mar 25 seo, Apr 1 ads: 1 created each
--   Jan 10 ads (1), Jan 15 ads (3), Jan 22 seo (4), Mar 20 none (5), Apr 2 seo (2), Apr 11 ads (9):
--     first order, lead ended and spell started, 1 each
--   Feb 20 ads: 8 created; 6's first order, lead ended, spell started -> 1 1 1 1 0
--   Feb 17 ads: 3's first spell ends and its second starts -> 0 0 0 1 1
--   Apr 20 seo: 4's second spell starts
--   spells ending: Feb 11 seo (4), Mar 8 ads (3), Mar 20 ads (1, 22:30 EDT), Apr 9 none (5), Apr 16 ads (6),
--     Apr 22 seo (2), May 1 ads (9), May 10 seo (4)
SELECT * FROM crm_kpi.customer_events_daily ORDER BY day, channel;

-- cohort_monthly and cohort_retention, cohorts by the local month of the first order:
--   January (1, 3, 4): month 0: all 3, 150 + 100 + 200 = 450; month 1 (February, order 14
--     of Feb 29 local included): 1 and 3, 70 + 70 = 140 -> 2/3 = 66.67 %, 140/450 = 31.11 %;
--     month 2 (March): nobody, no row; month 3 (April): 4, 150 -> 33.33 %, 150/450 = 33.33 %
--   February (6): month 0: 90 + 10 = 100; month 1: 60 + 30 = 90 -> 100 %, 90 %
--   March (5): 45; April (2 and 9): 80 + 25 = 105
SELECT * FROM cohorts ORDER BY cohort_month, month_offset;

-- marketing_monthly and marketing_cac: spend by month and channel, new customers by the
-- month of their first order and their channel; CAC = spend / new customers, NULL for none.
--   Jan ads: 300 + 200 = 500, new 1 and 3 -> 250; Jan seo: 150, new 4 -> 150
--   Feb ads: 120, new 6 -> 120; Mar tv: 250, nobody -> NULL
--   Mar without channel: no spend (0), new 5 -> 0; Apr ads: 60, new 9 -> 60; Apr seo: 100,
--   new 2 -> 100
SELECT * FROM cac ORDER BY month, channel NULLS FIRST;

-- churn_monthly and churn_rates, local months (spells above):
--   Jan: nobody active at the start -> churn and retention NULL; new 1, 3, 4
--   Feb: at start 1, 3, 4; churned 3 (Feb 17) and 4 (Feb 11) = 2 -> 66.67 %, retained 1 only:
--        3 churned and was reactivated in the month (reactivated 1) and counts as churned;
--        new 6
--   Mar: at start 1, 3 (second spell), 6; churned 3 (Mar 8) and 1 (Mar 20) -> 66.67 %; new 5
--   Apr: at start 5 and 6, both churned (Apr 9, Apr 16) -> 100 %; new 2 and 9: 2 acquired and
--        churned (Apr 22) in April: neither at the start nor churned; reactivated 4
--   May: at start 4 and 9: 9's churn instant, May 1 00:00, is the first instant of May, which
--        half-open months count in May (active at its start, churned in it); both churned
--        (May 10, May 1) -> 100 %
--   Jun: nobody -> NULL
SELECT * FROM churn ORDER BY month;
-- Every later month, up to the month of as_of, is empty.
SELECT count(*) = (SELECT (extract(year FROM m) - 2024) * 12 + extract(month FROM m) - 6
                   FROM (SELECT date_trunc('month', as_of AT TIME ZONE 'America/New_York') AS m FROM crm_kpi.engine_state) a)
           AS one_row_a_month,
       bool_and(customers_at_start = 0 AND churned = 0 AND new_customers = 0 AND reactivated = 0
                AND churn_rate IS NULL AND retention_rate IS NULL) AS all_empty
FROM crm_kpi.churn_rates WHERE month >= '2024-07-01';

-- Churn + retention = 100 exactly for every month with customers at its start, and both NULL
-- otherwise; the retention rate is also the spec's (active at the end - those of them acquired
-- or reactivated in the month) / active at the start, counted here from the spells.
CREATE TEMP VIEW retention_check AS
SELECT r.month,
       bool_and(CASE WHEN r.customers_at_start > 0 THEN r.churn_rate + r.retention_rate = 100
                     ELSE r.churn_rate IS NULL AND r.retention_rate IS NULL END) AS sum_is_100,
       bool_and(r.retention_rate IS NOT DISTINCT FROM
                100 * (SELECT count(*) - count(*) FILTER (WHERE p.started_at >= lower(b))
                       FROM crm_kpi.customer_spells p WHERE p.started_at < upper(b) AND p.ended_at >= upper(b))::numeric
                / nullif(r.customers_at_start, 0)) AS spec_retention
FROM crm_kpi.churn_rates r, crm_kpi.period_bounds(r.month, 'month') b
GROUP BY r.month;
SELECT bool_and(sum_is_100) AS sum_is_100, bool_and(spec_retention) AS spec_retention, count(*) > 30 AS months
FROM retention_check;

-- The rollup views: sums of the days by hand.
-- Weeks start on Monday: Jan 22-28 holds Jan 22 (rep 2 seo) and Jan 25 + Jan 28 (rep 1 ads:
-- 2 orders, 90); Feb 26 - Mar 3 holds Feb 29 local (order 14) only.
SELECT * FROM crm_kpi.sales_weekly ORDER BY week, rep_id, channel;
-- Months: Jan rep 1 ads 100+60+50+40 = 250 (4 orders, new 2); Jan rep 2 seo 200;
-- Feb rep 1 ads 100 (2, new 1); Feb rep 2 ads 40+70+30 = 140 (3, reactivated 1);
-- Mar rep 1 ads 60+30 = 90; Mar no rep 45; Apr rep 1 seo 150; Apr rep 2 ads 25 (new 1);
-- Apr rep 2 seo 80 (new 1). Week Apr 8-14 holds Apr 11 (order 91 at local midnight) only.
SELECT * FROM crm_kpi.sales_monthly ORDER BY month, rep_id, channel;
-- Quarters: Q1 rep 1 ads 250+100+90 = 440 (8 orders, new 3); Q1 rep 2 ads 140; Q1 rep 2 seo
-- 200; Q1 no rep 45; Q2 rep 1 seo 150 (reactivated 1), rep 2 ads 25 (new 1), rep 2 seo 80
-- (new 1). Total 1080 in 16 orders, new 7 (1, 2, 3, 4, 5, 6, 9), reactivated 2 (3, 4).
SELECT * FROM crm_kpi.sales_quarterly ORDER BY quarter, rep_id, channel;
SELECT sum(orders) AS orders, sum(revenue) AS revenue, sum(new_customers) AS new, sum(reactivated_customers) AS reactivated
FROM crm_kpi.sales_quarterly;

-- Pipeline: Jan rep 1 created 3 (1, 2, 7), won 2, lost 1, 620; Jan rep 2: 3 created and won;
-- Feb rep 1: 4 created and won; Feb no rep: 6 created; Mar no rep: 6 lost; Mar rep 2: 5 created.
-- Q1 rep 1: created 4, won 3, lost 1, 870, cycles 6 h, 10 days, 19 days: mean 2527200 / 3 =
-- 842400 s = 9 days 18:00, median about 10 days; rep 2: created 2, won 1, 1000; no rep:
-- created 1, lost 1.
CREATE FUNCTION pg_temp.pipeline_of(grain text)
RETURNS TABLE (period date, rep_id bigint, created bigint, won bigint, lost bigint, won_amount numeric,
               cycles bigint, mean_cycle interval, min_cycle interval, max_cycle interval, median_within_error boolean)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT %1$I, v.rep_id, v.created, v.won, v.lost, v.won_amount, crm_kpi.count(v.sales_cycle), '
        '       pg_temp.secs(crm_kpi.mean(v.sales_cycle)), pg_temp.secs(crm_kpi.min(v.sales_cycle)), '
        '       pg_temp.secs(crm_kpi.max(v.sales_cycle)), '
        '       abs(crm_kpi.percentile(v.sales_cycle, 0.5) - (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY '
        '              extract(epoch FROM o.closed_at - o.created_at)) FROM crm.opportunities o '
        '           WHERE o.status = ''won'' AND o.rep_id IS NOT DISTINCT FROM v.rep_id '
        '             AND crm_kpi.period_start(o.closed_at, %2$L) = v.%1$I)) '
        '       <= crm_kpi.relative_error(v.sales_cycle) * crm_kpi.percentile(v.sales_cycle, 0.5) '
        'FROM crm_kpi.%3$I v ORDER BY 1, 2', grain, grain, 'pipeline_' || grain || 'ly');
END $$;
SELECT * FROM pg_temp.pipeline_of('month');
SELECT * FROM pg_temp.pipeline_of('quarter');

-- Service: Jan = Jan 11; Feb = Feb 21; Mar = Mar 21 (one day each). Q1: opened 5, unanswered
-- 1, resolved 3, in SLA 2; responses 1 h, 2 h, 30 min, 4 h: mean 6750 s = 1:52:30, median
-- (1 h + 2 h) / 2 = 1:30 within the sketch's error; resolutions 24 h, 96 h, 72 h: mean 64 h =
-- 2 days 16:00, median 72 h within error; replies 8 + 2 = 10; complaints 2.
SELECT month, opened, unanswered, resolved, resolved_within_sla, crm_kpi.count(first_response) AS responses,
       pg_temp.secs(crm_kpi.mean(first_response)) AS mean_response, crm_kpi.count(resolution) AS resolutions,
       pg_temp.secs(crm_kpi.mean(resolution)) AS mean_resolution, replies_on_resolved, complaints
FROM crm_kpi.service_monthly ORDER BY month;
SELECT quarter, opened, unanswered, resolved, resolved_within_sla, crm_kpi.count(first_response) AS responses,
       pg_temp.secs(crm_kpi.mean(first_response)) AS mean_response,
       pg_temp.secs(crm_kpi.min(first_response)) AS min_response, pg_temp.secs(crm_kpi.max(first_response)) AS max_response,
       abs(crm_kpi.percentile(first_response, 0.5) - 5400) <= 0.01 * 5400 AS median_response_ok,
       crm_kpi.count(resolution) AS resolutions, pg_temp.secs(crm_kpi.mean(resolution)) AS mean_resolution,
       abs(crm_kpi.percentile(resolution, 0.5) - 259200) <= 0.01 * 259200 AS median_resolution_ok,
       replies_on_resolved, complaints
FROM crm_kpi.service_quarterly ORDER BY quarter;

-- Satisfaction: one day a month, so the months repeat the days. Q1: NPS 10, 9, 7, 3, 6, 0:
-- 2 promoters, 3 detractors of 6 -> (2 - 3) / 6 = -16.67; CSAT 5, 4, 2, 3, 5: 3 of 5 -> 60,
-- mean 19 / 5 = 3.8.
SELECT month, nps::text AS nps_summary, crm_kpi.nps(nps), csat::text AS csat_summary, crm_kpi.csat(csat),
       crm_kpi.csat_mean(csat)
FROM crm_kpi.satisfaction_monthly ORDER BY month;
SELECT quarter, nps::text AS nps_summary, crm_kpi.nps(nps) = -100.0 / 6 AS nps_exact, csat::text AS csat_summary,
       crm_kpi.csat(csat), crm_kpi.csat_mean(csat)
FROM crm_kpi.satisfaction_quarterly ORDER BY quarter;

-- Changes. Snapshot what the checks print, change the sources, refresh incrementally.
CREATE FUNCTION pg_temp.checked_views() RETURNS text[] LANGUAGE sql
RETURN ARRAY['sales', 'pipeline', 'service', 'satisfaction', 'stats', 'spells', 'cohorts', 'cac', 'churn'];
CREATE FUNCTION pg_temp.snapshot() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v text;
BEGIN
    FOREACH v IN ARRAY pg_temp.checked_views() LOOP
        IF to_regclass(format('pg_temp.%I', 'before_' || v)) IS NOT NULL THEN
            EXECUTE format('DROP TABLE %I', 'before_' || v);
        END IF;
        EXECUTE format('CREATE TEMP TABLE %I AS SELECT * FROM %I', 'before_' || v, v);
    END LOOP;
END $$;
-- The rows of a checked view that changed: '-' as it was, '+' as it is now, by their first
-- key_columns columns (no value printed here has a comma).
CREATE FUNCTION pg_temp.changes(v text, key_columns integer DEFAULT 1) RETURNS TABLE (side text, row_text text)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT s, r FROM (SELECT ''-'' AS s, x::text AS r FROM (SELECT * FROM %1$I EXCEPT SELECT * FROM %2$I) x '
        'UNION ALL SELECT ''+'', x::text FROM (SELECT * FROM %2$I EXCEPT SELECT * FROM %1$I) x) d '
        'ORDER BY (string_to_array(r, '',''))[1:$1]::text COLLATE "C", s DESC, r COLLATE "C"', 'before_' || v, v)
        USING key_columns;
END $$;
SELECT pg_temp.snapshot();

INSERT INTO crm.orders (order_id, customer_id, rep_id, status, amount, ordered_at)
VALUES (22, 2, 2, 'completed', 20, '2024-04-12 10:00-04');               -- customer 2 again, 10 days later
UPDATE crm.orders SET ordered_at = '2024-04-10 10:00-04' WHERE order_id = 64;  -- Mar 27 -> Apr 10
UPDATE crm.orders SET customer_id = 7 WHERE order_id = 51;               -- customer 5's order is 7's
DELETE FROM crm.orders WHERE order_id = 13;                              -- customer 1's Feb 10 order
UPDATE crm.orders SET status = 'refunded' WHERE order_id = 42;           -- customer 4's Apr 20 order
UPDATE crm.customers SET acquisition_channel = 'tv' WHERE customer_id = 3;
INSERT INTO crm.interactions (interaction_id, customer_id, rep_id, channel, occurred_at)
VALUES (4, 5, 2, 'call', '2024-05-01 10:00-04');
UPDATE crm.opportunities SET status = 'won', amount = 450, closed_at = '2024-04-03 00:00-04'
WHERE opportunity_id = 5;                                                -- won at local midnight
UPDATE crm.tickets SET resolved_at = '2024-03-25 10:00-04', replies = 4 WHERE ticket_id = 5;  -- 96 h
INSERT INTO crm.survey_responses (response_id, customer_id, kind, score, answered_at)
VALUES (12, 5, 'nps', 9, '2024-03-22 11:00-04');
INSERT INTO crm.marketing_spend (channel, day, amount) VALUES ('seo', '2024-05-02', 40);

-- Every KPI table has stale keys queued; the refresh is incremental and drains them.
SELECT table_name, pending_keys > 0 AS pending, needs_rebuild FROM crm_kpi.status ORDER BY table_name;
SELECT mode, error, pending_after FROM crm_kpi.refresh();
SELECT count(*) FILTER (WHERE pending_keys > 0) AS tables_pending FROM crm_kpi.status;
SELECT * FROM crm_kpi.verify();

-- sales_daily:
--   Jan 15, Jan 28, Feb 17: customer 3's orders, now of channel tv
--   Feb 10: order 13 deleted -> row gone
--   Feb 29: customer 1 now has no order from Jan 25 to Feb 29 22:30 (35.5 days): order 14 is a
--           reactivation, though it did not change itself
--   Mar 20: order 51 now belongs to customer 7, channel seo, still a first order
--   Mar 27 -> Apr 10: order 64 moved; 33 days after order 63, a reactivation of customer 6
--   Apr 12: order 22 inserted, rep 2, seo, 20, 10 days after order 21: neither new nor reactivated
--   Apr 20: order 42 refunded -> row gone
SELECT * FROM pg_temp.changes('sales', 3);

-- pipeline_daily: Apr 3 rep 2 (local midnight belongs to Apr 3): opportunity 5 won, 450,
-- cycle Mar 30 10:00 -> Apr 3 00:00 = 3 days 14:00; its Mar 30 creation is unchanged.
SELECT * FROM pg_temp.changes('pipeline', 2);
-- service_daily: Mar 21: ticket 5 resolved after 96 h (outside the SLA), its 4 replies count.
SELECT * FROM pg_temp.changes('service');
-- satisfaction_daily: Mar 22: one NPS 9 -> 100.
SELECT * FROM pg_temp.changes('satisfaction');

-- customer_stats:
--   1: orders 11, 12, 14: 3, 180; mean gap 50 days 12:30 / 2 = 25 days 06:15; reactivated Feb 29
--   2: orders 21, 22: 2, 100; last Apr 12; mean gap 10 days
--   3: channel tv
--   4: order 41 only: 1, 200; last Jan 22; no mean gap, no reactivation
--   5: no order any more, but called on May 1: contacted, 1 interaction
--   6: last order Apr 10 10:00 EDT; Feb 20 10:00 EST -> Apr 10 = 50 days - 1 h = 1199 h / 3 =
--      399:40 = 16 days 15:40; reactivated Apr 10
--   7: order 51: 1, 45, Mar 20, new that day, churned
SELECT * FROM pg_temp.changes('stats');

-- customer_spells:
--   1: Jan 10 -> Jan 25 10:00 + 20 days = Feb 14 10:00 EST; then Feb 29 22:30 -> Mar 20 22:30
--   2: Apr 2 -> Apr 12 10:00 + 20 days = May 2 10:00
--   4: the Apr 20 spell is gone
--   5: gone; 7: Mar 20 11:00 -> Apr 9 11:00 (customer 5's former spell)
--   6: Feb 20 -> Mar 8 10:00 EST + 20 days = Mar 28 10:00 EDT; Apr 10 10:00 -> Apr 30 10:00
SELECT * FROM pg_temp.changes('spells', 2);

-- cohorts:
--   January cohort, month 1: 1 (order 14, 30) and 3 (70) -> 100, 100/450 = 22.22 %
--   January cohort, month 3: gone (order 42 refunded)
--   February cohort (6), month 1: order 63 only, 60 -> 60 %; month 2 (April): order 64, 30 -> 30 %
--   March cohort: customer 7 instead of 5: the same figures, no change
--   April cohort (2 and 9): 80 + 20 + 25 = 125 (still 100 % of itself)
SELECT * FROM pg_temp.changes('cohorts', 2);

-- marketing: January's ads customers are 1 only (3 is tv now): 500 / 1 = 500; Jan tv: no
-- spend, new 3 -> CAC 0; March's new customer is 7 (seo), no longer one without channel:
-- Mar seo spend 0, new 1, CAC 0; May seo: spend 40, nobody new -> CAC NULL.
SELECT * FROM pg_temp.changes('cac', 2);

-- churn:
--   Feb: at start 1, 3, 4, all churned (Feb 14, Feb 17, Feb 11) -> 100 %, retention 0; new 6;
--        reactivated 3 (Feb 17) and 1 (Feb 29) = 2
--   Mar: at start 1 (since Feb 29 22:30), 3, 6; all churned (Mar 20, Mar 8, Mar 28) -> 100 %;
--        new 7
--   Apr: at start 7 only, churned Apr 9 -> 100 %; new 2 (now churns May 2) and 9; reactivated
--        6, who churned again on Apr 30: neither at the start nor churned
--   May: at start 2 and 9 (instead of 4 and 9), both churned -> the same figures, no change
SELECT * FROM pg_temp.changes('churn');
SELECT bool_and(sum_is_100) AS sum_is_100, bool_and(spec_retention) AS spec_retention FROM retention_check;

-- The rollups follow. Q1 rep 1 ads: orders 11, 12, 61, 62, 63 -> 5, 310, new 1 and 6;
-- Q1 rep 1 tv: 31, 32 -> 2, 100, new 3; Q1 rep 2 ads: 14 -> 30, reactivated 1; Q1 rep 2 seo:
-- 41, 200, unchanged; Q1 rep 2 tv: 34 -> 70, reactivated 3; Q1 no rep, seo: 51 (45, new 7);
-- Q2 rep 1 ads: 64 -> 30, reactivated 6; Q2 rep 1 seo gone (refund); Q2 rep 2 ads: 91, 25,
-- unchanged; Q2 rep 2 seo: 21 + 22 = 100, new 2. Total 1080 - 40 (deleted) - 150 (refunded)
-- + 20 (inserted) = 910 in 15 orders, new 7 (1, 2, 3, 4, 6, 7, 9), reactivated 3 (1, 3, 6).
SELECT * FROM crm_kpi.sales_quarterly ORDER BY quarter, rep_id, channel;
SELECT sum(orders) AS orders, sum(revenue) AS revenue, sum(new_customers) AS new, sum(reactivated_customers) AS reactivated
FROM crm_kpi.sales_quarterly;
SELECT * FROM pg_temp.pipeline_of('quarter');

-- Time passing. The KPI tables are rebuilt as of 2024-03-15 00:00 EDT, replaying the rebuild
-- of crm_kpi.run_engine with that as_of; then crm_kpi.refresh() moves as_of to now: it must
-- bring every table back to what it was, recomputing only what time alone changed.
SELECT pg_temp.snapshot();
CREATE FUNCTION pg_temp.rebuild_as_of(instant timestamptz) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t record;
BEGIN
    UPDATE crm_kpi.engine_state SET as_of = instant;
    PERFORM crm_kpi.engine_apply(crm_kpi.engine_settings());
    FOR t IN SELECT k.table_name, k.key_grain, k.position FROM crm_kpi.kpi_tables k ORDER BY k.position LOOP
        PERFORM crm_kpi.replace_all(t.table_name, 'fresh_' || t.table_name, t.key_grain, t.position % 2 = 0);
    END LOOP;
END $$;
SELECT pg_temp.rebuild_as_of('2024-03-15 00:00-04');
SELECT * FROM crm_kpi.verify();

-- customer_stats as of Mar 15 00:00 EDT: only orders and interactions at or before it count
-- (active window 7 days, churn after 20 days); stage_until is the next instant the stage
-- changes with time alone, the next order or first interaction included; new_day and
-- reactivation_days still cover every order. Customers 2 and 9, created after as_of (Mar 25,
-- Apr 1), are left out: KPI_SPEC does not say what they are before they exist.
--   1: orders 11, 12, 14: last Feb 29 22:30 + 7 days = Mar 7 22:30 is past, + 20 days =
--      Mar 20 22:30 EDT is not: at_risk until Mar 20 22:30
--   3, 4: churned (Mar 8, Feb 11); 8: contacted
--   5: nothing yet: a prospect until its call, May 1 10:00
--   6: orders 61, 62, 63 (3, 160; mean gap Feb 20 -> Mar 8 = 17 days / 2 = 8 days 12:00):
--      bought twice or more, last Mar 8 10:00 EST + 7 days = Mar 15 10:00 EDT is ahead: active
--      until then
--   7: a prospect until its order, Mar 20 11:00
SELECT * FROM stats
WHERE id IN (SELECT customer_id FROM crm.customers WHERE created_at <= (SELECT as_of FROM crm_kpi.engine_state))
ORDER BY id;
-- Spells from the orders up to as_of; a spell that goes on ends in the future:
--   1: Jan 10 -> Feb 14, Feb 29 22:30 -> Mar 20 22:30; 3: as before; 4: Jan 22 -> Feb 11;
--   6: Feb 20 -> Mar 8 10:00 EST + 20 days = Mar 28 10:00 EDT (order 64 is after as_of)
SELECT * FROM spells ORDER BY customer_id, spell;
-- churn_monthly up to March, the month of as_of: Jan and Feb as now; March: at start 1, 3
-- and 6, only 3 has churned by as_of (Mar 8): 1/3 = 33.33 %; 7's order (Mar 20) is to come.
SELECT * FROM churn ORDER BY month;

-- Time passes: the refresh recomputes the customers whose stage_until passed and the months
-- their spells changed or that began since, and every KPI table is again what it was.
SELECT mode, error, pending_after FROM crm_kpi.refresh();
SELECT * FROM crm_kpi.verify();
SELECT v AS checked_view, count(c.side) AS rows_changed
FROM unnest(pg_temp.checked_views()) v LEFT JOIN LATERAL pg_temp.changes(v) c ON true
GROUP BY v ORDER BY v;

DISCARD TEMP;
SET client_min_messages = warning;
DROP SCHEMA crm CASCADE;
DROP EXTENSION crm_kpi;
