# GrafanaMacros.pm: what Grafana does to a PostgreSQL panel query before the
# database sees it, reimplemented for offline tests of the dashboards.
#
# Three stages, in Grafana's order:
#   1. the frontend's template variables ($var, ${var}, ${var:format}, [[var]],
#      and $__interval, $__interval_ms, $__from, $__to), with the SQL data
#      source's default formatting (public/app/features/plugins/sql/datasource/
#      SqlDatasource.ts, interpolateVariable);
#   2. the backend's global substitutions (sqleng.Interpolate: $__interval_ms,
#      $__interval, $__unixEpochFrom(), $__unixEpochTo());
#   3. the PostgreSQL macro engine (pkg/tsdb/grafana-postgresql-datasource/
#      macros.go): $__time, $__timeEpoch, $__timeFilter, $__timeFrom,
#      $__timeTo, $__timeGroup(Alias), $__unixEpochFilter,
#      $__unixEpochNanoFilter/From/To, $__unixEpochGroup(Alias).
# Durations are integer nanoseconds and instants integer milliseconds since
# the epoch, as Grafana's time range is. Errors die with Grafana's message.
package GrafanaMacros;

use strict;
use warnings;
use Exporter 'import';
use POSIX qw(floor);

our @EXPORT_OK = qw(
  go_float rfc3339_nano parse_go_duration parse_interval format_interval
  round_interval_ms seconds_to_hms panel_interval
  interpolate_variables interpolate_global interpolate_macros expand_query
  dashboard_variables dashboard_query);

use constant {
	NS_MS => 1_000_000,
	NS_S => 1_000_000_000,
	NS_MIN => 60_000_000_000,
	NS_H => 3_600_000_000_000,
	NS_DAY => 86_400_000_000_000,
};

# ------------------------------------------------------------ Go formatting

# A float64 as Go's fmt %v writes it: the shortest digits that read back to
# the same value, in %e form when the decimal exponent is < -4 or >= 6
# (strconv's 'g' with precision -1), e.g. 300, 0.02, 2.592e+06.
sub go_float
{
	my ($x) = @_;
	return 'NaN' if $x != $x;
	return $x > 0 ? '+Inf' : '-Inf' if $x * 0 != 0;
	return ($x == 0 && sprintf('%g', $x) =~ /^-/) ? '-0' : '0' if $x == 0;
	my $sign = $x < 0 ? '-' : '';
	my $a = abs($x);
	my ($digits, $exp);
	for my $p (1 .. 17)
	{
		my $s = sprintf('%.*e', $p - 1, $a);
		next unless $s + 0 == $a;
		my ($m, $e) = $s =~ /^(\d(?:\.\d+)?)e([-+]\d+)$/ or die "cannot read $s";
		($digits = $m) =~ s/\.//;
		$digits =~ s/0+$//;
		$digits = '0' if $digits eq '';
		$exp = $e + 0;
		last;
	}
	if ($exp < -4 || $exp >= 6)
	{
		my $mant = substr($digits, 0, 1);
		$mant .= '.' . substr($digits, 1) if length($digits) > 1;
		return sprintf('%s%se%s%02d', $sign, $mant, $exp < 0 ? '-' : '+', abs($exp));
	}
	# Fixed form: the point goes after digit exp + 1.
	my $dp = $exp + 1;
	my $s;
	if ($dp <= 0) { $s = '0.' . ('0' x -$dp) . $digits }
	elsif ($dp >= length $digits) { $s = $digits . ('0' x ($dp - length $digits)) }
	else { $s = substr($digits, 0, $dp) . '.' . substr($digits, $dp) }
	return $sign . $s;
}

# Days since 1970-01-01 of a proleptic Gregorian date (month may be any
# integer: it carries into the year, as Go's time.Date normalizes it).
sub days_from_civil
{
	my ($y, $m, $d) = @_;
	$y += floor(($m - 1) / 12);
	$m = ($m - 1) % 12 + 1;
	$y -= 1 if $m <= 2;
	my $era = floor($y / 400);
	my $yoe = $y - $era * 400;
	my $doy = floor((153 * ($m + ($m > 2 ? -3 : 9)) + 2) / 5) + $d - 1;
	my $doe = $yoe * 365 + floor($yoe / 4) - floor($yoe / 100) + $doy;
	return $era * 146097 + $doe - 719468;
}

# An instant (milliseconds since the epoch) as Go's time.RFC3339Nano in UTC:
# 2024-01-01T00:00:00Z, 2024-01-01T00:00:00.5Z (no trailing zeros).
sub rfc3339_nano
{
	my ($ms) = @_;
	my $s = floor($ms / 1000);
	my $frac = $ms - $s * 1000;
	my @t = gmtime($s);
	my $out = sprintf('%04d-%02d-%02dT%02d:%02d:%02d', $t[5] + 1900, $t[4] + 1, @t[3, 2, 1, 0]);
	if ($frac)
	{
		(my $f = sprintf('%03d', $frac)) =~ s/0+$//;
		$out .= ".$f";
	}
	return $out . 'Z';
}

# ------------------------------------------------------------ durations

my %go_unit = (
	ns => 1, us => 1_000, "\x{b5}s" => 1_000, "\x{3bc}s" => 1_000,
	ms => NS_MS, s => NS_S, m => NS_MIN, h => NS_H);

# Go's time.ParseDuration: [-+]? then (number unit)+, e.g. 300ms, 1.5h, 2h45m.
sub parse_go_duration
{
	my ($in) = @_;
	my $s = $in;
	my $neg = $s =~ s/^([-+])// && $1 eq '-';
	return 0 if $s eq '0';
	die "time: invalid duration \"$in\"\n" if $s eq '';
	my $total = 0;
	while ($s ne '')
	{
		$s =~ s/^(\d*)(?:\.(\d*))?// or die "time: invalid duration \"$in\"\n";
		my ($int, $frac) = ($1, $2);
		die "time: invalid duration \"$in\"\n" if $int eq '' && (!defined $frac || $frac eq '');
		$s =~ s/^([^0-9.]*)//;
		my $unit = $1;
		die "time: missing unit in duration \"$in\"\n" if $unit eq '';
		die "time: unknown unit \"$unit\" in duration \"$in\"\n" unless exists $go_unit{$unit};
		my $u = $go_unit{$unit};
		$total += ($int eq '' ? 0 : $int) * $u;
		$total += int("0.$frac" * $u) if defined $frac && $frac ne '';
	}
	return $neg ? -$total : $total;
}

# gtime.ParseInterval: Nd, Nw, NM, Ny are calendar steps from now (UTC),
# anything else a Go duration. $now_ms defaults to the current time.
sub parse_interval
{
	my ($in, $now_ms) = @_;
	my ($n, $unit) = $in =~ /^(\d+)([dwMy])$/;
	return parse_go_duration($in) unless defined $unit;
	return $n * NS_DAY if $unit eq 'd';
	return 7 * $n * NS_DAY if $unit eq 'w';
	# Months and years: Go's AddDate, days carried past a short month's end.
	$now_ms //= int(time() * 1000);
	my $now_s = floor($now_ms / 1000);
	my @t = gmtime($now_s);
	my ($y, $m, $d) = ($t[5] + 1900, $t[4] + 1, $t[3]);
	my $from_days = days_from_civil($y, $m, $d);
	my $to_days = $unit eq 'M'
	  ? days_from_civil($y, $m + $n, 1) + $d - 1
	  : days_from_civil($y + $n, $m, 1) + $d - 1;
	return ($to_days - $from_days) * NS_DAY;
}

# gtime.FormatInterval: the largest whole unit, 1y (365 days), Nd, Nh, Nm, Ns, Nms.
sub format_interval
{
	my ($ns) = @_;
	for ([ 365 * NS_DAY, 'y' ], [ NS_DAY, 'd' ], [ NS_H, 'h' ], [ NS_MIN, 'm' ], [ NS_S, 's' ], [ NS_MS, 'ms' ])
	{
		return int($ns / $_->[0]) . $_->[1] if $ns >= $_->[0];
	}
	return '1ms';
}

# The frontend's (and gtime's) rounding of a raw interval to a round one, in ms.
my @round_steps = (
	[ 10, 1 ], [ 15, 10 ], [ 35, 20 ], [ 75, 50 ], [ 150, 100 ], [ 350, 200 ], [ 750, 500 ],
	[ 1500, 1000 ], [ 3500, 2000 ], [ 7500, 5000 ], [ 12500, 10000 ], [ 17500, 15000 ],
	[ 25000, 20000 ], [ 45000, 30000 ], [ 90000, 60000 ], [ 210000, 120000 ], [ 450000, 300000 ],
	[ 750000, 600000 ], [ 1050000, 900000 ], [ 1500000, 1200000 ], [ 2700000, 1800000 ],
	[ 5400000, 3600000 ], [ 9000000, 7200000 ], [ 16200000, 10800000 ], [ 32400000, 21600000 ],
	[ 86400000, 43200000 ], [ 172800000, 86400000 ], [ 604800000, 86400000 ],
	[ 1814400000, 604800000 ]);

sub round_interval_ms
{
	my ($ms) = @_;
	for (@round_steps) { return $_->[1] if $ms <= $_->[0] }
	return $ms < 3628800000 ? 2592000000 : 31536000000;
}

# The frontend's secondsToHms: the largest non-zero unit only, e.g. 1d, 12h, 5m.
sub seconds_to_hms
{
	my ($sec) = @_;
	my @parts = (
		[ floor($sec / 31536000), 'y' ],
		[ floor(($sec % 31536000) / 86400), 'd' ],
		[ floor(($sec % 86400) / 3600), 'h' ],
		[ floor(($sec % 3600) / 60), 'm' ],
		[ floor($sec % 60), 's' ]);
	for (@parts) { return "$_->[0]$_->[1]" if $_->[0] }
	my $ms = floor($sec * 1000);
	return $ms ? "${ms}ms" : 'less than a millisecond';
}

# The $__interval of a panel: the range over its max data points (or width),
# rounded, at least the panel's min interval (else the data source's, 1m).
# Returns (milliseconds, text).
sub panel_interval
{
	my ($from_ms, $to_ms, $max_points, $min_interval) = @_;
	my $low = parse_interval($min_interval // '1m') / NS_MS;
	my $ms = round_interval_ms(($to_ms - $from_ms) / $max_points);
	$ms = $low if $low > $ms;
	return ($ms, seconds_to_hms($ms / 1000));
}

# ------------------------------------------------------------ stage 1: template variables

sub quote_literal { my ($v) = @_; $v =~ s/'/''/g; return "'$v'" }

my %formats = (
	sqlstring => sub { ref $_[0] ? join(',', map { quote_literal($_) } @{ $_[0] }) : quote_literal($_[0]) },
	raw => sub { ref $_[0] ? join(',', @{ $_[0] }) : $_[0] },
	csv => sub { ref $_[0] ? join(',', @{ $_[0] }) : $_[0] },
	pipe => sub { ref $_[0] ? join('|', @{ $_[0] }) : $_[0] },
	singlequote => sub {
		my @v = map { (my $x = $_) =~ s/'/\\'/g; "'$x'" } ref $_[0] ? @{ $_[0] } : ($_[0]);
		join(',', @v);
	},
	doublequote => sub {
		my @v = map { (my $x = $_) =~ s/"/\\"/g; "\"$x\"" } ref $_[0] ? @{ $_[0] } : ($_[0]);
		join(',', @v);
	});

# The SQL data source's default formatting: quoted literals for a multi-value
# or include-All variable, the bare value (quotes doubled) otherwise.
sub sql_default_format
{
	my ($value, $var) = @_;
	return join(',', map { quote_literal($_) } @$value) if ref $value;
	return quote_literal($value) if $var->{multi} || $var->{includeAll};
	(my $v = $value) =~ s/'/''/g;
	return $v;
}

# Replace the template variables of $sql. $vars maps a name to
# { value => string or [strings] ('$__all' for All), text, multi, includeAll,
#   allValue, options => [values] }; $scoped maps built-in names (__interval,
# __interval_ms, __from, __to) to plain values. Unknown names stay as they
# are (Grafana leaves $__timeFilter and the like to the backend); an unknown
# format dies (Grafana would fall back to glob: a typo in a dashboard).
sub interpolate_variables
{
	my ($sql, $vars, $scoped) = @_;
	my $re = qr/\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}/;
	$sql =~ s{$re}{
		my ($whole, $name, $fmt) = ($&, $1 // $2 // $4, $3 // $6);
		if (exists $scoped->{$name}) {
			die "format $fmt of built-in \$$name is not supported here\n" if defined $fmt;
			my $v = $scoped->{$name};
			$v =~ s/'/''/g;
			$v;
		} elsif (my $var = $vars->{$name}) {
			my $value = $var->{value};
			my $all = ref $value ? (@$value && $value->[0] eq '$__all') : $value eq '$__all';
			my $text = $var->{text} // $value;
			if ($all) {
				$text = 'All';
				if (defined $var->{allValue} && (!defined $fmt || $fmt ne 'text')) {
					$var->{allValue};    # a custom all value is never formatted
				} else {
					$value = [ grep { $_ ne '$__all' } @{ $var->{options} } ];
					_format($value, $text, $fmt, $var);
				}
			} else {
				_format($value, $text, $fmt, $var);
			}
		} else {
			$whole;
		}
	}ge;
	return $sql;
}

sub _format
{
	my ($value, $text, $fmt, $var) = @_;
	return sql_default_format($value, $var) unless defined $fmt;
	return ref $text ? join(' + ', @$text) : $text if $fmt eq 'text';
	my $f = $formats{$fmt} or die "unknown variable format \"$fmt\"\n";
	return $f->($value);
}

# ------------------------------------------------------------ stage 2: backend global substitutions

sub interpolate_global
{
	my ($sql, $from_ms, $to_ms, $interval_ms) = @_;
	$sql =~ s/\$__interval_ms/$interval_ms/g;
	my $text = format_interval($interval_ms * NS_MS);
	$sql =~ s/\$__interval/$text/g;
	my ($f, $t) = (floor($from_ms / 1000), floor($to_ms / 1000));
	$sql =~ s/\$__unixEpochFrom\(\)/$f/g;
	$sql =~ s/\$__unixEpochTo\(\)/$t/g;
	return $sql;
}

# ------------------------------------------------------------ stage 3: the PostgreSQL macro engine

# A fill argument as sqleng.SetupFillmode reads it: NULL, previous or a number.
sub _fill_mode
{
	my ($arg) = @_;
	return { mode => 'null' } if $arg eq 'NULL';
	return { mode => 'previous' } if $arg eq 'previous';
	die "error parsing fill value $arg\n"
	  unless $arg =~ /^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$|^[-+]?(?i:inf|infinity|nan)$/;
	return { mode => 'value', value => $arg + 0 };
}

sub _group
{
	my ($name, $args, $opt, $fill, $col_expr) = @_;
	die "macro $name needs time column and interval and optional fill value\n" if @$args < 2;
	(my $iv = $args->[1]) =~ s/^'+|'+$//g;
	my $ns = eval { parse_interval($iv, $opt->{now_ms}) };
	die "error parsing interval $args->[1]\n" unless defined $ns;
	$$fill = _fill_mode($args->[2]) if @$args == 3;
	return $col_expr->($ns / NS_S);
}

sub _macro
{
	my ($name, $args, $from_ms, $to_ms, $opt, $fill) = @_;
	my $need_col = sub { die "missing time column argument for macro $name\n" unless @$args };
	my ($from, $to) = (rfc3339_nano($from_ms), rfc3339_nano($to_ms));
	my ($fs, $ts) = (floor($from_ms / 1000), floor($to_ms / 1000));
	if ($name eq '__time') { $need_col->(); return "$args->[0] AS \"time\"" }
	if ($name eq '__timeEpoch') { $need_col->(); return "extract(epoch from $args->[0]) as \"time\"" }
	if ($name eq '__timeFilter') { $need_col->(); return "$args->[0] BETWEEN '$from' AND '$to'" }
	return "'$from'" if $name eq '__timeFrom';
	return "'$to'" if $name eq '__timeTo';
	if ($name eq '__timeGroup')
	{
		return _group($name, $args, $opt, $fill, sub {
			my ($sec) = @_;
			return sprintf("time_bucket('%.3fs',%s)", $sec, $args->[0]) if $opt->{timescaledb};
			my $n = go_float($sec);
			return "floor(extract(epoch from $args->[0])/$n)*$n";
		});
	}
	return _macro('__timeGroup', $args, $from_ms, $to_ms, $opt, $fill) . ' AS "time"' if $name eq '__timeGroupAlias';
	if ($name eq '__unixEpochFilter') { $need_col->(); return "$args->[0] >= $fs AND $args->[0] <= $ts" }
	if ($name eq '__unixEpochNanoFilter')
	{
		$need_col->();
		return "$args->[0] >= " . ($from_ms * NS_MS) . " AND $args->[0] <= " . ($to_ms * NS_MS);
	}
	return $from_ms * NS_MS if $name eq '__unixEpochNanoFrom';
	return $to_ms * NS_MS if $name eq '__unixEpochNanoTo';
	if ($name eq '__unixEpochGroup')
	{
		return _group($name, $args, $opt, $fill, sub {
			my $n = go_float($_[0]);
			return "floor(($args->[0])/$n)*$n";
		});
	}
	return _macro('__unixEpochGroup', $args, $from_ms, $to_ms, $opt, $fill) . ' AS "time"'
	  if $name eq '__unixEpochGroupAlias';
	die "unknown macro \"$name\"\n";
}

# Expand every $name(args) of $sql. Options: timescaledb, now_ms (for the
# calendar intervals M and y). Returns the SQL, and in list context also the
# fill mode a $__timeGroup(col, interval, fill) asked for (undef if none).
sub interpolate_macros
{
	my ($sql, $from_ms, $to_ms, %opt) = @_;
	my $fill;
	my $orig = $sql;
	my $err;
	$sql =~ s{\$([_a-zA-Z0-9]+)\(([^\)]*)\)}{
		my ($whole, $name, $argtext) = ($&, $1, $2);
		# Pre-5.3 compatibility: $__timeGroup(...) followed by a comma (where
		# its text first occurs) gets the alias.
		if ($name eq '__timeGroup') {
			my $i = index($orig, $whole);
			$name = '__timeGroupAlias' if $i >= 0 && substr($orig, $i + length($whole), 1) eq ',';
		}
		my @args = map { my $a = $_; $a =~ s/^ +| +$//g; $a } split(/,/, $argtext, -1);
		@args = ('') unless @args;
		my $res = eval { _macro($name, \@args, $from_ms, $to_ms, \%opt, \$fill) };
		unless (defined $res) { $err //= $@; $res = 'macro_error()' }
		$res;
	}ge;
	die $err if defined $err;
	return wantarray ? ($sql, $fill) : $sql;
}

# All three stages for one panel query: the range, the variables, the panel's
# $__interval (ms, text), and the data source's timescaledb flag.
sub expand_query
{
	my (%a) = @_;
	my %scoped = (
		__interval => $a{interval_text},
		__interval_ms => $a{interval_ms},
		__from => $a{from_ms},
		__to => $a{to_ms});
	my $sql = interpolate_variables($a{sql}, $a{vars} // {}, \%scoped);
	$sql = interpolate_global($sql, $a{from_ms}, $a{to_ms}, $a{interval_ms});
	return interpolate_macros($sql, $a{from_ms}, $a{to_ms},
		timescaledb => $a{timescaledb}, now_ms => $a{now_ms} // $a{to_ms});
}

# ------------------------------------------------------------ a dashboard's queries

# The template variables of dashboard $d for expand_query: each at its value
# in $choice (name => value), else its current value; options (for All) from
# $options (name => [values], what the variable's query returned), else the
# dashboard's own list.
sub dashboard_variables
{
	my ($d, $options, $choice) = @_;
	my %v;
	for my $var (@{ $d->{templating}{list} })
	{
		my $c = $choice->{ $var->{name} };
		my $value = $c // $var->{current}{value};
		$v{ $var->{name} } = {
			value => $value, multi => $var->{multi}, includeAll => $var->{includeAll},
			allValue => $var->{allValue},
			options => [ '$__all', @{ $options->{ $var->{name} } // [ map { $_->{value} } @{ $var->{options} } ] } ] };
	}
	return \%v;
}

# A query of dashboard $d as Grafana sends it: its variables set by $choice
# (options from $options), over [$from_ms, $to_ms], with the $__interval of
# $panel (its max data points, or 1000 pixels; at least its min interval).
sub dashboard_query
{
	my ($d, $panel, $sql, $options, $choice, $from_ms, $to_ms, $timescaledb) = @_;
	my ($ims, $itext) = panel_interval($from_ms, $to_ms, $panel->{maxDataPoints} // 1000, $panel->{interval});
	return expand_query(sql => $sql, vars => dashboard_variables($d, $options, $choice),
		from_ms => $from_ms, to_ms => $to_ms, interval_ms => $ims, interval_text => $itext,
		timescaledb => $timescaledb);
}

1;
