# 002_packaging.pl: the version is the same everywhere it is written, and the
# installed files are the ones the control file promises.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;

my $control = slurp_file('crm_kpi.control');
my ($version) = $control =~ /^default_version\s*=\s*'([^']+)'/m;
ok(defined $version, 'control file has a default_version');
like($control, qr/^schema\s*=\s*crm_kpi\s*$/m, 'control file fixes the schema');
like($control, qr/^relocatable\s*=\s*false\s*$/m, 'control file says not relocatable');
like($control, qr/^module_pathname\s*=\s*'\$libdir\/crm_kpi'\s*$/m, 'control file names the module');

my $meta = slurp_file('META.json');
my @meta_versions = $meta =~ /"version"\s*:\s*"([^"]+)"/g;
# META.json: the distribution's version and the provided extension's version.
is(scalar(grep { $_ eq $version } @meta_versions), 2, "META.json gives version $version twice");

my $sharedir = `pg_config --sharedir`;
chomp $sharedir;
ok(-f "$sharedir/extension/crm_kpi--$version.sql", "install script crm_kpi--$version.sql is installed");
my $script = slurp_file("$sharedir/extension/crm_kpi--$version.sql");
like($script, qr/\\echo Use "CREATE EXTENSION crm_kpi"/, 'install script refuses to run from psql directly');

done_testing();
