-- panels_report.sql: the markdown of the panel benchmark (bench/panels.sh), from bench.panel_summary.
\pset format unaligned
\pset tuples_only on
\pset footer off

CREATE FUNCTION bench.ms(x double precision) RETURNS text LANGUAGE sql IMMUTABLE
RETURN to_char(x, 'FM999,999,990.00');
CREATE FUNCTION bench.meta(k text) RETURNS text LANGUAGE sql STABLE
RETURN (SELECT value FROM bench.meta WHERE key = k);
CREATE FUNCTION bench.n(k text) RETURNS text LANGUAGE sql STABLE
RETURN to_char(bench.meta(k)::bigint, 'FM999,999,999,999');

\echo
SELECT '## Grafana panels: the KPI tables against the raw source tables';
\echo
SELECT format('Every panel query of the %s dashboards in `grafana/dashboards` (%s queries), as Grafana sends it: '
              'variables at their defaults (All channels, all reps, grain month), Grafana''s macros expanded by '
              '`test/tap/GrafanaMacros.pm` over the last %s days (%s to %s UTC). The data: '
              '`crm_kpi.generate_sample_data(''crm'', %s, 1, current_date - %s, %s)`, %s orders of %s customers '
              '(sources %s; %s sales reps), then `crm_kpi.rebuild()`: `sales_daily` %s rows, `customer_stats` %s rows, '
              'KPI tables %s. '
              'Each panel is timed against the same panel computed from the source tables (`bench/panels_raw.sql`: '
              'same columns, same rows; one-step crm_kpi aggregates over raw rows), in one session on the server '
              '(`clock_timestamp()` around `EXECUTE`, planning included, every row produced and turned into text), '
              'one warm-up each, then up to %s rounds of the panel and %s of the raw query, interleaved, while '
              'a query''s rounds take less than %s in all (at least 3 of a panel, 1 of a raw query); medians. '
              'Parallel query as configured above (2 workers per gather). "Same rows": the two results compared '
              'row by row (numbers to a relative 1e-9).',
              (SELECT count(DISTINCT uid) FROM bench.panel), (SELECT count(*) FROM bench.panel), bench.meta('panel_days'),
              bench.meta('panel_from'), bench.meta('panel_to'),
              bench.meta('panel_customers'), bench.meta('panel_days'), bench.meta('panel_days'), bench.n('panel_orders'),
              bench.n('panel_customers'), bench.meta('panel_sources_size'), bench.n('panel_rows_sales_reps'), bench.n('panel_sales_daily_rows'),
              bench.n('panel_customer_stats_rows'), bench.meta('panel_kpi_size'),
              bench.meta('panel_kpi_reps'), bench.meta('panel_raw_reps'), bench.meta('panel_budget'));
\echo
\echo '| dashboard | panel | rows | panel ms | min–max ms (runs) | raw ms (runs) | raw ÷ panel | ≤ 20 ms | ≥ 100× | same rows |'
\echo '|---|---|---:|---:|---:|---:|---:|---|---|---|'
SELECT format('| %s | %s | %s | %s | %s–%s (%s) | %s | %s | %s | %s | %s |',
              dashboard, title || CASE WHEN ref_id <> 'A' THEN ' (' || ref_id || ')' ELSE '' END, row_count,
              bench.ms(kpi_ms), bench.ms(kpi_min_ms), bench.ms(kpi_max_ms), kpi_runs,
              CASE WHEN raw_ms IS NULL THEN 'n/a' ELSE format('%s (%s)', bench.ms(raw_ms), raw_runs) END,
              coalesce(to_char(speedup, 'FM999,999,990') || '×', 'n/a'),
              CASE WHEN kpi_ms <= 20 THEN 'yes' ELSE '**no**' END,
              CASE WHEN raw_ms IS NULL THEN 'n/a' WHEN speedup >= 100 THEN 'yes' ELSE '**no**' END,
              CASE WHEN raw_ms IS NULL THEN 'n/a (' || raw_note || ')'
                   WHEN differing_rows = 0 THEN 'yes'
                   ELSE format('**no**: %s of %s/%s rows differ', differing_rows, kpi_rows, raw_rows) END)
FROM bench.panel_summary ORDER BY ord;
\echo
\echo '| target | holds for | panels that miss it |'
\echo '|---|---|---|'
SELECT format('| each panel query ≤ 20 ms | %s of %s | %s |', count(*) FILTER (WHERE kpi_ms <= 20), count(*),
              coalesce(string_agg(format('%s: %s (%s ms)', dashboard, title, bench.ms(kpi_ms)), '; ' ORDER BY kpi_ms DESC)
                           FILTER (WHERE kpi_ms > 20), 'none'))
FROM bench.panel_summary;
SELECT format('| each panel ≥ 100 × faster than its raw equivalent | %s of %s (and %s without one) | %s |',
              count(*) FILTER (WHERE speedup >= 100), count(raw_ms), count(*) - count(raw_ms),
              coalesce(string_agg(format('%s: %s (%s×)', dashboard, title, to_char(speedup, 'FM999,990.0')), '; ' ORDER BY speedup)
                           FILTER (WHERE speedup < 100), 'none'))
FROM bench.panel_summary;
SELECT format('| the same rows as the raw equivalent | %s of %s | %s |', count(*) FILTER (WHERE differing_rows = 0), count(raw_ms),
              coalesce(string_agg(format('%s: %s', dashboard, title), '; ' ORDER BY ord) FILTER (WHERE differing_rows > 0), 'none'))
FROM bench.panel_summary;
\echo
SELECT format('Whole dashboards (sum of the panel medians): %s.',
              string_agg(format('%s %s ms (raw %s ms)', dashboard, bench.ms(kpi), bench.ms(raw)), ', ' ORDER BY min_ord))
FROM (SELECT dashboard, min(ord) AS min_ord, sum(kpi_ms) AS kpi, sum(raw_ms) AS raw FROM bench.panel_summary GROUP BY dashboard) d;
