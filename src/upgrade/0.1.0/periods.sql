-- periods.sql: KPI periods (day, week, month, quarter, year) in crm_kpi.timezone (see config.c).

CREATE FUNCTION crm_kpi.period_start(at timestamptz, grain text DEFAULT 'day') RETURNS date
    LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tz text := current_setting('crm_kpi.timezone');
BEGIN
    IF grain NOT IN ('day', 'week', 'month', 'quarter', 'year') THEN
        RAISE EXCEPTION 'unknown period grain "%"', grain
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Grains are day, week (starting on Monday), month, quarter and year.';
    END IF;
    RETURN (date_trunc(grain, at, tz) AT TIME ZONE tz)::date;
END $$;
COMMENT ON FUNCTION crm_kpi.period_start(timestamptz, text) IS
    'First day of the day, week (ISO, from Monday), month, quarter or year containing an instant, in crm_kpi.timezone';

CREATE FUNCTION crm_kpi.period_bounds(first_day date, grain text DEFAULT 'day') RETURNS tstzrange
    LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    tz text := current_setting('crm_kpi.timezone');
    step interval;
BEGIN
    step := CASE grain WHEN 'day' THEN interval '1 day' WHEN 'week' THEN interval '7 days'
                       WHEN 'month' THEN interval '1 month' WHEN 'quarter' THEN interval '3 months'
                       WHEN 'year' THEN interval '1 year' END;
    IF step IS NULL THEN
        RAISE EXCEPTION 'unknown period grain "%"', grain
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Grains are day, week (starting on Monday), month, quarter and year.';
    END IF;
    IF crm_kpi.period_start(first_day::timestamp AT TIME ZONE tz, grain) <> first_day THEN
        RAISE EXCEPTION '% is not the first day of a %', first_day, grain
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN tstzrange(first_day::timestamp AT TIME ZONE tz, (first_day + step)::timestamp AT TIME ZONE tz, '[)');
END $$;
COMMENT ON FUNCTION crm_kpi.period_bounds(date, text) IS
    'The instants of a period, half-open [start, end), from its first day, in crm_kpi.timezone (a DST day has 23 or 25 hours)';
