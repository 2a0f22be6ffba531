-- report_helpers.sql: formatting and lookup helpers of the report scripts (report.sql, kpi_report.sql).

CREATE FUNCTION bench.ms(x double precision) RETURNS text LANGUAGE sql IMMUTABLE
RETURN to_char(x, 'FM999,999,990.0');
CREATE FUNCTION bench.x(r double precision) RETURNS text LANGUAGE sql IMMUTABLE
RETURN to_char(r, 'FM9,990.00') || '×';
CREATE FUNCTION bench.mode(workers int) RETURNS text LANGUAGE sql IMMUTABLE
RETURN CASE WHEN workers IS NULL THEN 'both' WHEN workers = 0 THEN 'serial' ELSE format('parallel (%s)', workers) END;
CREATE FUNCTION bench.meta(k text) RETURNS text LANGUAGE sql STABLE
RETURN (SELECT value FROM bench.meta WHERE key = k);
-- Whether a comparison times a stand-in (--stand-ins) in place of crm_kpi.
CREATE FUNCTION bench.stand_in(p_comparison int) RETURNS boolean LANGUAGE sql STABLE
RETURN EXISTS (SELECT FROM bench.contender WHERE comparison = p_comparison AND name LIKE 'stand-in%');
CREATE FUNCTION bench.n(k text) RETURNS text LANGUAGE sql STABLE
RETURN to_char(bench.meta(k)::bigint, 'FM999,999,999,999');
