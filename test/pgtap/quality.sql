-- quality.sql: crm_kpi.data_quality() on a hand-built CRM with known problems
-- (test/fixtures/quality_fixture.sql, counts worked out in its comments), checked
-- against those hand counts and against independent queries over the source tables;
-- kept up to date by refresh; readable by the reader role, which cannot read the sources.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(19);
SET client_min_messages = warning;
SET crm_kpi.timezone = 'Asia/Tokyo';

SELECT volatility_is('crm_kpi', 'data_quality', ARRAY[]::name[], 'stable');
SELECT is((SELECT proparallel FROM pg_proc WHERE oid = 'crm_kpi.data_quality()'::regprocedure), 's'::"char",
          'data_quality is parallel safe');

-- Before anything is bound or refreshed: every check, nothing counted, no share.
SELECT results_eq(
    $$SELECT count(*), sum(affected), sum(total), count(pct) FROM crm_kpi.data_quality()$$,
    $$VALUES (20::bigint, 0::numeric, 0::numeric, 0::bigint)$$,
    'before the first refresh: 20 checks, all 0 of 0, share NULL');

SELECT crm_kpi.create_reference_schema('crm');
\i test/fixtures/quality_fixture.sql
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL, 'the fixture refreshes');

CREATE TEMP TABLE dq AS SELECT * FROM crm_kpi.data_quality();
SELECT results_eq(
    $$SELECT check_name, category, source, affected, total FROM dq$$,
    $$VALUES ('customers without acquisition channel', 'completeness', 'customers', 1::bigint, 6::bigint),
             ('customers without creation date', 'completeness', 'customers', 1, 6),
             ('completed orders without rep', 'completeness', 'orders', 2, 9),
             ('completed orders without acquisition channel', 'completeness', 'orders', 3, 9),
             ('opportunities without rep', 'completeness', 'opportunities', 2, 4),
             ('won opportunities without creation date', 'completeness', 'opportunities', 1, 2),
             ('tickets without first response', 'completeness', 'tickets', 2, 3),
             ('buyers without interaction', 'completeness', 'interactions', 3, 5),
             ('completed orders of unknown customers', 'orphans', 'orders', 2, 8),
             ('customers created after their first order', 'consistency', 'customers', 1, 5),
             ('marketing channels without new customers', 'consistency', 'marketing_spend', 1, 3),
             ('acquisition channels without marketing spend', 'consistency', 'customers', 1, 3),
             ('completed orders dated in the future', 'timeliness', 'orders', 1, 9),
             ('opportunities created in the future', 'timeliness', 'opportunities', 1, 4),
             ('tickets opened in the future', 'timeliness', 'tickets', 1, 3),
             ('survey responses answered in the future', 'timeliness', 'survey_responses', 1, 2),
             ('completed orders dated over 100 years ago', 'timeliness', 'orders', 0, 9),
             ('opportunities created over 100 years ago', 'timeliness', 'opportunities', 0, 4),
             ('tickets opened over 100 years ago', 'timeliness', 'tickets', 0, 3),
             ('survey responses answered over 100 years ago', 'timeliness', 'survey_responses', 0, 2)$$,
    'every check counts what the fixture''s comments count by hand, in the documented order');
SELECT is((SELECT count(*) FROM dq WHERE pct IS DISTINCT FROM 100 * affected::numeric / total), 0::bigint,
          'pct is 100 x affected / total, unrounded');

-- The same figures straight from the source tables (what the KPI tables spare a dashboard).
SELECT results_eq(
    $$SELECT check_name, affected, total FROM dq WHERE source IN ('customers', 'orders') AND category <> 'consistency'
        AND check_name NOT LIKE '%over 100 years ago' ORDER BY check_name$$,
    $$WITH c AS (SELECT * FROM crm.customers), o AS (SELECT * FROM crm.orders WHERE status = 'completed')
      SELECT * FROM (VALUES
          ('completed orders dated in the future', (SELECT count(*) FROM o WHERE ordered_at > now()), (SELECT count(*) FROM o)),
          ('completed orders of unknown customers',
           (SELECT count(*) FROM o WHERE ordered_at <= now() AND customer_id NOT IN (SELECT customer_id FROM c)),
           (SELECT count(*) FROM o WHERE ordered_at <= now())),
          ('completed orders without acquisition channel',
           (SELECT count(*) FROM o LEFT JOIN c USING (customer_id) WHERE c.acquisition_channel IS NULL), (SELECT count(*) FROM o)),
          ('completed orders without rep', (SELECT count(*) FROM o WHERE rep_id IS NULL), (SELECT count(*) FROM o)),
          ('customers without acquisition channel', (SELECT count(*) FROM c WHERE acquisition_channel IS NULL), (SELECT count(*) FROM c)),
          ('customers without creation date', (SELECT count(*) FROM c WHERE created_at IS NULL), (SELECT count(*) FROM c))
      ) v (check_name, affected, total) ORDER BY check_name$$,
    'customer and order checks equal counts over crm.customers and crm.orders');
SELECT results_eq(
    $$SELECT affected, total FROM dq WHERE check_name IN ('buyers without interaction', 'customers created after their first order')
      ORDER BY check_name$$,
    $$WITH b AS (SELECT c.*, (SELECT min(ordered_at) FROM crm.orders o WHERE o.customer_id = c.customer_id
                                AND o.status = 'completed' AND o.ordered_at <= now()) AS first_order
                 FROM crm.customers c)
      SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT FROM crm.interactions i WHERE i.customer_id = b.customer_id)), count(*)
      FROM b WHERE first_order IS NOT NULL
      UNION ALL
      SELECT count(*) FILTER (WHERE created_at > first_order), count(*) FROM b WHERE first_order IS NOT NULL$$,
    'buyer checks equal counts over crm.customers, crm.orders and crm.interactions');
SELECT results_eq(
    $$SELECT check_name, affected, total FROM dq WHERE source IN ('opportunities', 'tickets', 'survey_responses')
        AND check_name NOT LIKE '%over 100 years ago' ORDER BY check_name$$,
    $$SELECT * FROM (VALUES
          ('opportunities created in the future', (SELECT count(*) FROM crm.opportunities WHERE created_at > now()),
           (SELECT count(*) FROM crm.opportunities WHERE created_at IS NOT NULL)),
          ('opportunities without rep', (SELECT count(*) FROM crm.opportunities WHERE created_at IS NOT NULL AND rep_id IS NULL),
           (SELECT count(*) FROM crm.opportunities WHERE created_at IS NOT NULL)),
          ('survey responses answered in the future', (SELECT count(*) FROM crm.survey_responses WHERE answered_at > now()),
           (SELECT count(*) FROM crm.survey_responses)),
          ('tickets opened in the future', (SELECT count(*) FROM crm.tickets WHERE opened_at > now()), (SELECT count(*) FROM crm.tickets)),
          ('tickets without first response', (SELECT count(*) FROM crm.tickets WHERE first_response_at IS NULL),
           (SELECT count(*) FROM crm.tickets)),
          ('won opportunities without creation date',
           (SELECT count(*) FROM crm.opportunities WHERE status = 'won' AND created_at IS NULL),
           (SELECT count(*) FROM crm.opportunities WHERE status = 'won'))
      ) v (check_name, affected, total) ORDER BY check_name$$,
    'opportunity, ticket and survey checks equal counts over their source tables');

SELECT is((SELECT detail FROM dq WHERE check_name = 'completed orders of unknown customers'),
          format('completed orders dated up to the day of the last refresh (%s) whose customer_id is not in the customers source, '
                 '60 of revenue 385', (now() AT TIME ZONE 'Asia/Tokyo')::date),
          'orphans: the revenue of orders 91 and 92 out of the revenue to date, up to today in crm_kpi.timezone');
SELECT is((SELECT array_agg(detail ORDER BY check_name) FROM dq WHERE category = 'consistency' AND source <> 'customers'
              OR check_name = 'acquisition channels without marketing spend'),
          ARRAY['channels of new customers with no spend (CAC 0): referral (new customers: 1)',
                'channels with spend that acquired no customer (CAC undefined): tv (spend: 80)'],
          'the channel checks name the channels');
SELECT is((SELECT detail FROM dq WHERE check_name = 'completed orders without rep'),
          'completed orders whose rep_id is NULL, 85 of revenue 1384', 'orders without rep: their revenue out of all');

-- Kept up to date by refresh: customer 99 appears (channel tv, created before its orders).
INSERT INTO crm.customers (customer_id, created_at, acquisition_channel, name) VALUES (99, '2024-01-01 12:00+00', 'tv', 'Late');
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL, 'a refresh after customer 99 is added');
SELECT results_eq(
    $$SELECT check_name, affected, total FROM crm_kpi.data_quality()
      WHERE check_name IN ('completed orders of unknown customers', 'completed orders without acquisition channel',
                           'marketing channels without new customers', 'buyers without interaction')
      ORDER BY check_name$$,
    $$VALUES ('buyers without interaction', 4::bigint, 6::bigint),
             ('completed orders of unknown customers', 0, 8),
             ('completed orders without acquisition channel', 1, 9),
             ('marketing channels without new customers', 0, 3)$$,
    'no orphans left; its orders have a channel; tv acquired a customer; one more buyer without interaction');

-- Rows mistyped a century or more back (year 1 for 2021, say): an order, an opportunity, a ticket and a response;
-- and one 99 years back, which is not flagged.
INSERT INTO crm.orders (order_id, customer_id, rep_id, status, amount, ordered_at) VALUES
    (193, 2, 1, 'completed', 10, '0001-06-01 12:00+00'), (194, 2, 1, 'completed', 10, now() - interval '99 years');
INSERT INTO crm.opportunities (opportunity_id, customer_id, rep_id, status, stage, amount, created_at, closed_at) VALUES
    (109, 1, 1, 'open', 'Proposal', 100, '0002-03-01 12:00+00', NULL);
INSERT INTO crm.tickets (ticket_id, customer_id, opened_at, first_response_at, resolved_at, replies) VALUES
    (109, 1, '1900-01-01 12:00+00', '1900-01-01 13:00+00', NULL, 1);
INSERT INTO crm.survey_responses (response_id, customer_id, kind, score, answered_at) VALUES
    (109, 1, 'nps', 10, '1066-10-14 12:00+00');
SELECT is((SELECT error FROM crm_kpi.refresh()), NULL, 'a refresh after the mistyped rows');
SELECT results_eq(
    $$SELECT check_name, affected, total, detail FROM crm_kpi.data_quality() WHERE check_name LIKE '%over 100 years ago'
      ORDER BY check_name$$,
    $$WITH cutoff AS (SELECT (now() AT TIME ZONE 'Asia/Tokyo')::date - interval '100 years' AS d,
                             'more than 100 years before the day of the last refresh (' || (now() AT TIME ZONE 'Asia/Tokyo')::date
                                 || '), the earliest on ' AS words)
      SELECT * FROM (VALUES
          ('completed orders dated over 100 years ago',
           (SELECT count(*) FROM crm.orders, cutoff WHERE status = 'completed' AND (ordered_at AT TIME ZONE 'Asia/Tokyo') < cutoff.d),
           (SELECT count(*) FROM crm.orders WHERE status = 'completed'),
           (SELECT 'completed orders dated ' || words || '0001-06-01' FROM cutoff)),
          ('opportunities created over 100 years ago',
           (SELECT count(*) FROM crm.opportunities, cutoff WHERE (created_at AT TIME ZONE 'Asia/Tokyo') < cutoff.d),
           (SELECT count(*) FROM crm.opportunities WHERE created_at IS NOT NULL),
           (SELECT 'opportunities created ' || words || '0002-03-01' FROM cutoff)),
          ('survey responses answered over 100 years ago',
           (SELECT count(*) FROM crm.survey_responses, cutoff WHERE (answered_at AT TIME ZONE 'Asia/Tokyo') < cutoff.d),
           (SELECT count(*) FROM crm.survey_responses),
           (SELECT 'NPS and CSAT responses answered ' || words || '1066-10-14' FROM cutoff)),
          ('tickets opened over 100 years ago',
           (SELECT count(*) FROM crm.tickets, cutoff WHERE (opened_at AT TIME ZONE 'Asia/Tokyo') < cutoff.d),
           (SELECT count(*) FROM crm.tickets),
           (SELECT 'tickets opened ' || words || '1900-01-01' FROM cutoff))
      ) v (check_name, affected, total, detail) ORDER BY check_name$$,
    'rows dated over 100 years before the day of the last refresh (in the tables'' zone) are flagged, with the earliest day; one 99 years back is not');
SELECT is((SELECT array_agg(affected ORDER BY check_name) FROM crm_kpi.data_quality() WHERE check_name LIKE '%over 100 years ago'),
          ARRAY[1, 1, 1, 1]::bigint[], 'one of each, by hand');

-- The reader role runs it, and cannot read the sources it never needs.
CREATE ROLE crm_kpi_quality_reader;
SELECT crm_kpi.grant_reader('crm_kpi_quality_reader');
SET ROLE crm_kpi_quality_reader;
SELECT is((SELECT count(*) FROM crm_kpi.data_quality()), 20::bigint, 'the reader role runs data_quality()');
SELECT throws_ok('SELECT count(*) FROM crm.orders', '42501', NULL, 'the reader cannot read the sources');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
