# 010_rebuild_indexes.pl: crm_kpi.rebuild(concurrently => false) empties the
# KPI tables and builds their indexes (other than those of constraints) again
# after the rows are in: every index of every KPI table comes back as it was,
# an index an administrator added (partial, with a storage parameter), moved
# to another tablespace or commented included, and the tables are exact. (A
# tablespace needs a directory the server writes: hence a TAP test.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('rebuild');
$node->init;
$node->start;
my $tsdir = PostgreSQL::Test::Utils::tempdir;

$node->safe_psql('postgres', qq{
SET client_min_messages = warning;
CREATE EXTENSION crm_kpi;
SELECT crm_kpi.create_reference_schema('crm');
SELECT count(*) FROM crm_kpi.generate_sample_data('crm', 300, 5, current_date - 1200, 400);
SELECT error FROM crm_kpi.refresh();
CREATE TABLESPACE kpi_space LOCATION '$tsdir';
ALTER INDEX crm_kpi.sales_daily_rep SET TABLESPACE kpi_space;
COMMENT ON INDEX crm_kpi.customer_days_day IS 'per day, for the sales rollups';
CREATE INDEX big_customers ON crm_kpi.customer_stats (revenue DESC) WITH (fillfactor = 70) WHERE orders >= 3;
ALTER INDEX crm_kpi.customer_spells_pkey SET TABLESPACE kpi_space;
COMMENT ON INDEX crm_kpi.service_daily_pkey IS 'one row per day';
COMMENT ON CONSTRAINT churn_monthly_pkey ON crm_kpi.churn_monthly IS 'one row per month';
ALTER TABLE crm_kpi.customer_spells CLUSTER ON customer_spells_started;
ALTER TABLE crm_kpi.cohort_monthly REPLICA IDENTITY USING INDEX cohort_monthly_pkey;
-- A view grouping by the primary key depends on the constraint: it cannot be dropped.
CREATE VIEW public.satisfaction_days AS
SELECT s.day, s.nps, count(*) AS n FROM crm_kpi.satisfaction_daily s GROUP BY s.day;
});

# Every index of the KPI tables: name, definition, tablespace, comment, marks, and its constraint: name,
# definition, comment; the tables' replica identity; and their rows.
my $INDEXES = q{
SELECT string_agg(format('%s|%s|%s|%s|clustered %s|replident %s|%s|%s|%s', c.relname, pg_get_indexdef(c.oid),
                         coalesce(ts.spcname, '-'), coalesce(obj_description(c.oid, 'pg_class'), '-'),
                         i.indisclustered, i.indisreplident, coalesce(k.conname, '-'),
                         coalesce(pg_get_constraintdef(k.oid), '-'), coalesce(obj_description(k.oid, 'pg_constraint'), '-')),
                  E'\n' ORDER BY c.relname)
       || E'\n' || (SELECT string_agg(t.relname || ' ' || t.relreplident::text, ' ' ORDER BY t.relname) FROM pg_class t
                    WHERE t.oid IN (SELECT format('crm_kpi.%I', table_name)::regclass FROM crm_kpi.kpi_tables))
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid LEFT JOIN pg_tablespace ts ON ts.oid = c.reltablespace
     LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid
WHERE i.indrelid IN (SELECT format('crm_kpi.%I', table_name)::regclass FROM crm_kpi.kpi_tables)};
my $ROWS = q{
SELECT string_agg(format('%s %s', k.table_name,
                         (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM crm_kpi.%I', k.table_name),
                                                               false, true, '')))[1]::text), ' ' ORDER BY k.position)
FROM crm_kpi.kpi_tables k};
my $before = $node->safe_psql('postgres', $INDEXES);
my $rows = $node->safe_psql('postgres', $ROWS);
like($before, qr/^sales_daily_rep\|.*\|kpi_space\|-\|/m, 'an index is in another tablespace');
like($before, qr/^customer_days_day\|.*\|-\|per day, for the sales rollups\|/m,
	'an index has a comment');
like($before, qr/^big_customers\|.*WITH \(fillfactor='?70'?\) WHERE \(orders >= 3\)\|/m, 'an index of the administrator\'s');
like($before, qr/^customer_spells_pkey\|.*\|kpi_space\|-\|clustered f\|replident f\|customer_spells_pkey\|PRIMARY KEY \(customer_id, spell\)\|-$/m,
	'a primary key\'s index is in another tablespace');
like($before, qr/^service_daily_pkey\|.*\|one row per day\|clustered f\|replident f\|service_daily_pkey\|PRIMARY KEY \(day\)\|-$/m,
	'a primary key\'s index has a comment');
like($before, qr/^churn_monthly_pkey\|.*\|churn_monthly_pkey\|PRIMARY KEY \(month\)\|one row per month$/m, 'a constraint has a comment');
like($before, qr/^customer_spells_started\|.*\|clustered t\|/m, 'a table is clustered on an index');
like($before, qr/^cohort_monthly_pkey\|.*\|replident t\|/m, 'a table\'s replica identity is its primary key');
like($before, qr/ cohort_monthly i /, 'by that index');
# Rebuilt indexes are new relations; the one a view depends on is the same.
my $OIDS = q{SELECT 'crm_kpi.sales_daily_rep'::regclass::oid || ' ' || 'crm_kpi.service_daily_pkey'::regclass::oid
                    || ' ' || 'crm_kpi.satisfaction_daily_pkey'::regclass::oid};
my ($rep_oid, $service_oid, $satisfaction_oid) = split / /, $node->safe_psql('postgres', $OIDS);

is($node->safe_psql('postgres', q{SELECT mode || ' ' || coalesce(error, 'ok') FROM crm_kpi.rebuild(concurrently => false)}),
	'rebuild ok', 'rebuild(concurrently => false) succeeds');
my ($rep_after, $service_after, $satisfaction_after) = split / /, $node->safe_psql('postgres', $OIDS);
isnt($rep_after, $rep_oid, 'it built the indexes again');
isnt($service_after, $service_oid, 'and those of the constraints');
is($satisfaction_after, $satisfaction_oid, 'but not that of the primary key a view depends on');
is($node->safe_psql('postgres', $INDEXES), $before,
	'every index and constraint of the KPI tables is back: names, definitions, tablespaces, comments and marks');
is($node->safe_psql('postgres', 'SELECT count(*) FROM public.satisfaction_days'),
	$node->safe_psql('postgres', 'SELECT count(*) FROM crm_kpi.satisfaction_daily'), 'the view reads the rebuilt table');
is($node->safe_psql('postgres', $ROWS), $rows, 'the KPI tables have the same number of rows');
is($node->safe_psql('postgres', 'SELECT count(*) FROM crm_kpi.verify()'), '0', 'and verify() finds no difference');

done_testing();
