-- kpi_random.sql: thousands of seeded random writes to every source (inserts, updates of dates, customers,
-- amounts and statuses, deletes, backdated and future rows, multi-row statements), refreshes in between
-- (some bounded to one batch, one after time moves on), and crm_kpi.verify() empty at every checkpoint.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(8);
SET client_min_messages = warning;
SET crm_kpi.timezone = 'Europe/Paris';
SET crm_kpi.churn_after = '60 days';
SET crm_kpi.active_window = '20 days';
SELECT crm_kpi.create_reference_schema('crm');
SELECT count(*) FROM crm_kpi.generate_sample_data('crm', 300, 5, current_date - 400, 400);
SELECT crm_kpi.refresh();
SELECT is((SELECT count(*) FROM crm_kpi.verify()), 0::bigint, 'exact after the first fill');

-- One random write; r picks the kind of write.
CREATE FUNCTION pg_temp.random_write(r double precision) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    o bigint := (SELECT order_id FROM crm.orders ORDER BY random() LIMIT 1);
    c bigint := (SELECT customer_id FROM crm.customers ORDER BY random() LIMIT 1);
    c2 bigint := (SELECT customer_id FROM crm.customers ORDER BY random() LIMIT 1);
    rep bigint := (SELECT rep_id FROM crm.sales_reps ORDER BY random() LIMIT 1);
    t timestamptz := now() - random() * interval '420 days';
BEGIN
    IF r < 0.22 THEN
        INSERT INTO crm.orders (customer_id, rep_id, status, amount, ordered_at)
        VALUES (c, CASE WHEN random() < 0.8 THEN rep END,
                (ARRAY['completed', 'completed', 'completed', 'completed', 'refunded', 'cancelled'])[1 + floor(random() * 6)::int],
                round((random() * 200)::numeric, 2),
                CASE WHEN random() < 0.05 THEN now() + random() * interval '20 days' ELSE t END);
    ELSIF r < 0.34 THEN
        UPDATE crm.orders SET ordered_at = ordered_at + (random() * 120 - 60) * interval '1 day' WHERE order_id = o;
    ELSIF r < 0.42 THEN
        UPDATE crm.orders SET customer_id = c WHERE order_id = o;
    ELSIF r < 0.50 THEN
        UPDATE crm.orders SET amount = round((random() * 300)::numeric, 2),
                              status = CASE WHEN random() < 0.5 THEN 'completed' ELSE 'refunded' END WHERE order_id = o;
    ELSIF r < 0.56 THEN
        DELETE FROM crm.orders WHERE order_id = o;
    ELSIF r < 0.60 THEN
        -- a multi-row statement: move every order of a customer to another
        UPDATE crm.orders SET customer_id = c2 WHERE customer_id = c;
    ELSIF r < 0.65 THEN
        INSERT INTO crm.tickets (customer_id, opened_at, first_response_at, resolved_at, replies, is_complaint)
        VALUES (c, t, CASE WHEN random() < 0.8 THEN t + random() * interval '10 hours' END,
                CASE WHEN random() < 0.6 THEN t + random() * interval '120 hours' END, floor(random() * 5)::int, random() < 0.1);
    ELSIF r < 0.68 THEN
        UPDATE crm.tickets SET resolved_at = coalesce(resolved_at, opened_at + interval '30 hours'),
                               opened_at = opened_at - interval '1 day'
        WHERE ticket_id = (SELECT ticket_id FROM crm.tickets ORDER BY random() LIMIT 1);
    ELSIF r < 0.73 THEN
        IF random() < 0.5 THEN
            INSERT INTO crm.survey_responses (customer_id, kind, score, answered_at) VALUES (c, 'nps', floor(random() * 11)::int, t);
        ELSE
            INSERT INTO crm.survey_responses (customer_id, kind, score, answered_at) VALUES (c, 'csat', 1 + floor(random() * 5)::int, t);
        END IF;
    ELSIF r < 0.75 THEN
        DELETE FROM crm.survey_responses WHERE response_id = (SELECT response_id FROM crm.survey_responses ORDER BY random() LIMIT 1);
    ELSIF r < 0.80 THEN
        UPDATE crm.opportunities SET status = CASE WHEN random() < 0.5 THEN 'won' ELSE 'lost' END,
                                     closed_at = created_at + random() * interval '40 days'
        WHERE opportunity_id = (SELECT opportunity_id FROM crm.opportunities ORDER BY random() LIMIT 1);
    ELSIF r < 0.84 THEN
        INSERT INTO crm.interactions (customer_id, rep_id, channel, occurred_at) VALUES (c, rep, 'call', t);
    ELSIF r < 0.88 THEN
        UPDATE crm.customers SET acquisition_channel = (ARRAY['organic', 'social', 'email', NULL])[1 + floor(random() * 4)::int]
        WHERE customer_id = c;
    ELSIF r < 0.91 THEN
        INSERT INTO crm.marketing_spend (channel, day, amount)
        VALUES ((ARRAY['organic', 'social', 'email'])[1 + floor(random() * 3)::int], (t AT TIME ZONE 'UTC')::date, round((random() * 500)::numeric, 2))
        ON CONFLICT (channel, day) DO UPDATE SET amount = EXCLUDED.amount;
    ELSIF r < 0.95 THEN
        INSERT INTO crm.customers (created_at, acquisition_channel, name) VALUES (t, 'social', 'new');
    ELSE
        INSERT INTO crm.orders (customer_id, rep_id, status, amount, ordered_at)
        SELECT c, rep, 'completed', 10, t + g * interval '25 days' FROM generate_series(0, 3) g;
    END IF;
END $$;

CREATE FUNCTION pg_temp.random_round(seed double precision, writes int) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM setseed(seed);
    FOR i IN 1 .. writes LOOP
        PERFORM pg_temp.random_write(random());
        IF i % 100 = 0 THEN
            IF i % 300 = 0 THEN
                PERFORM crm_kpi.refresh(max_batches => 1);   -- leaves keys pending
            ELSE
                PERFORM crm_kpi.refresh();
            END IF;
        END IF;
    END LOOP;
    PERFORM crm_kpi.refresh();
    RETURN (SELECT count(*) FROM crm_kpi.verify());
END $$;

SELECT is(pg_temp.random_round(0.1, 600), 0::bigint, 'exact after 600 random writes');
SELECT is(pg_temp.random_round(0.2, 600), 0::bigint, 'exact after 1200 random writes');
SELECT is(pg_temp.random_round(0.3, 600), 0::bigint, 'exact after 1800 random writes');
-- Time moves on 70 days: stages, spells and churn months change by time alone.
SELECT crm_kpi.engine_apply(crm_kpi.engine_settings()), crm_kpi.advance_time(now() + interval '70 days');
SELECT is(pg_temp.random_round(0.4, 600), 0::bigint, 'exact after 2400 random writes and 70 days passing');
SELECT is(pg_temp.random_round(0.5, 600), 0::bigint, 'exact after 3000 random writes');
SELECT is(pg_temp.random_round(0.6, 600), 0::bigint, 'exact after 3600 random writes');
SELECT is((SELECT count(*) FROM crm_kpi.change_queue), 0::bigint, 'nothing left pending');

SELECT * FROM finish();
ROLLBACK;
