-- crm_kpi 0.1.7 -> 0.1.8: crm_kpi.service_between() and satisfaction_between() are PL/pgSQL functions, planned once
-- per session instead of inlined into every panel query that calls them, and read the days before the first whole
-- month and after the last by their own ranges of the primary key, instead of every day of the range. The same rows.
\echo Use "ALTER EXTENSION crm_kpi UPDATE TO '0.1.8'" to load this file. \quit

-- The service and satisfaction rows of the days from from_day to to_day (as a Grafana panel's $__timeFilter(day) takes
-- them: from the date of the range's start to that of its end): each whole month among them as its row of
-- <family>_months, the days before the first whole month and after the last as their rows of <family>_daily, each part
-- read by its own range of the primary key. Summed and rolled up, they give what the days give. PL/pgSQL keeps the
-- plan of their query for the session; an SQL function that the planner does not inline is planned at every call.
CREATE OR REPLACE FUNCTION crm_kpi.service_between(from_day date, to_day date) RETURNS SETOF crm_kpi.service_daily
    LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    months daterange := crm_kpi.whole_months(from_day, to_day);
    first_month date := coalesce(lower(months), to_day + 1);  -- no whole month: the days are all before it
    after_months date := coalesce(upper(months), to_day + 1);
BEGIN
    RETURN QUERY
        SELECT m.month, m.opened, m.unanswered, m.resolved, m.resolved_within_sla, m.first_response, m.resolution,
               m.replies_on_resolved, m.complaints
        FROM crm_kpi.service_months m WHERE m.month >= first_month AND m.month < after_months
        UNION ALL
        SELECT s.* FROM crm_kpi.service_daily s WHERE s.day >= from_day AND s.day < first_month
        UNION ALL
        SELECT s.* FROM crm_kpi.service_daily s WHERE s.day >= after_months AND s.day <= to_day;
END $$;
COMMENT ON FUNCTION crm_kpi.service_between(date, date) IS
    'The rows of crm_kpi.service_daily from from_day to to_day, with each whole month among them replaced by its row of crm_kpi.service_months (under the month''s first day): summed and rolled up, the same as those days, from a row per month. A panel passes $__timeFrom() and $__timeTo(), which become the dates of the range''s ends as in $__timeFilter(day); a NULL end gives no rows';

CREATE OR REPLACE FUNCTION crm_kpi.satisfaction_between(from_day date, to_day date) RETURNS SETOF crm_kpi.satisfaction_daily
    LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    months daterange := crm_kpi.whole_months(from_day, to_day);
    first_month date := coalesce(lower(months), to_day + 1);  -- no whole month: the days are all before it
    after_months date := coalesce(upper(months), to_day + 1);
BEGIN
    RETURN QUERY
        SELECT m.month, m.nps, m.csat
        FROM crm_kpi.satisfaction_months m WHERE m.month >= first_month AND m.month < after_months
        UNION ALL
        SELECT s.* FROM crm_kpi.satisfaction_daily s WHERE s.day >= from_day AND s.day < first_month
        UNION ALL
        SELECT s.* FROM crm_kpi.satisfaction_daily s WHERE s.day >= after_months AND s.day <= to_day;
END $$;
COMMENT ON FUNCTION crm_kpi.satisfaction_between(date, date) IS
    'The rows of crm_kpi.satisfaction_daily from from_day to to_day, with each whole month among them replaced by its row of crm_kpi.satisfaction_months (under the month''s first day): rolled up, the same as those days, from a row per month. A panel passes $__timeFrom() and $__timeTo(), which become the dates of the range''s ends as in $__timeFilter(day); a NULL end gives no rows';
