# FuzzSweep.pm: the fuzz test's sweep of every SQL-callable function of the
# extension. Each function (found in the catalog, so that a new one is swept
# without a change here) is called with every argument NULL, then with each
# argument in turn taking every hostile value of its type (NULL, extremes,
# NaN and infinities, empty, odd-bounded, multidimensional and huge arrays,
# long and odd strings, objects that do not exist) while the others stay
# ordinary, then with random combinations. Aggregates run over rows of those
# values, plain, as moving windows (inverse transitions) and in parallel.
# Trigger functions are called directly and from triggers made wrongly.
# A call may succeed or fail, but never crash, and never fail with a class XX
# SQLSTATE; the outcomes are counted by SQLSTATE.
package FuzzSweep;

use strict;
use warnings;
use FuzzWire;
use Time::HiRes ();

# Seconds of calls a function gets; the rest of its calls are skipped (and counted).
my $BUDGET = 2;

# Hostile values by type, as SQL expressions (each cast to its argument's type).
my %POOL = (
	'integer' => [ 'NULL', '5', '0', '1', '-1', '11', '2147483647', '-2147483648' ],
	'bigint' => [ 'NULL', '7', '0', '1', '-1', '9223372036854775807', '-9223372036854775808' ],
	'double precision' => [ 'NULL', '0.5', '0', "'-0'", '1', '-1', "'NaN'", "'Infinity'", "'-Infinity'",
		'1e308', "'5e-324'", '1e-9', '0.999999999', '1e-10', '2' ],
	'numeric' => [ 'NULL', '12.5', '0', '-1', "'NaN'", "'Infinity'", "'-Infinity'", '1e1000', '-1e-1000',
		"repeat('9', 1100)::numeric" ],
	'boolean' => [ 'NULL', 'true', 'false' ],
	'text' => [ 'NULL', "'day'", "''", "'orders'", "'tickets'", "'surveys'", "'customers'", "'week'", "'month'",
		"'quarter'", "'year'", "'crm'", "'prospect'", "repeat('x', 100000)", "E'\\x01'", "'\"; DROP TABLE x; --'",
		"'%s%n%I'", "'NULL'", "'*'" ],
	'name' => [ 'NULL', "'crm'", "''", "'public'", "'pg_catalog'", "'crm_kpi'", "repeat('n', 63)", "'\"weird\"'",
		"'sales_daily'", "'customer_stats'", "'no_such_thing'" ],
	'date' => [ 'NULL', 'current_date', "'infinity'", "'-infinity'", "'4713-01-01 BC'", "'5874897-12-31'",
		"'2000-02-29'" ],
	'timestamp with time zone' => [ 'NULL', 'now()', "'infinity'", "'-infinity'", "'4713-01-01 00:00+00 BC'",
		"'294276-12-31 23:59:59.999999+00'", "'epoch'" ],
	'interval' => [ 'NULL', "'1 day'", "'0'", "'-1 day'", "'1 microsecond'", "'178000000 years'",
		"'-178000000 years'", "'1 mon -1 day'" ],
	'regclass' => [ 'NULL', "'crm.orders'", "'0'", "'pg_class'", "'crm.customers'", "'crm_kpi.sales_daily'",
		"'999999'", "'crm_kpi.change_queue'" ],
	'regrole' => [ 'NULL', 'current_user', "'pg_read_all_data'", "'-'", "'pg_signal_backend'" ],
	'jsonb' => [ 'NULL', "'{}'", "'[]'", "'null'", "'1'", "'{\"a\": null}'",
		"'{\"customer_id\": \"id\", \"amount\": \"no_such_column\", \"x\": [1, {\"y\": 2}]}'",
		"(SELECT jsonb_object_agg(i::text, i) FROM generate_series(1, 10000) i)",
		"(repeat('[', 3000) || repeat(']', 3000))" ],
	'bigint[]' => [ 'NULL', "'{1,2,3}'", "'{}'", "'{NULL}'", "'{{1,2},{3,4}}'",
		"(SELECT array_agg(i) FROM generate_series(1, 100000) i)", "'[5:7]={1,2,3}'", "'{0,0,0,0,0,0,0}'",
		"array_fill(9223372036854775807, ARRAY[7])", "'{-1,-1,-1,-1,-1,-1,-1}'", "'{1,2,3,4,5,6,NULL}'",
		"array_fill(0::bigint, ARRAY[7], ARRAY[-3])" ],
	'date[]' => [ 'NULL', 'ARRAY[current_date]', "'{}'", "'{NULL}'", "'{infinity,-infinity}'",
		"(SELECT array_agg(current_date - i) FROM generate_series(0, 5000) i)", "'{{2000-01-01}}'" ],
	'double precision[]' => [ 'NULL', "'{0.5}'", "'{}'", "'{NULL}'", "'{NaN}'", "'{-1}'", "'{{0.1,0.9},{0,1}}'",
		"'[0:1]={0,1}'", "(SELECT array_agg(i / 100000.0) FROM generate_series(0, 100000) i)", "'{Infinity}'",
		"'{1.0000001}'" ],
	'crm_kpi.lifecycle_stage' => [ 'NULL', map { "'$_'" } qw(customer prospect contacted active loyal at_risk churned) ],
);
# Polymorphic arguments: values of several array types, not cast.
my @ANYARRAY = ('ARRAY[current_date]', "'{}'::int[]", "'{NULL}'::bigint[]", 'ARRAY[1::bigint, 2]', "ARRAY['x'::text]",
	'NULL::date[]', "(SELECT array_agg(current_date - i) FROM generate_series(0, 3000) i)");

# Run the sweep; returns { functions, calls, outcomes => {sqlstate => n}, notes => [...] }.
sub run
{
	my ($node, $g, $failures, $seeds, $user) = @_;
	$node->safe_psql('postgres', 'CREATE DATABASE sweep');
	$node->safe_psql('sweep', q{
		CREATE EXTENSION crm_kpi;
		SELECT crm_kpi.create_reference_schema('crm');
		SELECT count(*) FROM crm_kpi.generate_sample_data('crm', 200, 7, current_date - 90, 90);
		SELECT error FROM crm_kpi.refresh();
		CREATE TABLE sweep_rows AS SELECT i FROM generate_series(1, 20000) i;
		ANALYZE sweep_rows;
	});
	my $w = FuzzWire->new(host => $node->host, port => $node->port, user => $user, db => 'sweep');
	my $pid = $w->pid;
	$w->do_ok('SET client_min_messages = warning');

	# Valid values of the summary types, from the fuzz seeds.
	my %summary = (nps => 'crm_kpi.nps_summary', csat => 'crm_kpi.csat_summary', rate => 'crm_kpi.rate_summary',
		purchase => 'crm_kpi.purchase_summary', sketch => 'crm_kpi.sketch');
	for my $t (keys %summary)
	{
		$POOL{ $summary{$t} } = [ 'NULL', map { my $s = $_->[0]; $s =~ s/'/''/g; "'$s'" } @{ $seeds->{$t} } ];
	}

	my $funcs = $w->do_ok(q{
		SELECT p.oid::regprocedure::text, p.proname, p.prokind,
		       coalesce((SELECT string_agg(format_type(t, NULL), '|' ORDER BY n)
		                 FROM unnest(p.proargtypes) WITH ORDINALITY a(t, n)), ''),
		       format_type(p.prorettype, NULL), p.proretset
		FROM pg_proc p
		JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
		JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'crm_kpi'
		ORDER BY 1});
	# Composite argument types: NULL, and a row of NULL fields.
	my $composites = $w->do_ok(q{
		SELECT format_type(t.oid, NULL), (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)
		FROM pg_type t WHERE t.typtype = 'c' AND t.typnamespace = 'crm_kpi'::regnamespace});
	for my $c (@$composites)
	{
		$POOL{ $c->[0] } //= [ 'NULL', "'(" . (',' x ($c->[1] - 1)) . ")'" ];
	}

	# Each call gets a second (a report over all of time would take minutes).
	$w->do_ok("SET statement_timeout = '1s'");
	my (%outcomes, %p0001, %timeouts, %untyped, %seconds, %where, %skipped, %example);
	my ($calls, $nfuncs, $via_aggregates) = (0, 0, 0);
	my $call = sub {
		my ($fname, $sql) = @_;
		my $t0 = Time::HiRes::time();
		my $r = $w->query($sql);
		$seconds{$fname} += Time::HiRes::time() - $t0;
		$calls++;
		my $code = $r->{error} ? $r->{error}{C} : 'ok';
		$outcomes{$code}++;
		$where{$code}{$fname}++;
		$example{$code} //= "$r->{error}{M}, in: " . substr($sql, 0, 200) if $r->{error};
		$p0001{$fname}++ if $code eq 'P0001';
		if ($code eq '57014')
		{
			$timeouts{$fname}++;
			$w->resync;    # the timeout may have been one raised after the call before it
		}
		if ($code =~ /^XX/ || $code eq 'lost')
		{
			push @$failures, "$fname: $code $r->{error}{M} in: " . substr($sql, 0, 300);
		}
		return $code;
	};

	for my $f (@$funcs)
	{
		my ($sig, $name, $kind, $argstr, $ret, $retset) = @$f;
		my @types = $argstr eq '' ? () : split /\|/, $argstr;
		if (grep { $_ eq 'internal' } @types)
		{
			$via_aggregates++;    # aggregate support: reached through the aggregates below
			next;
		}
		$nfuncs++;
		my @pools = map {
			my $t = $_;
			$t eq 'anyarray' ? [ map { [ $_, '' ] } @ANYARRAY ]
			  : $POOL{$t} ? [ map { [ $_, "::$t" ] } @{ $POOL{$t} } ]
			  : do { $untyped{$t}++; [ [ 'NULL', "::$t" ] ] }
		} @types;
		my @arglists;
		push @arglists, [ map { 0 } @types ] if @types;    # every argument NULL (the first of each pool but anyarray)
		for my $k (0 .. $#types)
		{
			for my $v (0 .. $#{ $pools[$k] })
			{
				push @arglists, [ map { $_ == $k ? $v : ($#{ $pools[$_] } >= 1 ? 1 : 0) } 0 .. $#types ];
			}
		}
		for (1 .. 10) { push @arglists, [ map { $g->below(scalar @{ $pools[$_] }) } 0 .. $#types ]; }
		push @arglists, [] if !@types;
		my %seen;
		for my $al (@arglists)
		{
			next if $seen{"@$al"}++;
			# A function that is slow on these arguments (a report over all of time) gets a budget.
			if (($seconds{$sig} // 0) > $BUDGET)
			{
				$skipped{$sig}++;
				next;
			}
			my @args = map { my ($e, $cast) = @{ $pools[$_][ $al->[$_] ] }; "($e)$cast" } 0 .. $#types;
			if ($kind eq 'a')
			{
				# An aggregate: over rows of these values, plain, as a moving window, and in parallel.
				my $cols = join ', ', map { "a$_" } 0 .. $#types;
				my $rows = join ', ', map {
					my $r = $_;
					'(' . join(', ', $r, map { my ($e, $cast) = @{ $pools[$_][ ($al->[$_] + $r) % @{ $pools[$_] } ] }; "($e)$cast" } 0 .. $#types) . ')'
				} 0 .. 3;
				my $from = "(VALUES $rows) v(i, $cols)";
				$call->($sig, "SELECT crm_kpi.$name($cols)::text FROM $from");
				$call->($sig, "SELECT crm_kpi.$name($cols) OVER (ORDER BY i ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)::text FROM $from");
			}
			else
			{
				$call->($sig, "SELECT crm_kpi.$name(" . join(', ', @args) . ')' . ($ret =~ /^(trigger|event_trigger|void)$/ ? '' : '::text'));
			}
		}
		# Summaries and sketches over many rows, in parallel (combine, serialize, deserialize).
		if ($kind eq 'a' && @types)
		{
			my @exprs = map {
				my $t = $types[$_];
				$t eq 'integer' ? '(i % 13 - 1)'
				  : $t eq 'boolean' ? '(i % 3 = 0)'
				  : $t eq 'double precision' ? ($_ == 0 ? "(CASE i % 5 WHEN 0 THEN 1e300 WHEN 1 THEN -5e-324 WHEN 2 THEN 0 ELSE i END)::float8" : '0.01::float8')
				  : $t eq 'numeric' ? '(i * 1.5)::numeric'
				  : $t eq 'timestamp with time zone' ? "(timestamptz 'epoch' + i * interval '1 hour')"
				  : $t eq 'interval' ? "(i * interval '1 minute')"
				  : 'NULL::' . $t
			} 0 .. $#types;
			$w->do_ok('SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0');
			$call->($sig, "SELECT crm_kpi.$name(" . join(', ', @exprs) . ")::text FROM sweep_rows");
			$w->do_ok('RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET min_parallel_table_scan_size');
		}
		last if $w->dead;
	}

	# Trigger functions on triggers made wrongly.
	$w->do_ok('CREATE TABLE sweep_t (id bigint, stage crm_kpi.lifecycle_stage, note text)');
	my @triggers = (
		'AFTER INSERT OR UPDATE OR DELETE ON sweep_t FOR EACH STATEMENT EXECUTE FUNCTION crm_kpi.capture()',
		"AFTER INSERT ON sweep_t FOR EACH STATEMENT EXECUTE FUNCTION crm_kpi.capture('no_such_kind')",
		"AFTER INSERT ON sweep_t FOR EACH STATEMENT EXECUTE FUNCTION crm_kpi.capture('orders')",
		"AFTER INSERT ON sweep_t FOR EACH STATEMENT EXECUTE FUNCTION crm_kpi.capture('orders', 'x')",
		"BEFORE INSERT ON sweep_t FOR EACH ROW EXECUTE FUNCTION crm_kpi.capture('orders')",
		"AFTER INSERT ON sweep_t REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION crm_kpi.capture('orders')",
		'AFTER INSERT OR UPDATE ON sweep_t FOR EACH ROW EXECUTE FUNCTION crm_kpi.lifecycle_guard()',
		"AFTER INSERT OR UPDATE ON sweep_t FOR EACH ROW EXECUTE FUNCTION crm_kpi.lifecycle_guard('id', 'stage', 's')",
		"AFTER INSERT OR UPDATE ON sweep_t FOR EACH ROW EXECUTE FUNCTION crm_kpi.lifecycle_guard('note', 'note')",
		"AFTER UPDATE ON sweep_t FOR EACH STATEMENT EXECUTE FUNCTION crm_kpi.lifecycle_guard('id', 'stage', 's')");
	for my $i (0 .. $#triggers)
	{
		$w->query('DROP TRIGGER IF EXISTS sweep_trigger ON sweep_t');
		next if $call->('trigger', "CREATE TRIGGER sweep_trigger $triggers[$i]") ne 'ok';
		$call->('trigger', "INSERT INTO sweep_t VALUES (1, 'prospect', 'customer'), (NULL, NULL, 'x')");
		$call->('trigger', "UPDATE sweep_t SET stage = 'customer', note = 'prospect'");
		$call->('trigger', "UPDATE sweep_t SET stage = 'prospect'");
		$call->('trigger', 'DELETE FROM sweep_t');
		$call->('trigger', 'TRUNCATE sweep_t');
	}

	my $same = !$w->dead && $w->do_ok('SELECT pg_backend_pid()')->[0][0] == $pid;
	push @$failures, 'the sweep connection was lost or changed backend (crash?)' if !$same;
	$w->close;

	my @notes;
	push @notes, 'RAISE without a SQLSTATE (P0001) from: ' . join(', ', map { "$_ ($p0001{$_})" } sort keys %p0001)
	  if %p0001;
	push @notes, 'statement timeouts (57014, 1 s) in: ' . join(', ', map { "$_ ($timeouts{$_})" } sort keys %timeouts)
	  if %timeouts;
	push @notes, 'argument types swept with NULL only: ' . join(', ', sort keys %untyped) if %untyped;
	push @notes, 'calls skipped past a function\'s time budget: ' . join(', ', map { "$_ ($skipped{$_})" } sort keys %skipped)
	  if %skipped;
	for my $code (sort keys %where)
	{
		next if $code =~ /^(ok|42...)$/ || ($code =~ /^22/ && $code ne '22000');
		push @notes, "$code from: " . join(', ', map { "$_ ($where{$code}{$_})" } sort keys %{ $where{$code} })
		  . "; first: $example{$code}";
	}
	my @slow = (sort { $seconds{$b} <=> $seconds{$a} } keys %seconds)[ 0 .. 4 ];
	push @notes, 'slowest: ' . join(', ', map { sprintf('%s %.1f s', $_, $seconds{$_}) } @slow);
	push @notes, "$via_aggregates aggregate support functions (internal arguments) reached through their aggregates";
	return { functions => $nfuncs, calls => $calls, outcomes => \%outcomes, notes => \@notes };
}

1;
