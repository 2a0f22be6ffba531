# 005_cookbook.pl: every query of the README's SQL cookbook runs, on sample data, and returns rows.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# The ```sql blocks of the section "## SQL cookbook" of README.md (the tests run from the source tree).
my $readme = slurp_file('README.md');
my ($section) = $readme =~ /^## SQL cookbook\n(.*?)^## /ms;
ok(defined $section, 'the README has a SQL cookbook');
my @blocks = ($section // '') =~ /^```sql\n(.*?)^```/msg;
cmp_ok(scalar @blocks, '>=', 14, 'the cookbook has a block for each group of KPIs');

my $node = PostgreSQL::Test::Cluster->new('cookbook');
$node->init;
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION crm_kpi;
	SELECT crm_kpi.create_reference_schema('crm');
	SELECT count(*) FROM crm_kpi.generate_sample_data('crm', 1500, 11, current_date - 730, 730);
	SELECT error FROM crm_kpi.refresh();
});

for my $i (0 .. $#blocks)
{
	my $sql = $blocks[$i];
	my ($title) = $sql =~ /^--\s*(.*)$/m;
	# Each statement of the block on its own, so that an empty result of any of them shows.
	my @statements = grep { /\S/ } split /;\s*\n/, $sql;
	my $empty = 0;
	my ($ret, $err) = (0, '');
	for my $statement (@statements)
	{
		my ($r, $out, $e) = $node->psql('postgres', "$statement;", on_error_stop => 1);
		if ($r != 0) { ($ret, $err) = ($r, $e); last; }
		$empty++ if $out eq '';
	}
	is($ret, 0, "cookbook block " . ($i + 1) . " runs: $title") or diag($err);
	is($empty, 0, "cookbook block " . ($i + 1) . ": every statement returns rows");
}

$node->stop;
done_testing();
