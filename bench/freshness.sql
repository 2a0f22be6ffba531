-- freshness.sql: how long after its commit a change is visible in the KPI tables, under a steady
-- load of single-row order inserts (pgbench, bench/freshness_load.sql), with the background worker
-- at its default settings. A probe inserts an order for a rep of its own, commits, and polls
-- crm_kpi.sales_daily every millisecond until the order is counted there.
CREATE TABLE bench.freshness (probe int PRIMARY KEY, committed_at timestamptz NOT NULL, seen_at timestamptz NOT NULL);
INSERT INTO crm.sales_reps (rep_id, name) VALUES (-1, 'freshness probe');

CREATE PROCEDURE bench.freshness_probes(probes int, pause interval)
LANGUAGE plpgsql AS $$
DECLARE
    before bigint;
    committed timestamptz;
    today date;
    deadline timestamptz;
BEGIN
    FOR i IN 1 .. probes LOOP
        today := (now() AT TIME ZONE current_setting('crm_kpi.timezone'))::date;
        SELECT coalesce(sum(orders), 0) INTO before FROM crm_kpi.sales_daily WHERE day = today AND rep_id = -1;
        INSERT INTO crm.orders (customer_id, rep_id, status, amount, ordered_at)
        VALUES (1 + (i * 7919) % 1000, -1, 'completed', 1, now());
        COMMIT;
        committed := clock_timestamp();
        deadline := committed + interval '60 seconds';
        LOOP
            EXIT WHEN (SELECT coalesce(sum(orders), 0) FROM crm_kpi.sales_daily WHERE day = today AND rep_id = -1) > before;
            IF clock_timestamp() > deadline THEN
                RAISE EXCEPTION 'probe % not visible after 60 s', i;
            END IF;
            PERFORM pg_sleep(0.001);
        END LOOP;
        INSERT INTO bench.freshness VALUES (i, committed, clock_timestamp());
        COMMIT;
        PERFORM pg_sleep(extract(epoch FROM pause));
    END LOOP;
END $$;

-- The figures: commit to visible, in milliseconds.
CREATE VIEW bench.freshness_figures AS
SELECT count(*) AS probes,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95_ms,
       max(ms) AS max_ms
FROM (SELECT 1000 * extract(epoch FROM seen_at - committed_at) AS ms FROM bench.freshness) f;
