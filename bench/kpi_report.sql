-- kpi_report.sql: the markdown tables of the KPI-table section, from bench.kpi_timing
-- (medians of the timed rounds; round 0, the warm-up, left out) and its targets.
-- Needs the helpers of report_helpers.sql (bench.ms, bench.x, bench.meta, bench.n).
\pset format unaligned
\pset tuples_only on
\pset footer off

-- Medians per part, scenario and contender, the largest memory of any round.
CREATE VIEW bench.kpi_summary AS
SELECT part, scenario, contender,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS median_ms, min(ms) AS min_ms, max(ms) AS max_ms,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY tps) AS median_tps, min(tps) AS min_tps, max(tps) AS max_tps,
       max(anon_peak_kb) AS anon_peak_kb, max(hwm_kb) AS hwm_kb, max(shmem_kb) AS shmem_kb, count(*) AS runs
FROM (SELECT * FROM bench.kpi_timing WHERE rep >= 1
      UNION ALL
      -- both views of part 1 together, round by round
      SELECT part, scenario, 'sales_daily + service_daily', rep, sum(ms), NULL, max(hwm_kb), max(shmem_kb),
             max(anon_peak_kb), NULL
      FROM bench.kpi_timing WHERE part = 1 AND rep >= 1 AND contender IN ('sales_daily', 'service_daily')
      GROUP BY part, scenario, rep) t
GROUP BY part, scenario, contender;

CREATE FUNCTION bench.mb(kb bigint) RETURNS text LANGUAGE sql IMMUTABLE
RETURN CASE WHEN kb IS NULL THEN '' ELSE to_char(kb / 1024.0, 'FM999,990') || ' MB' END;
-- Times the baseline's median the contender's is (NULL when either is missing).
CREATE FUNCTION bench.kpi_ratio(p_part int, p_scenario text, p_contender text, p_baseline text)
RETURNS double precision LANGUAGE sql STABLE
RETURN (SELECT coalesce(c.median_ms / b.median_ms, b.median_tps / c.median_tps)
        FROM bench.kpi_summary c, bench.kpi_summary b
        WHERE c.part = p_part AND b.part = p_part AND c.scenario = p_scenario AND b.scenario = p_scenario
          AND c.contender = p_contender AND b.contender = p_baseline);
-- What a part-1 write did (first timed round): rows, stale days and customers queued.
CREATE FUNCTION bench.kpi_write(p_scenario text, key text) RETURNS text LANGUAGE sql STABLE
RETURN (SELECT to_char((detail ->> key)::bigint, 'FM999,999,999') FROM bench.kpi_timing
        WHERE part = 1 AND scenario = p_scenario AND contender = 'write' AND rep = 1);
CREATE FUNCTION bench.kpi_scenario(s text) RETURNS text LANGUAGE sql IMMUTABLE
RETURN CASE s WHEN 'insert' THEN 'new orders (placed in the last hour)'
              WHEN 'random' THEN 'updates of random orders (amount, 3 h earlier)'
              WHEN 'recent' THEN 'updates of random orders of the last 30 days'
              ELSE s END;

SELECT '## KPI tables: incremental refresh, change capture and rebuild';
\echo
SELECT format('Sources: the reference schema filled by `crm_kpi.generate_sample_data(''crm'', %s, 1, %s, %s)` '
              '(%s days to yesterday): %s orders (`crm.orders` %s with its indexes), %s customers, %s tickets, '
              '%s interactions, %s opportunities, %s survey responses; all sources %s. '
              'KPI tables after the first build: `sales_daily` %s, `customer_stats` %s, `customer_spells` %s. '
              'First build: `crm_kpi.rebuild()` %s ms, the materialized views %s ms. Every time below is of one '
              'statement in a backend of its own, measured on the server (settings as above, '
              'max_parallel_workers_per_gather = 2); contenders alternate in order from round to round; medians '
              'of %s timed rounds in parts 4 and 6 (no warm-up round: the first build has just read everything, and '
              'a round of the full size takes minutes), of %s after a warm-up round in part 5.',
              bench.n('kpi_rows_customers'), bench.meta('kpi_start'), bench.meta('kpi_days'), bench.meta('kpi_days'),
              bench.n('kpi_rows_orders'), bench.meta('kpi_orders_size'), bench.n('kpi_rows_customers'),
              bench.n('kpi_rows_tickets'), bench.n('kpi_rows_interactions'), bench.n('kpi_rows_opportunities'),
              bench.n('kpi_rows_survey_responses'), bench.meta('kpi_sources_size'),
              bench.meta('kpi_size_sales_daily'), bench.meta('kpi_size_customer_stats'),
              bench.meta('kpi_size_customer_spells'),
              (SELECT bench.ms(ms) FROM bench.kpi_timing WHERE part = 0 AND contender = 'crm_kpi.rebuild()'),
              (SELECT bench.ms(ms) FROM bench.kpi_timing WHERE part = 0 AND contender = 'materialized views'),
              bench.meta('kpi_reps'), bench.meta('kpi_capture_reps'));
\echo

-- 4. Incremental refresh against REFRESH ... CONCURRENTLY
SELECT format('### 4. `crm_kpi.refresh()` vs `REFRESH MATERIALIZED VIEW CONCURRENTLY` after %s orders changed (%s %%)',
              bench.n('kpi_changes'),
              round(100.0 * bench.meta('kpi_changes')::numeric / bench.meta('kpi_rows_orders')::numeric, 2));
\echo
\echo 'Each round writes (untimed), then brings the KPIs up to date both ways. `crm_kpi.refresh()` keeps every KPI'
\echo 'table (customers, spells, cohorts, marketing and churn too); the materialized views are the two of'
\echo '`bench/kpi_mv.sql` standing for `sales_daily` (the one order changes touch) and `service_daily`.'
\echo
\echo '| change | stale keys queued | refreshed by | median ms | min–max ms | time ÷ refresh()''s | peak private memory | VmHWM |'
\echo '|---|---|---|---:|---:|---:|---:|---:|'
SELECT format('| %s | %s | %s | %s | %s–%s | %s | %s | %s |',
              CASE WHEN s.contender = 'crm_kpi.refresh()' THEN bench.kpi_scenario(s.scenario) ELSE '' END,
              CASE WHEN s.contender = 'crm_kpi.refresh()'
                   THEN format('days: %s, customers: %s', bench.kpi_write(s.scenario, 'stale_days'),
                               bench.kpi_write(s.scenario, 'stale_customers')) ELSE '' END,
              CASE WHEN s.contender LIKE '%daily%' THEN format('`REFRESH … CONCURRENTLY` of %s', s.contender)
                   ELSE '`' || s.contender || '`' END,
              bench.ms(s.median_ms), bench.ms(s.min_ms), bench.ms(s.max_ms),
              bench.x(bench.kpi_ratio(1, s.scenario, s.contender, 'crm_kpi.refresh()')),
              bench.mb(s.anon_peak_kb), bench.mb(s.hwm_kb))
FROM bench.kpi_summary s
WHERE s.part = 1 AND s.contender <> 'write'
ORDER BY array_position('{insert,random,recent}', s.scenario),
         array_position(ARRAY['crm_kpi.refresh()', 'sales_daily', 'service_daily', 'sales_daily + service_daily'],
                        s.contender);
\echo
SELECT format('What `crm_kpi.refresh()` did (first timed round): %s.',
              string_agg(format('%s: %s batches, %s keys, %s rows written (%s)', t.scenario, t.detail -> 'batches',
                                t.detail -> 'stale_keys', t.detail -> 'rows_touched',
                                (SELECT string_agg(format('%s %s', e.key, e.value), ', ' ORDER BY e.key)
                                 FROM jsonb_each(t.detail -> 'tables') e)), '; '
                         ORDER BY array_position('{insert,random,recent}', t.scenario)))
FROM bench.kpi_timing t WHERE t.part = 1 AND t.contender = 'crm_kpi.refresh()' AND t.rep = 1;
SELECT format('After the last round, `sales_daily` and `service_daily` differ from their views in %s and %s rows.',
              bench.meta('kpi_diff_1_sales_daily'), bench.meta('kpi_diff_1_service_daily'));
\echo

-- 5. Capture overhead
SELECT '### 5. Change capture: writes to `crm.orders` with the capture triggers and without';
\echo
SELECT format('Bulk loads of %s orders of random customers on random days (`bench.kpi_load`, then the same rows by '
              'server-side `COPY` from a file), a checkpoint before each; the loaded rows stay until the end of the part '
              '(the arms alternate in order, so the growing table weighs on both alike); single-row inserts '
              'by `pgbench -c 4 -j 2 -T %s` with `bench/kpi_pgbench.sql` (a warm-up of a quarter of that first). '
              '"Without": `crm_kpi.capture_detach(''orders'', ''crm.orders'')`; "with": `capture_attach`. '
              'Both keep the foreign key, the three indexes and everything else of the table.',
              bench.n('kpi_load_rows'), bench.meta('kpi_pgbench_seconds'));
\echo
\echo '| write | capture | median | min–max | with ÷ without |'
\echo '|---|---|---:|---:|---:|'
SELECT format('| %s | %s | %s | %s | %s |',
              CASE s.scenario WHEN 'insert' THEN format('`INSERT … SELECT` of %s rows', bench.n('kpi_load_rows'))
                              WHEN 'copy' THEN format('`COPY` of %s rows', bench.n('kpi_load_rows'))
                              ELSE 'pgbench: one-row `INSERT`s, 4 clients' END,
              s.contender,
              CASE WHEN s.median_tps IS NULL THEN bench.ms(s.median_ms) || ' ms'
                   ELSE to_char(s.median_tps, 'FM999,990') || ' TPS' END,
              CASE WHEN s.median_tps IS NULL THEN bench.ms(s.min_ms) || '–' || bench.ms(s.max_ms) || ' ms'
                   ELSE to_char(s.min_tps, 'FM999,990') || '–' || to_char(s.max_tps, 'FM999,990') || ' TPS' END,
              CASE WHEN s.contender = 'with' THEN
                   CASE WHEN s.median_tps IS NULL THEN bench.x(bench.kpi_ratio(2, s.scenario, 'with', 'without'))
                        ELSE bench.x(s.median_tps / (SELECT w.median_tps FROM bench.kpi_summary w
                                                     WHERE w.part = 2 AND w.scenario = s.scenario
                                                       AND w.contender = 'without')) || ' (TPS)' END
                   ELSE '' END)
FROM bench.kpi_summary s WHERE s.part = 2
ORDER BY array_position('{insert,copy,pgbench}', s.scenario), s.contender;
\echo

-- 6. Rebuild against REFRESH (non-concurrent)
SELECT '### 6. `crm_kpi.rebuild()` vs `REFRESH MATERIALIZED VIEW` of one view per KPI table';
\echo
\echo 'Both compute every KPI table from scratch: `rebuild()` in one transaction (with the per-customer parts of'
\echo '`sales_daily` and `cohort_monthly`, which have no view; concurrently, readers keep the old rows until it'
\echo 'commits; not concurrently, they wait for it, as they wait for `REFRESH`), the views one after the other'
\echo '(in the order of `crm_kpi.kpi_tables`, each with the indexes of its table). The KPI tables and the views are'
\echo 'vacuumed before each round (untimed), as autovacuum would between rebuilds. Memory: the largest private'
\echo 'memory (RssAnon) of the backend, sampled every 0.1 s, and its VmHWM (peak resident set, which also counts'
\echo 'the shared buffers it touched: RssShmem at the end). After the timed rounds, each runs once more with a'
\echo 'quarter of the memory settings (work_mem 64MB, maintenance_work_mem 128MB), on the same data: memory that'
\echo 'follows the settings falls with them, memory that follows the data does not.'
\echo
\echo '| computed by | work_mem, maintenance_work_mem | median ms | min–max ms | × views | peak private memory | VmHWM | of which shared |'
\echo '|---|---|---:|---:|---:|---:|---:|---:|'
SELECT format('| `%s` | %s | %s | %s–%s | %s | %s | %s | %s |', s.contender,
              CASE s.scenario WHEN 'full' THEN '256MB, 512MB' ELSE '64MB, 128MB (one run)' END,
              bench.ms(s.median_ms), bench.ms(s.min_ms),
              bench.ms(s.max_ms), bench.x(bench.kpi_ratio(3, s.scenario, s.contender, 'REFRESH MATERIALIZED VIEW')),
              bench.mb(s.anon_peak_kb), bench.mb(s.hwm_kb), bench.mb(s.shmem_kb))
FROM bench.kpi_summary s WHERE s.part = 3 ORDER BY s.scenario, s.contender;
\echo
\echo '| KPI table | rows | view: median ms | rows that differ (table vs view) |'
\echo '|---|---:|---:|---:|'
SELECT format('| `%s` | %s | %s | %s |', m.table_name,
              bench.n('kpi_count_' || m.table_name),
              bench.ms((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY (t.detail ->> m.table_name)::float8)
                        FROM bench.kpi_timing t
                        WHERE t.part = 3 AND t.scenario = 'full' AND t.contender = 'REFRESH MATERIALIZED VIEW')),
              bench.meta('kpi_diff_3_' || m.table_name))
FROM bench.kpi_mv m ORDER BY m.position;
\echo

-- Targets of the section
\echo '### Targets (KPI tables)'
\echo
\echo '| target | case | measured | holds |'
\echo '|---|---|---:|---|'
WITH t AS (
	SELECT 1 AS k, array_position('{insert,random,recent}', scenario) AS o,
	       'refresh() ≥ 100 × as fast as REFRESH … CONCURRENTLY of sales_daily' AS target,
	       bench.kpi_scenario(scenario) AS c, bench.kpi_ratio(1, scenario, 'sales_daily', 'crm_kpi.refresh()') AS r,
	       bench.kpi_ratio(1, scenario, 'sales_daily', 'crm_kpi.refresh()') >= 100 AS holds
	FROM (VALUES ('insert'), ('random'), ('recent')) v(scenario)
	UNION ALL
	SELECT 2, array_position('{insert,copy}', scenario), 'bulk load with capture ≤ 1.10 × without',
	       CASE scenario WHEN 'insert' THEN '`INSERT … SELECT`' ELSE '`COPY`' END,
	       bench.kpi_ratio(2, scenario, 'with', 'without'), bench.kpi_ratio(2, scenario, 'with', 'without') <= 1.10
	FROM (VALUES ('insert'), ('copy')) v(scenario)
	UNION ALL
	SELECT 3, 1, 'single-row insert TPS with capture ≥ 0.85 × without', 'pgbench, 4 clients',
	       1 / bench.kpi_ratio(2, 'pgbench', 'with', 'without'), 1 / bench.kpi_ratio(2, 'pgbench', 'with', 'without') >= 0.85
	UNION ALL
	SELECT 4, array_position('{crm_kpi.rebuild(concurrently => false),crm_kpi.rebuild()}', contender),
	       'rebuild() ≤ 1.2 × REFRESH MATERIALIZED VIEW (all the views)', format('`%s`', contender),
	       bench.kpi_ratio(3, 'full', contender, 'REFRESH MATERIALIZED VIEW'),
	       bench.kpi_ratio(3, 'full', contender, 'REFRESH MATERIALIZED VIEW') <= 1.2
	FROM (VALUES ('crm_kpi.rebuild(concurrently => false)'), ('crm_kpi.rebuild()')) v(contender)
)
SELECT format('| %s | %s | %s | %s |', target, c, bench.x(r), CASE WHEN holds THEN 'yes' ELSE '**no**' END)
FROM t ORDER BY k, o;
SELECT format('| memory bounded: peak private memory ≤ 4 × work_mem (%s) | `%s`, %s | %s | %s |',
              pg_size_pretty(4 * pg_size_bytes(current_setting('work_mem'))), s.contender, s.scenario,
              bench.mb(s.anon_peak_kb),
              CASE WHEN s.anon_peak_kb * 1024 <= 4 * pg_size_bytes(current_setting('work_mem')) THEN 'yes' ELSE '**no**' END)
FROM bench.kpi_summary s
WHERE s.part = 1 AND s.contender = 'crm_kpi.refresh()'
ORDER BY array_position('{insert,random,recent}', s.scenario);
-- A rebuild's statements sort and hash every row, each node up to work_mem (hash_mem_multiplier × work_mem for a
-- hash, maintenance_work_mem for an index build): its bound is the settings, and a quarter of them must at least
-- halve its peak. (The views' REFRESH is in the table above, not a target: below its limits, it follows the data.)
SELECT format('| memory follows the settings: peak private memory with a quarter of work_mem and maintenance_work_mem '
              '≤ half the peak with them whole | `%s` | %s vs %s = %s | %s |', s.contender, bench.mb(q.anon_peak_kb),
              bench.mb(s.anon_peak_kb), to_char(q.anon_peak_kb::numeric / s.anon_peak_kb, 'FM0.00'),
              CASE WHEN q.anon_peak_kb * 2 <= s.anon_peak_kb THEN 'yes' ELSE '**no**' END)
FROM bench.kpi_summary s JOIN bench.kpi_summary q USING (part, contender)
WHERE s.part = 3 AND s.scenario = 'full' AND q.scenario = 'quarter' AND s.contender LIKE 'crm_kpi.%'
ORDER BY s.contender DESC;
SELECT format('| the views equal the KPI tables | after parts 4 and 6 | %s rows differ | %s |', sum(value::bigint),
              CASE WHEN sum(value::bigint) = 0 THEN 'yes' ELSE '**no**' END)
FROM bench.meta WHERE key LIKE 'kpi_diff_%';
