-- service_months.sql: service_daily summed per month (in crm_kpi.timezone), kept with service_daily: values worked out
-- by hand, sketches equal to those built from the tickets of each month, the months of a refresh's stale days
-- recomputed (and a month left without tickets deleted), the views service_monthly and service_quarterly, and
-- crm_kpi.service_between() giving what the days of a range give (also as a panel calls it, in another time zone).
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(28);
SET client_min_messages = warning;
-- Tokyo (UTC+9): 2024-01-30 16:00 UTC is 01-31 there, 2024-01-31 16:00 UTC is 02-01.
SET crm_kpi.timezone = 'Asia/Tokyo';
SELECT crm_kpi.create_reference_schema('crm');
INSERT INTO crm.customers (customer_id, created_at) VALUES (1, '2023-12-01');
-- t1 (January): answered in 1 h, resolved in 10 h, 2 replies. t2 (February): 2 h, resolved in 80 h (beyond the 72 h
-- SLA), 1 reply, a complaint. t3 (February): unanswered. t4 (March): 3 h, resolved in 5 h, 3 replies. t5 (April): 4 h,
-- not resolved.
INSERT INTO crm.tickets (ticket_id, customer_id, opened_at, first_response_at, resolved_at, replies, is_complaint) VALUES
    (1, 1, '2024-01-30 16:00+00', '2024-01-30 17:00+00', '2024-01-31 02:00+00', 2, false),
    (2, 1, '2024-01-31 16:00+00', '2024-01-31 18:00+00', '2024-02-04 00:00+00', 1, true),
    (3, 1, '2024-02-15 03:00+00', NULL, NULL, 0, false),
    (4, 1, '2024-03-10 03:00+00', '2024-03-10 06:00+00', '2024-03-10 08:00+00', 3, false),
    (5, 1, '2024-04-02 03:00+00', '2024-04-02 07:00+00', NULL, 0, false);
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'the first refresh builds the tables');

-- The sketches built from the tickets of each Tokyo month, independently of the days.
CREATE FUNCTION pg_temp.month_sketches() RETURNS TABLE (month date, first_response text, resolution text)
    LANGUAGE sql AS $$
    SELECT date_trunc('month', t.opened_at AT TIME ZONE 'Asia/Tokyo')::date,
           crm_kpi.sketch_agg(t.first_response_at - t.opened_at)::text, crm_kpi.sketch_agg(t.resolved_at - t.opened_at)::text
    FROM crm.tickets t GROUP BY 1
$$;
-- What the days of a range give (as $__timeFilter(day) takes them), and what service_between() gives.
CREATE FUNCTION pg_temp.by_days(f date, t date) RETURNS text LANGUAGE sql AS $$
    SELECT format('%s %s %s %s %s %s %s %s', sum(opened), sum(unanswered), sum(resolved), sum(resolved_within_sla),
                  sum(replies_on_resolved), sum(complaints), crm_kpi.rollup(first_response), crm_kpi.rollup(resolution))
    FROM crm_kpi.service_daily WHERE day BETWEEN f AND t
$$;
CREATE FUNCTION pg_temp.between(f date, t date) RETURNS text LANGUAGE sql AS $$
    SELECT format('%s %s %s %s %s %s %s %s', sum(opened), sum(unanswered), sum(resolved), sum(resolved_within_sla),
                  sum(replies_on_resolved), sum(complaints), crm_kpi.rollup(first_response), crm_kpi.rollup(resolution))
    FROM crm_kpi.service_between(f, t)
$$;

SELECT results_eq('SELECT month, opened, unanswered, resolved, resolved_within_sla, replies_on_resolved, complaints
                   FROM crm_kpi.service_months ORDER BY 1',
                  $$VALUES ('2024-01-01'::date, 1::bigint, 0::bigint, 1::bigint, 1::bigint, 2::bigint, 0::bigint),
                           ('2024-02-01', 2, 1, 1, 0, 1, 1),
                           ('2024-03-01', 1, 0, 1, 1, 3, 0),
                           ('2024-04-01', 1, 0, 0, 0, 0, 0)$$,
                  'by hand: t2 in February (opened 02-01 in Tokyo), resolved beyond the SLA; t3 unanswered');
SELECT is((SELECT string_agg(format('%s %s %s', month, coalesce(crm_kpi.count(first_response), 0),
                             coalesce(crm_kpi.count(resolution), 0)), ', '
                             ORDER BY month) FROM crm_kpi.service_months),
          '2024-01-01 1 1, 2024-02-01 1 1, 2024-03-01 1 1, 2024-04-01 1 0',
          'by hand: the sketches count the answered and the resolved tickets of each month');
SELECT results_eq('SELECT month, first_response::text, resolution::text FROM crm_kpi.service_months ORDER BY 1',
                  'SELECT * FROM pg_temp.month_sketches() ORDER BY 1',
                  'the sketches are those built from the tickets of each month');

-- t4 moves to 02-20 (March is left without tickets), t5 is resolved within 10 h, and a ticket opens on 04-30.
UPDATE crm.tickets SET opened_at = '2024-02-20 03:00+00', first_response_at = '2024-02-20 06:00+00',
                       resolved_at = '2024-02-20 08:00+00' WHERE ticket_id = 4;
UPDATE crm.tickets SET resolved_at = '2024-04-02 13:00+00', replies = 4 WHERE ticket_id = 5;
INSERT INTO crm.tickets (ticket_id, customer_id, opened_at) VALUES (6, 1, '2024-04-30 03:00+00');
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL::text, 'refresh after the writes');
SELECT results_eq('SELECT month, opened, unanswered, resolved, resolved_within_sla, replies_on_resolved, complaints
                   FROM crm_kpi.service_months ORDER BY 1',
                  $$VALUES ('2024-01-01'::date, 1::bigint, 0::bigint, 1::bigint, 1::bigint, 2::bigint, 0::bigint),
                           ('2024-02-01', 3, 1, 2, 1, 4, 1),
                           ('2024-04-01', 2, 1, 1, 1, 4, 0)$$,
                  'by hand: t4 counts in February, March (left without tickets) is deleted, April has t5 resolved and t6');
SELECT results_eq('SELECT month, first_response::text, resolution::text FROM crm_kpi.service_months ORDER BY 1',
                  'SELECT * FROM pg_temp.month_sketches() ORDER BY 1',
                  'the sketches are those built from the tickets of each month, after the writes');
SELECT is((SELECT count(*) FROM crm_kpi.verify() WHERE table_name IN ('service_daily', 'service_months')), 0::bigint,
          'verify: service_daily and service_months exact');

-- The views read it: the same rows as service_daily grouped by month and by quarter.
SELECT results_eq('SELECT month, opened, unanswered, resolved, resolved_within_sla, first_response::text, resolution::text,
                          replies_on_resolved, complaints FROM crm_kpi.service_monthly ORDER BY 1',
                  $$SELECT date_trunc('month', day::timestamp)::date, sum(opened)::bigint, sum(unanswered)::bigint,
                           sum(resolved)::bigint, sum(resolved_within_sla)::bigint, crm_kpi.rollup(first_response)::text,
                           crm_kpi.rollup(resolution)::text, sum(replies_on_resolved)::bigint, sum(complaints)::bigint
                    FROM crm_kpi.service_daily GROUP BY 1 ORDER BY 1$$,
                  'service_monthly: service_daily grouped by month');
SELECT results_eq('SELECT quarter, opened, resolved, first_response::text FROM crm_kpi.service_quarterly ORDER BY 1',
                  $$SELECT date_trunc('quarter', day::timestamp)::date, sum(opened)::bigint, sum(resolved)::bigint,
                           crm_kpi.rollup(first_response)::text
                    FROM crm_kpi.service_daily GROUP BY 1 ORDER BY 1$$,
                  'service_quarterly: service_daily grouped by quarter');

-- service_between(): whole months as one row, the other days as theirs.
SELECT is(pg_temp.between('2024-01-15', '2024-04-30'), pg_temp.by_days('2024-01-15', '2024-04-30'),
          'part of January and three whole months: what the days give');
SELECT is((SELECT string_agg(day::text, ' ' ORDER BY day) FROM crm_kpi.service_between('2024-01-15', '2024-04-30')),
          '2024-01-31 2024-02-01 2024-04-01',
          'by hand: January''s day with tickets, then February and April as one row each');
SELECT is((SELECT sum(opened) FROM crm_kpi.service_between('2024-01-15', '2024-04-30')), 6::numeric,
          'by hand: 6 tickets opened from 01-15 to 04-30');
SELECT is(pg_temp.between('2024-02-01', '2024-02-29'), pg_temp.by_days('2024-02-01', '2024-02-29'),
          'February from its first day to its last: what the days give');
SELECT is((SELECT count(*) FROM crm_kpi.service_between('2024-02-01', '2024-02-29')), 1::bigint,
          'by hand: read as February''s one row');
SELECT is(pg_temp.between('2024-02-02', '2024-04-30'), pg_temp.by_days('2024-02-02', '2024-04-30'),
          'from the second day of February to the last of April: what the days give');
SELECT is((SELECT string_agg(day::text, ' ' ORDER BY day) FROM crm_kpi.service_between('2024-02-02', '2024-04-30')),
          '2024-02-15 2024-02-20 2024-04-01',
          'by hand: February''s days with tickets, then April as one row');
SELECT is(pg_temp.between('2024-02-02', '2024-04-29'), pg_temp.by_days('2024-02-02', '2024-04-29'),
          'to the day before April''s last (no month whole): what the days give');
SELECT is(pg_temp.between('2024-02-10', '2024-02-20'), pg_temp.by_days('2024-02-10', '2024-02-20'),
          'inside one month: what the days give');
SELECT is(pg_temp.between('2024-01-01', '2024-12-31'), pg_temp.by_days('2024-01-01', '2024-12-31'),
          'the whole year: what the days give');
SELECT is((SELECT count(*) FROM crm_kpi.service_between('2025-01-01', '2025-02-01')), 0::bigint, 'a range without tickets: no rows');
SELECT is((SELECT count(*) FROM crm_kpi.service_between('2024-04-01', '2024-01-01')), 0::bigint, 'a reversed range: no rows');
-- As a panel calls it, in New York: $__timeFrom() and $__timeTo() become the dates written in the range's ends, as
-- $__timeFilter(day) takes them (01-31 18:00 UTC is 01-31, whatever the session's time zone).
SET TimeZone = 'America/New_York';
SELECT is((SELECT format('%s %s', sum(opened), crm_kpi.rollup(first_response))
           FROM crm_kpi.service_between('2024-01-31T18:00:00Z', '2024-02-15T01:00:00Z')),
          (SELECT format('%s %s', sum(opened), crm_kpi.rollup(first_response))
           FROM crm_kpi.service_daily WHERE day BETWEEN '2024-01-31T18:00:00Z' AND '2024-02-15T01:00:00Z'),
          'Grafana''s RFC 3339 ends: the days $__timeFilter(day) takes');
SELECT is((SELECT sum(opened) FROM crm_kpi.service_between('2024-01-31T18:00:00Z', '2024-02-15T01:00:00Z')), 3::numeric,
          'by hand: t1 (01-31), t2 (02-01) and t3 (02-15), the first and last days in');
RESET TimeZone;

SELECT is((SELECT count(*) FROM crm_kpi.service_between('2024-01-01', NULL)), 0::bigint, 'a NULL end: no rows');
SELECT is(pg_temp.between('-infinity', '2024-02-20'), pg_temp.by_days('-infinity', '2024-02-20'),
          'from -infinity: what the days give');

-- A rebuild gives the same rows.
CREATE TEMP TABLE before AS SELECT * FROM crm_kpi.service_months;
SELECT is((SELECT error FROM crm_kpi.rebuild()), NULL::text, 'rebuild');
SELECT bag_eq('SELECT month, opened, unanswered, resolved, resolved_within_sla, first_response::text, resolution::text,
                      replies_on_resolved, complaints FROM crm_kpi.service_months',
              'SELECT month, opened, unanswered, resolved, resolved_within_sla, first_response::text, resolution::text,
                      replies_on_resolved, complaints FROM before',
              'the rebuilt rows are those the refreshes kept');
SELECT * FROM finish();
ROLLBACK;
