-- refresh_random.sql: a seeded random workload on the reference schema (orders, backdated and
-- future ones, refunds and cancellations, moves between days and customers, deletions; tickets,
-- surveys, opportunities, interactions, customers, marketing spend; rolled-back writes, a
-- TRUNCATE), committed in small transactions, with crm_kpi.refresh() every 100 operations
-- (some of them partial: one small batch, leaving keys pending). At checkpoints the maintained
-- tables must equal crm_kpi.verify()'s from-scratch computation, and at the end their totals
-- must equal figures computed straight from the source tables.
--
-- The workload commits (so that time passes between refreshes), so the test runs in a
-- database of its own, dropped at the end. KPI days are taken in :tz (a zone with DST by default)
-- and the workload is drawn from :seed; pg_prove --set seed=0.1 --set tz=UTC explores others.
\if :{?seed}
\else
\set seed 0.4242
\endif
\if :{?tz}
\else
\set tz America/New_York
\endif
\set own_db crm_kpi_random
\i test/fixtures/capture_database.sql
SELECT plan(24);
SET crm_kpi.timezone = :'tz';

SELECT is((SELECT sum(row_count) > 0 FROM crm_kpi.generate_sample_data('crm', 300, 11)), true,
          'sample data: 300 customers with their orders, tickets, surveys, opportunities, interactions, spend');
SELECT is((SELECT mode FROM crm_kpi.refresh()), 'rebuild', 'the first refresh builds the KPI tables');
SELECT is((SELECT timezone FROM crm_kpi.engine_state), :'tz', 'in the session''s crm_kpi.timezone');

-- Random picks; every draw comes from random(), seeded once, so a seed gives one workload.
CREATE FUNCTION pg_temp.pick(tbl regclass, id_column name) RETURNS bigint
    LANGUAGE plpgsql AS $$
DECLARE
    top bigint;
    found bigint;
BEGIN
    EXECUTE format('SELECT max(%I) FROM %s', id_column, tbl) INTO top;
    EXECUTE format('SELECT %1$I FROM %2$s WHERE %1$I >= $1 ORDER BY %1$I LIMIT 1', id_column, tbl)
        INTO found USING 1 + floor(random() * coalesce(top, 0))::bigint;
    RETURN found;
END $$;
CREATE FUNCTION pg_temp.any_of(VARIADIC choices text[]) RETURNS text
    LANGUAGE sql AS 'SELECT choices[1 + floor(random() * cardinality(choices))::int]';
-- An instant: mostly the sample's two years or the last 400 days; some older than everything,
-- some seconds ahead (they become past while the test runs: soon => false leaves those out),
-- some months ahead.
CREATE FUNCTION pg_temp.any_time(soon boolean DEFAULT true) RETURNS timestamptz
    LANGUAGE plpgsql AS $$
DECLARE
    r float8 := random();
BEGIN
    RETURN CASE WHEN r < 0.45 THEN timestamptz '2023-01-01 00:00Z' + random() * interval '730 days'
                WHEN r < 0.80 THEN now() - random() * interval '400 days'
                WHEN r < 0.90 THEN timestamptz '2021-06-01 00:00Z' + random() * interval '600 days'
                WHEN r < 0.95 AND soon THEN now() + random() * interval '20 seconds'
                ELSE now() + random() * interval '200 days' END;
END $$;
CREATE FUNCTION pg_temp.any_amount() RETURNS numeric
    LANGUAGE sql AS 'SELECT round((random() * 500)::numeric, 2)';
CREATE FUNCTION pg_temp.any_rep() RETURNS bigint
    LANGUAGE sql AS 'SELECT CASE WHEN random() < 0.1 THEN NULL ELSE pg_temp.pick(''crm.sales_reps'', ''rep_id'') END';
CREATE FUNCTION pg_temp.any_channel() RETURNS text
    LANGUAGE sql AS $$SELECT pg_temp.any_of('organic', 'paid_search', 'social', 'referral', 'email', NULL)$$;

-- One random write (one or a few statements).
CREATE FUNCTION pg_temp.random_write() RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    r float8 := random();
    id bigint;
    cust bigint := pg_temp.pick('crm.customers', 'customer_id');
BEGIN
    IF r < 0.22 THEN            -- orders: one to three new ones, any status
        INSERT INTO crm.orders (customer_id, rep_id, status, amount, ordered_at)
        SELECT CASE WHEN n = 1 THEN cust ELSE pg_temp.pick('crm.customers', 'customer_id') END, pg_temp.any_rep(),
               CASE WHEN random() < 0.8 THEN 'completed' ELSE pg_temp.any_of('refunded', 'cancelled') END,
               pg_temp.any_amount(), pg_temp.any_time()
        FROM generate_series(1, 1 + floor(random() * 3)::int) n;
    ELSIF r < 0.30 THEN         -- move an order to another instant
        id := pg_temp.pick('crm.orders', 'order_id');
        UPDATE crm.orders SET ordered_at = pg_temp.any_time() WHERE order_id = id;
    ELSIF r < 0.36 THEN         -- move an order to another customer
        id := pg_temp.pick('crm.orders', 'order_id');
        UPDATE crm.orders SET customer_id = cust WHERE order_id = id;
    ELSIF r < 0.40 THEN         -- change an amount (and sometimes the rep)
        id := pg_temp.pick('crm.orders', 'order_id');
        UPDATE crm.orders SET amount = pg_temp.any_amount(),
                              rep_id = CASE WHEN random() < 0.3 THEN pg_temp.any_rep() ELSE rep_id END
        WHERE order_id = id;
    ELSIF r < 0.46 THEN         -- refund, cancel or complete an order
        id := pg_temp.pick('crm.orders', 'order_id');
        UPDATE crm.orders SET status = pg_temp.any_of('completed', 'completed', 'refunded', 'cancelled') WHERE order_id = id;
    ELSIF r < 0.50 THEN         -- delete an order
        id := pg_temp.pick('crm.orders', 'order_id');
        DELETE FROM crm.orders WHERE order_id = id;
    ELSIF r < 0.52 THEN         -- shift every order of a customer
        UPDATE crm.orders SET ordered_at = ordered_at - random() * interval '120 days' WHERE customer_id = cust;
    ELSIF r < 0.53 THEN         -- a customer and everything about them disappears
        UPDATE crm.survey_responses SET ticket_id = NULL
        WHERE ticket_id IN (SELECT t.ticket_id FROM crm.tickets t WHERE t.customer_id = cust);
        DELETE FROM crm.survey_responses WHERE customer_id = cust;
        DELETE FROM crm.tickets WHERE customer_id = cust;
        DELETE FROM crm.interactions WHERE customer_id = cust;
        DELETE FROM crm.opportunities WHERE customer_id = cust;
        DELETE FROM crm.orders WHERE customer_id = cust;
        DELETE FROM crm.customers WHERE customer_id = cust;
    ELSIF r < 0.57 THEN         -- tickets: open one
        INSERT INTO crm.tickets (customer_id, opened_at, first_response_at, resolved_at, replies, is_complaint)
        SELECT cust, t.at, CASE WHEN random() < 0.8 THEN t.at + random() * interval '48 hours' END,
               CASE WHEN random() < 0.7 THEN t.at + random() * interval '200 hours' END,
               floor(random() * 10)::int, random() < 0.1
        FROM (SELECT pg_temp.any_time() AS at) t;
    ELSIF r < 0.59 THEN         -- resolve, reopen earlier or delete a ticket
        id := pg_temp.pick('crm.tickets', 'ticket_id');
        IF random() < 0.4 THEN
            UPDATE crm.tickets SET resolved_at = opened_at + random() * interval '100 hours', replies = replies + 1
            WHERE ticket_id = id;
        ELSIF random() < 0.6 THEN
            UPDATE crm.tickets SET opened_at = opened_at - random() * interval '3 days' WHERE ticket_id = id;
        ELSE
            UPDATE crm.survey_responses SET ticket_id = NULL WHERE ticket_id = id;
            DELETE FROM crm.tickets WHERE ticket_id = id;
        END IF;
    ELSIF r < 0.63 THEN         -- surveys: answer, change, delete
        IF random() < 0.5 THEN
            INSERT INTO crm.survey_responses (customer_id, kind, score, answered_at)
            SELECT cust, k, CASE k WHEN 'nps' THEN floor(random() * 11)::int ELSE 1 + floor(random() * 5)::int END,
                   pg_temp.any_time()
            FROM (SELECT pg_temp.any_of('nps', 'csat') AS k) x;
        ELSE
            id := pg_temp.pick('crm.survey_responses', 'response_id');
            IF random() < 0.6 THEN
                UPDATE crm.survey_responses
                SET score = CASE kind WHEN 'nps' THEN floor(random() * 11)::int ELSE 1 + floor(random() * 5)::int END,
                    answered_at = CASE WHEN random() < 0.5 THEN pg_temp.any_time() ELSE answered_at END
                WHERE response_id = id;
            ELSE
                DELETE FROM crm.survey_responses WHERE response_id = id;
            END IF;
        END IF;
    ELSIF r < 0.69 THEN         -- opportunities: create, close, reopen, delete
        IF random() < 0.4 THEN
            INSERT INTO crm.opportunities (customer_id, rep_id, status, stage, amount, created_at, closed_at)
            SELECT cust, pg_temp.any_rep(), s, pg_temp.any_of('qualify', 'propose', 'negotiate'), pg_temp.any_amount(), t.at,
                   CASE WHEN s <> 'open' THEN t.at + random() * interval '90 days' END
            FROM (SELECT pg_temp.any_of('open', 'won', 'lost') AS s, pg_temp.any_time() AS at) t;
        ELSE
            id := pg_temp.pick('crm.opportunities', 'opportunity_id');
            IF random() < 0.5 THEN
                UPDATE crm.opportunities SET status = pg_temp.any_of('won', 'lost'),
                                             closed_at = created_at + random() * interval '60 days'
                WHERE opportunity_id = id;
            ELSIF random() < 0.5 THEN
                UPDATE crm.opportunities SET status = 'open', closed_at = NULL WHERE opportunity_id = id;
            ELSE
                DELETE FROM crm.opportunities WHERE opportunity_id = id;
            END IF;
        END IF;
    ELSIF r < 0.76 THEN         -- interactions: add, move, delete
        -- (interactions dated seconds ahead are checked apart, below)
        IF random() < 0.5 THEN
            INSERT INTO crm.interactions (customer_id, rep_id, channel, occurred_at)
            VALUES (cust, pg_temp.any_rep(), pg_temp.any_of('call', 'email', 'meeting'), pg_temp.any_time(soon => false));
        ELSE
            id := pg_temp.pick('crm.interactions', 'interaction_id');
            IF random() < 0.5 THEN
                UPDATE crm.interactions SET occurred_at = pg_temp.any_time(soon => false), customer_id = cust
                WHERE interaction_id = id;
            ELSE
                DELETE FROM crm.interactions WHERE interaction_id = id;
            END IF;
        END IF;
    ELSIF r < 0.84 THEN         -- customers: channel, creation time, new leads
        IF random() < 0.5 THEN
            UPDATE crm.customers SET acquisition_channel = pg_temp.any_channel() WHERE customer_id = cust;
        ELSIF random() < 0.5 THEN
            UPDATE crm.customers SET created_at = pg_temp.any_time() WHERE customer_id = cust;
        ELSE
            INSERT INTO crm.customers (created_at, acquisition_channel, name)
            VALUES (pg_temp.any_time(), pg_temp.any_channel(), 'lead');
        END IF;
    ELSIF r < 0.92 THEN         -- marketing spend: upsert a day, raise a stretch, delete a day
        IF random() < 0.5 THEN
            INSERT INTO crm.marketing_spend (channel, day, amount)
            VALUES (pg_temp.any_of('organic', 'paid_search', 'social', 'referral', 'email'),
                    date '2022-12-01' + floor(random() * 800)::int, pg_temp.any_amount())
            ON CONFLICT (channel, day) DO UPDATE SET amount = EXCLUDED.amount;
        ELSIF random() < 0.5 THEN
            UPDATE crm.marketing_spend SET amount = amount * 1.1
            WHERE channel = pg_temp.any_of('organic', 'paid_search', 'social', 'referral', 'email')
              AND day BETWEEN date '2023-01-01' + (r * 700)::int AND date '2023-01-11' + (r * 700)::int;
        ELSE
            DELETE FROM crm.marketing_spend WHERE day = date '2023-01-01' + floor(random() * 730)::int;
        END IF;
    ELSIF r < 0.96 THEN         -- a write rolled back: it must leave no trace
        BEGIN
            id := pg_temp.pick('crm.orders', 'order_id');
            INSERT INTO crm.orders (customer_id, amount, ordered_at) VALUES (cust, 999, pg_temp.any_time());
            UPDATE crm.orders SET customer_id = cust, ordered_at = ordered_at - interval '1 year' WHERE order_id = id;
            RAISE EXCEPTION 'roll back' USING ERRCODE = 'P0001';
        EXCEPTION WHEN raise_exception THEN
            NULL;
        END;
    ELSE                        -- some of a customer's orders refunded at once
        UPDATE crm.orders SET status = 'refunded' WHERE customer_id = cust AND random() < 0.5;
    END IF;
END $$;

CREATE TEMP TABLE refreshes (op integer, max_batches integer, batch_size integer, mode text, pending_after bigint, error text);
CREATE TEMP TABLE checkpoints (op integer, differences bigint, first_rows text);

-- A full refresh, then verify(): the differences and the first few of them.
CREATE PROCEDURE pg_temp.checkpoint(op integer)
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO refreshes SELECT op, NULL, NULL, r.mode, r.pending_after, r.error FROM crm_kpi.refresh() r;
    CREATE TEMP TABLE diffs AS SELECT * FROM crm_kpi.verify();
    INSERT INTO checkpoints
    SELECT op, (SELECT count(*) FROM diffs),
           (SELECT string_agg(format('%s %s %s: maintained %s, fresh %s', d.table_name, d.key, d.column_name, d.maintained, d.fresh),
                              E'\n') FROM (SELECT * FROM diffs LIMIT 5) d);
    DROP TABLE diffs;
END $$;

-- The workload: ops writes, a refresh every 100 (a checkpoint every 500), commits in between.
CREATE PROCEDURE pg_temp.workload(ops integer, seed float8)
    LANGUAGE plpgsql AS $$
DECLARE
    size integer;
    max_batches integer;
BEGIN
    PERFORM setseed(seed);
    FOR i IN 1..ops LOOP
        IF i = 1750 THEN
            TRUNCATE crm.marketing_spend;  -- everything stale: the next refresh is a rebuild
        ELSE
            PERFORM pg_temp.random_write();
        END IF;
        IF i % 500 = 0 THEN
            CALL pg_temp.checkpoint(i);
        ELSIF i % 100 = 0 THEN
            -- a full refresh, one in small batches, or a single small batch that leaves keys pending
            size := (ARRAY[10000, 20, 5])[1 + floor(random() * 3)::int];
            max_batches := CASE WHEN size = 5 THEN 1 END;
            PERFORM set_config('crm_kpi.refresh_batch_size', size::text, true);
            INSERT INTO refreshes SELECT i, max_batches, size, r.mode, r.pending_after, r.error FROM crm_kpi.refresh(max_batches) r;
        END IF;
        IF i % 37 = 0 OR i % 100 = 0 THEN
            COMMIT;
        END IF;
    END LOOP;
    COMMIT;
END $$;

\set ops 4000
SELECT now() AS started \gset
CALL pg_temp.workload(:ops, :seed);
CALL pg_temp.checkpoint(:ops + 1);
SELECT diag(format('%s random writes and %s refreshes in %s', :ops, count(*), clock_timestamp() - :'started'::timestamptz))
FROM refreshes;

SELECT is(differences, 0::bigint, format('verify() finds no difference after %s random writes', least(op, :ops)))
       || coalesce(E'\n' || diag(first_rows), '')
FROM checkpoints ORDER BY op;
SELECT is((SELECT string_agg(format('op %s: %s', op, error), '; ') FROM refreshes WHERE error IS NOT NULL), NULL,
          'no refresh failed');
SELECT ok((SELECT count(*) FROM refreshes WHERE max_batches = 1 AND pending_after > 0) > 0,
          'some refreshes were partial and left keys pending for the next');
SELECT is((SELECT min(op) FROM refreshes WHERE mode = 'rebuild'), 1800, 'the TRUNCATE at write 1750 made the next refresh a rebuild');

-- The maintained tables against figures computed straight from the sources.
SELECT set_eq('SELECT day, sum(orders) AS orders, sum(revenue) AS revenue FROM crm_kpi.sales_daily GROUP BY day',
              $$SELECT (ordered_at AT TIME ZONE current_setting('crm_kpi.timezone'))::date AS day, count(*) AS orders, sum(amount) AS revenue FROM crm.orders
                WHERE status = 'completed' GROUP BY 1$$,
              'sales_daily: completed orders and revenue of each day');
SELECT set_eq($$SELECT customer_id, orders, revenue, last_order_at FROM crm_kpi.customer_stats$$,
              $$SELECT c.customer_id, count(o.order_id) AS orders, coalesce(sum(o.amount), 0) AS revenue, max(o.ordered_at) AS last_order_at
                FROM crm.customers c LEFT JOIN crm.orders o ON o.customer_id = c.customer_id AND o.status = 'completed'
                     AND o.ordered_at <= (SELECT as_of FROM crm_kpi.engine_state)
                GROUP BY c.customer_id$$,
              'customer_stats: each customer''s completed orders up to as_of, revenue and last order');
SELECT set_eq('SELECT day, opened, resolved, complaints FROM crm_kpi.service_daily',
              $$SELECT (opened_at AT TIME ZONE current_setting('crm_kpi.timezone'))::date AS day, count(*) AS opened, count(resolved_at) AS resolved,
                       count(*) FILTER (WHERE is_complaint) AS complaints
                FROM crm.tickets GROUP BY 1$$,
              'service_daily: tickets opened, resolved and complaints of each day');
SELECT set_eq($$SELECT day, crm_kpi.promoters(nps) AS promoters, crm_kpi.passives(nps) AS passives, crm_kpi.detractors(nps) AS detractors
                FROM crm_kpi.satisfaction_daily WHERE nps IS NOT NULL$$,
              $$SELECT (answered_at AT TIME ZONE current_setting('crm_kpi.timezone'))::date AS day, count(*) FILTER (WHERE score >= 9) AS promoters,
                       count(*) FILTER (WHERE score IN (7, 8)) AS passives, count(*) FILTER (WHERE score <= 6) AS detractors
                FROM crm.survey_responses WHERE kind = 'nps' GROUP BY 1$$,
              'satisfaction_daily: promoters, passives and detractors of each day');
SELECT set_eq($$SELECT day, sum(created) AS created, sum(won) AS won, sum(lost) AS lost, sum(won_amount) AS won_amount
                FROM crm_kpi.pipeline_daily GROUP BY day$$,
              $$SELECT (e.at AT TIME ZONE current_setting('crm_kpi.timezone'))::date AS day, sum(e.created) AS created, sum(e.won) AS won, sum(e.lost) AS lost,
                       sum(e.won_amount) AS won_amount
                FROM (SELECT created_at, 1, 0, 0, 0 FROM crm.opportunities
                      UNION ALL
                      SELECT closed_at, 0, (status = 'won')::int, (status = 'lost')::int,
                             CASE WHEN status = 'won' THEN amount ELSE 0 END
                      FROM crm.opportunities WHERE status <> 'open') AS e (at, created, won, lost, won_amount)
                GROUP BY 1$$,
              'pipeline_daily: opportunities created, won and lost, and the amount won, of each day');
SELECT set_eq($$SELECT month, sum(spend) AS spend FROM crm_kpi.marketing_monthly GROUP BY month HAVING sum(spend) > 0$$,
              $$SELECT date_trunc('month', day)::date AS month, sum(amount) AS spend FROM crm.marketing_spend GROUP BY 1 HAVING sum(amount) > 0$$,
              'marketing_monthly: spend of each month');
SELECT is((SELECT count(*) FROM crm_kpi.change_queue), 0::bigint, 'the last refresh left nothing pending');

-- Time passing: an order (of one customer) and an interaction (of another, who has had one
-- before) dated a second ahead count once they are past.
SELECT min(customer_id) AS buyer, max(customer_id) AS contact FROM crm.customers \gset
INSERT INTO crm.interactions (customer_id, occurred_at) VALUES (:contact, now() - interval '1 day');
DO $$ BEGIN PERFORM crm_kpi.refresh(); END $$;
INSERT INTO crm.orders (customer_id, amount, ordered_at) VALUES (:buyer, 12.5, now() + interval '1 second');
INSERT INTO crm.interactions (customer_id, occurred_at) VALUES (:contact, now() + interval '1 second');
DO $$ BEGIN PERFORM crm_kpi.refresh(); END $$;
DO $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '10 seconds';
BEGIN
    WHILE clock_timestamp() <= (SELECT max(occurred_at) FROM crm.interactions WHERE occurred_at < now() + interval '1 day')
          AND clock_timestamp() < deadline LOOP
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
DO $$ BEGIN PERFORM crm_kpi.refresh(); END $$;
SELECT is((SELECT orders FROM crm_kpi.customer_stats WHERE customer_id = :buyer),
          (SELECT count(*) FROM crm.orders WHERE customer_id = :buyer AND status = 'completed'
                                             AND ordered_at <= (SELECT as_of FROM crm_kpi.engine_state)),
          'an order dated a second ahead is counted in customer_stats once it is past');
-- stage_until covers the next future interaction of every customer, so its count follows time.
SELECT is((SELECT interactions FROM crm_kpi.customer_stats WHERE customer_id = :contact),
          (SELECT count(*) FROM crm.interactions WHERE customer_id = :contact
                                                   AND occurred_at <= (SELECT as_of FROM crm_kpi.engine_state)),
          'an interaction dated a second ahead is counted in customer_stats once it is past');

SELECT * FROM finish();
\i test/fixtures/capture_database.sql
