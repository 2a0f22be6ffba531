# 006_fuzz.pl: hostile input. Over a hundred thousand seeded random and
# mutated inputs go to the input and receive functions of every summary and
# sketch type and of the lifecycle stage, the way a client sends them (text or
# binary parameters of the frontend/backend protocol, FuzzWire.pm); what they
# accept goes on to the accessors, rollup (serial and parallel: combine,
# serialize, deserialize) and back through the text form; and every
# SQL-callable function of the extension is called with NULLs, extremes,
# NaN and infinities, empty, odd and huge arrays.
#
# Passes when the server never crashes (the same postmaster and the same
# backend from start to end, no crash in the log), every rejection of an input
# is an ERROR of class 22 (data exception), no call anywhere fails with a
# class XX SQLSTATE (internal error, data corrupted), and every accepted
# value is sound (fuzz_checks.sql). Prints how many inputs were tried,
# rejected (by SQLSTATE) and accepted.
#
#   CRM_KPI_FUZZ_SEED=n      another seed (default 20241123)
#   CRM_KPI_FUZZ_INPUTS=n    inputs per type and form (default 10000)
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use FuzzGen;
use FuzzSweep;
use FuzzWire;

my $SEED = $ENV{CRM_KPI_FUZZ_SEED} // 20241123;
my $PER_FORM = $ENV{CRM_KPI_FUZZ_INPUTS} // 10000;
my $BATCH = 250;
my $started = time;
my $g = FuzzGen->new($SEED);
note("seed $SEED, $PER_FORM inputs per type and form");

my $node = PostgreSQL::Test::Cluster->new('fuzz');
$node->init;
# A crashing backend must not be hidden by a crash restart.
$node->append_conf('postgresql.conf', <<'EOF');
restart_after_crash = off
max_worker_processes = 16
max_parallel_workers = 8
max_parallel_workers_per_gather = 2
EOF
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION crm_kpi');
$node->safe_psql('postgres', slurp_file('test/fixtures/fuzz_checks.sql'));
my $postmaster_started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');
my $user = $node->safe_psql('postgres', 'SELECT current_user');

my $w = FuzzWire->new(host => $node->host, port => $node->port, user => $user, db => 'postgres');
my $pid = $w->pid;
$w->do_ok("SET client_min_messages = warning");

# ---- the types, and valid values of each to mutate ----

my %TYPES = (
	nps => 'crm_kpi.nps_summary',
	csat => 'crm_kpi.csat_summary',
	rate => 'crm_kpi.rate_summary',
	purchase => 'crm_kpi.purchase_summary',
	sketch => 'crm_kpi.sketch',
	lifecycle => 'crm_kpi.lifecycle_stage');
my @SUMMARIES = qw(nps csat rate purchase sketch);
my %SEND = map { $_ => "crm_kpi.${_}_summary_send" } qw(nps csat rate purchase);
$SEND{sketch} = 'crm_kpi.sketch_send';
$SEND{lifecycle} = 'enum_send';

my %SEED_SQL = (
	nps => [
		'SELECT crm_kpi.nps_agg(x) FROM (VALUES (10), (0), (7)) v(x)',
		'SELECT crm_kpi.nps_agg(x % 11) FROM generate_series(1, 1000) x',
		'SELECT crm_kpi.nps_agg(9)',
		"SELECT 'nps v1 promoters=9223372036854775800 passives=7 detractors=0'::crm_kpi.nps_summary",
		"SELECT 'nps v1 promoters=0 passives=0 detractors=0'::crm_kpi.nps_summary"],
	csat => [
		'SELECT crm_kpi.csat_agg(x) FROM (VALUES (1), (5), (4), (4)) v(x)',
		'SELECT crm_kpi.csat_agg(1 + x % 5) FROM generate_series(1, 777) x',
		"SELECT 'csat v1 s1=1 s2=200 s3=30000 s4=4 s5=5000000'::crm_kpi.csat_summary",
		"SELECT 'csat v1 s1=0 s2=0 s3=0 s4=0 s5=9223372036854775807'::crm_kpi.csat_summary"],
	rate => [
		'SELECT crm_kpi.rate_agg(x) FROM (VALUES (true), (false), (true)) v(x)',
		'SELECT crm_kpi.rate_agg(x % 3 = 0) FROM generate_series(1, 500) x',
		"SELECT 'rate v1 successes=4611686018427387904 failures=4611686018427387903'::crm_kpi.rate_summary"],
	purchase => [
		"SELECT crm_kpi.purchase_agg(12.5, '2024-03-01 10:00+00')",
		"SELECT crm_kpi.purchase_agg(x * 1.01, timestamptz '2020-01-01 00:00+00' + x * interval '1 day') FROM generate_series(0, 40) x",
		"SELECT crm_kpi.purchase_agg(x, t) FROM (VALUES (0, timestamptz '4713-01-01 00:00+00 BC'), (1e-20, 'epoch'), (1e30, '294276-12-31 23:59:59.999999+00')) v(x, t)",
		"SELECT crm_kpi.purchase_agg(123456789.000001, '0044-03-15 12:00+00 BC')",
		"SELECT crm_kpi.purchase_agg(1e1000, '2000-01-01 00:00+00')"],
	sketch => [
		'SELECT crm_kpi.sketch_agg(x) FROM (VALUES (-5::float8), (0), (1), (2), (3), (1e6)) v(x)',
		"SELECT crm_kpi.sketch_agg(x * interval '1 second') FROM generate_series(1, 40) x",
		'SELECT crm_kpi.sketch_agg(10 ^ x, 0.001) FROM generate_series(-300, 300, 7) x',
		'SELECT crm_kpi.sketch_agg(x, 1e-9) FROM (VALUES (1.5::float8), (1.5000001), (-2)) v(x)',
		'SELECT crm_kpi.sketch_agg(x, 0.5) FROM (VALUES (1e-300::float8), (1e300), (-1e-300), (0)) v(x)',
		'SELECT crm_kpi.sketch_agg(0::float8) FROM generate_series(1, 3)',
		'SELECT crm_kpi.sketch_agg(-42::float8)',
		'SELECT crm_kpi.sketch_agg(exp(sin(x) * 30) * (x % 3 - 1)) FROM generate_series(1, 5000) x',
		"SELECT crm_kpi.sketch_agg(x * interval '1 hour' - interval '3 days') FROM generate_series(1, 300) x",
		'SELECT crm_kpi.sketch_agg(x, 0.999) FROM (VALUES (4.9e-324::float8), (1.7976931348623157e308)) v(x)'],
	lifecycle => [ map { "SELECT '$_'::crm_kpi.lifecycle_stage" } qw(prospect contacted customer active loyal at_risk churned) ]);

# Each seed as [text, bytes].
my %seeds;
for my $t (sort keys %SEED_SQL)
{
	for my $sql (@{ $SEED_SQL{$t} })
	{
		my $rows = $w->do_ok("SELECT v::text, encode($SEND{$t}(v), 'hex') FROM ($sql) s(v)");
		push @{ $seeds{$t} }, [ $rows->[0][0], pack('H*', $rows->[0][1]) ];
	}
}

# ---- the fuzz loop ----

my %oid = map { $_ => $w->do_ok("SELECT '$TYPES{$_}'::regtype::oid")->[0][0] } keys %TYPES;
$w->prepare("check_$_", "SELECT fuzz.check_$_(\$1, \$2)", $oid{$_}, 17) for keys %TYPES;

my (%tried, %rejected, %accepted, @failures);
my $total = 0;

# Record a failure, with the input that caused it (shown in hex when binary).
sub failure
{
	my ($what, $type, $form, $input) = @_;
	my $shown = $form eq 'binary' ? unpack('H*', $input) : $input;
	$shown = substr($shown, 0, 300) . '...' if length $shown > 300;
	push @failures, "$type $form: $what; input: $shown";
	return;
}

# Feed a list of inputs of one type and form, in batches.
sub feed
{
	my ($type, $form, $inputs) = @_;
	for (my $i = 0; $i < @$inputs && !$w->dead; $i += $BATCH)
	{
		my @chunk = @$inputs[ $i .. ($i + $BATCH - 1 < $#$inputs ? $i + $BATCH - 1 : $#$inputs) ];
		my @params = map { $form eq 'binary' ? [ [ 1, $_ ], [ 1, $_ ] ] : [ [ 0, $_ ], [ 1, undef ] ] } @chunk;
		my $results = $w->run_batch("check_$type", \@params);
		for my $k (0 .. $#chunk)
		{
			my $r = $results->[$k];
			$tried{$type}{$form}++;
			$total++;
			if ($r->{stage} eq 'bind' && $r->{error})
			{
				my $code = $r->{error}{C};
				$rejected{$code}++;
				failure("rejected with SQLSTATE $code, not a data exception: $r->{error}{M}", $type, $form, $chunk[$k])
				  if $code !~ /^22/;
			}
			elsif ($r->{stage} eq 'ok')
			{
				$accepted{$type}{$form}++;
				my $bad = $r->{rows}[0][0];
				failure("accepted, but $bad", $type, $form, $chunk[$k]) if defined $bad && $bad ne '';
			}
			elsif ($r->{stage} eq 'lost')
			{
				failure('the connection was lost (crash?)', $type, $form, $chunk[$k]);
			}
			else
			{
				$accepted{$type}{$form}++;
				failure("accepted, but then $r->{error}{C}: $r->{error}{M}"
					  . ($r->{error}{D} ? " ($r->{error}{D})" : ''), $type, $form, $chunk[$k]);
			}
		}
	}
	return;
}

my %all_bytes = map { $_ => [ map { $_->[1] } @{ $seeds{$_} } ] } keys %seeds;
my @every_bytes = map { @{ $all_bytes{$_} } } sort keys %all_bytes;
my @every_text = map { map { $_->[0] } @{ $seeds{$_} } } sort keys %seeds;

for my $type (@SUMMARIES)
{
	my @texts = map { $_->[0] } @{ $seeds{$type} };
	my @bytes = @{ $all_bytes{$type} };

	my @bin;
	for (1 .. $PER_FORM)
	{
		my $c = $g->below(100);
		my $b = $g->pick(@bytes);
		if ($c < 5)
		{
			$b = ($g->chance(0.5) ? chr(1) . chr($FuzzGen::KIND{$type}) : '') . $g->random_bytes($g->below(40));
		}
		elsif ($c < 50)
		{
			$b = $g->mutate_fields($type, $b, \@every_bytes);
			$b = $g->mutate_bytes($b, \@every_bytes) if $g->chance(0.3);
		}
		elsif ($c < 92) { $b = $g->mutate_bytes($b, \@every_bytes) for 0 .. $g->below(3); }
		elsif ($c < 96) { $b = $g->pick(@every_bytes); }
		push @bin, $b;
	}
	feed($type, 'binary', \@bin);

	my @txt;
	for (1 .. $PER_FORM)
	{
		my $c = $g->below(100);
		my $t = $g->pick(@texts);
		if ($c < 5) { $t = $g->random_text($type); }
		elsif ($c < 88) { $t = $g->mutate_text($t, \@texts); }
		elsif ($c < 94) { $t = $g->pick(@every_text); }
		elsif ($c < 97)
		{
			# huge: a value padded to hundreds of kilobytes
			my $pad = $g->pick('0' x 200000, '9' x 150000, ' ' x 100000, join(',', map { "$_:1" } 1 .. 30000));
			$t =~ s/=(\S*)/=$pad/ if $g->chance(0.7);
			$t .= $pad if $t !~ /\Q$pad\E/;
		}
		push @txt, $t;
	}
	feed($type, 'text', \@txt);
}

# The lifecycle stage: an enum; labels mutated, in text and binary (enum_recv reads the label's bytes).
{
	my @labels = map { $_->[0] } @{ $seeds{lifecycle} };
	my @in;
	for (1 .. $PER_FORM / 10)
	{
		my $l = $g->pick(@labels);
		my $c = $g->below(6);
		if ($c == 0) { $l = uc $l; }
		elsif ($c == 1) { substr($l, $g->below(length $l), 1, $g->pick('', '_', 'x', "\x00", "\xe9", ' ')); }
		elsif ($c == 2) { $l = $g->pick('', ' ', 'prospect ', ' churned', 'at risk', 'x' x 100, 'é' x 40); }
		elsif ($c == 3) { $l .= $g->random_bytes($g->below(3)); }
		push @in, $l;
	}
	feed('lifecycle', 'text', \@in);
	feed('lifecycle', 'binary', \@in);
}

ok(!$w->dead, 'the fuzzing connection survived every input');
my $fuzz_seconds = time - $started;

# ---- merges of what was accepted: rollup serial and parallel (combine, serialize, deserialize) ----

# Merge groups of accepted values of each type serially and in parallel; both must
# agree (a value, or the same error), the error must be a data exception, and the
# merged value must pass its check.
$w->do_ok(<<'EOF');
CREATE TABLE fuzz.groups AS
SELECT typ, v, CASE WHEN typ = 'sketch' THEN substring(v from ' values=\S+ alpha=\S+ ') ELSE '' END || (id % 37) AS grp
FROM fuzz.accepted;
ANALYZE fuzz.groups;
ALTER TABLE fuzz.groups SET (parallel_workers = 2);
EOF
my %merge_outcome;
my $parallel_plans = 0;
for my $type (@SUMMARIES)
{
	my $groups = $w->do_ok("SELECT DISTINCT grp FROM fuzz.groups WHERE typ = '$type' ORDER BY 1");
	for my $grp (map { $_->[0] } @$groups)
	{
		(my $q = $grp) =~ s/'/''/g;
		my $sql = "SELECT r::text, encode($SEND{$type}(r), 'hex') FROM (SELECT crm_kpi.rollup(v::$TYPES{$type}) "
		  . "FROM fuzz.groups WHERE typ = '$type' AND grp = '$q') s(r)";
		my @res;
		for my $parallel (0, 1)
		{
			$w->do_ok($parallel
				? 'SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2'
				: 'SET max_parallel_workers_per_gather = 0');
			if ($parallel && !$parallel_plans)
			{
				my $plan = join "\n", map { $_->[0] } @{ $w->do_ok("EXPLAIN $sql") };
				$parallel_plans++ if $plan =~ /Partial Aggregate/;
			}
			push @res, $w->query($sql);
		}
		my ($s, $p) = @res;
		my $code = $s->{error} ? $s->{error}{C} : 'ok';
		my $pcode = $p->{error} ? $p->{error}{C} : 'ok';
		$merge_outcome{$code}++;
		if ($code ne $pcode || ($code eq 'ok' && ($s->{rows}[0][1] // '') ne ($p->{rows}[0][1] // '')))
		{
			push @failures, "rollup of $type group $grp: serial ($code) and parallel ($pcode) differ";
		}
		if ($code ne 'ok' && $code !~ /^22/)
		{
			push @failures, "rollup of $type group $grp failed with $code: $s->{error}{M}";
		}
		elsif ($code eq 'ok' && defined $s->{rows}[0][0])
		{
			(my $lit = $s->{rows}[0][0]) =~ s/'/''/g;
			my $c = $w->query("SELECT fuzz.check_$type('$lit'::$TYPES{$type}, NULL)");
			my $bad = $c->{error} ? "$c->{error}{C}: $c->{error}{M}" : $c->{rows}[0][0];
			push @failures, "rollup of $type group $grp: $bad" if $bad ne '';
		}
	}
}
$w->do_ok('RESET ALL; SET client_min_messages = warning');
my $accepted_rows = $w->do_ok('SELECT count(*) FROM fuzz.accepted')->[0][0];
SKIP:
{
	# A few hundred rows (a small CRM_KPI_FUZZ_INPUTS) are not worth a parallel plan to the planner.
	skip 'too few accepted values for parallel plans', 1 if $accepted_rows < 5000;
	ok($parallel_plans, 'the merges ran as parallel partial aggregates');
}

# ---- every SQL-callable function, with NULLs and extremes ----

my $swept = FuzzSweep::run($node, $g, \@failures, \%seeds, $user);

# ---- the server is the same ----

my $lost = $w->dead;
my $same_pid = !$lost && $w->do_ok('SELECT pg_backend_pid()')->[0][0] == $pid;
ok(!$lost && $same_pid, 'the same backend served every input and call');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $postmaster_started,
	'the postmaster never restarted');
my @crash_lines = grep { /terminated by signal|server process .* exited|was terminated|PANIC:/ }
  split /\n/, slurp_file($node->logfile);
is(join("\n", @crash_lines), '', 'no crash in the server log');
$w->close;

# ---- the report ----

my $rejected_total = 0;
$rejected_total += $_ for values %rejected;
my $accepted_total = 0;
for my $t (keys %accepted) { $accepted_total += $_ for values %{ $accepted{$t} }; }
my @report = (sprintf('fuzz (seed %s): %d inputs tried, %d rejected, %d accepted, in %.0f s',
		$SEED, $total, $rejected_total, $accepted_total, $fuzz_seconds));
for my $t (sort keys %tried)
{
	push @report, sprintf('  %-10s %s', $t, join(', ',
		map { sprintf('%s %d tried, %d accepted', $_, $tried{$t}{$_}, $accepted{$t}{$_} // 0) } sort keys %{ $tried{$t} }));
}
push @report, '  rejected by SQLSTATE: ' . join(', ', map { "$_ $rejected{$_}" } sort keys %rejected);
push @report, '  merges of accepted values (serial = parallel): ' . join(', ', map { "$_ $merge_outcome{$_}" } sort keys %merge_outcome);
push @report, "  functions swept: $swept->{functions}, calls: $swept->{calls}, outcomes by SQLSTATE: "
  . join(', ', map { "$_ $swept->{outcomes}{$_}" } sort keys %{ $swept->{outcomes} });
push @report, "  $_" for @{ $swept->{notes} };
diag($_) for @report;

cmp_ok($total, '>=', 100000, 'at least 100000 inputs were tried') if $PER_FORM >= 10000;
cmp_ok($accepted_total, '>', $total / 20, 'a good share of the inputs was accepted (the mutations are not all rejected)');
is(scalar @failures, 0, 'no crash, no improper SQLSTATE, no unsound accepted value');
# Each kind of failure once, with how often it happened and its first input.
my (%kinds, @order);
for my $f (@failures)
{
	(my $kind = $f) =~ s/; input: .*//s;
	push @order, $kind if !$kinds{$kind}++;
	$kinds{"$kind\0example"} //= $f;
}
diag("$kinds{$_} x $kinds{\"$_\0example\"}") for @order;

$node->stop;
done_testing();
