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
});

# Every index of the KPI tables: name, definition, tablespace, comment; and their rows.
my $INDEXES = q{
SELECT string_agg(format('%s|%s|%s|%s', c.relname, pg_get_indexdef(c.oid), coalesce(ts.spcname, '-'),
                         coalesce(obj_description(c.oid, 'pg_class'), '-')), E'\n' ORDER BY c.relname)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid LEFT JOIN pg_tablespace ts ON ts.oid = c.reltablespace
WHERE i.indrelid IN (SELECT format('crm_kpi.%I', table_name)::regclass FROM crm_kpi.kpi_tables)};
my $ROWS = q{
SELECT string_agg(format('%s %s', k.table_name,
                         (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM crm_kpi.%I', k.table_name),
                                                               false, true, '')))[1]::text), ' ' ORDER BY k.position)
FROM crm_kpi.kpi_tables k};
my $before = $node->safe_psql('postgres', $INDEXES);
my $rows = $node->safe_psql('postgres', $ROWS);
like($before, qr/^sales_daily_rep\|.*\|kpi_space\|-$/m, 'an index is in another tablespace');
like($before, qr/^customer_days_day\|.*\|-\|per day, for the sales rollups$/m,
	'an index has a comment');
like($before, qr/^big_customers\|.*WITH \(fillfactor='?70'?\) WHERE \(orders >= 3\)\|/m, 'an index of the administrator\'s');
my $index_oids = $node->safe_psql('postgres', q{SELECT 'crm_kpi.sales_daily_rep'::regclass::oid});

is($node->safe_psql('postgres', q{SELECT mode || ' ' || coalesce(error, 'ok') FROM crm_kpi.rebuild(concurrently => false)}),
	'rebuild ok', 'rebuild(concurrently => false) succeeds');
isnt($node->safe_psql('postgres', q{SELECT 'crm_kpi.sales_daily_rep'::regclass::oid}), $index_oids,
	'it built the indexes again');
is($node->safe_psql('postgres', $INDEXES), $before,
	'every index of the KPI tables is back: name, definition, tablespace and comment');
is($node->safe_psql('postgres', $ROWS), $rows, 'the KPI tables have the same number of rows');
is($node->safe_psql('postgres', 'SELECT count(*) FROM crm_kpi.verify()'), '0', 'and verify() finds no difference');

done_testing();
