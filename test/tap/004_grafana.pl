# 004_grafana.pl: the Grafana dashboards and provisioning files, tested offline
# (no Grafana server). The files parse and hang together (uids, data source,
# refIds, formats, variables); every panel and variable query, expanded as
# Grafana expands it (template variables, then the PostgreSQL data source's
# macros: GrafanaMacros.pm), runs as a role made by crm_kpi.grant_reader() in a
# non-UTC session over sample data, over a range with data and an empty one,
# and returns what its panel needs; it reads only crm_kpi's KPI tables, with
# its time filter on their index. The reader cannot write, refresh or bind.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::Run;
use JSON::PP;
use POSIX qw(floor);
use Time::Local qw(timegm);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use GrafanaMacros qw(go_float rfc3339_nano parse_interval format_interval panel_interval
  interpolate_variables interpolate_global interpolate_macros expand_query dashboard_query);

my $json = JSON::PP->new->utf8->relaxed(0);
my $ds_yaml = slurp_file('grafana/provisioning/datasources/crm_kpi.yaml');
my $provider_yaml = slurp_file('grafana/provisioning/dashboards/crm_kpi.yaml');
my @dashboard_files = sort glob('grafana/dashboards/*.json');

# ====================================================================== provisioning files

# A minimal look at the YAML: no tabs, two-space indentation, and the keys we rely on.
for my $f ([ 'data source', $ds_yaml ], [ 'dashboard provider', $provider_yaml ])
{
	my ($what, $y) = @$f;
	unlike($y, qr/\t/, "$what YAML has no tabs");
	is(scalar(grep { /^( *)\S/ && length($1) % 2 } split /\n/, $y), 0, "$what YAML indents by two spaces");
	like($y, qr/^apiVersion: 1$/m, "$what YAML is provisioning apiVersion 1");
	# Grafana expands ${VAR} with os.ExpandEnv: no ${VAR:-default} forms.
	my @refs = join("\n", grep { !/^\s*#/ } split /\n/, $y) =~ /\$\{([^}]*)\}/g;
	is_deeply([ grep { !/^CRM_KPI_[A-Z]+$/ } @refs ], [], "$what YAML uses only plain \${CRM_KPI_*} variables");
}
my ($ds_uid) = $ds_yaml =~ /^ {4}uid: (\S+)$/m;
my ($ds_type) = $ds_yaml =~ /^ {4}type: (\S+)$/m;
is($ds_uid, 'crm_kpi', 'the data source has the fixed uid crm_kpi');
is($ds_type, 'grafana-postgresql-datasource', 'the data source is PostgreSQL');
like($ds_yaml, qr/^ {2}- name: \S+$/m, 'the data source has a name');
for my $k ([ 'url', '\$\{CRM_KPI_PGHOST\}:\$\{CRM_KPI_PGPORT\}' ], [ 'user', '\$\{CRM_KPI_PGUSER\}' ],
	[ 'database', '\$\{CRM_KPI_PGDATABASE\}' ], [ 'password', '\$\{CRM_KPI_PGPASSWORD\}' ])
{
	like($ds_yaml, qr/^ +$k->[0]: $k->[1]$/m, "data source $k->[0] comes from the environment");
}
like($ds_yaml, qr/^ {4}secureJsonData:\n {6}password: /m, 'the password is secure JSON data');
like($ds_yaml, qr/^ {6}sslmode: disable$/m, 'sslmode is disable');
my ($timescaledb) = $ds_yaml =~ /^ {6}timescaledb: (true|false)$/m;
is($timescaledb, 'false', 'timescaledb is off');
like($provider_yaml, qr/^providers:\n {2}- name: \S+/m, 'the provider file lists a provider');
like($provider_yaml, qr/^ {4}type: file$/m, 'the dashboard provider reads files');
like($provider_yaml, qr/^ {4}options:\n {6}path: \/\S+$/m, 'the dashboard provider has a path');

# ====================================================================== dashboards

my %builtin = map { $_ => 1 } qw(__interval __interval_ms __from __to);
my %macro = map { $_ => 1 } qw(__time __timeEpoch __timeFilter __timeFrom __timeTo __timeGroup __timeGroupAlias
  __unixEpochFilter __unixEpochNanoFilter __unixEpochNanoFrom __unixEpochNanoTo __unixEpochFrom __unixEpochTo
  __unixEpochGroup __unixEpochGroupAlias);

my (@dashboards, %uid_seen, %title_seen);
ok(@dashboard_files >= 6, 'six dashboards or more');
for my $file (@dashboard_files)
{
	my $d = eval { $json->decode(slurp_file($file)) };
	ok($d, "$file is valid JSON") or diag($@);
	next unless $d;
	push @dashboards, { file => $file, model => $d };
	my $uid = $d->{uid} // '';
	like($uid, qr/^[A-Za-z0-9_-]{1,40}$/, "$file has a fixed uid");
	ok(!$uid_seen{$uid}++, "$file: uid $uid is unique");
	ok($d->{title} && !$title_seen{ $d->{title} }++, "$file: title is set and unique");
	is($d->{schemaVersion}, 39, "$file: schemaVersion 39");
	is($d->{timezone}, 'utc', "$file: timezone utc");
	ok($d->{time} && $d->{time}{from} && $d->{time}{to}, "$file: default time range");
	is(ref $d->{templating}{list}, 'ARRAY', "$file: templating list");
	ok(ref $d->{panels} eq 'ARRAY' && @{ $d->{panels} }, "$file: panels");

	my %vars = map { $_->{name} => $_ } @{ $d->{templating}{list} };
	for my $v (@{ $d->{templating}{list} })
	{
		if ($v->{type} eq 'query')
		{
			is($v->{datasource}{uid}, $ds_uid, "$file: variable $v->{name} uses the data source");
			ok(!ref $v->{query} && $v->{query} =~ /\S/ && $v->{query} eq ($v->{definition} // ''),
				"$file: variable $v->{name} has its query");
		}
		elsif ($v->{type} eq 'custom')
		{
			my @o = map { $_->{value} } @{ $v->{options} };
			is(join(',', @o), $v->{query}, "$file: custom variable $v->{name} lists its options");
			ok(grep({ $_ eq $v->{current}{value} } @o), "$file: variable $v->{name}'s current value is an option");
		}
		else { fail("$file: variable $v->{name} has an unexpected type $v->{type}") }
	}
	ok(!$vars{channel} || ($vars{channel}{multi} && $vars{channel}{includeAll}),
		"$file: channel is multi-value with All");
	ok(!$vars{rep} || (!$vars{rep}{multi} && $vars{rep}{includeAll}), "$file: rep is single-value with All");

	my %id_seen;
	for my $p (@{ $d->{panels} })
	{
		my $what = "$file panel $p->{id} \"$p->{title}\"";
		ok(!$id_seen{ $p->{id} }++, "$what: id is unique");
		my $g = $p->{gridPos} // {};
		ok(defined $g->{h} && defined $g->{y} && $g->{w} > 0 && $g->{x} >= 0 && $g->{x} + $g->{w} <= 24,
			"$what: gridPos within 24 columns");
		is_deeply($p->{datasource}, { type => $ds_type, uid => $ds_uid }, "$what: data source");
		ok(ref $p->{targets} eq 'ARRAY' && @{ $p->{targets} }, "$what: has targets");
		my %ref_seen;
		for my $t (@{ $p->{targets} })
		{
			is_deeply($t->{datasource}, { type => $ds_type, uid => $ds_uid }, "$what target $t->{refId}: data source");
			ok(defined $t->{refId} && $t->{refId} ne '' && !$ref_seen{ $t->{refId} }++, "$what: refId $t->{refId} is unique");
			like($t->{format} // '', qr/^(time_series|table)$/, "$what target $t->{refId}: format");
			ok($t->{rawQuery} && ($t->{editorMode} // '') eq 'code' && ($t->{rawSql} // '') =~ /\S/,
				"$what target $t->{refId}: raw SQL");
			my $sql = $t->{rawSql} // '';
			# Grafana versions differ in stripping SQL comments: have none.
			unlike($sql, qr/--|\/\*/, "$what target $t->{refId}: no SQL comments");
			# Every $name, ${name...} and [[name]] is a variable of this dashboard, a built-in or a macro.
			my @unknown;
			while ($sql =~ /\$(\w+)|\[\[(\w+?)(?::\w+)?\]\]|\$\{(\w+)[^}]*\}/g)
			{
				my $n = $1 // $2 // $3;
				push @unknown, $n unless $vars{$n} || $builtin{$n} || $macro{$n};
			}
			is_deeply(\@unknown, [], "$what target $t->{refId}: every variable and macro is known");
			unlike($sql, qr/\bcrm\./, "$what target $t->{refId}: names no crm.* source table");
		}
	}
}

# ====================================================================== Grafana's expansion, unit by unit

{
	my $from = timegm(0, 0, 18, 12, 3, 2018) * 1000;
	my $to = $from + 5 * 60 * 1000;
	my $m = sub { scalar interpolate_macros($_[0], $from, $to, @_[ 1 .. $#_ ]) };
	is($m->('select $__time(time_column)'), 'select time_column AS "time"', '$__time');
	is($m->('select $__timeEpoch(t)'), 'select extract(epoch from t) as "time"', '$__timeEpoch');
	is($m->('WHERE $__timeFilter(time_column)'),
		"WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'", '$__timeFilter: RFC 3339, UTC');
	is($m->('select $__timeFrom(), $__timeTo()'), "select '2018-04-12T18:00:00Z', '2018-04-12T18:05:00Z'",
		'$__timeFrom() and $__timeTo()');
	is($m->("SELECT \$__timeGroup(time_column,'5m')"), 'SELECT floor(extract(epoch from time_column)/300)*300',
		'$__timeGroup');
	is($m->("SELECT \$__timeGroupAlias(time_column , '5m')"),
		'SELECT floor(extract(epoch from time_column)/300)*300 AS "time"', '$__timeGroupAlias, spaces around arguments');
	is($m->("SELECT \$__timeGroup(time_column,'5m'), value"),
		'SELECT floor(extract(epoch from time_column)/300)*300 AS "time", value', '$__timeGroup then a comma: aliased (pre-5.3)');
	is($m->("SELECT \$__timeGroup(time_column,'5m') as time, value"),
		'SELECT floor(extract(epoch from time_column)/300)*300 as time, value', '$__timeGroup then AS: not aliased');
	is($m->('$__timeGroup(day, 1d)'), 'floor(extract(epoch from day)/86400)*86400', 'interval 1d, unquoted');
	is($m->("\$__timeGroup(day, '1w')"), 'floor(extract(epoch from day)/604800)*604800', 'interval 1w');
	is($m->("\$__timeGroup(day, '30d')"), 'floor(extract(epoch from day)/2.592e+06)*2.592e+06',
		'interval 30d: Go writes 2592000 as 2.592e+06');
	is($m->("\$__timeGroup(t, '1h30m')"), 'floor(extract(epoch from t)/5400)*5400', 'interval 1h30m');
	is($m->("\$__timeGroup(t, '100ms')"), 'floor(extract(epoch from t)/0.1)*0.1', 'interval 100ms');
	is($m->("GROUP BY \$__timeGroup(time_column , '12d')", timescaledb => 1),
		"GROUP BY time_bucket('1036800.000s',time_column)", 'TimescaleDB: time_bucket');
	is($m->("GROUP BY \$__timeGroup(time_column,'20ms')", timescaledb => 1),
		"GROUP BY time_bucket('0.020s',time_column)", 'TimescaleDB: a small interval');
	is($m->('select $__unixEpochFilter(time)'), 'select time >= 1523556000 AND time <= 1523556300', '$__unixEpochFilter');
	is($m->('select $__unixEpochNanoFilter(time)'),
		'select time >= 1523556000000000000 AND time <= 1523556300000000000', '$__unixEpochNanoFilter');
	is($m->('select $__unixEpochNanoFrom(), $__unixEpochNanoTo()'), 'select 1523556000000000000, 1523556300000000000',
		'$__unixEpochNanoFrom() and To()');
	is($m->("SELECT \$__unixEpochGroup(time_column+time_adjustment,'5m')"),
		'SELECT floor((time_column+time_adjustment)/300)*300', '$__unixEpochGroup');
	is($m->("SELECT \$__unixEpochGroupAlias(t,'1h')"), 'SELECT floor((t)/3600)*3600 AS "time"', '$__unixEpochGroupAlias');
	my (undef, $fill) = interpolate_macros("SELECT \$__timeGroup(t, '1h', previous)", $from, $to);
	is($fill->{mode}, 'previous', 'a fill argument sets the fill mode');
	(undef, $fill) = interpolate_macros("SELECT \$__timeGroup(t, '1h', 0)", $from, $to);
	is_deeply($fill, { mode => 'value', value => 0 }, 'a fill value');
	for my $bad ([ '$__timeFilterx(day)', qr/unknown macro "__timeFilterx"/ ],
		[ "\$__timeGroup(day)", qr/needs time column and interval/ ],
		[ "\$__timeGroup(day, '1x')", qr/error parsing interval '1x'/ ],
		[ "\$__timeGroup(day,\n'1d')", qr/error parsing interval/ ],
		[ "\$__timeGroup(day, '1d', nope)", qr/error parsing fill value nope/ ])
	{
		eval { $m->($bad->[0]) };
		like($@, $bad->[1], "macro error: $bad->[0]");
	}
	is($m->('$__timeFilter()x'), " BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'x", 'an empty argument is kept');
	my $half = timegm(0, 0, 7, 1, 1, 1960) * 1000 + 500;
	is(scalar interpolate_macros('$__timeFilter(t)', $half, $half + 1000),
		"t BETWEEN '1960-02-01T07:00:00.5Z' AND '1960-02-01T07:00:01.5Z'", 'RFC 3339 with a fraction, before 1970');
	is(scalar interpolate_macros('$__unixEpochFilter(t)', $half, $half), 't >= -312915600 AND t <= -312915600',
		'epoch seconds before 1970 round down');

	# Calendar intervals are counted from now, as Go's AddDate does.
	my $jan31 = timegm(0, 0, 12, 31, 0, 2024) * 1000;
	is(parse_interval('1M', $jan31) / 1e9, 31 * 86400, '1M from 31 January 2024 carries into March');
	is(parse_interval('1y', timegm(0, 0, 0, 29, 1, 2024) * 1000) / 1e9, 366 * 86400, '1y from 29 February');
	is(join(' ', map { go_float($_) } 0.0001, 0.00001, 999999, 1e6, 31536000, -1.5), '0.0001 1e-05 999999 1e+06 3.1536e+07 -1.5',
		'Go %v of float64');
	is(join(' ', map { format_interval(parse_interval($_)) } qw(500ms 90s 2h 36h 400d)), '500ms 1m 2h 1d 1y',
		'gtime.FormatInterval');
	is(interpolate_global('$__interval_ms $__interval $__unixEpochFrom() $__unixEpochTo()', $from, $to, 86400000),
		'86400000 1d 1523556000 1523556300', 'the backend\'s global substitutions');
	is(join(',', panel_interval($from, $from + 365 * 86400000, 1000, '1d')), '86400000,1d',
		'$__interval: a year over 1000 points, at least 1d');
	is(join(',', panel_interval($from, $from + 86400000, 1000)), '60000,1m', '$__interval: a day, at least 1m');
	is(join(',', panel_interval($from, $from + 2 * 365 * 86400000, 100)), '604800000,7d', '$__interval: rounded to a week');

	my %v = (
		grain => { value => 'month' },
		quoted => { value => "it's" },
		channel => { multi => 1, includeAll => 1, value => [ "o'reilly", 'email' ], text => [ "o'reilly", 'email' ],
			options => [ '$__all', "o'reilly", 'email', 'web' ] },
		rep => { includeAll => 1, value => '7', options => [ '$__all', '7', '(none)' ] },
		all => { multi => 1, includeAll => 1, value => ['$__all'], options => [ '$__all', 'a', "b'c" ] },
		custom_all => { multi => 1, includeAll => 1, value => ['$__all'], allValue => '.*', options => [ '$__all', 'a' ] },
	);
	my %s = (__interval => '1d', __interval_ms => 86400000);
	my $t = sub { interpolate_variables($_[0], \%v, \%s) };
	is($t->("date_trunc('\$grain', day)"), "date_trunc('month', day)", '$var of a single-value variable: bare');
	is($t->('[[grain]] ${grain}'), 'month month', '[[var]] and ${var}');
	is($t->('$quoted'), "it''s", 'a bare value has its quotes doubled');
	is($t->('IN (${channel:sqlstring})'), "IN ('o''reilly','email')", 'sqlstring of a multi value with a quote');
	is($t->('IN ($channel)'), "IN ('o''reilly','email')", 'default format of a multi value: quoted literals');
	is($t->('${rep:sqlstring} $rep [[rep]]'), "'7' '7' '7'", 'a single value of an include-All variable is quoted');
	is($t->('IN (${all:sqlstring})'), "IN ('a','b''c')", 'All: every option but All');
	is($t->('${custom_all:sqlstring}'), '.*', 'All with a custom all value: never formatted');
	is($t->('${channel:csv}|${channel:raw}|${channel:text}|${all:text}'), "o'reilly,email|o'reilly,email|o'reilly + email|All",
		'csv, raw and text formats');
	is($t->('${channel:singlequote} ${channel:doublequote} ${channel:pipe}'), q('o\'reilly','email' "o'reilly","email" o'reilly|email),
		'singlequote, doublequote and pipe formats');
	is($t->('$__timeFilter(day) $nosuch $__interval $__interval_ms'), '$__timeFilter(day) $nosuch 1d 86400000',
		'macros and unknown names are left alone; $__interval is the panel\'s');
	eval { $t->('${channel:nosuchformat}') };
	like($@, qr/unknown variable format "nosuchformat"/, 'an unknown format is an error');
}

# ====================================================================== the queries, run

my $node = PostgreSQL::Test::Cluster->new('grafana');
$node->init;
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION crm_kpi;
	SELECT crm_kpi.create_reference_schema('crm');
	SELECT count(*) FROM crm_kpi.generate_sample_data('crm', 3000, 7, current_date - 1095, 1095);
	-- a channel whose name has a quote, with orders and spend inside the tested range
	WITH c AS (INSERT INTO crm.customers (created_at, acquisition_channel, name)
	           VALUES (now() - interval '60 days', 'o''reilly', 'Quote test') RETURNING customer_id)
	INSERT INTO crm.orders (customer_id, amount, ordered_at)
	SELECT customer_id, a, now() - d FROM c, (VALUES (123.45, interval '20 days'), (10, interval '10 days')) v (a, d);
	INSERT INTO crm.marketing_spend VALUES ('o''reilly', current_date - 15, 50), ('o''reilly', current_date - 45, 70);
	SELECT error FROM crm_kpi.refresh();
	CREATE ROLE grafana_reader LOGIN;
	SELECT crm_kpi.grant_reader('grafana_reader');
	CREATE DATABASE empty;
});
$node->safe_psql('empty', q{
	CREATE EXTENSION crm_kpi;
	CREATE ROLE grafana_reader_empty LOGIN;
	SELECT crm_kpi.grant_reader('grafana_reader_empty');
});

# A psql session of its own: run a script, get stdout and stderr up to a banner.
sub psql_session
{
	my ($db, $user) = @_;
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '--csv', '-h', $node->host, '-p', $node->port, '-U', $user, '-d', $db ],
		'<', \$in, '>', \$out, '2>', \$err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	my $n = 0;
	my $run = sub {
		my $b = 'grafana-test-banner-' . ++$n;
		$in .= "$_[0]\n\\echo $b\n\\warn $b\n";
		# psql writes \warn's text and its newline apart: wait for both.
		$h->pump until $out =~ /^\Q$b\E\n/m && $err =~ /^\Q$b\E\n/m;
		$out =~ s/\A(.*?)^\Q$b\E\n//sm or die "no banner in $out";
		my $o = $1;
		$err =~ s/\A(.*?)^\Q$b\E\n//sm or die "no banner in $err";
		return ($o, $1);
	};
	$run->("\\set VERBOSITY verbose\n\\pset null '<null>'\nSET TimeZone = 'America/New_York';\nSET DateStyle = 'ISO, YMD';");
	return { run => $run, quit => sub { $in .= "\\q\n"; $h->finish } };
}

# psql's CSV: rows of fields, "" quotes, <null> for NULL.
sub parse_csv
{
	my ($text) = @_;
	my (@rows, @row, $f);
	while (length $text)
	{
		if ($text =~ s/\A"((?:[^"]|"")*)"//) { ($f = $1) =~ s/""/"/g }
		else { $text =~ s/\A([^,\n]*)//; $f = $1 eq '<null>' ? undef : $1 }
		push @row, $f;
		if ($text =~ s/\A,//) { next }
		$text =~ s/\A\n// or die "bad CSV near: " . substr($text, 0, 40);
		push @rows, [@row];
		@row = ();
	}
	return \@rows;
}

# Describe and run one query: (error, [[name, type]...], [rows]).
sub run_query
{
	my ($s, $sql) = @_;
	my ($desc, $e1) = $s->{run}->("$sql\n\\gdesc");
	return ($e1) if $e1 ne '';
	my ($out, $e2) = $s->{run}->("$sql\n;");
	return ($e2) if $e2 ne '';
	my $d = parse_csv($desc);
	shift @$d;    # Column,Type
	my $rows = parse_csv($out);
	shift @$rows;    # the header
	return (undef, $d, $rows);
}

my %numeric = map { $_ => 1 } ('smallint', 'integer', 'bigint', 'numeric', 'real', 'double precision');
my %timeish = map { $_ => 1 } ('date', 'timestamp with time zone', 'timestamp without time zone');

# A value of the time column as epoch seconds.
sub time_value
{
	my ($type, $v) = @_;
	return $v + 0 if $numeric{$type};
	my ($y, $mo, $d, $h, $mi, $s, $tz) =
	  $v =~ /^(\d{4})-(\d\d)-(\d\d)(?: (\d\d):(\d\d):(\d\d(?:\.\d+)?)([-+]\d\d(?::\d\d)?)?)?$/
	  or die "cannot read time value $v";
	my $t = timegm(0, 0, 0, $d, $mo - 1, $y) + ($h // 0) * 3600 + ($mi // 0) * 60 + ($s // 0);
	if ($tz) { my ($sg, $th, $tm) = $tz =~ /([-+])(\d\d)(?::(\d\d))?/; $t -= ($sg eq '-' ? -1 : 1) * ($th * 3600 + ($tm // 0) * 60) }
	return $t;
}

# What is wrong with a result for its panel, per Grafana's rules: a list of problems.
sub result_problems
{
	my ($panel, $format, $cols, $rows) = @_;
	my @p;
	my %seen;
	push @p, 'duplicate column names' if grep { $seen{ $_->[0] }++ } @$cols;
	my @types = map { $_->[1] } @$cols;
	if ($format eq 'time_series')
	{
		my ($ti) = grep { $cols->[$_][0] eq 'time' } 0 .. $#$cols;
		return ('no "time" column') unless defined $ti;
		push @p, "time column has type $types[$ti]" unless $numeric{ $types[$ti] } || $timeish{ $types[$ti] };
		my @strings = grep { $_ != $ti && !$numeric{ $types[$_] } } 0 .. $#$cols;
		push @p, 'no numeric value column' unless grep { $_ != $ti && $numeric{ $types[$_] } } 0 .. $#$cols;
		push @p, 'a time or string column other than "time"' if grep { $timeish{ $types[$_] } } @strings;
		my $last;
		for my $r (@$rows)
		{
			if (!defined $r->[$ti]) { push @p, 'a NULL time'; last }
			push @p, "a NULL label in long format" if grep { !defined $r->[$_] } @strings;
			my $tv = time_value($types[$ti], $r->[$ti]);
			if (defined $last && ($tv < $last || (!@strings && $tv == $last)))
			{
				push @p, 'not sorted by time' . (@strings ? '' : ' (or a time repeated)');
				last;
			}
			$last = $tv;
		}
	}
	elsif ($panel->{type} =~ /^(stat|bargauge|piechart)$/)
	{
		push @p, 'no numeric column' unless grep { $numeric{$_} } @types;
	}
	elsif ($panel->{type} eq 'barchart')
	{
		my ($x) = grep { $_->[0] eq $panel->{options}{xField} } @$cols;
		push @p, 'no x field column' unless $x;
		push @p, 'no numeric column' unless grep { $numeric{$_} } @types;
	}
	return @p;
}

# A query of a dashboard as Grafana sends it (GrafanaMacros::dashboard_query).
sub grafana_sql
{
	return dashboard_query(@_, $timescaledb eq 'true');
}

my $now_ms = int(time() * 1000);
my %ranges = (
	'data' => [ $now_ms - 400 * 86400000, $now_ms ],
	'empty (1990)' => [ timegm(0, 0, 0, 1, 0, 1990) * 1000, timegm(59, 59, 23, 31, 11, 1990) * 1000 + 999 ]);

my $reader = psql_session('postgres', 'grafana_reader');

# --- the variable queries
my %options;
my %var_query;
for my $db (@dashboards)
{
	for my $var (grep { $_->{type} eq 'query' } @{ $db->{model}{templating}{list} })
	{
		$var_query{ $var->{name} }{ $var->{query} } = 1;
		my $sql = grafana_sql($db->{model}, {}, $var->{query}, {}, {}, @{ $ranges{data} });
		my ($err, $cols, $rows) = run_query($reader, $sql);
		ok(!$err, "$db->{file}: variable $var->{name} query runs as the reader") or diag("$err\n$sql");
		next if $err;
		is(join(',', sort map { $_->[0] } @$cols), '__text,__value', "$db->{file}: variable $var->{name} returns __text and __value");
		my %u;
		ok(!grep({ !defined $_->[0] || !defined $_->[1] || $u{ $_->[1] }++ } @$rows),
			"$db->{file}: variable $var->{name} values are unique and not NULL");
		my ($vi) = grep { $cols->[$_][0] eq '__value' } 0 .. $#$cols;
		$options{ $var->{name} } = [ map { $_->[$vi] } @$rows ];
	}
}
is(scalar(keys %{ $var_query{$_} }), 1, "variable $_ has the same query on every dashboard") for sort keys %var_query;
ok((grep { $_ eq "o'reilly" } @{ $options{channel} }) && (grep { $_ eq '(none)' } @{ $options{channel} }),
	"channel options include o'reilly and (none)");
my ($a_rep) = grep { /^\d+$/ } @{ $options{rep} };
ok(defined $a_rep && (grep { $_ eq '(none)' } @{ $options{rep} }), 'rep options include rep ids and (none)');

# --- every panel, every variable choice, both ranges
my @choices = (
	{ name => 'All, months', grain => 'month', channel => ['$__all'], rep => '$__all' },
	{ name => 'single values, weeks', grain => 'week', channel => ['email'], rep => $a_rep },
	{ name => "multi value with a quote, days", grain => 'day', channel => [ "o'reilly", 'email' ], rep => '(none)' },
	{ name => 'All, quarters', grain => 'quarter', channel => ['$__all'], rep => '$__all' });

my %results;    # file, panel id, choice, range => rows (for the checks on values below)
for my $db (@dashboards)
{
	for my $p (@{ $db->{model}{panels} })
	{
		for my $t (@{ $p->{targets} })
		{
			for my $c (@choices)
			{
				for my $range (sort keys %ranges)
				{
					my $what = "$db->{file} \"$p->{title}\" $t->{refId}, $c->{name}, $range range";
					my $sql = eval { grafana_sql($db->{model}, $p, $t->{rawSql}, \%options, $c, @{ $ranges{$range} }) };
					if (!defined $sql) { fail("$what: expands"); diag($@); next }
					my ($err, $cols, $rows) = run_query($reader, $sql);
					if ($err) { fail("$what: runs as the reader"); diag("$err\n$sql"); next }
					my @problems = result_problems($p, $t->{format}, $cols, $rows);
					ok(!@problems, "$what: runs and returns what the panel needs") or diag(join("\n", @problems, $sql));
					$results{ $db->{file} }{ $p->{title} }{ $c->{name} }{$range} = { cols => $cols, rows => $rows };
				}
			}
		}
	}
}

# Every panel shows something over the range with data, with All.
for my $db (@dashboards)
{
	for my $p (@{ $db->{model}{panels} })
	{
		my $r = $results{ $db->{file} }{ $p->{title} }{'All, months'}{data};
		ok($r && @{ $r->{rows} }, "$db->{file} \"$p->{title}\": rows over the range with data (All)");
	}
}

# A field of the first row of a result, by column name.
sub field
{
	my ($r, $name) = @_;
	my ($i) = grep { $r->{cols}[$_][0] eq $name } 0 .. $#{ $r->{cols} };
	return defined $i && @{ $r->{rows} } ? $r->{rows}[0][$i] : undef;
}
my $sales = $results{'grafana/dashboards/overview.json'}{Sales};
my ($data_from, $data_to) = map { rfc3339_nano($_) } @{ $ranges{data} };
my ($quoted, $expected) = split /\|/, $node->safe_psql('postgres', qq{
	SELECT sum(revenue) FILTER (WHERE channel = 'o''reilly'), sum(revenue) FROM crm_kpi.sales_daily
	WHERE channel IN ('o''reilly', 'email') AND rep_id IS NULL AND day BETWEEN '$data_from' AND '$data_to'});
is($quoted, '133.45', "the o'reilly channel has its two orders in the range");
is(field($sales->{"multi value with a quote, days"}{data}, 'Revenue'), $expected,
	"revenue for channels o'reilly and email, no rep: the quote survives");
is(field($sales->{'All, months'}{'empty (1990)'}, 'Revenue'), '0', 'no revenue in 1990');

# The customers over time agree with crm_kpi.churn_monthly at each month start.
my $over_time = $results{'grafana/dashboards/customers.json'}{'Customers over time'}{'All, months'}{data};
my %at_start = map { split /\|/ } split /\n/,
  $node->safe_psql('postgres', 'SELECT month, customers_at_start FROM crm_kpi.churn_monthly');
my @mismatch = grep { exists $at_start{ $_->[0] } && $at_start{ $_->[0] } != $_->[2] } @{ $over_time->{rows} };
ok(@{ $over_time->{rows} } > 10 && !@mismatch, 'active customers over time = churn_monthly.customers_at_start')
  or diag(explain \@mismatch);

# --- what the panels read: only crm_kpi relations, and the daily tables through their day index
sub plan_nodes
{
	my ($n) = @_;
	return ($n, map { plan_nodes($_) } @{ $n->{Plans} // [] });
}

# The error of EXPLAIN (FORMAT JSON, VERBOSE if asked) of a query run as the reader ('' if none), then the nodes of
# its plan; with seqscan_off, planned with enable_seqscan off.
sub reader_plan
{
	my ($sql, %how) = @_;
	my $explain = 'EXPLAIN (' . ($how{verbose} ? 'VERBOSE, ' : '') . "FORMAT JSON)\n$sql\n;";
	$explain = "SET enable_seqscan = off;\n$explain\nRESET enable_seqscan;" if $how{seqscan_off};
	my ($out, $err) = $reader->{run}->($explain);
	return $err ? ($err) : ('', plan_nodes($json->decode(parse_csv($out)->[1][0])->[0]{Plan}));
}
for my $db (@dashboards)
{
	my @queries = map { my $p = $_; map { [ "panel \"$p->{title}\" $_->{refId}", $_->{rawSql}, $p ] } @{ $p->{targets} } }
	  @{ $db->{model}{panels} };
	push @queries, map { [ "variable $_->{name}", $_->{query}, {} ] } grep { $_->{type} eq 'query' } @{ $db->{model}{templating}{list} };
	for my $q (@queries)
	{
		my $sql = eval { grafana_sql($db->{model}, $q->[2], $q->[1], \%options, $choices[0], @{ $ranges{data} }) };
		if (!defined $sql) { fail("$db->{file} $q->[0]: expands"); diag($@); next }
		my ($err, @nodes) = reader_plan($sql, verbose => 1);
		my @outside = map { "$_->{Schema}.$_->{'Relation Name'}" } grep { $_->{'Relation Name'} && $_->{Schema} ne 'crm_kpi' } @nodes;
		ok(!$err && @nodes && !@outside, "$db->{file} $q->[0]: reads only crm_kpi relations")
		  or diag($err || join(', ', @outside));
		next unless $q->[0] =~ /^panel/;
		my ($err2, @nodes2) = reader_plan($sql, seqscan_off => 1);
		# customer_events_daily is summed from its first day (a panel of totals at the start of each period), up
		# to the end of the range: its scan needs an upper bound only (a row per day and channel).
		my @unbounded = map { "$_->{'Node Type'} on $_->{'Relation Name'}" }
		  grep {
			my $cond = $_->{'Index Cond'} // $_->{'Recheck Cond'} // '';
			($_->{'Relation Name'} // '') =~ /_daily$/
			  && ($_->{'Relation Name'} eq 'customer_events_daily'
				? $cond !~ /\bday < /
				: $cond !~ /\bday >= .* AND .*\bday <=/)
		  } @nodes2;
		ok(!$err2 && !@unbounded, "$db->{file} $q->[0]: scans of the daily tables are bounded by their day index")
		  or diag($err2 || join(', ', @unbounded));
	}
}

# The comparison of a date with Grafana's RFC 3339 instants takes the instant's UTC date, whatever TimeZone.
my ($dates) = $reader->{run}->(q{SELECT '2024-01-01T02:00:00Z'::date, '2024-01-31T23:59:59.999Z'::date;});
is($dates, "date,date\n2024-01-01,2024-01-31\n", "an RFC 3339 literal compared with a date is the instant's UTC date");

# --- one rep chosen: the panels choose that rep's rows by a condition on rep_id (indexed with day), and only them
my ($top_rep, $top_revenue) = split /\|/, $node->safe_psql('postgres', qq{
	SELECT rep_id, sum(revenue) FROM crm_kpi.sales_daily
	WHERE rep_id IS NOT NULL AND day BETWEEN '$data_from' AND '$data_to'
	GROUP BY rep_id ORDER BY 2 DESC, 1 LIMIT 1});
my $one_rep = { name => 'one rep', grain => 'month', channel => ['$__all'], rep => $top_rep };
for my $db (@dashboards)
{
	for my $p (grep { grep { $_->{rawSql} =~ /\$\{rep:sqlstring\}/ } @{ $_->{targets} } } @{ $db->{model}{panels} })
	{
		my $sql = grafana_sql($db->{model}, $p, $p->{targets}[0]{rawSql}, \%options, $one_rep, @{ $ranges{data} });
		my ($err, @nodes) = reader_plan($sql);
		my @scans = grep { ($_->{'Relation Name'} // '') =~ /^(sales|pipeline)_daily$/ } @nodes;
		# On rep_id itself, as the (rep_id, day) index serves it (on the few rows here the planner may still read
		# the table otherwise); a condition on an expression of rep_id would scan every row of the range.
		my @by_rep = grep {
			my $n = $_;
			grep { ($n->{$_} // '') =~ /\(rep_id = ANY \(\$\d+\)\)/ } 'Index Cond', 'Recheck Cond', 'Filter'
		} @scans;
		ok(!$err && @scans && @by_rep == @scans, "$db->{file} \"$p->{title}\", one rep: its rows are chosen by rep_id = ANY")
		  or diag($err || $sql);
	}
}
{
	my ($sales_db) = grep { $_->{file} eq 'grafana/dashboards/sales.json' } @dashboards;
	my ($p) = grep { $_->{title} eq 'Revenue per rep' } @{ $sales_db->{model}{panels} };
	my ($err, $cols, $rows) =
	  run_query($reader, grafana_sql($sales_db->{model}, $p, $p->{targets}[0]{rawSql}, \%options, $one_rep, @{ $ranges{data} }));
	is_deeply($err ? $err : [ map { [ @$_[ 0, 1 ] ] } @$rows ], [ [ "Rep $top_rep", $top_revenue ] ],
		'Revenue per rep, one rep: that rep alone, with its revenue summed independently');
}

# --- the reader reads, and nothing else
for my $t (
	[ 'INSERT INTO crm_kpi.sales_daily VALUES (current_date, NULL, NULL, 1, 1, 0, 0)', 'insert into a KPI table' ],
	[ 'UPDATE crm_kpi.customer_stats SET revenue = 0', 'update a KPI table' ],
	[ 'DELETE FROM crm_kpi.churn_monthly', 'delete from a KPI table' ],
	[ 'TRUNCATE crm_kpi.service_daily', 'truncate a KPI table' ],
	[ 'SELECT crm_kpi.refresh()', 'refresh' ],
	[ 'SELECT crm_kpi.rebuild()', 'rebuild' ],
	[ q{SELECT crm_kpi.bind_source('orders', 'crm.orders', '{}')}, 'bind a source table' ],
	[ q{SELECT crm_kpi.bind_source('orders', 'crm_kpi.sales_daily', '{}')}, 'bind a table it does not own' ],
	[ q{SELECT crm_kpi.unbind_source('orders', 'crm_kpi.sales_daily')}, 'unbind' ],
	[ 'SELECT count(*) FROM crm.orders', 'read a source table' ])
{
	my ($out, $err) = $reader->{run}->("$t->[0];");
	like($err, qr/ERROR:  42501:/, "the reader cannot $t->[1] (42501)");
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM crm_kpi.sales_daily WHERE channel IS NULL AND rep_id IS NULL AND day = current_date AND orders = 1 AND revenue = 1'),
	'0', 'the KPI tables are as they were');
{
	my ($out, $err) = $reader->{run}->('SELECT count(*) FROM crm_kpi.status;');
	is($err, '', 'the reader can read crm_kpi.status');
}
$reader->{quit}->();

# --- a database with the extension but no data yet (never refreshed): nothing fails
my $empty = psql_session('empty', 'grafana_reader_empty');
my %empty_options;
for my $name (sort keys %var_query)
{
	my ($q) = keys %{ $var_query{$name} };
	my ($err, $cols, $rows) = run_query($empty, $q);
	ok(!$err && @$rows, "empty database: variable $name runs and offers (none)") or diag($err);
	$empty_options{$name} = [ map { $_->[1] } @{ $rows // [] } ];
}
for my $db (@dashboards)
{
	for my $p (@{ $db->{model}{panels} })
	{
		for my $t (@{ $p->{targets} })
		{
			my $sql = eval { grafana_sql($db->{model}, $p, $t->{rawSql}, \%empty_options, $choices[0], @{ $ranges{data} }) };
			my ($err, $cols, $rows) = defined $sql ? run_query($empty, $sql) : ($@);
			my @problems = $err ? ($err) : result_problems($p, $t->{format}, $cols, $rows);
			ok(!@problems, "empty database: $db->{file} \"$p->{title}\" $t->{refId}") or diag(join("\n", @problems, $sql));
		}
	}
}
$empty->{quit}->();

$node->stop;
done_testing();
