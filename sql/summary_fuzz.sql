-- summary_fuzz: thousands of random and mutated texts and byte strings fed to the input and
-- receive function of every summary type. Each is either accepted (and then round-trips) or
-- rejected with an ERROR of a data-exception SQLSTATE; the server never crashes.
CREATE EXTENSION crm_kpi;
\i test/fixtures/recv.sql
SELECT setseed(0.20241122);

-- Valid values of every type to mutate (small and large counts, odd numerics and times).
CREATE TEMP TABLE fuzz_seeds (typ regtype, value text);
INSERT INTO fuzz_seeds VALUES
    ('crm_kpi.nps_summary', 'nps v1 promoters=3 passives=0 detractors=300'),
    ('crm_kpi.nps_summary', 'nps v1 promoters=9223372036854775800 passives=7 detractors=0'),
    ('crm_kpi.csat_summary', 'csat v1 s1=1 s2=200 s3=30000 s4=4 s5=5000000'),
    ('crm_kpi.rate_summary', 'rate v1 successes=7 failures=129'),
    ('crm_kpi.purchase_summary', 'purchase v1 orders=2 revenue=1.5 first=2000-01-01T00:00:00+00:00 last=2000-01-01T00:00:01+00:00'),
    ('crm_kpi.purchase_summary', 'purchase v1 orders=40 revenue=123456789.000001 first=1970-01-01T00:00:00.5+00:00 last=2099-12-31T23:59:59.999999+00:00');

-- Random bytes, and mutations of bytes: set a byte, truncate, append, insert, replace all.
CREATE FUNCTION pg_temp.random_bytes(n int) RETURNS bytea LANGUAGE sql AS $$
    SELECT coalesce(decode(string_agg(lpad(to_hex(floor(random() * 256)::int), 2, '0'), ''), 'hex'), '')
    FROM generate_series(1, n) $$;
CREATE FUNCTION pg_temp.mutate_bytes(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE
    n int := length(b);
    pos int := floor(random() * greatest(n, 1));
BEGIN
    CASE floor(random() * 6)::int
        WHEN 0, 1 THEN IF n > 0 THEN RETURN set_byte(b, pos, floor(random() * 256)::int); END IF;
        WHEN 2 THEN RETURN substr(b, 1, floor(random() * (n + 1))::int);
        WHEN 3 THEN RETURN b || pg_temp.random_bytes(1 + floor(random() * 8)::int);
        WHEN 4 THEN RETURN overlay(b PLACING pg_temp.random_bytes(1) FROM pos + 1 FOR 0);
        ELSE RETURN pg_temp.random_bytes(floor(random() * 24)::int);
    END CASE;
    RETURN b;
END $$;
-- Mutations of text: replace, delete or insert a character from a troublesome alphabet, truncate.
CREATE FUNCTION pg_temp.mutate_text(t text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    alphabet text := ' =v0123456789-+.eExXNaIinfTZ:_' || chr(1) || chr(233);
    n int := length(t);
    pos int := 1 + floor(random() * greatest(n, 1));
    c text := substr(alphabet, 1 + floor(random() * length(alphabet))::int, 1);
BEGIN
    CASE floor(random() * 5)::int
        WHEN 0, 1 THEN RETURN overlay(t PLACING c FROM pos FOR 1);
        WHEN 2 THEN RETURN overlay(t PLACING '' FROM pos FOR 1);
        WHEN 3 THEN RETURN overlay(t PLACING c FROM pos FOR 0);
        ELSE RETURN left(t, floor(random() * n)::int);
    END CASE;
END $$;
CREATE FUNCTION pg_temp.try_text(typ regtype, t text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    result text;
BEGIN
    EXECUTE format('SELECT %L::%s::text', t, typ) INTO result;
    RETURN result;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- The canonical bytes of each seed.
ALTER TABLE fuzz_seeds ADD COLUMN bytes bytea;
UPDATE fuzz_seeds SET bytes = CASE typ::text
    WHEN 'crm_kpi.nps_summary' THEN crm_kpi.nps_summary_send(value::crm_kpi.nps_summary)
    WHEN 'crm_kpi.csat_summary' THEN crm_kpi.csat_summary_send(value::crm_kpi.csat_summary)
    WHEN 'crm_kpi.rate_summary' THEN crm_kpi.rate_summary_send(value::crm_kpi.rate_summary)
    WHEN 'crm_kpi.purchase_summary' THEN crm_kpi.purchase_summary_send(value::crm_kpi.purchase_summary)
    END;
SELECT count(*) AS seeds_without_bytes FROM fuzz_seeds WHERE bytes IS NULL;

-- 600 binary and 600 text inputs per seed value, each mutated once or twice.
CREATE TEMP TABLE fuzz_inputs AS
SELECT s.typ, 'binary' AS form,
       encode(pg_temp.mutate_bytes(CASE WHEN random() < 0.5 THEN pg_temp.mutate_bytes(s.bytes) ELSE s.bytes END), 'hex') AS input
FROM fuzz_seeds s, generate_series(1, 600) i
UNION ALL
SELECT s.typ, 'text', pg_temp.mutate_text(CASE WHEN random() < 0.5 THEN pg_temp.mutate_text(s.value) ELSE s.value END)
FROM fuzz_seeds s, generate_series(1, 600) i;

CREATE TEMP TABLE fuzz_results AS
SELECT typ, form, input,
       CASE form WHEN 'binary' THEN pg_temp.recv_as(typ, decode(input, 'hex'))
                 ELSE pg_temp.try_text(typ, input) END AS outcome
FROM fuzz_inputs;

-- Every input was tried; every rejection is a data exception (class 22) from our validation
-- or from the PostgreSQL input functions it calls; no other outcome.
SELECT typ, form, count(*) >= 600 AS tried_enough, count(DISTINCT input) > 300 AS varied,
       count(*) FILTER (WHERE outcome !~ '^[0-9A-Z]{5}: ') > 0 AS some_accepted,
       count(*) FILTER (WHERE outcome ~ '^[0-9A-Z]{5}: ') > 0 AS some_rejected,
       count(*) FILTER (WHERE outcome ~ '^[0-9A-Z]{5}: ' AND outcome !~ '^22') AS unexpected_errors
FROM fuzz_results GROUP BY 1, 2 ORDER BY 1, 2;
SELECT DISTINCT substr(outcome, 1, 5) AS sqlstate FROM fuzz_results WHERE outcome ~ '^[0-9A-Z]{5}: ' ORDER BY 1;

-- Whatever was accepted is a valid value: its text form reads back to itself.
SELECT count(*) AS accepted_values_not_round_tripping
FROM fuzz_results
WHERE outcome !~ '^[0-9A-Z]{5}: ' AND pg_temp.try_text(typ, outcome) IS DISTINCT FROM outcome;

-- The server is still there.
SELECT 1 AS alive;
DISCARD TEMP;
DROP EXTENSION crm_kpi;
