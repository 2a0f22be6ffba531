-- sketch_accuracy: crm_kpi.sketch's percentiles against percentile_cont on
-- seeded data sets. The guarantee checked: |estimate - percentile_cont(q)| <=
-- relative_error() * the larger magnitude of the two order statistics that
-- percentile_cont interpolates between (ranks floor and ceil of q * (n - 1)).
-- Only counts of violations are printed, so the expected output is stable.
CREATE EXTENSION crm_kpi;

CREATE TEMP TABLE data (set text, x float8);
SELECT setseed(0.42);
-- Uniform on [0, 1000).
INSERT INTO data SELECT 'uniform', random() * 1000 FROM generate_series(1, 20000);
-- Log-normal: exp(N(0, 2)), by Box-Muller.
INSERT INTO data SELECT 'lognormal', exp(2 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))
FROM generate_series(1, 20000);
-- Bimodal: response times around 50 ms and around 5 s.
INSERT INTO data SELECT 'bimodal', CASE WHEN random() < 0.7 THEN 0.05 * (0.5 + random()) ELSE 5 * (0.5 + random()) END
FROM generate_series(1, 20000);
-- Heavy duplicates: ten distinct values.
INSERT INTO data SELECT 'duplicates', floor(random() * 10) * 2.5 FROM generate_series(1, 20000);
-- Negatives and zeros around zero, spread over many magnitudes.
INSERT INTO data SELECT 'signed', CASE WHEN random() < 0.2 THEN 0 ELSE (random() - 0.5) * 10 ^ (random() * 12 - 6) END
FROM generate_series(1, 20000);
-- Only negatives.
INSERT INTO data SELECT 'negative', -random() * 100 - 1 FROM generate_series(1, 5000);
-- One value and two values.
INSERT INTO data VALUES ('n=1', 42.5), ('n=2', -3), ('n=2', 1e6);
-- A range wide enough to force collapses.
INSERT INTO data SELECT 'wide', (CASE WHEN random() < 0.5 THEN -1 ELSE 1 END) * 10 ^ (random() * 400 - 200)
FROM generate_series(1, 20000);

CREATE TEMP TABLE qs AS SELECT unnest(ARRAY[0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.333, 0.5, 0.667, 0.75,
                                            0.9, 0.95, 0.99, 0.999, 1]::float8[]) AS q;

-- Compare, for each data set and relative error (collapsed: the bound grew
-- because the values span more than 2048 buckets at the requested error).
CREATE TEMP TABLE checks AS
WITH sk AS (SELECT set, a, crm_kpi.sketch_agg(x, a) AS s
            FROM data, unnest(ARRAY[0.01, 0.001, 0.05]::float8[]) a GROUP BY set, a),
sorted AS (SELECT set, array_agg(x ORDER BY x) AS xs, count(*) AS n FROM data GROUP BY set),
exact AS (SELECT set, q, percentile_cont(q) WITHIN GROUP (ORDER BY x) AS exact FROM data, qs GROUP BY set, q)
SELECT sk.set, sk.a, qs.q, crm_kpi.percentile(sk.s, qs.q) AS est, exact.exact,
       crm_kpi.relative_error(sk.s) AS bound,
       sorted.xs[floor(qs.q * (sorted.n - 1))::int + 1] AS lo, sorted.xs[ceil(qs.q * (sorted.n - 1))::int + 1] AS hi
FROM sk JOIN sorted USING (set) CROSS JOIN qs JOIN exact ON exact.set = sk.set AND exact.q = qs.q;

SELECT set, a, count(*) AS checked,
       count(*) FILTER (WHERE abs(est - exact) > bound * greatest(abs(lo), abs(hi)) * (1 + 1e-9)) AS violations,
       count(*) FILTER (WHERE q IN (0, 1) AND est <> exact) AS inexact_ends,
       bool_or(bound > a) AS collapsed
FROM checks GROUP BY set, a ORDER BY set, a;

-- n = 1 and n = 2 are exact at every q.
SELECT set, count(*) FILTER (WHERE est <> exact) AS differences FROM checks
WHERE set IN ('n=1', 'n=2') GROUP BY set ORDER BY set;

-- Percentiles never decrease with q.
SELECT count(*) AS decreasing FROM (
    SELECT est < lag(est) OVER (PARTITION BY set, a ORDER BY q) AS dec FROM checks) d WHERE dec;

-- The one-step aggregate agrees with the sketch, and the array form with the scalar one.
SELECT count(*) FILTER (WHERE one_step IS DISTINCT FROM two_step) AS one_step_differs
FROM (SELECT set, q, crm_kpi.approx_percentile(x, q) AS one_step FROM data, qs GROUP BY set, q) o
JOIN (SELECT set, q, est AS two_step FROM checks WHERE a = 0.01) t USING (set, q);
SELECT count(*) FILTER (WHERE arr IS DISTINCT FROM scalars) AS array_form_differs
FROM (SELECT set, crm_kpi.percentile(s, (SELECT array_agg(q ORDER BY q) FROM qs)) AS arr
      FROM (SELECT set, crm_kpi.sketch_agg(x) AS s FROM data GROUP BY set) k) x
JOIN (SELECT set, array_agg(est ORDER BY q) AS scalars FROM checks WHERE a = 0.01 GROUP BY set) y USING (set);

-- Count, min, max are exact; the mean matches the numeric avg() to within rounding.
SELECT count(*) FILTER (WHERE crm_kpi.count(s) <> n OR crm_kpi.min(s) <> mn OR crm_kpi.max(s) <> mx) AS inexact,
       count(*) FILTER (WHERE abs(crm_kpi.mean(s) - av::float8) > 1e-12 * greatest(abs(mn), abs(mx))) AS mean_off
FROM (SELECT set, crm_kpi.sketch_agg(x) AS s, count(*) AS n, min(x) AS mn, max(x) AS mx, avg(x::numeric) AS av
      FROM data GROUP BY set) t;

DROP EXTENSION crm_kpi;
