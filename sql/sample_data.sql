-- sample_data: generate_sample_data() is deterministic for a seed whatever the plan and the
-- session, respects the reference schema, and its data has the shape the KPIs need; every
-- figure here is computed by plain SQL over the generated tables.
CREATE EXTENSION crm_kpi;
\i test/fixtures/errors.sql
SET client_min_messages = warning;  -- the generator's progress notices carry timings

-- Checksum of a table's rows in key order (test helper).
CREATE FUNCTION pg_temp.table_md5(schema_name text, table_name text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    key text := CASE table_name WHEN 'marketing_spend' THEN 'x.channel, x.day' ELSE '1' END;
    result text;
BEGIN
    IF table_name <> 'marketing_spend' THEN
        key := (SELECT quote_ident(a.attname) FROM pg_index i
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                WHERE i.indrelid = format('%I.%I', schema_name, table_name)::regclass AND i.indisprimary);
        key := 'x.' || key;
    END IF;
    EXECUTE format('SELECT md5(string_agg(x::text, E''\n'' ORDER BY %s)) FROM %I.%I x', key, schema_name, table_name)
        INTO result;
    RETURN result;
END $$;

-- Three datasets: a and b with the same seed, b under another time zone and a plan that
-- favours parallel workers and no memoization; c with another seed.
SELECT table_name, row_count > 0 AS has_rows
FROM crm_kpi.generate_sample_data('sample_a', 1000, 42, '2023-01-01', 730) ORDER BY table_name;
BEGIN;
SET LOCAL TimeZone = 'America/New_York';
SET LOCAL parallel_setup_cost = 0;
SET LOCAL parallel_tuple_cost = 0;
SET LOCAL min_parallel_table_scan_size = 0;
SET LOCAL enable_memoize = off;
SET LOCAL enable_hashagg = off;
SELECT count(*) AS tables FROM crm_kpi.generate_sample_data('sample_b', 1000, 42, '2023-01-01', 730);
COMMIT;
SELECT count(*) AS tables FROM crm_kpi.generate_sample_data('sample_c', 1000, 7, '2023-01-01', 730);
SET TimeZone = 'UTC';

SELECT t AS table_name,
       pg_temp.table_md5('sample_a', t) = pg_temp.table_md5('sample_b', t) AS same_seed_identical,
       pg_temp.table_md5('sample_a', t) <> pg_temp.table_md5('sample_c', t) AS other_seed_differs
FROM unnest(ARRAY['customers', 'sales_reps', 'opportunities', 'orders', 'interactions',
                  'tickets', 'survey_responses', 'marketing_spend']) t;

-- Sizes that follow from the arguments: customers, reps (customers / 200, at least 3),
-- five channels every day.
SELECT (SELECT count(*) FROM sample_a.customers) AS customers,
       (SELECT count(*) FROM sample_a.sales_reps) AS reps,
       (SELECT count(DISTINCT team) FROM sample_a.sales_reps) > 1 AS several_teams,
       (SELECT count(*) FROM sample_a.marketing_spend) AS spend_rows,
       (SELECT count(DISTINCT channel) FROM sample_a.marketing_spend) AS spend_channels;
SELECT count(*) AS tables FROM crm_kpi.generate_sample_data('sample_small', 50);
SELECT count(*) AS reps_for_50_customers FROM sample_small.sales_reps;

-- Every timestamp lies in [2023-01-01, 2025-01-01) (730 days), UTC.
SELECT count(*) FILTER (WHERE ts < '2023-01-01 00:00+00' OR ts >= '2025-01-01 00:00+00') AS out_of_period,
       count(*) FILTER (WHERE ts IS NOT NULL) > 0 AS timestamps_seen
FROM (SELECT created_at FROM sample_a.customers
      UNION ALL SELECT created_at FROM sample_a.opportunities
      UNION ALL SELECT closed_at FROM sample_a.opportunities
      UNION ALL SELECT ordered_at FROM sample_a.orders
      UNION ALL SELECT occurred_at FROM sample_a.interactions
      UNION ALL SELECT opened_at FROM sample_a.tickets
      UNION ALL SELECT first_response_at FROM sample_a.tickets
      UNION ALL SELECT resolved_at FROM sample_a.tickets
      UNION ALL SELECT answered_at FROM sample_a.survey_responses
      UNION ALL SELECT day::timestamp AT TIME ZONE 'UTC' FROM sample_a.marketing_spend) t(ts);

-- Referential order: every order's customer exists and was created before it; tickets,
-- opportunities, interactions and surveys come after the customer; responses after tickets.
SELECT (SELECT count(*) FROM sample_a.orders o LEFT JOIN sample_a.customers c USING (customer_id)
        WHERE c.customer_id IS NULL OR c.created_at > o.ordered_at) AS bad_orders,
       (SELECT count(*) FROM sample_a.opportunities o JOIN sample_a.customers c USING (customer_id)
        WHERE c.created_at > o.created_at OR o.closed_at < o.created_at) AS bad_opportunities,
       (SELECT count(*) FROM sample_a.interactions i JOIN sample_a.customers c USING (customer_id)
        WHERE c.created_at > i.occurred_at) AS bad_interactions,
       (SELECT count(*) FROM sample_a.tickets t JOIN sample_a.customers c USING (customer_id)
        WHERE c.created_at > t.opened_at OR t.first_response_at < t.opened_at
           OR t.resolved_at < t.opened_at OR t.resolved_at < t.first_response_at) AS bad_tickets,
       (SELECT count(*) FROM sample_a.survey_responses s LEFT JOIN sample_a.tickets t USING (ticket_id)
        WHERE s.answered_at < t.resolved_at OR t.customer_id <> s.customer_id) AS bad_surveys;

-- Scores in range, both kinds present.
SELECT kind, min(score) >= CASE kind WHEN 'nps' THEN 0 ELSE 1 END AS min_in_range,
       max(score) <= CASE kind WHEN 'nps' THEN 10 ELSE 5 END AS max_in_range,
       count(DISTINCT score) >= 4 AS spread
FROM sample_a.survey_responses GROUP BY kind ORDER BY kind;

-- Acquisition: five channels; conversion (ever bought) differs by channel: referral converts
-- better than social. Seasonality: more customers per weekday than per weekend day.
SELECT count(DISTINCT acquisition_channel) AS channels FROM sample_a.customers;
SELECT max(conv) FILTER (WHERE ch = 'referral') > max(conv) FILTER (WHERE ch = 'social') AS referral_converts_better
FROM (SELECT c.acquisition_channel AS ch,
             avg((EXISTS (SELECT FROM sample_a.orders o WHERE o.customer_id = c.customer_id))::int) AS conv
      FROM sample_a.customers c GROUP BY 1) x;
SELECT avg(n) FILTER (WHERE extract(isodow FROM d) < 6) > 1.3 * avg(n) FILTER (WHERE extract(isodow FROM d) >= 6)
       AS weekdays_busier
FROM (SELECT (created_at AT TIME ZONE 'UTC')::date AS d, count(*) AS n FROM sample_a.customers GROUP BY 1) x;
SELECT bool_and(customer_id < next_id OR created_at <= next_created) AS ids_follow_creation
FROM (SELECT customer_id, created_at, lead(customer_id) OVER w AS next_id, lead(created_at) OVER w AS next_created
      FROM sample_a.customers WINDOW w AS (ORDER BY customer_id)) x WHERE next_id IS NOT NULL;

-- The funnel: some never buy (some of them contacted, some not), some buy once, some many times.
WITH per AS (
    SELECT c.customer_id,
           (SELECT count(*) FROM sample_a.orders o WHERE o.customer_id = c.customer_id) AS orders,
           (SELECT min(ordered_at) FROM sample_a.orders o WHERE o.customer_id = c.customer_id) AS first_order,
           (SELECT max(ordered_at) FROM sample_a.orders o WHERE o.customer_id = c.customer_id) AS last_order,
           (SELECT min(occurred_at) FROM sample_a.interactions i WHERE i.customer_id = c.customer_id) AS first_contact
    FROM sample_a.customers c
)
SELECT count(*) FILTER (WHERE orders = 0) > 0 AS some_never_buy,
       count(*) FILTER (WHERE orders = 0 AND first_contact IS NOT NULL) > 0 AS some_contacted_only,
       count(*) FILTER (WHERE orders = 0 AND first_contact IS NULL) > 0 AS some_prospects_only,
       count(*) FILTER (WHERE orders = 0) > count(*) FILTER (WHERE orders > 0) AS most_never_buy,
       count(*) FILTER (WHERE orders = 1) > 0 AS some_buy_once,
       count(*) FILTER (WHERE orders >= 5) > 0 AS some_buy_five_times_or_more,
       count(*) FILTER (WHERE first_contact < first_order) > 0 AS contacted_before_buying,
       count(*) FILTER (WHERE last_order < '2025-01-01 00:00+00'::timestamptz - interval '180 days') > 0
           AS some_silent_over_180_days
FROM per;

-- Reactivation: some customers buy again after more than 180 days without an order.
SELECT count(DISTINCT customer_id) > 0 AS some_reactivate
FROM (SELECT customer_id, ordered_at - lag(ordered_at) OVER (PARTITION BY customer_id ORDER BY ordered_at) AS gap
      FROM sample_a.orders) x
WHERE gap > interval '180 days';

-- Orders: about 5 % refunded and 3 % cancelled; amounts positive, skewed (mean above median).
SELECT count(*) FILTER (WHERE status = 'refunded') > 0 AS refunded_exist,
       count(*) FILTER (WHERE status = 'cancelled') > 0 AS cancelled_exist,
       round(100.0 * count(*) FILTER (WHERE status = 'refunded') / count(*)) BETWEEN 3 AND 7 AS refunded_about_5_pct,
       round(100.0 * count(*) FILTER (WHERE status = 'cancelled') / count(*)) BETWEEN 1 AND 5 AS cancelled_about_3_pct,
       min(amount) > 0 AS amounts_positive,
       avg(amount) > percentile_cont(0.5) WITHIN GROUP (ORDER BY amount) AS right_skewed,
       count(*) FILTER (WHERE rep_id IS NOT NULL) > 0 AND count(*) FILTER (WHERE rep_id IS NULL) > 0 AS some_attributed
FROM sample_a.orders;

-- Opportunities: open, won and lost; closed ones have closed_at, open ones none.
SELECT status, count(*) > 0 AS present,
       bool_and((closed_at IS NULL) = (status = 'open')) AS closed_at_matches
FROM sample_a.opportunities GROUP BY status ORDER BY status;

-- Tickets: some unanswered, some unresolved, complaints, replies on resolved tickets.
SELECT count(*) FILTER (WHERE first_response_at IS NULL) > 0 AS some_unanswered,
       count(*) FILTER (WHERE resolved_at IS NULL) > 0 AS some_unresolved,
       count(*) FILTER (WHERE is_complaint) > 0 AS some_complaints,
       min(replies) FILTER (WHERE resolved_at IS NOT NULL) >= 1 AS resolved_have_replies,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY first_response_at - opened_at)
           < percentile_cont(0.5) WITHIN GROUP (ORDER BY resolved_at - opened_at) AS response_before_resolution
FROM sample_a.tickets;

-- Service time drives satisfaction: NPS (promoters % - detractors %) and mean CSAT on tickets
-- resolved slower than the median are lower than on faster ones.
WITH m AS (
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY resolved_at - opened_at) AS median
    FROM sample_a.tickets WHERE resolved_at IS NOT NULL
), s AS (
    SELECT s.kind, s.score, t.resolved_at - t.opened_at > m.median AS slow
    FROM sample_a.survey_responses s JOIN sample_a.tickets t USING (ticket_id), m
)
SELECT (100.0 * count(*) FILTER (WHERE kind = 'nps' AND slow AND score >= 9) / count(*) FILTER (WHERE kind = 'nps' AND slow)
        - 100.0 * count(*) FILTER (WHERE kind = 'nps' AND slow AND score <= 6) / count(*) FILTER (WHERE kind = 'nps' AND slow))
     < (100.0 * count(*) FILTER (WHERE kind = 'nps' AND NOT slow AND score >= 9) / count(*) FILTER (WHERE kind = 'nps' AND NOT slow)
        - 100.0 * count(*) FILTER (WHERE kind = 'nps' AND NOT slow AND score <= 6) / count(*) FILTER (WHERE kind = 'nps' AND NOT slow))
       AS slow_tickets_lower_nps,
       avg(score) FILTER (WHERE kind = 'csat' AND slow) < avg(score) FILTER (WHERE kind = 'csat' AND NOT slow)
       AS slow_tickets_lower_csat
FROM s;
SELECT count(*) FILTER (WHERE ticket_id IS NULL) > 0 AS relationship_surveys,
       count(*) FILTER (WHERE ticket_id IS NOT NULL) > 0 AS ticket_surveys
FROM sample_a.survey_responses;

-- Marketing spend: every day of the period for every channel, never negative.
SELECT count(DISTINCT day) AS days, min(day) AS first_day, max(day) AS last_day, min(amount) >= 0 AS non_negative
FROM sample_a.marketing_spend;

-- New rows after the generated ones take fresh identity values.
INSERT INTO sample_a.orders (customer_id, amount, ordered_at) VALUES (1, 10, '2024-12-31');
INSERT INTO sample_a.tickets (customer_id, opened_at) VALUES (1, '2024-12-31');
INSERT INTO sample_a.customers (created_at) VALUES ('2024-12-31');
SELECT (SELECT count(*) FROM sample_a.orders) = (SELECT max(order_id) FROM sample_a.orders) AS order_ids_dense,
       (SELECT count(*) FROM sample_a.customers) = (SELECT max(customer_id) FROM sample_a.customers) AS customer_ids_dense,
       (SELECT count(*) FROM sample_a.tickets) = (SELECT max(ticket_id) FROM sample_a.tickets) AS ticket_ids_dense;

-- An existing, empty reference schema is filled as it is.
SELECT crm_kpi.create_reference_schema('sample_d');
SELECT count(*) AS tables FROM crm_kpi.generate_sample_data('sample_d', 20, 1, '2024-02-01', 10);
SELECT count(*) FILTER (WHERE created_at < '2024-02-01 00:00+00' OR created_at >= '2024-02-11 00:00+00') AS out_of_period
FROM sample_d.customers;

-- The foreign keys and indexes dropped for the load are all back, the same as in a fresh
-- reference schema, and valid.
SELECT crm_kpi.create_reference_schema('sample_ref');
CREATE FUNCTION pg_temp.schema_shape(schema_name text) RETURNS SETOF text LANGUAGE sql AS $$
    SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
           || CASE WHEN convalidated THEN '' ELSE ' NOT VALID' END
    FROM pg_constraint WHERE connamespace = schema_name::regnamespace
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index
    WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = schema_name::regnamespace)
$$;
SELECT count(*) AS objects,
       count(*) FILTER (WHERE s LIKE 'constraint % FOREIGN KEY%') AS foreign_keys,
       count(*) FILTER (WHERE s LIKE 'index %') AS indexes
FROM (SELECT replace(pg_temp.schema_shape('sample_a'), 'sample_a.', 'sample_ref.') s) x;
SELECT count(*) AS differences FROM (
    (SELECT replace(pg_temp.schema_shape('sample_a'), 'sample_a.', 'sample_ref.')
     EXCEPT ALL SELECT pg_temp.schema_shape('sample_ref'))
    UNION ALL
    (SELECT pg_temp.schema_shape('sample_ref')
     EXCEPT ALL SELECT replace(pg_temp.schema_shape('sample_a'), 'sample_a.', 'sample_ref.'))) d;

-- Errors: tables that hold rows, a schema with other tables, bad arguments.
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.generate_sample_data('sample_a', 10)$$);
CREATE SCHEMA sample_other;
CREATE TABLE sample_other.notes (id int);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.generate_sample_data('sample_other', 10)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.generate_sample_data('sample_e', 0)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.generate_sample_data('sample_e', 10, 1, '2024-01-01', 0)$$);
SELECT pg_temp.sqlstate_of($$SELECT crm_kpi.generate_sample_data('sample_e', NULL)$$);
SELECT count(*) AS sample_e_made FROM pg_namespace WHERE nspname = 'sample_e';

-- The helpers: uniform in (0, 1), normal with mean ~0 and sd ~1, all pure functions.
SELECT min(u) > 0 AND max(u) < 1 AS uniform_in_range, round(avg(u)::numeric, 1) AS uniform_mean,
       round(avg(z)::numeric, 1) AS normal_mean, round(stddev(z)::numeric, 1) AS normal_sd,
       bool_and(crm_kpi.sample_uniform(3, n, 5) = crm_kpi.sample_uniform(3, n, 5)) AS repeatable
FROM (SELECT n, crm_kpi.sample_uniform(3, n, 5) AS u, crm_kpi.sample_normal(3, n, 6) AS z
      FROM generate_series(1, 100000) n) x;

DROP SCHEMA sample_a, sample_b, sample_c, sample_d, sample_small, sample_other, sample_ref CASCADE;
RESET client_min_messages;
DROP EXTENSION crm_kpi;
