-- sample_data.sql: crm_kpi.generate_sample_data(), a seeded, set-based generator of a realistic CRM.
--
-- Every pseudo-random number is a hash of (seed, row key, salt): the same arguments give the
-- same rows whatever the plan, the number of parallel workers or the session's settings.

-- A uniform number in (0, 1) from (seed, n, salt).
CREATE FUNCTION crm_kpi.sample_uniform(seed bigint, n bigint, salt int) RETURNS float8
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ((pg_catalog.hashint8extended(n, seed # (salt::bigint << 32)) >> 11) & 9007199254740991)::float8
           / 9007199254740992.0 + 0.5 / 9007199254740992.0;
COMMENT ON FUNCTION crm_kpi.sample_uniform(bigint, bigint, int) IS
    'Sample-data helper: a pseudo-random uniform number in (0, 1), a hash of (seed, n, salt); the same arguments always give the same number';

-- A standard normal number from (seed, n, salt) (Box-Muller on salts salt and -1 - salt).
CREATE FUNCTION crm_kpi.sample_normal(seed bigint, n bigint, salt int) RETURNS float8
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN pg_catalog.sqrt(-2.0 * pg_catalog.ln(crm_kpi.sample_uniform(seed, n, salt)))
           * pg_catalog.cos(2.0 * pg_catalog.pi() * crm_kpi.sample_uniform(seed, n, -1 - salt));
COMMENT ON FUNCTION crm_kpi.sample_normal(bigint, bigint, int) IS
    'Sample-data helper: a pseudo-random standard normal number (Box-Muller over two sample_uniform numbers, salts salt and -1 - salt)';

-- A log-normal number with the given median and sigma (of its logarithm).
CREATE FUNCTION crm_kpi.sample_lognormal(seed bigint, n bigint, salt int, median float8, sigma float8) RETURNS float8
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN median * pg_catalog.exp(sigma * crm_kpi.sample_normal(seed, n, salt));
COMMENT ON FUNCTION crm_kpi.sample_lognormal(bigint, bigint, int, float8, float8) IS
    'Sample-data helper: a pseudo-random log-normal number with the given median and sigma of its logarithm';

-- The time (Unix epoch seconds) of a customer's order number j (0 = first): a mean gap per
-- customer with +-40 % jitter per order, so that times strictly increase with j, and a pause
-- (a churn then a reactivation) after order pause_after.
CREATE FUNCTION crm_kpi.sample_order_epoch(seed bigint, customer_id bigint, j int, first_epoch float8,
                                           gap_days float8, pause_after int, pause_days float8) RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN first_epoch
           + 86400.0 * gap_days * (j + CASE WHEN j > 0
                                            THEN 0.8 * (crm_kpi.sample_uniform(seed, customer_id * 256 + j, 11) - 0.5)
                                            ELSE 0 END)
           + CASE WHEN j > pause_after THEN 86400.0 * pause_days ELSE 0 END;
COMMENT ON FUNCTION crm_kpi.sample_order_epoch(bigint, bigint, int, float8, float8, int, float8) IS
    'Sample-data helper: epoch seconds of order number j of a customer (mean gap with jitter, optional pause after order pause_after); strictly increasing in j';

CREATE FUNCTION crm_kpi.generate_sample_data(schema_name name DEFAULT 'crm', customers bigint DEFAULT 10000,
                                             seed bigint DEFAULT 1, start_date date DEFAULT '2023-01-01',
                                             days int DEFAULT 730)
    RETURNS TABLE (table_name name, row_count bigint, seconds numeric)
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
    SET jit = off
AS $$
DECLARE
    s text := quote_ident(schema_name);
    tables name[] := ARRAY['customers', 'sales_reps', 'opportunities', 'orders', 'interactions',
                           'tickets', 'survey_responses', 'marketing_spend'];
    t name;
    pair name[];
    deferred text[] := '{}';  -- foreign keys and secondary indexes to rebuild after the load
    ddl text;
    t0 float8;   -- start of the period, epoch seconds (UTC midnight of start_date)
    t1 float8;   -- end of the period (excluded)
    reps bigint;
    n bigint;
    has_rows boolean;
    started timestamptz;
    total_started timestamptz := clock_timestamp();
BEGIN
    IF schema_name IS NULL OR customers IS NULL OR seed IS NULL OR start_date IS NULL OR days IS NULL THEN
        RAISE EXCEPTION 'generate_sample_data: arguments must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF customers < 1 OR customers > 1000000000 THEN
        RAISE EXCEPTION 'generate_sample_data: customers = % is out of range 1 to 1000000000', customers
            USING ERRCODE = '22003';
    END IF;
    IF days < 1 OR days > 36500 THEN
        RAISE EXCEPTION 'generate_sample_data: days = % is out of range 1 to 36500', days USING ERRCODE = '22003';
    END IF;
    -- The refresh engine's lock: a refresh reading these tables and the ALTER TABLEs below would deadlock.
    PERFORM pg_advisory_xact_lock(7226110472398251520);
    IF NOT isfinite(start_date) THEN
        RAISE EXCEPTION 'generate_sample_data: start_date must be finite' USING ERRCODE = '22008';
    END IF;

    -- A schema without tables (or no schema yet) gets the reference schema.
    IF NOT EXISTS (SELECT FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
                   WHERE ns.nspname = schema_name AND c.relkind IN ('r', 'p')) THEN
        PERFORM crm_kpi.create_reference_schema(schema_name);
    END IF;
    FOREACH t IN ARRAY tables LOOP
        IF to_regclass(format('%s.%I', s, t)) IS NULL THEN
            RAISE EXCEPTION 'generate_sample_data: schema % has tables but no table %', s, quote_ident(t)
                USING ERRCODE = '42P01',
                      HINT = 'Generate into a new schema, or one made by crm_kpi.create_reference_schema().';
        END IF;
        EXECUTE format('SELECT EXISTS (SELECT FROM %s.%I)', s, t) INTO has_rows;
        IF has_rows THEN
            RAISE EXCEPTION 'generate_sample_data: table %.% already holds rows', s, quote_ident(t)
                USING ERRCODE = '55000',
                      DETAIL = 'Sample data is only generated into empty tables.',
                      HINT = 'Use a new schema name, or empty the reference tables first.';
        END IF;
    END LOOP;

    t0 := extract(epoch FROM start_date::timestamp AT TIME ZONE 'UTC');
    t1 := t0 + 86400.0 * days;
    reps := greatest(3, customers / 200);

    -- Per-customer parameters, all functions of (seed, customer_id); days of creation follow a
    -- weekly and yearly season with growth, by quantiles of the days' cumulative weights, so
    -- customer ids increase with their creation time.
    started := clock_timestamp();
    IF to_regclass('pg_temp.crm_kpi_sample_customers') IS NOT NULL THEN
        DROP TABLE pg_temp.crm_kpi_sample_customers;
    END IF;
    CREATE TEMP TABLE crm_kpi_sample_customers ON COMMIT DROP AS
    WITH w AS (
        SELECT d, (1 + 0.25 * cos(2 * pi() * (extract(doy FROM start_date + d) - 345) / 365.25))
                  * CASE extract(isodow FROM start_date + d) WHEN 6 THEN 0.7 WHEN 7 THEN 0.55 ELSE 1.15 END
                  * (1 + 0.6 * d / days) AS weight
        FROM generate_series(0, days - 1) d
    ), cdf AS MATERIALIZED (
        SELECT array_agg(cum ORDER BY d) AS starts
        FROM (SELECT d, (sum(weight) OVER (ORDER BY d) - weight) / sum(weight) OVER () AS cum FROM w) x
    ), base AS MATERIALIZED (
        SELECT i AS id,
               t0 + 86400.0 * (width_bucket((i - 0.5::float8) / customers, cdf.starts) - 1
                               + 0.25 + 0.6 * crm_kpi.sample_uniform(seed, i, 1)) AS created,
               crm_kpi.sample_uniform(seed, i, 2) AS u_channel,
               crm_kpi.sample_uniform(seed, i, 3) AS u_buy
        FROM generate_series(1, customers) i, cdf
    ), p AS (
        SELECT id, created,
               CASE WHEN u_channel < 0.35 THEN 'organic' WHEN u_channel < 0.60 THEN 'paid_search'
                    WHEN u_channel < 0.75 THEN 'social' WHEN u_channel < 0.85 THEN 'referral'
                    ELSE 'email' END AS channel,
               u_buy < CASE WHEN u_channel < 0.35 THEN 0.35 WHEN u_channel < 0.60 THEN 0.30
                            WHEN u_channel < 0.75 THEN 0.18 WHEN u_channel < 0.85 THEN 0.50
                            ELSE 0.40 END AS converts,
               created + 3600.0 + 86400.0 * crm_kpi.sample_lognormal(seed, id, 4, 6, 1.3) AS first_epoch,
               -- orders the customer would place before dropping out: geometric, per-customer stop rate
               least(255, 1 + floor(ln(crm_kpi.sample_uniform(seed, id, 5))
                                    / ln(1 - (0.02 + 0.23 * crm_kpi.sample_uniform(seed, id, 6)))))::int AS planned,
               greatest(1.0, crm_kpi.sample_lognormal(seed, id, 7, 28, 0.6)) AS gap_days,
               crm_kpi.sample_uniform(seed, id, 9) AS u_pause,
               crm_kpi.sample_uniform(seed, id, 10) AS u_pause_at,
               200 + 300 * crm_kpi.sample_uniform(seed, id, 16) AS pause_days,
               1 + (hashint8extended(id, seed # (17::bigint << 32)) & 9223372036854775807) % reps AS rep_id,
               0.3 * crm_kpi.sample_normal(seed, id, 15) AS spend_level
        FROM base
    ), b AS (
        SELECT p.*, converts AND first_epoch < t1 AS buyer,
               CASE WHEN u_pause < 0.15 THEN floor(u_pause_at * planned)::int END AS pause_after
        FROM p
    ), o AS MATERIALIZED (
        SELECT b.*,
               CASE WHEN buyer THEN (SELECT count(*) FROM generate_series(0, planned - 1) j
                                     WHERE crm_kpi.sample_order_epoch(seed, b.id, j, first_epoch, gap_days,
                                                                      pause_after, pause_days) < t1)
                    ELSE 0 END::int AS n_orders
        FROM b
    ), c AS (
        SELECT o.*,
               CASE WHEN n_orders > 0 THEN crm_kpi.sample_order_epoch(seed, id, n_orders - 1, first_epoch, gap_days,
                                                                      pause_after, pause_days) END AS last_epoch,
               CASE WHEN buyer THEN 1 + floor(3 * crm_kpi.sample_uniform(seed, id, 18))
                    WHEN crm_kpi.sample_uniform(seed, id, 19) < 0.55 THEN 1 + floor(3 * crm_kpi.sample_uniform(seed, id, 18))
                    ELSE 0 END::int AS n_pre,
               (n_orders / 2)::int AS n_post,
               CASE WHEN buyer THEN floor(0.35 * n_orders + crm_kpi.sample_uniform(seed, id, 20)) ELSE 0 END::int AS n_tickets,
               (CASE WHEN crm_kpi.sample_uniform(seed, id, 40) < CASE WHEN buyer THEN 0.45 ELSE 0.20 END THEN 1 ELSE 0 END
                + CASE WHEN crm_kpi.sample_uniform(seed, id, 41) < 0.08 THEN 1 ELSE 0 END)::int AS n_opps
        FROM o
    )
    SELECT c.*,
           coalesce(sum(n_orders) OVER w - n_orders, 0)::bigint AS order_base,
           coalesce(sum(n_pre + n_post) OVER w - n_pre - n_post, 0)::bigint AS interaction_base,
           coalesce(sum(n_tickets) OVER w - n_tickets, 0)::bigint AS ticket_base,
           coalesce(sum(n_opps) OVER w - n_opps, 0)::bigint AS opportunity_base
    FROM c
    WINDOW w AS (ORDER BY id);
    ANALYZE pg_temp.crm_kpi_sample_customers;
    RAISE NOTICE 'generate_sample_data: planned % customers in % s', customers,
        round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- Loading is faster without per-row foreign-key checks and index maintenance: drop the
    -- foreign keys and the indexes that back no constraint, and rebuild them, unchanged, once
    -- the tables are full (in this same transaction, so nobody sees them missing).
    started := clock_timestamp();
    SELECT coalesce(array_agg(format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname,
                                     pg_get_constraintdef(c.oid)) ORDER BY c.oid), '{}')
      INTO deferred
      FROM pg_constraint c
     WHERE c.contype = 'f' AND c.conrelid IN (SELECT format('%s.%I', s, x)::regclass FROM unnest(tables) x);
    SELECT deferred || coalesce(array_agg(pg_get_indexdef(i.indexrelid) ORDER BY i.indexrelid), '{}')
      INTO deferred
      FROM pg_index i
     WHERE i.indrelid IN (SELECT format('%s.%I', s, x)::regclass FROM unnest(tables) x)
       AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)
       AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.refclassid = 'pg_class'::regclass
                       AND d.refobjid = i.indexrelid AND d.classid <> 'pg_class'::regclass);
    FOR ddl IN
        SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname)
          FROM pg_constraint c
         WHERE c.contype = 'f' AND c.conrelid IN (SELECT format('%s.%I', s, x)::regclass FROM unnest(tables) x)
        UNION ALL
        SELECT format('DROP INDEX %s', i.indexrelid::regclass)
          FROM pg_index i
         WHERE i.indrelid IN (SELECT format('%s.%I', s, x)::regclass FROM unnest(tables) x)
           AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid)
           AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.refclassid = 'pg_class'::regclass
                           AND d.refobjid = i.indexrelid AND d.classid <> 'pg_class'::regclass)
    LOOP
        EXECUTE ddl;
    END LOOP;

    -- customers
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.customers (customer_id, created_at, acquisition_channel, name, email, phone)
        SELECT id, to_timestamp(floor(created)), channel, 'Customer ' || id,
               CASE WHEN crm_kpi.sample_uniform($1, id, 21) >= 0.04 THEN 'customer' || id || '@example.com' END,
               CASE WHEN crm_kpi.sample_uniform($1, id, 22) >= 0.30
                    THEN '+1-555-' || lpad(((hashint8extended(id, $1 # (23::bigint << 32)) & 9223372036854775807) %% 10000000)::text, 7, '0') END
        FROM pg_temp.crm_kpi_sample_customers$q$, s) USING seed;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT 'customers'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.customers in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- sales reps, in four teams
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.sales_reps (rep_id, name, team)
        SELECT r, 'Rep ' || r, (ARRAY['North', 'South', 'East', 'West'])[1 + floor(4 * crm_kpi.sample_uniform($2, r, 61))::int]
        FROM generate_series(1, $1) r$q$, s) USING reps, seed;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT 'sales_reps'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.sales_reps in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- opportunities: created soon after the customer; won more often by customers who buy
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.opportunities (opportunity_id, customer_id, rep_id, status, stage, amount, created_at, closed_at)
        SELECT opportunity_id, id, rep_id, status,
               CASE WHEN status = 'won' THEN CASE WHEN u_stage < 0.70 THEN 'negotiation' WHEN u_stage < 0.95 THEN 'proposal' ELSE 'qualification' END
                    WHEN status = 'lost' THEN CASE WHEN u_stage < 0.45 THEN 'qualification' WHEN u_stage < 0.80 THEN 'proposal' ELSE 'negotiation' END
                    ELSE CASE WHEN u_stage < 0.40 THEN 'qualification' WHEN u_stage < 0.75 THEN 'proposal' ELSE 'negotiation' END END,
               amount, to_timestamp(floor(created_epoch)),
               CASE WHEN status <> 'open' THEN to_timestamp(floor(closed_epoch)) END
        FROM (SELECT x.*, CASE WHEN closed_epoch >= $3 OR crm_kpi.sample_uniform($1, k, 44) < 0.08 THEN 'open'
                               WHEN crm_kpi.sample_uniform($1, k, 45) < CASE WHEN buyer THEN 0.65 ELSE 0.12 END THEN 'won'
                               ELSE 'lost' END AS status
              FROM (SELECT c.opportunity_base + j + 1 AS opportunity_id, c.id, c.rep_id, c.buyer, c.id * 256 + j AS k,
                           crm_kpi.sample_uniform($1, c.id * 256 + j, 46) AS u_stage,
                           round(crm_kpi.sample_lognormal($1, c.id * 256 + j, 47, 800, 0.8)::numeric, 2) AS amount,
                           oc.created_epoch,
                           oc.created_epoch + 86400.0 * crm_kpi.sample_lognormal($1, c.id * 256 + j, 43, 21, 0.7) AS closed_epoch
                    FROM pg_temp.crm_kpi_sample_customers c, generate_series(0, c.n_opps - 1) j,
                         LATERAL (SELECT c.created + least(3600.0 + 86400.0 * crm_kpi.sample_lognormal($1, c.id * 256 + j, 42, 2 + 20 * j, 1.0),
                                                           0.9 * ($3 - c.created)) AS created_epoch) oc) x) y$q$,
        s) USING seed, t0, t1;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT 'opportunities'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.opportunities in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- orders: log-normal amounts per channel, ~5 %% refunded, ~3 %% cancelled
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.orders (order_id, customer_id, rep_id, status, amount, ordered_at)
        SELECT c.order_base + j + 1, c.id,
               CASE WHEN crm_kpi.sample_uniform($1, c.id * 256 + j, 12) < 0.7 THEN c.rep_id END,
               CASE WHEN crm_kpi.sample_uniform($1, c.id * 256 + j, 13) < 0.05 THEN 'refunded'
                    WHEN crm_kpi.sample_uniform($1, c.id * 256 + j, 13) < 0.08 THEN 'cancelled'
                    ELSE 'completed' END,
               round((CASE c.channel WHEN 'organic' THEN 60 WHEN 'paid_search' THEN 55 WHEN 'social' THEN 40
                                     WHEN 'referral' THEN 80 ELSE 50 END
                      * exp(c.spend_level + 0.55 * crm_kpi.sample_normal($1, c.id * 256 + j, 14)))::numeric, 2),
               to_timestamp(floor(crm_kpi.sample_order_epoch($1, c.id, j, c.first_epoch, c.gap_days,
                                                             c.pause_after, c.pause_days)))
        FROM pg_temp.crm_kpi_sample_customers c, generate_series(0, c.n_orders - 1) j
        WHERE c.n_orders > 0$q$, s) USING seed;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT 'orders'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.orders in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- interactions: before the first order (or soon after creation for those who never buy), then
    -- about one for every two orders while the customer buys
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.interactions (interaction_id, customer_id, rep_id, channel, occurred_at)
        SELECT c.interaction_base + j + 1, c.id,
               CASE WHEN crm_kpi.sample_uniform($1, c.id * 256 + j, 24) < 0.85 THEN c.rep_id END,
               (ARRAY['email', 'call', 'meeting', 'chat'])[1 + floor(4 * crm_kpi.sample_uniform($1, c.id * 256 + j, 25))::int],
               to_timestamp(floor(CASE WHEN j < c.n_pre
                   THEN c.created + (CASE WHEN c.buyer THEN c.first_epoch ELSE least(c.created + 30 * 86400.0, $2) END - c.created)
                                    * (j + crm_kpi.sample_uniform($1, c.id * 256 + j, 26)) / c.n_pre
                   ELSE c.first_epoch + (least(c.last_epoch + 14 * 86400.0, $2) - c.first_epoch)
                                        * crm_kpi.sample_uniform($1, c.id * 256 + j, 26) END))
        FROM pg_temp.crm_kpi_sample_customers c, generate_series(0, c.n_pre + c.n_post - 1) j
        WHERE c.n_pre + c.n_post > 0$q$, s) USING seed, t1;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT 'interactions'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.interactions in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- tickets: log-normal first response (median 3 h) and resolution (median 20 h more);
    -- some unanswered, some unresolved; slow ones more often complaints
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.tickets (ticket_id, customer_id, opened_at, first_response_at, resolved_at, replies, is_complaint)
        SELECT ticket_id, id, to_timestamp(floor(opened)), to_timestamp(floor(responded)), to_timestamp(floor(resolved)),
               CASE WHEN resolved IS NOT NULL THEN 1 + floor(crm_kpi.sample_lognormal($1, k, 34, 1.5, 0.7))::int
                    WHEN responded IS NOT NULL THEN 1 ELSE 0 END,
               crm_kpi.sample_uniform($1, k, 35) < CASE WHEN coalesce(resolved, $2) - opened > 72 * 3600.0 THEN 0.15 ELSE 0.04 END
        FROM (SELECT x.*, CASE WHEN responded IS NOT NULL AND crm_kpi.sample_uniform($1, k, 32) >= 0.07
                                    AND responded + 3600.0 * crm_kpi.sample_lognormal($1, k, 33, 20, 1.1) < $2
                               THEN responded + 3600.0 * crm_kpi.sample_lognormal($1, k, 33, 20, 1.1) END AS resolved
              FROM (SELECT o.*, CASE WHEN crm_kpi.sample_uniform($1, k, 30) >= 0.04
                                          AND opened + 3600.0 * crm_kpi.sample_lognormal($1, k, 31, 3, 1.3) < $2
                                     THEN opened + 3600.0 * crm_kpi.sample_lognormal($1, k, 31, 3, 1.3) END AS responded
                    FROM (SELECT c.ticket_base + j + 1 AS ticket_id, c.id, c.id * 256 + j AS k,
                                 c.first_epoch + (least(c.last_epoch + 30 * 86400.0, $2) - c.first_epoch)
                                                 * crm_kpi.sample_uniform($1, c.id * 256 + j, 29) AS opened
                          FROM pg_temp.crm_kpi_sample_customers c, generate_series(0, c.n_tickets - 1) j
                          WHERE c.n_tickets > 0) o) x) y$q$, s) USING seed, t1;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT 'tickets'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.tickets in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- survey responses: 40 %% of resolved tickets, scores falling with the resolution time
    -- (NPS 0-10 or CSAT 1-5); then a relationship NPS from about a quarter of the buyers
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.survey_responses (response_id, customer_id, kind, score, answered_at, ticket_id)
        SELECT row_number() OVER (ORDER BY ticket_id), customer_id, kind,
               CASE WHEN kind = 'nps'
                    THEN greatest(0, least(10, round(8.6 - 1.4 * z - 2.5 * c + 1.6 * crm_kpi.sample_normal($1, ticket_id, 51))))
                    ELSE greatest(1, least(5, round(4.2 - 0.6 * z - 1.0 * c + 0.8 * crm_kpi.sample_normal($1, ticket_id, 51)))) END::int,
               to_timestamp(floor(r + least(3600.0 * crm_kpi.sample_lognormal($1, ticket_id, 52, 6, 1.0), 0.5 * ($2 - r)))),
               ticket_id
        FROM (SELECT ticket_id, customer_id,
                     CASE WHEN crm_kpi.sample_uniform($1, ticket_id, 50) < 0.5 THEN 'nps' ELSE 'csat' END AS kind,
                     ln(greatest(extract(epoch FROM resolved_at - opened_at), 60) / 86400.0) AS z,
                     is_complaint::int AS c,
                     extract(epoch FROM resolved_at)::float8 AS r
              FROM %s.tickets
              WHERE resolved_at IS NOT NULL AND crm_kpi.sample_uniform($1, ticket_id, 49) < 0.4) t$q$, s, s)
        USING seed, t1;
    GET DIAGNOSTICS n = ROW_COUNT;
    EXECUTE format($q$
        INSERT INTO %s.survey_responses (response_id, customer_id, kind, score, answered_at, ticket_id)
        SELECT $3 + row_number() OVER (ORDER BY id), id, 'nps',
               greatest(0, least(10, round(7.8 + 1.8 * crm_kpi.sample_normal($1, id, 54))))::int,
               to_timestamp(floor(first_epoch + ($2 - first_epoch) * crm_kpi.sample_uniform($1, id, 55))), NULL
        FROM pg_temp.crm_kpi_sample_customers
        WHERE buyer AND crm_kpi.sample_uniform($1, id, 53) < 0.25$q$, s) USING seed, t1, n;
    EXECUTE format('SELECT count(*) FROM %s.survey_responses', s) INTO n;
    RETURN QUERY SELECT 'survey_responses'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.survey_responses in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- marketing spend: every day, every channel, scaled to the customers, with the season
    started := clock_timestamp();
    EXECUTE format($q$
        INSERT INTO %s.marketing_spend (channel, day, amount)
        SELECT ch, $2 + d,
               round((base * $4 / 10000.0
                      * (1 + 0.25 * cos(2 * pi() * (extract(doy FROM $2 + d) - 345) / 365.25))
                      * exp(0.2 * crm_kpi.sample_normal($1, d * 8 + ci, 60)))::numeric, 2)
        FROM generate_series(0, $3 - 1) d,
             (VALUES (1, 'organic', 150.0), (2, 'paid_search', 900.0), (3, 'social', 450.0),
                     (4, 'referral', 120.0), (5, 'email', 80.0)) v(ci, ch, base)
        ORDER BY d, ci$q$, s) USING seed, start_date, days, customers;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN QUERY SELECT 'marketing_spend'::name, n, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);
    RAISE NOTICE 'generate_sample_data: % rows in %.marketing_spend in % s', n, s, round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- Foreign keys (validated in one pass each) and indexes back.
    started := clock_timestamp();
    FOREACH ddl IN ARRAY deferred LOOP
        EXECUTE ddl;
    END LOOP;
    RAISE NOTICE 'generate_sample_data: % foreign keys and indexes rebuilt in % s', cardinality(deferred),
        round(extract(epoch FROM clock_timestamp() - started)::numeric, 1);

    -- Later inserts that take the identity default must not collide with the ids given here.
    FOREACH pair SLICE 1 IN ARRAY ARRAY[['customers', 'customer_id'], ['sales_reps', 'rep_id'],
                                  ['opportunities', 'opportunity_id'], ['orders', 'order_id'],
                                  ['interactions', 'interaction_id'], ['tickets', 'ticket_id'],
                                  ['survey_responses', 'response_id']]::name[] LOOP
        EXECUTE format('SELECT setval(pg_get_serial_sequence(%L, %L), coalesce(max(%I), 1), max(%I) IS NOT NULL) FROM %s.%I',
                       format('%s.%I', s, pair[1]), pair[2], pair[2], pair[2], s, pair[1]);
    END LOOP;
    DROP TABLE pg_temp.crm_kpi_sample_customers;
    -- Statistics for the planner, as autovacuum would gather them later.
    FOREACH pair SLICE 1 IN ARRAY ARRAY[['customers', ''], ['sales_reps', ''], ['opportunities', ''], ['orders', ''],
                                  ['interactions', ''], ['tickets', ''], ['survey_responses', ''],
                                  ['marketing_spend', '']]::name[] LOOP
        EXECUTE format('ANALYZE %s.%I', s, pair[1]);
    END LOOP;
    RAISE NOTICE 'generate_sample_data: done in % s', round(extract(epoch FROM clock_timestamp() - total_started)::numeric, 1);
END $$;
COMMENT ON FUNCTION crm_kpi.generate_sample_data(name, bigint, bigint, date, int) IS
    'Fills an empty reference CRM schema (made when the schema has no tables) with realistic sample data, the same rows for the same arguments; returns rows and seconds per table';
