-- soak_read.sql (pgbench, bench/soak.sh): a dashboard reader, as the role crm_kpi.grant_reader() made.
-- Each transaction draws one random panel of the Grafana dashboards, expanded as Grafana sends it
-- (bench.panel, filled by bench/panels_expand.pl), to its last row (bench.panel_time).
\set panel random(1, :panels)
SELECT t.ms, t.row_count FROM bench.panel p, bench.panel_time(p.sql) t WHERE p.ord = :panel;
