#!/usr/bin/perl
# panels_expand.pl: the panel benchmark's queries (bench/panels.sh). Reads every dashboard of
# grafana/dashboards and the raw equivalents of bench/panels_raw.sql, expands both as Grafana
# would send them (test/tap/GrafanaMacros.pm: the variables at their current values, options
# of query variables from the database, then the PostgreSQL macros) over the last 1095 days,
# and prints SQL that fills bench.panel. Dies when a panel has no raw equivalent, or a raw
# equivalent no panel.
#
#   perl -I test/tap bench/panels_expand.pl SRC_DIR DAYS -- PSQL_COMMAND...
use strict;
use warnings;
use JSON::PP;
use GrafanaMacros qw(dashboard_query);

my ($src, $days, $sep, @psql) = @ARGV;
die "usage: panels_expand.pl SRC_DIR DAYS -- PSQL_COMMAND...\n" unless defined $sep && $sep eq '--' && @psql;

sub slurp { my ($f) = @_; open(my $fh, '<:raw', $f) or die "$f: $!\n"; local $/; return <$fh> }

# The raw file: fragments (-- define name) and panel blocks (-- panel uid id refId).
my (%fragment, %raw, $block);
for my $line (split /\n/, slurp("$src/bench/panels_raw.sql"))
{
	if ($line =~ /^-- define (\w+)$/) { $block = \($fragment{$1} = ''); next }
	if ($line =~ /^-- panel (\S+) (\d+) (\w+)$/)
	{
		die "raw query of $1 $2 $3 given twice\n" if exists $raw{"$1 $2 $3"};
		$block = \($raw{"$1 $2 $3"} = '');
		next;
	}
	if ($line =~ /^-- ={10,}/) { undef $block; next }
	$$block .= "$line\n" if $block && ($$block ne '' || $line =~ /\S/);
}
s/\s+\z/\n/ for values %fragment, values %raw;

# Fragments into a query, fragments within fragments too.
sub with_fragments
{
	my ($sql, $depth) = @_;
	die "fragments nest too deep\n" if ($depth // 0) > 10;
	return $sql =~ s{\@(\w+)\@}{
		defined $fragment{$1} ? with_fragments($fragment{$1} =~ s/\n\z//r, ($depth // 0) + 1) : die "no fragment \@$1\@\n"
	}ger;
}

# The values of a query variable, as Grafana gets them from the database.
sub variable_options
{
	my ($query) = @_;
	open(my $fh, '-|', @psql, '-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', "SELECT __value FROM ($query) v")
	  or die "psql: $!\n";
	my @values = map { chomp; $_ } <$fh>;
	close($fh) or die "variable query failed: $query\n";
	return \@values;
}

sub dollar_quote
{
	my ($s) = @_;
	return 'NULL' unless defined $s;
	die "text holds \$q\$\n" if $s =~ /\$q\$/;
	return "\$q\$$s\$q\$";
}

my $json = JSON::PP->new->utf8;
my $to_ms = int(time() * 1000);
my $from_ms = $to_ms - $days * 86_400_000;
my %seen;
my $ord = 0;
print "SET client_min_messages = warning;\n";
print "INSERT INTO bench.meta VALUES ('panel_from', ", dollar_quote(scalar gmtime($from_ms / 1000)), "), ('panel_to', ",
  dollar_quote(scalar gmtime($to_ms / 1000)), ");\n";
for my $file (sort glob("$src/grafana/dashboards/*.json"))
{
	my $d = $json->decode(slurp($file));
	my %options;
	for my $var (grep { $_->{type} eq 'query' } @{ $d->{templating}{list} })
	{
		$options{ $var->{name} } = variable_options($var->{query});
	}
	for my $p (@{ $d->{panels} })
	{
		for my $t (@{ $p->{targets} })
		{
			my $key = "$d->{uid} $p->{id} $t->{refId}";
			die "no raw equivalent of panel $key ($p->{title}) in bench/panels_raw.sql\n" unless exists $raw{$key};
			$seen{$key} = 1;
			my $expand = sub { dashboard_query($d, $p, $_[0], \%options, {}, $from_ms, $to_ms, 0) };
			my $sql = $expand->($t->{rawSql});
			my ($raw_sql, $note) = $raw{$key} =~ /\A-- none: (.*)\n\z/ ? (undef, $1) : ($expand->(with_fragments($raw{$key})), undef);
			print 'INSERT INTO bench.panel (ord, dashboard, uid, panel_id, ref_id, title, panel_type, sql, raw_sql, raw_note) VALUES (',
			  join(', ', ++$ord, map { dollar_quote($_) } $d->{title}, $d->{uid}, $p->{id}, $t->{refId}, $p->{title}, $p->{type},
				$sql, $raw_sql, $note), ");\n";
		}
	}
}
my @stray = grep { !$seen{$_} } sort keys %raw;
die "raw queries of no panel in bench/panels_raw.sql: @stray\n" if @stray;
