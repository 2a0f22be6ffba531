-- refresh_memory: a session that refreshes again and again, as the worker does, keeps its caches
-- the same size. The engine's scratch tables are permanent: a batch creates no table and no row
-- type (each would leave entries in the relation and type caches, about 44 kB per refresh).
CREATE EXTENSION crm_kpi;
SET client_min_messages = warning;
SELECT crm_kpi.create_reference_schema('crm');
SELECT count(*) AS tables FROM crm_kpi.generate_sample_data('crm', 200, 3, '2024-01-01', 90);
SELECT mode, error FROM crm_kpi.refresh();

-- Memory of this backend's caches (the cache context and those under it).
CREATE FUNCTION pg_temp.cache_bytes() RETURNS bigint LANGUAGE sql VOLATILE
RETURN (SELECT sum(total_bytes) FROM pg_backend_memory_contexts
        WHERE name = 'CacheMemoryContext' OR parent = 'CacheMemoryContext');
CREATE TEMP TABLE cache_size (after_runs int, bytes bigint);

-- Each statement \gexec runs is a transaction: one order of another customer, then a refresh.
CREATE TEMP VIEW refresh_round AS
SELECT format('INSERT INTO crm.orders (customer_id, amount, ordered_at) VALUES (%s, %s, now() - %L::interval); '
              'SELECT crm_kpi.refresh()', 1 + i % 200, i, (i % 80) || ' days')
FROM generate_series(1, 20) i;
\set ECHO none
\o /dev/null
SELECT * FROM refresh_round \gexec
\o
\set ECHO all
INSERT INTO cache_size SELECT 20, pg_temp.cache_bytes();
\set ECHO none
\o /dev/null
SELECT * FROM refresh_round \gexec
SELECT * FROM refresh_round \gexec
SELECT * FROM refresh_round \gexec
SELECT * FROM refresh_round \gexec
SELECT * FROM refresh_round \gexec
SELECT * FROM refresh_round \gexec
SELECT * FROM refresh_round \gexec
SELECT * FROM refresh_round \gexec
SELECT * FROM refresh_round \gexec
SELECT * FROM refresh_round \gexec
\o
\set ECHO all
INSERT INTO cache_size SELECT 220, pg_temp.cache_bytes();

-- 220 refreshes that each found a change, and no error.
SELECT count(*) AS runs, count(error) AS errors FROM crm_kpi.refresh_history WHERE mode = 'refresh' AND stale_keys > 0;
-- The caches grew by less than 256 kB over those 200 refreshes (before: about 8.8 MB).
SELECT max(bytes) FILTER (WHERE after_runs = 220) - max(bytes) FILTER (WHERE after_runs = 20) < 262144 AS caches_bounded
FROM cache_size;
-- The scratch tables are empty between refreshes, and the KPI tables exact.
SELECT k.table_name, c.rows
FROM crm_kpi.kpi_tables k
CROSS JOIN LATERAL (SELECT (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM crm_kpi.%I', 'staged_' || k.table_name),
                                                                 false, true, '')))[1]::text::int AS rows) c
WHERE c.rows <> 0;
SELECT * FROM crm_kpi.verify();

-- The session that refreshed can drop the extension: it holds nothing of it.
DISCARD TEMP;
DROP SCHEMA crm CASCADE;
DROP EXTENSION crm_kpi;
