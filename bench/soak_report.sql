-- soak_report.sql: the markdown of the soak (bench/soak.sh), from bench.soak_sample, bench.soak_pgbench,
-- bench.meta and bench.soak_verdict.
\pset format unaligned
\pset tuples_only on
\pset footer off

CREATE FUNCTION bench.soak_n(x numeric) RETURNS text LANGUAGE sql IMMUTABLE
RETURN to_char(x, 'FM999,999,999,990');
CREATE FUNCTION bench.soak_mb(kb bigint) RETURNS text LANGUAGE sql IMMUTABLE
RETURN coalesce(to_char(kb / 1024.0, 'FM999,990.0'), '–');
CREATE FUNCTION bench.soak_s(x interval) RETURNS text LANGUAGE sql IMMUTABLE
RETURN coalesce(to_char(extract(epoch FROM x), 'FM999,990.0'), '–');

SELECT format('## Soak: %s minutes of writers, dashboard readers and the refresh worker', bench.soak_meta('minutes'));
\echo
SELECT format('- command: `%s`; %s; machine: %s; PostgreSQL %s, crm_kpi %s (revision %s)',
              bench.soak_meta('command'), bench.soak_meta('date'), bench.soak_meta('machine'),
              bench.soak_meta('pg_version'), bench.soak_meta('crm_kpi_version'), bench.soak_meta('revision'));
SELECT format('- data: `crm_kpi.generate_sample_data(''crm'', %s, 1, current_date - %s, %s)`: %s orders, %s tickets, '
              '%s survey responses of %s customers; the refresh worker built the KPI tables, then `crm_kpi.verify()` '
              'was empty', bench.soak_meta('customers'), bench.soak_meta('days'), bench.soak_meta('days'),
              bench.soak_n(bench.soak_meta('orders')::numeric), bench.soak_n(bench.soak_meta('tickets')::numeric),
              bench.soak_n(bench.soak_meta('responses')::numeric), bench.soak_n(bench.soak_meta('customers')::numeric));
SELECT format('- server: shared_preload_libraries = crm_kpi, crm_kpi.enabled on, the worker''s other settings at '
              'their defaults (naptime %s, refresh_batch_size %s, history_limit %s); shared_buffers %s, '
              'autovacuum on, fsync on', bench.soak_meta('naptime'), bench.soak_meta('refresh_batch_size'),
              bench.soak_meta('history_limit'), bench.soak_meta('shared_buffers'));
SELECT '- load, all at once for the whole duration (pgbench -R: paced, not flat out): '
       || string_agg(format('%s (`bench/soak_%s.sql`, %s clients, %s/s)', kind,
                            CASE kind WHEN 'readers' THEN 'read' ELSE kind END, clients, rate), ', ' ORDER BY kind <> 'readers', kind)
       || format('; the readers log in as a role made by `crm_kpi.grant_reader()` and each transaction draws one '
                 'of the %s panel queries of `grafana/dashboards`, expanded as Grafana sends it', bench.soak_meta('panels'))
FROM bench.soak_pgbench;
SELECT format('- sampled every %s s: the refresh worker''s memory (`/proc/<pid>/status` of the `crm_kpi worker` '
              'backend of `pg_stat_activity`: RssAnon, its private memory; VmRSS counts the shared buffers it touched '
              'too), `crm_kpi.change_queue` (keys, age of the oldest), the oldest watermark of '
              '`crm_kpi.kpi_table_state`, `crm_kpi.refresh_history` (rows, errors); after the load, '
              '`crm_kpi.wait_for_refresh()` (a wait with a deadline), then `crm_kpi.verify()`', bench.soak_meta('tick'));
\echo
\echo '| writers / readers | clients | rate /s | transactions | tps | latency avg ms | failed | aborted clients | exit status |'
\echo '|---|---:|---:|---:|---:|---:|---:|---:|---:|'
SELECT format('| %s | %s | %s | %s | %s | %s | %s | %s | %s |', kind, clients, rate, bench.soak_n(transactions),
              to_char(tps, 'FM999,990.0'), to_char(latency_ms, 'FM999,990.0'),
              coalesce(failed::text, '–'), coalesce(aborted::text, '–'), exit_status)
FROM bench.soak_pgbench ORDER BY kind = 'readers', kind;
\echo
\echo 'Per minute of the load (memory at its last sample, the others the largest of its samples; runs and rows since the load began), then after it:'
\echo
\echo '| minute | worker pid | private MB | resident MB | queued keys | queue MB | oldest queued s | watermark age s | history rows | history MB | refresh runs | source rows written |'
\echo '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
SELECT format('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |',
              CASE WHEN phase = 'load' THEN minute::text ELSE phase END,
              pid, bench.soak_mb(anon), bench.soak_mb(rss), bench.soak_n(queued), bench.soak_mb(queue_kb),
              bench.soak_s(queue_age), bench.soak_s(watermark_age), bench.soak_n(history_rows), bench.soak_mb(history_kb),
              bench.soak_n(last_run_id - (SELECT last_run_id FROM bench.soak_sample ORDER BY tick LIMIT 1)),
              bench.soak_n(writes - (SELECT writes FROM bench.soak_sample ORDER BY tick LIMIT 1)))
FROM (SELECT phase, minute,
             (array_agg(worker_pid ORDER BY tick DESC))[1] AS pid,
             (array_agg(rss_anon_kb ORDER BY tick DESC))[1] AS anon,
             (array_agg(rss_kb ORDER BY tick DESC))[1] AS rss,
             max(queued) AS queued, max(queue_kb) AS queue_kb, max(queue_age) AS queue_age,
             max(watermark_age) AS watermark_age, max(history_rows) AS history_rows, max(history_kb) AS history_kb, max(last_run_id) AS last_run_id, max(writes) AS writes,
             min(tick) AS first_tick
      FROM (SELECT *, 1 + floor(extract(epoch FROM at - (SELECT min(at) FROM bench.soak_sample)) / 60)::int AS minute
            FROM bench.soak_sample) s
      GROUP BY phase, CASE WHEN phase = 'load' THEN minute END, minute) m
ORDER BY first_tick;
\echo
SELECT format('Figures: worker private memory first %s MB, peak %s MB, last %s MB (trend after the warm-up %s MB/hour); '
              'queue at most %s keys (its table at most %s MB); oldest queued key p50 %s s, p95 %s s, max %s s; watermark age p50 %s s, max %s s; '
              'history at most %s rows (%s MB); %s refresh runs recorded; %s source rows written.',
              bench.soak_mb((SELECT rss_anon_kb FROM bench.soak_load ORDER BY tick LIMIT 1)),
              bench.soak_mb((SELECT max(rss_anon_kb) FROM bench.soak_sample)),
              bench.soak_mb((SELECT rss_anon_kb FROM bench.soak_sample ORDER BY tick DESC LIMIT 1)),
              (SELECT to_char(3600 * regr_slope(rss_anon_kb, extract(epoch FROM at)) / 1024, 'FM990.0')
               FROM bench.soak_load WHERE pos >= 0.1),
              (SELECT bench.soak_n(max(queued)) FROM bench.soak_sample),
              (SELECT bench.soak_mb(max(queue_kb)) FROM bench.soak_sample),
              (SELECT bench.soak_s(percentile_cont(0.5) WITHIN GROUP (ORDER BY queue_age)) FROM bench.soak_load),
              (SELECT bench.soak_s(percentile_cont(0.95) WITHIN GROUP (ORDER BY queue_age)) FROM bench.soak_load),
              (SELECT bench.soak_s(max(queue_age)) FROM bench.soak_load),
              (SELECT bench.soak_s(percentile_cont(0.5) WITHIN GROUP (ORDER BY watermark_age)) FROM bench.soak_load),
              (SELECT bench.soak_s(max(watermark_age)) FROM bench.soak_load),
              (SELECT bench.soak_n(max(history_rows)) FROM bench.soak_sample),
              (SELECT bench.soak_mb(max(history_kb)) FROM bench.soak_sample),
              (SELECT bench.soak_n(max(last_run_id) - min(last_run_id)) FROM bench.soak_sample),
              (SELECT bench.soak_n(max(writes) - min(writes)) FROM bench.soak_sample));
SELECT format(E'\nThe worker''s memory contexts (`pg_log_backend_memory_contexts()`) after the warm-up and at the end: '
              '%s in %s contexts, then %s in %s; grown most: %s.',
              pg_size_pretty(sum(total_bytes) FILTER (WHERE dump = 'warm')), sum(contexts) FILTER (WHERE dump = 'warm'),
              pg_size_pretty(sum(total_bytes) FILTER (WHERE dump = 'end')), sum(contexts) FILTER (WHERE dump = 'end'),
              (SELECT coalesce(string_agg(format('%s (level %s) %s → %s (%s → %s contexts)', name, level,
                                                 pg_size_pretty(w), pg_size_pretty(e), wc, ec), ', ' ORDER BY e - w DESC), 'none')
               FROM (SELECT name, level, coalesce(sum(total_bytes) FILTER (WHERE dump = 'warm'), 0) AS w,
                            coalesce(sum(total_bytes) FILTER (WHERE dump = 'end'), 0) AS e,
                            coalesce(sum(contexts) FILTER (WHERE dump = 'warm'), 0) AS wc,
                            coalesce(sum(contexts) FILTER (WHERE dump = 'end'), 0) AS ec,
                            coalesce(sum(total_bytes) FILTER (WHERE dump = 'end'), 0)
                            - coalesce(sum(total_bytes) FILTER (WHERE dump = 'warm'), 0) AS grown
                     FROM bench.soak_context GROUP BY name, level
                     ORDER BY grown DESC LIMIT 5) g
               WHERE e > w))
FROM bench.soak_context HAVING count(DISTINCT dump) = 2;
\echo
\echo '| check | measured | criterion | holds |'
\echo '|---|---|---|---|'
SELECT format('| %s | %s | %s | %s |', "check", measured, criterion, CASE WHEN holds THEN 'yes' ELSE '**no**' END)
FROM bench.soak_verdict ORDER BY ord;
SELECT E'\nErrors seen:\n\n' || string_agg(format('- %s %s: `%s`', source, id, error), E'\n' ORDER BY source, id)
FROM bench.soak_error HAVING count(*) > 0;
