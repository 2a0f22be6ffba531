# FuzzGen.pm: the seeded input generator of the fuzz test. A small PRNG
# (xorshift32, so that a seed gives the same inputs on every platform and Perl),
# a reader and writer of the summary and sketch byte formats as a list of
# fields, and mutators: of those fields (counts, versions, lengths, flags,
# floats set to interesting values; fields dropped, repeated, swapped,
# re-encoded in overlong form), of raw bytes (bit flips, truncation,
# extension, insertion, deletion, splicing), and of the text forms (field
# values replaced by hostile ones, fields dropped, repeated, swapped, renamed,
# characters changed).
package FuzzGen;

use strict;
use warnings;
no warnings qw(portable);

# Field layouts after the version and kind bytes; see summary_io.h, counters.c,
# purchase.c, sketch.c (sketch_encode) and exactsum.c (exactsum_encode).
our %KIND = (nps => 1, csat => 2, rate => 3, purchase => 4, sketch => 5);
my %COUNTERS = (nps => 3, csat => 5, rate => 2);

sub new
{
	my ($class, $seed) = @_;
	my $s = $seed & 0xFFFFFFFF;
	$s = 0x9E3779B9 if $s == 0;
	my $self = bless { s => $s }, $class;
	$self->rand32 for 1 .. 8;
	return $self;
}

# ---- randomness ----

sub rand32
{
	my ($self) = @_;
	my $x = $self->{s};
	$x ^= ($x << 13) & 0xFFFFFFFF;
	$x ^= $x >> 17;
	$x ^= ($x << 5) & 0xFFFFFFFF;
	$self->{s} = $x;
	return $x;
}

# An integer in [0, n).
sub below { my ($self, $n) = @_; return $n <= 0 ? 0 : $self->rand32 % $n; }

# True with probability p.
sub chance { my ($self, $p) = @_; return $self->rand32 < $p * 4294967296; }

sub pick { my ($self, @list) = @_; return $list[ $self->below(scalar @list) ]; }

sub random_bytes
{
	my ($self, $n) = @_;
	return join '', map { chr $self->below(256) } 1 .. $n;
}

sub rand64 { my ($self) = @_; return ($self->rand32 << 32) | $self->rand32; }

# ---- the byte format as fields ----

sub enc_varuint
{
	my ($v) = @_;
	my $out = '';
	while (1)
	{
		my $b = $v & 0x7F;
		$v >>= 7;
		if ($v) { $out .= chr($b | 0x80); }
		else { $out .= chr $b; last; }
	}
	return $out;
}

sub zigzag { my ($v) = @_; return $v >= 0 ? 2 * $v : 2 * (-($v + 1)) + 1; }
sub unzigzag { my ($u) = @_; return $u & 1 ? -($u >> 1) - 1 : $u >> 1; }

# A reader over a byte string: each get returns undef once the bytes run out.
sub _get
{
	my ($r, $how) = @_;
	my $n = { u8 => 1, f64 => 8, i64 => 8 }->{$how};
	if ($n)
	{
		return undef if $r->{pos} + $n > length $r->{data};
		my $raw = substr($r->{data}, $r->{pos}, $n);
		$r->{pos} += $n;
		return $how eq 'u8' ? ord $raw : $how eq 'i64' ? unpack('q<', $raw) : $raw;
	}
	my ($v, $shift) = (0, 0);
	while (1)
	{
		return undef if $r->{pos} >= length $r->{data} || $shift > 63;
		my $b = ord substr($r->{data}, $r->{pos}++, 1);
		$v |= ($b & 0x7F) << $shift;
		last if !($b & 0x80);
		$shift += 7;
	}
	return $how eq 'vi' ? unzigzag($v) : $v;
}

# The fields of valid summary bytes of a type: [kind, value] pairs, kinds
# u8, f64 (8 raw bytes), i64, vu (varuint), vi (zigzag varint), bytes
# (raw, after its vu length); undef when the bytes do not parse.
sub fields_of
{
	my ($type, $data) = @_;
	my $r = { data => $data, pos => 0 };
	my @f;
	my $take = sub {
		my ($how) = @_;
		my $v = _get($r, $how);
		die "short\n" if !defined $v;
		push @f, [ $how, $v ];
		return $v;
	};
	my $ok = eval {
		$take->('u8') for 1 .. 2;
		if ($COUNTERS{$type}) { $take->('vu') for 1 .. $COUNTERS{$type}; }
		elsif ($type eq 'purchase')
		{
			$take->('vu');
			my $len = $take->('vu');
			die "short\n" if $r->{pos} + $len > length $data;
			push @f, [ 'bytes', substr($data, $r->{pos}, $len) ];
			$r->{pos} += $len;
			$take->('i64') for 1 .. 2;
		}
		elsif ($type eq 'sketch')
		{
			$take->('u8');
			$take->('f64');
			$take->('vu') for 1 .. 3;
			$take->('f64') for 1 .. 2;
			$take->('u8');
			my $n = $take->('vu');
			if ($n) { $take->('vu') for 0 .. $n; }
			for (1 .. 2)
			{
				my $k = $take->('vu');
				next if !$k;
				$take->('vi');
				$take->('vu');
				for (2 .. $k) { $take->('vu') for 1 .. 2; }
			}
		}
		die "trailing\n" if $r->{pos} != length $data;
		1;
	};
	return $ok ? \@f : undef;
}

# The bytes of a list of fields (a bytes field carries its own text; its length is the field before).
sub bytes_of
{
	my ($fields) = @_;
	my $out = '';
	for my $f (@$fields)
	{
		my ($how, $v) = @$f;
		if ($how eq 'u8') { $out .= chr($v & 0xFF); }
		elsif ($how eq 'f64' || $how eq 'bytes' || $how eq 'raw') { $out .= $v; }
		elsif ($how eq 'i64') { $out .= pack('q<', $v); }
		elsif ($how eq 'vu') { $out .= enc_varuint($v); }
		elsif ($how eq 'vi') { $out .= enc_varuint(zigzag($v)); }
	}
	return $out;
}

# ---- interesting values ----

my @U64 = (0, 1, 2, 3, 7, 61, 62, 63, 64, 67, 68, 69, 70, 127, 128, 255, 256, 1023, 1024, 1025, 2047, 2048,
	2049, 4096, 65535, 2147483647, 2147483648, 4294967295, 4294967296, 9007199254740992,
	4611686018427387904, 9223372036854775806, 9223372036854775807, 9223372036854775808,
	18446744073709551615);
my @I64 = (0, 1, -1, 2, -2, 100, -100, 746, -746, 100000, -100000, 2147483647, -2147483648,
	4611686018427387903, -4611686018427387904, 9223372036854775807, -9223372036854775807 - 1,
	# timestamps: the valid range's ends, and the infinities
	-211813488000000000, -211813488000000001, 9223371331199999999, 9223371331200000000, 0, 946684800000000);
my @F64 = map { pack('d<', $_) } (0, 1, -1, 0.5, 2, 1e-9, 0.999999999, 1e-10, 1.0000001, 0.01, 1e300, -1e300,
	1.7976931348623157e308, -1.7976931348623157e308, 2.2250738585072014e-308, 4.9406564584124654e-324,
	-4.9406564584124654e-324, 3.0e12);
push @F64, pack('Q<', 0x8000000000000000), pack('Q<', 0x7FF8000000000000), pack('Q<', 0xFFF8000000000001),
  pack('Q<', 0x7FF0000000000001), pack('Q<', 0x7FF0000000000000), pack('Q<', 0xFFF0000000000000);

# A varuint of value v in a form the format forbids: overlong, or too long.
sub _bad_varuint
{
	my ($self, $v) = @_;
	my $e = enc_varuint($v);
	my $how = $self->below(3);
	if ($how == 0) { substr($e, -1, 1, chr(ord(substr($e, -1)) | 0x80)); return $e . "\x00"; }
	if ($how == 1) { return ("\x80" x (10 + $self->below(3))) . "\x01"; }
	return ("\xff" x 9) . chr(2 + $self->below(126));
}

# Mutate one field in place.
sub _mutate_field
{
	my ($self, $fields, $i) = @_;
	my ($how, $v) = @{ $fields->[$i] };
	my $c = $self->below(10);
	if ($how eq 'u8')
	{
		$v = $c < 4 ? $self->pick(0, 1, 2, 3, 4, 5, 6, 0x7F, 0x80, 0xFF) : $c < 8 ? $v ^ (1 << $self->below(8)) : $v + 1;
	}
	elsif ($how eq 'vu')
	{
		$v = $c < 5 ? $self->pick(@U64)
		  : $c < 7 ? ($v + $self->pick(1, -1)) & 0xFFFFFFFFFFFFFFFF
		  : $c < 8 ? ($v << 1) & 0xFFFFFFFFFFFFFFFF
		  : $c < 9 ? $v >> 1
		  : $self->rand64;
		if ($self->chance(0.1)) { $fields->[$i] = [ 'raw', $self->_bad_varuint($v) ]; return; }
	}
	elsif ($how eq 'vi')
	{
		$v = $c < 5 ? $self->pick(@I64) : $c < 8 ? $v + $self->pick(1, -1, 1000, -1000) : ($self->rand64 - 9223372036854775807 - 1);
	}
	elsif ($how eq 'i64')
	{
		$v = $c < 5 ? $self->pick(@I64) : $c < 8 ? $v + $self->pick(1, -1, 86400000000, -86400000000) : -$v;
	}
	elsif ($how eq 'f64')
	{
		if ($c < 6) { $v = $self->pick(@F64); }
		elsif ($c < 8)
		{
			# the neighbouring doubles
			my $bits = unpack('Q<', $v);
			$v = pack('Q<', ($bits + $self->pick(1, -1)) & 0xFFFFFFFFFFFFFFFF);
		}
		else { $v = pack('d<', -unpack('d<', $v)); }
	}
	elsif ($how eq 'bytes')
	{
		$v = $self->pick('NaN', 'Infinity', '-Infinity', '-0', '0', '00', '-1', '1e5', '.5', '5.', '1.50',
			'0.000', '1' x 1025, '1' . ('0' x 1500), '9' x 1024, '', '-', '.', '1-2', '1.2.3', "1\x00",
			$v . '0', substr($v, 1), "-$v", '0' . $v);
	}
	elsif ($how eq 'raw') { $v = $self->random_bytes($self->below(4)); }
	$fields->[$i] = [ $how, $v ];
	return;
}

# Structure-aware mutation of valid bytes of a type (fields changed, dropped, repeated, swapped).
sub mutate_fields
{
	my ($self, $type, $data, $others) = @_;
	my $f = fields_of($type, $data);
	return $self->mutate_bytes($data, $others) if !$f;
	for (0 .. $self->below(2))
	{
		my $c = $self->below(20);
		my $i = $self->below(scalar @$f);
		if ($c < 14) { $self->_mutate_field($f, $i); }
		elsif ($c < 15) { splice(@$f, $i, 1); }
		elsif ($c < 16) { splice(@$f, $i, 0, [ @{ $f->[$i] } ]); }
		elsif ($c < 17 && $i + 1 < @$f) { @$f[ $i, $i + 1 ] = @$f[ $i + 1, $i ]; }
		elsif ($c < 18) { splice(@$f, $i, 0, [ 'vu', $self->pick(@U64) ]); }
		elsif ($c < 19)
		{
			# a field's change carried through: a length or count field and the data after it both grow
			if ($f->[$i][0] eq 'vu' && $f->[$i][1] < 4096)
			{
				$f->[$i][1]++;
				splice(@$f, $i + 1, 0, [ 'vu', $self->pick(1, 2, 1000) ]);
			}
		}
		else { $f->[1][1] = $self->pick(map { $KIND{$_} } sort keys %KIND); }
	}
	return bytes_of($f);
}

# Byte-level mutation; $others are bytes of other values to splice from.
sub mutate_bytes
{
	my ($self, $b, $others) = @_;
	my $n = length $b;
	my $c = $self->below(10);
	my $pos = $self->below($n || 1);
	if ($c < 3 && $n)
	{
		substr($b, $pos, 1, chr(ord(substr($b, $pos, 1)) ^ (1 << $self->below(8))));
	}
	elsif ($c < 4 && $n) { substr($b, $pos, 1, chr $self->pick(0, 1, 0x7F, 0x80, 0xFF, $self->below(256))); }
	elsif ($c < 5) { $b = substr($b, 0, $self->below($n + 1)); }
	elsif ($c < 6) { $b .= $self->random_bytes(1 + $self->below(16)); }
	elsif ($c < 7) { substr($b, $pos, 0, $self->random_bytes(1 + $self->below(4))); }
	elsif ($c < 8 && $n) { substr($b, $pos, 1 + $self->below(8), ''); }
	elsif ($c < 9 && $n) { substr($b, $pos, 0, substr($b, $pos, 1 + $self->below(16))); }
	elsif ($others && @$others)
	{
		# splice: our head, another value's tail
		my $o = $self->pick(@$others);
		$b = substr($b, 0, $pos) . substr($o, $self->below(length($o) + 1));
	}
	return $b;
}

# ---- text ----

my @TEXT_INT = ('0', '1', '-1', '-0', '2', '62', '63', '2048', '2049', '9223372036854775807',
	'9223372036854775808', '-9223372036854775808', '-9223372036854775809', '18446744073709551616',
	'99999999999999999999999', '+1', '007', '1e3', '0x10', '1.0', '1_000', ' 1', '', 'NaN', "\xef\xbc\x91",
	'4294967296', '1' x 400);
my @TEXT_FLOAT = ('0', '-0', '1', '-1', '0.5', '1e-9', '9.99e-10', '0.999999999', '1', '0.9999999999999999',
	'NaN', 'nan', 'Infinity', '-Infinity', 'inf', '-inf', '1e308', '1.7976931348623157e308',
	'1.7976931348623159e308', '1e309', '-1e309', '4.9e-324', '2e-324', '1e-400', '0x1p3', '1e', '.', '+0.5',
	'1' x 400, '0.' . ('0' x 400) . '1', '5e-324', '2.2250738585072014e-308', '3e12');
my @TEXT_NUMERIC = ('0', '-0', '-1', '1.50', 'NaN', 'Infinity', '-Infinity', 'inf', '1e1000', '1e-1000',
	'1' x 1025, '1e131071', '1e131072', '1e-16383', '1e-16384', '.5', '5.', '+5', '5e', '1_000', '0x10',
	'123456789012345678901234567890.123456789', '');
my @TEXT_TIME = ('infinity', '-infinity', 'epoch', 'now', 'today', 'allballs', '2000-01-01T00:00:00+00:00',
	'2000-02-30T00:00:00+00:00', '2000-01-01T24:00:00+00:00', '2000-01-01T00:00:00+15:59',
	'2000-01-01T00:00:00-15:59', '2000-01-01T00:00:00+16:00', '4714-11-24T00:00:00+00:00',
	'4714-11-23T23:59:59+00:00', '0044-03-15T12:00:00+00:00', '0001-01-01T00:00:00+00:00',
	'0000-12-31T00:00:00+00:00', '-0044-03-15T00:00:00+00:00', '294276-12-31T23:59:59.999999+00:00',
	'294277-01-01T00:00:00+00:00', '2000-01-01', 'J2451545', '1999-12-31T23:59:60+00:00',
	'2000-01-01T00:00:00.0000005+00:00', '2000-01-01T00:00:00Z', '2000-01-01T00:00:00+00:00:01', '');
my @TEXT_SUM = ('0x0p+0', '-0x0p+0', '0x1p+0', '-0x1p+0', '0x2p+0', '0x1p-1074', '0x1p-1075', '0x1p+1023',
	'0x1p+1101', '0x1p+1102', '0xfp+1100', '0x1p+999999', '0x1p-999999', '0x01p+0', '0x1P+0', '0x1p0', '0x1p',
	'1p+0', '0x', '-0x3p-1', '0x' . ('f' x 600) . 'p+0', '0x' . ('f' x 601) . 'p+0', '0x1p+1234567');
my @TEXT_BUCKETS = ('none', 'None', '', '0:1', '1:1', '-1:1', '1:0', '1:-1', '2:1,1:1', '1:1,1:1', '1:1,',
	',1:1', ':1', '1:', '1::1', '1:1:1', '1:1,,2:1', '-9223372036854775808:1', '9223372036854775807:1',
	'9223372036854775808:1', '1:9223372036854775807', '1:9223372036854775807,2:1', '0:1,2049:1',
	'0:1,2048:1', '0:1,2047:1', '100000000000:1', '-100000000000:1', '0x1:1', '+1:1', '1:+1',
	join(',', map { "$_:1" } 0 .. 2048), join(',', map { "$_:1" } 0 .. 2047));

my %TEXT_VALUES = (
	promoters => \@TEXT_INT, passives => \@TEXT_INT, detractors => \@TEXT_INT, s1 => \@TEXT_INT,
	s2 => \@TEXT_INT, s3 => \@TEXT_INT, s4 => \@TEXT_INT, s5 => \@TEXT_INT, successes => \@TEXT_INT,
	failures => \@TEXT_INT, orders => \@TEXT_INT, level => \@TEXT_INT, count => \@TEXT_INT,
	zeros => \@TEXT_INT, revenue => \@TEXT_NUMERIC, first => \@TEXT_TIME, last => \@TEXT_TIME,
	alpha => \@TEXT_FLOAT, min => \@TEXT_FLOAT, max => \@TEXT_FLOAT, sum => \@TEXT_SUM,
	neg => \@TEXT_BUCKETS, pos => \@TEXT_BUCKETS, values => [ 'double', 'interval', 'Double', 'float8', '' ]);

# (with a tab, a control character, a lone Latin-1 byte that is not UTF-8, and UTF-8 for e acute)
my $ALPHABET = ' =v0123456789-+.eExXpPNaIinfTZ:,_' . "\t\x01\xe9\xc3\xa9";

# Mutate a summary's text form; $others are text forms of values of the same type.
sub mutate_text
{
	my ($self, $t, $others) = @_;
	for (0 .. $self->below(2))
	{
		my @w = split / /, $t, -1;
		my $c = $self->below(24);
		my $i = 2 + $self->below(@w > 2 ? @w - 2 : 1);
		if ($c < 10 && $i < @w && $w[$i] =~ /^([^=]*)=(.*)$/s)
		{
			my ($k, $v) = ($1, $2);
			my $vals = $TEXT_VALUES{$k} // \@TEXT_INT;
			if ($self->chance(0.15) && $others && @$others)
			{
				# the same field of another value
				my ($o) = grep { /^\Q$k\E=/ } split / /, $self->pick(@$others);
				$v = defined $o ? substr($o, length($k) + 1) : $v;
			}
			elsif ($self->chance(0.2) && $v =~ /^-?\d+$/ && length $v < 18)
			{
				$v += $self->pick(1, -1);
			}
			else { $v = $self->pick(@$vals); }
			$w[$i] = "$k=$v";
		}
		elsif ($c < 11 && $i < @w) { splice(@w, $i, 1); }
		elsif ($c < 12 && $i < @w) { splice(@w, $i, 0, $w[$i]); }
		elsif ($c < 13 && $i + 1 < @w) { @w[ $i, $i + 1 ] = @w[ $i + 1, $i ]; }
		elsif ($c < 14 && $i < @w) { $w[$i] =~ s/^([^=]*)/uc $1/e; }
		elsif ($c < 15 && $i < @w) { $w[$i] =~ s/=/ = /; }
		elsif ($c < 16) { $w[1] = $self->pick('v0', 'v2', 'v01', 'v+1', 'v 1', 'v1.0', 'v-1', 'V1', 'v', '1',
				'v99999999999999999999', 'v4294967297'); }
		elsif ($c < 17) { $w[0] = $self->pick('nps', 'csat', 'rate', 'purchase', 'sketch', 'NPS', '', ' '); }
		elsif ($c < 18) { push @w, $self->pick('extra=1', '', 'x', 'sum=0x0p+0'); }
		else
		{
			$t = join ' ', @w;
			my $n = length $t;
			my $pos = $self->below($n || 1);
			my $ch = substr($ALPHABET, $self->below(length $ALPHABET), 1);
			my $d = $self->below(6);
			if ($d < 2) { substr($t, $pos, 1, $ch) if $n; }
			elsif ($d < 3) { substr($t, $pos, 1, '') if $n; }
			elsif ($d < 4) { substr($t, $pos, 0, $ch); }
			elsif ($d < 5) { $t = substr($t, 0, $self->below($n + 1)); }
			else { $t = $self->pick(' ', "\t", '') . $t . $self->pick(' ', "\t", "\n", ''); }
			next;
		}
		$t = join ' ', @w;
	}
	return $t;
}

# Random text from the troublesome alphabet, sometimes behind a valid tag and version.
sub random_text
{
	my ($self, $tag) = @_;
	my $t = $self->chance(0.5) ? "$tag v1 " : '';
	$t .= substr($ALPHABET, $self->below(length $ALPHABET), 1) for 1 .. $self->below(40);
	return $t;
}

1;
