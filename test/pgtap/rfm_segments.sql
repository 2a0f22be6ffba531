-- rfm_segments.sql: the RFM segments are the user's to edit, and every buyer keeps exactly one segment: the
-- (recency, frequency) cells 1-5 x 1-5 are covered exactly once (overlaps refused at once, gaps at commit), a
-- segment written over built-in ones replaces them, and the table is dumped with the extension's configuration.
BEGIN;
CREATE EXTENSION crm_kpi;
SELECT plan(18);
SET client_min_messages = warning;
SELECT crm_kpi.create_reference_schema('crm');
SELECT count(*) FROM crm_kpi.generate_sample_data('crm', 400, 3, current_date - 700, 700);
SELECT crm_kpi.refresh();

-- How many segments cover each cell (an independent count).
CREATE FUNCTION pg_temp.cover() RETURNS text LANGUAGE sql AS $$
    SELECT string_agg(n::text, '' ORDER BY r, f)
    FROM (SELECT r, f, (SELECT count(*) FROM crm_kpi.rfm_segments g WHERE r <@ g.recency_scores AND f <@ g.frequency_scores) AS n
          FROM generate_series(1, 5) r, generate_series(1, 5) f) c $$;
-- The check at commit, now (the test runs in one transaction).
CREATE FUNCTION pg_temp.check_now() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    SET CONSTRAINTS crm_kpi.rfm_segments_cover_grid IMMEDIATE;
    SET CONSTRAINTS crm_kpi.rfm_segments_cover_grid DEFERRED;
END $$;
CREATE FUNCTION pg_temp.delete_then_check(seg text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM crm_kpi.rfm_segments WHERE segment = seg;
    PERFORM pg_temp.check_now();
END $$;

SELECT is(pg_temp.cover(), repeat('1', 25), 'the built-in segments cover each of the 25 cells exactly once');
SELECT is((SELECT count(*) FROM crm_kpi.rfm_segments WHERE builtin), 7::bigint, 'seven segments, all built-in');
SELECT ok((SELECT 'crm_kpi.rfm_segments'::regclass = ANY(extconfig) FROM pg_extension WHERE extname = 'crm_kpi'),
          'pg_dump dumps the segments with the extension''s configuration');

-- A segment over the cells of two built-in ones replaces them.
INSERT INTO crm_kpi.rfm_segments (segment, recency_scores, frequency_scores, meaning)
VALUES ('dormant', '[1,2]', '[1,2]', 'few orders, long ago');
SELECT is((SELECT string_agg(segment || ':' || builtin, ' ' ORDER BY segment) FROM crm_kpi.rfm_segments),
          'at risk:true champions:true dormant:false loyal:true needs attention:true potential:true',
          'a segment inserted over "lost" and "hibernating" replaces them, and is the user''s');
SELECT is(pg_temp.cover(), repeat('1', 25), 'each cell still has exactly one segment');
SELECT lives_ok('SELECT pg_temp.check_now()', 'and the check at commit passes');

-- Overlapping a segment of the user's is refused at once; so are scores out of 1-5 and empty ranges.
SELECT throws_ok($$INSERT INTO crm_kpi.rfm_segments (segment, recency_scores, frequency_scores, meaning)
                   VALUES ('sleepy', '[1,1]', '[1,1]', 'x')$$, '23P01', NULL,
                 'a segment over a cell of another segment of the user''s is refused (exclusion_violation)');
SELECT throws_ok($$INSERT INTO crm_kpi.rfm_segments (segment, recency_scores, frequency_scores, meaning)
                   VALUES ('beyond', '[6,7]', '[1,1]', 'x')$$, '23514', NULL, 'scores beyond 5 are refused');
SELECT throws_ok($$INSERT INTO crm_kpi.rfm_segments (segment, recency_scores, frequency_scores, meaning)
                   VALUES ('none', 'empty', '[1,1]', 'x')$$, '23514', NULL, 'an empty range is refused');

-- Editing a built-in segment makes it the user's; one inserted under a built-in name replaces it.
UPDATE crm_kpi.rfm_segments SET meaning = 'our best customers' WHERE segment = 'champions';
INSERT INTO crm_kpi.rfm_segments (segment, recency_scores, frequency_scores, meaning)
VALUES ('loyal', '[3,3]', '[4,5]', 'regulars');
SELECT is((SELECT string_agg(format('%s:%s:%s', segment, meaning, builtin), ' ' ORDER BY segment)
           FROM crm_kpi.rfm_segments WHERE segment IN ('champions', 'loyal')),
          'champions:our best customers:f loyal:regulars:f',
          'an edited built-in segment is the user''s; a segment inserted under a built-in name replaces it');
SELECT throws_ok($$UPDATE crm_kpi.rfm_segments SET recency_scores = '[1,3]', frequency_scores = '[1,4]' WHERE segment = 'dormant'$$, '23P01', NULL,
                 'moving a segment over cells of another segment of the user''s ("loyal") is refused');

-- A gap is refused at commit, with the cells it leaves.
SELECT throws_ok($$SELECT pg_temp.delete_then_check('potential')$$, '23514', 'the RFM segments leave cells without a segment',
                 'a deleted segment whose cells nothing else covers is refused at commit (check_violation)');
SELECT is((SELECT count(*) FROM crm_kpi.rfm_segments WHERE segment = 'potential'), 1::bigint, 'and stays');
-- A segment moved over the cells of a built-in one replaces it too.
UPDATE crm_kpi.rfm_segments SET recency_scores = '[3,5]' WHERE segment = 'potential';
SELECT is((SELECT string_agg(segment, ' ' ORDER BY segment) FROM crm_kpi.rfm_segments),
          'at risk champions dormant loyal potential',
          '"potential" extended over the cells of "needs attention" replaces it');
SELECT lives_ok('SELECT pg_temp.check_now()', 'and every cell still has a segment');

-- Every buyer has exactly one segment, the one of its cell in the edited grid.
SELECT is((SELECT count(*) FROM crm_kpi.customer_kpis), (SELECT count(*) FROM crm_kpi.customer_stats),
          'customer_kpis has one row per customer');
SELECT is((SELECT count(*) FROM crm_kpi.customer_kpis k
           WHERE k.orders > 0 AND k.segment IS DISTINCT FROM
                 CASE WHEN k.recency_score <= 2 AND k.frequency_score <= 2 THEN 'dormant'
                      WHEN k.recency_score <= 2 THEN 'at risk'
                      WHEN k.frequency_score >= 4 AND k.recency_score = 3 THEN 'loyal'
                      WHEN k.frequency_score >= 4 THEN 'champions'
                      ELSE 'potential' END),
          0::bigint, 'each buyer''s segment is that of its (recency, frequency) cell in the edited grid');
SELECT is((SELECT count(*) FROM crm_kpi.customer_kpis WHERE orders > 0 AND segment = 'dormant') > 0, true,
          'and the new segment has buyers');

SELECT * FROM finish();
ROLLBACK;
