-- satisfaction_months.sql: satisfaction_daily summed per month (in crm_kpi.timezone), kept with satisfaction_daily:
-- NPS and CSAT worked out by hand, summaries equal to those built from the responses of each month, a month left
-- without responses deleted, the views satisfaction_monthly and satisfaction_quarterly, and
-- crm_kpi.satisfaction_between() giving what the days of a range give.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(19);
SET client_min_messages = warning;
-- Tokyo (UTC+9): 2024-01-31 16:00 UTC is 02-01 there.
SET crm_kpi.timezone = 'Asia/Tokyo';
SELECT crm_kpi.create_reference_schema('crm');
INSERT INTO crm.customers (customer_id, created_at) VALUES (1, '2023-12-01');
-- January: NPS 3 and 9. February: NPS 10 (02-01 in Tokyo), CSAT 5. March: CSAT 2 and 4.
INSERT INTO crm.survey_responses (response_id, customer_id, kind, score, answered_at) VALUES
    (1, 1, 'nps', 10, '2024-01-31 16:00+00'),
    (2, 1, 'nps', 3, '2024-01-10 03:00+00'),
    (3, 1, 'nps', 9, '2024-01-20 03:00+00'),
    (4, 1, 'csat', 5, '2024-02-10 03:00+00'),
    (5, 1, 'csat', 2, '2024-03-05 03:00+00'),
    (6, 1, 'csat', 4, '2024-03-06 03:00+00');
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'the first refresh builds the tables');

-- NPS and CSAT of each month, and the summaries built from the responses of each Tokyo month.
CREATE VIEW pg_temp.months AS
SELECT format('%s nps %s of %s, csat %s of %s', month, round(crm_kpi.nps(nps), 1), crm_kpi.responses(nps),
              round(crm_kpi.csat(csat), 1), crm_kpi.responses(csat)) AS m
FROM crm_kpi.satisfaction_months;
CREATE FUNCTION pg_temp.month_summaries() RETURNS TABLE (month date, nps text, csat text) LANGUAGE sql AS $$
    SELECT date_trunc('month', r.answered_at AT TIME ZONE 'Asia/Tokyo')::date,
           (crm_kpi.nps_agg(r.score) FILTER (WHERE r.kind = 'nps'))::text,
           (crm_kpi.csat_agg(r.score) FILTER (WHERE r.kind = 'csat'))::text
    FROM crm.survey_responses r GROUP BY 1
$$;
CREATE FUNCTION pg_temp.by_days(f date, t date) RETURNS text LANGUAGE sql AS $$
    SELECT format('%s %s', crm_kpi.rollup(nps), crm_kpi.rollup(csat)) FROM crm_kpi.satisfaction_daily WHERE day BETWEEN f AND t
$$;
CREATE FUNCTION pg_temp.between(f date, t date) RETURNS text LANGUAGE sql AS $$
    SELECT format('%s %s', crm_kpi.rollup(nps), crm_kpi.rollup(csat)) FROM crm_kpi.satisfaction_between(f, t)
$$;

SELECT is((SELECT string_agg(m, '; ' ORDER BY m) FROM pg_temp.months),
          '2024-01-01 nps 0.0 of 2, csat  of ; 2024-02-01 nps 100.0 of 1, csat 100.0 of 1; 2024-03-01 nps  of , csat 50.0 of 2',
          'by hand: January one promoter and one detractor, February the promoter of 02-01 in Tokyo and a 5, March a 2 and a 4');
SELECT results_eq('SELECT month, nps::text, csat::text FROM crm_kpi.satisfaction_months ORDER BY 1',
                  'SELECT * FROM pg_temp.month_summaries() ORDER BY 1',
                  'the summaries are those built from the responses of each month');

-- The 2 moves to 02-20; the 4 is deleted: March is left without responses.
UPDATE crm.survey_responses SET answered_at = '2024-02-20 03:00+00' WHERE response_id = 5;
DELETE FROM crm.survey_responses WHERE response_id = 6;
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL::text, 'refresh after the writes');
SELECT is((SELECT string_agg(m, '; ' ORDER BY m) FROM pg_temp.months),
          '2024-01-01 nps 0.0 of 2, csat  of ; 2024-02-01 nps 100.0 of 1, csat 50.0 of 2',
          'by hand: February has the 5 and the 2, March (left without responses) is deleted');
SELECT results_eq('SELECT month, nps::text, csat::text FROM crm_kpi.satisfaction_months ORDER BY 1',
                  'SELECT * FROM pg_temp.month_summaries() ORDER BY 1',
                  'the summaries are those built from the responses of each month, after the writes');
SELECT is((SELECT count(*) FROM crm_kpi.verify() WHERE table_name IN ('satisfaction_daily', 'satisfaction_months')),
          0::bigint, 'verify: satisfaction_daily and satisfaction_months exact');
SELECT results_eq('SELECT month, nps::text, csat::text FROM crm_kpi.satisfaction_monthly ORDER BY 1',
                  $$SELECT date_trunc('month', day::timestamp)::date, crm_kpi.rollup(nps)::text, crm_kpi.rollup(csat)::text
                    FROM crm_kpi.satisfaction_daily GROUP BY 1 ORDER BY 1$$,
                  'satisfaction_monthly: satisfaction_daily grouped by month');
SELECT results_eq('SELECT quarter, nps::text, csat::text FROM crm_kpi.satisfaction_quarterly ORDER BY 1',
                  $$SELECT date_trunc('quarter', day::timestamp)::date, crm_kpi.rollup(nps)::text, crm_kpi.rollup(csat)::text
                    FROM crm_kpi.satisfaction_daily GROUP BY 1 ORDER BY 1$$,
                  'satisfaction_quarterly: satisfaction_daily grouped by quarter');

-- satisfaction_between(): whole months as one row, the other days as theirs.
SELECT is(pg_temp.between('2024-01-15', '2024-02-29'), pg_temp.by_days('2024-01-15', '2024-02-29'),
          'part of January and all of February: what the days give');
SELECT is((SELECT string_agg(day::text, ' ' ORDER BY day) FROM crm_kpi.satisfaction_between('2024-01-15', '2024-02-29')),
          '2024-01-20 2024-02-01', 'by hand: January''s day with responses from 01-15, then February as one row');
SELECT is((SELECT crm_kpi.nps(crm_kpi.rollup(nps)) FROM crm_kpi.satisfaction_between('2024-01-15', '2024-02-29')),
          100.0, 'by hand: the 9 of 01-20 and the 10 of 02-01, both promoters');
SELECT is(pg_temp.between('2024-01-10', '2024-02-19'), pg_temp.by_days('2024-01-10', '2024-02-19'),
          'no month whole, from a day with responses: what the days give');
SELECT is(pg_temp.between('2023-01-01', '2024-12-31'), pg_temp.by_days('2023-01-01', '2024-12-31'),
          'two years: what the days give');
SELECT is((SELECT count(*) FROM crm_kpi.satisfaction_between('2024-04-01', '2024-01-01')), 0::bigint, 'a reversed range: no rows');

SELECT is((SELECT count(*) FROM crm_kpi.satisfaction_between(NULL, '2024-12-31')), 0::bigint, 'a NULL end: no rows');
SELECT is(pg_temp.between('-infinity', 'infinity'), pg_temp.by_days('-infinity', 'infinity'),
          'from -infinity to infinity: what the days give');

-- A rebuild gives the same rows.
CREATE TEMP TABLE before AS SELECT month, nps::text, csat::text FROM crm_kpi.satisfaction_months;
SELECT is((SELECT error FROM crm_kpi.rebuild()), NULL::text, 'rebuild');
SELECT bag_eq('SELECT month, nps::text, csat::text FROM crm_kpi.satisfaction_months', 'SELECT * FROM before',
              'the rebuilt rows are those the refreshes kept');
SELECT * FROM finish();
ROLLBACK;
