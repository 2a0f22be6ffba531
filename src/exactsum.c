/* exactsum.c: an exact, order-independent accumulator of double precision values. */
#include "postgres.h"

#include <math.h>

#include "exactsum.h"

#define EXACTSUM_MASK UINT64CONST(0xFFFFFFFF)
/* Normalize before any limb could overflow: each addition moves a limb by < 2^34. */
#define EXACTSUM_MAX_PENDING (1 << 27)
/* A decoded or parsed sum stays below limb 68, that is below 2^1102: far above any n * DBL_MAX. */
#define EXACTSUM_VALUE_LIMBS 68
#define EXACTSUM_MAX_HEX_DIGITS 600

/* Set the sum to zero */
void
exactsum_init(ExactSum *s)
{
	memset(s, 0, sizeof(ExactSum));
}

/* Propagate carries so that every limb but the top is in [0, 2^32) */
static void
exactsum_normalize(ExactSum *s)
{
	for (int i = 0; i < EXACTSUM_LIMBS - 1; i++)
	{
		int64		low = (int64) ((uint64) s->limb[i] & EXACTSUM_MASK);
		int64		carry = (s->limb[i] - low) / (INT64CONST(1) << 32);

		s->limb[i] = low;
		s->limb[i + 1] += carry;
	}
	s->pending = 0;
}

/* Add a finite double exactly */
void
exactsum_add(ExactSum *s, double x)
{
	uint64		bits;
	uint64		m,
				lo,
				hi;
	int			e,
				k,
				off;

	memcpy(&bits, &x, sizeof(bits));
	e = (int) ((bits >> 52) & 0x7FF);
	m = bits & ((UINT64CONST(1) << 52) - 1);
	if (e != 0)
		m |= UINT64CONST(1) << 52;
	if (m == 0)
		return;
	/* x = m * 2^(p - 1074), p = e - 1 for normal numbers, 0 for subnormal ones */
	e = (e == 0) ? 0 : e - 1;
	k = e >> 5;
	off = e & 31;
	lo = (m & EXACTSUM_MASK) << off;
	hi = (m >> 32) << off;
	if (bits >> 63)
	{
		s->limb[k] -= (int64) (lo & EXACTSUM_MASK);
		s->limb[k + 1] -= (int64) ((lo >> 32) + (hi & EXACTSUM_MASK));
		s->limb[k + 2] -= (int64) (hi >> 32);
	}
	else
	{
		s->limb[k] += (int64) (lo & EXACTSUM_MASK);
		s->limb[k + 1] += (int64) ((lo >> 32) + (hi & EXACTSUM_MASK));
		s->limb[k + 2] += (int64) (hi >> 32);
	}
	if (++s->pending >= EXACTSUM_MAX_PENDING)
		exactsum_normalize(s);
}

/*
 * Add another sum. Normalized, its limbs are 32-bit digits (the top one 0 or
 * -1), so adding them moves each limb as little as one addition does.
 */
void
exactsum_merge(ExactSum *s, const ExactSum *other)
{
	ExactSum	o;

	if (other->pending > 0)
	{
		o = *other;
		exactsum_normalize(&o);
		other = &o;
	}
	for (int i = 0; i < EXACTSUM_LIMBS; i++)
		s->limb[i] += other->limb[i];
	if (++s->pending >= EXACTSUM_MAX_PENDING)
		exactsum_normalize(s);
}

/* Normalize and return the magnitude's limbs (each in [0, 2^32)); true when negative */
static bool
exactsum_magnitude(ExactSum *s, uint64 *mag)
{
	bool		neg;

	exactsum_normalize(s);
	neg = s->limb[EXACTSUM_LIMBS - 1] < 0;
	if (neg)
	{
		ExactSum	t;

		for (int i = 0; i < EXACTSUM_LIMBS; i++)
			t.limb[i] = -s->limb[i];
		exactsum_normalize(&t);
		for (int i = 0; i < EXACTSUM_LIMBS; i++)
			mag[i] = (uint64) t.limb[i];
	}
	else
		for (int i = 0; i < EXACTSUM_LIMBS; i++)
			mag[i] = (uint64) s->limb[i];
	return neg;
}

/* Whether the sum is exactly zero */
bool
exactsum_is_zero(ExactSum *s)
{
	exactsum_normalize(s);
	for (int i = 0; i < EXACTSUM_LIMBS; i++)
		if (s->limb[i] != 0)
			return false;
	return true;
}

/* Add (or subtract, when neg) v * 2^(pos - 1074) exactly, v < 2^64, pos + 96 < 32 * EXACTSUM_LIMBS */
static void
exactsum_add_bits(ExactSum *s, uint64 v, int pos, bool neg)
{
	int			k = pos >> 5,
				off = pos & 31;
	uint64		lo = (v & EXACTSUM_MASK) << off,
				hi = (v >> 32) << off;
	int64		d0 = (int64) (lo & EXACTSUM_MASK),
				d1 = (int64) ((lo >> 32) + (hi & EXACTSUM_MASK)),
				d2 = (int64) (hi >> 32);

	s->limb[k] += neg ? -d0 : d0;
	s->limb[k + 1] += neg ? -d1 : d1;
	s->limb[k + 2] += neg ? -d2 : d2;
}

/*
 * The sign (-1, 0 or 1) of s - (n x + y), exactly, for n >= 0 and finite x
 * and y: n x is added as the four 32 x 32-bit partial products of n and the
 * significand of x, so nothing is rounded.
 */
int
exactsum_cmp_affine(const ExactSum *s, int64 n, double x, double y)
{
	ExactSum	t;
	uint64		bits,
				m,
				np[2],
				mp[2];
	int			e;
	bool		neg;

	Assert(n >= 0 && isfinite(x) && isfinite(y));
	/*
	 * Most sums are far from n x + y: compared in double precision, with room
	 * for the rounding of both sides, they need no exact arithmetic. Of a
	 * normalized sum, the top three limbs are kept (the others add less than
	 * a unit of the third) and rounded at most three times; n x + y is
	 * rounded three times (n to a double, the product, the sum).
	 */
	if (s->pending == 0)
	{
		int			h = EXACTSUM_LIMBS - 1;
		double		approx = 0.0,
					slack,
					v = (double) n * x + y;

		while (h > 0 && s->limb[h] == 0)
			h--;
		for (int i = h; i >= 0 && i > h - 3; i--)
			approx += ldexp((double) s->limb[i], 32 * i - 1074);
		slack = (h >= 3 ? ldexp(1.0, 32 * (h - 2) - 1074) : 0.0) + fabs(approx) * 0x1p-50 +
			(fabs((double) n * x) + fabs(y)) * 0x1p-50 + 0x1p-1000;
		if (isfinite(approx) && isfinite(v) && isfinite(slack))
		{
			if (approx - v > slack)
				return 1;
			if (v - approx > slack)
				return -1;
		}
	}
	t = *s;
	if (t.pending > 0)
		exactsum_normalize(&t);
	exactsum_add(&t, -y);
	memcpy(&bits, &x, sizeof(bits));
	e = (int) ((bits >> 52) & 0x7FF);
	m = bits & ((UINT64CONST(1) << 52) - 1);
	if (e != 0)
		m |= UINT64CONST(1) << 52;
	e = (e == 0) ? 0 : e - 1;
	neg = !(bits >> 63);		/* subtracting n x */
	np[0] = (uint64) n & EXACTSUM_MASK;
	np[1] = (uint64) n >> 32;
	mp[0] = m & EXACTSUM_MASK;
	mp[1] = m >> 32;
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 2; j++)
			if (np[i] && mp[j])
				exactsum_add_bits(&t, np[i] * mp[j], e + 32 * (i + j), neg);
	exactsum_normalize(&t);
	if (t.limb[EXACTSUM_LIMBS - 1] < 0)
		return -1;
	for (int i = 0; i < EXACTSUM_LIMBS; i++)
		if (t.limb[i] != 0)
			return 1;
	return 0;
}

/* Number of significant bits of a nonzero 32-bit digit */
static int
exactsum_bitlen(uint64 v)
{
	int			n = 0;

	while (v)
	{
		n++;
		v >>= 1;
	}
	return n;
}

/*
 * The sum divided by n (n >= 1), deterministically: the top 64 significant
 * bits (with a sticky bit for the rest) are rounded once to a double, divided
 * by n, and scaled by the power of two, so a sum beyond DBL_MAX still gives a
 * finite mean.
 */
double
exactsum_mean(ExactSum *s, int64 n)
{
	uint64		mag[EXACTSUM_LIMBS];
	bool		neg = exactsum_magnitude(s, mag);
	int			t = EXACTSUM_LIMBS - 1;
	int			nb;
	uint64		top,
				l1,
				l2;
	bool		sticky = false;
	double		d;

	while (t >= 0 && mag[t] == 0)
		t--;
	if (t < 0)
		return 0.0;
	nb = exactsum_bitlen(mag[t]);
	l1 = t >= 1 ? mag[t - 1] : 0;
	l2 = t >= 2 ? mag[t - 2] : 0;
	top = (mag[t] << (64 - nb)) | (nb < 32 ? l1 << (32 - nb) : l1 >> (nb - 32)) |
		(nb < 32 ? l2 >> nb : 0);
	if (nb == 32)
		sticky = l2 != 0;
	else
		sticky = (l2 & ((UINT64CONST(1) << nb) - 1)) != 0;
	for (int i = t - 3; i >= 0 && !sticky; i--)
		sticky = mag[i] != 0;
	d = (double) (top | (sticky ? 1 : 0)) / (double) n;
	d = ldexp(d, 32 * t + nb - 64 - 1074);
	return neg ? -d : d;
}

/* The sum rounded to a double */
double
exactsum_to_double(ExactSum *s)
{
	return exactsum_mean(s, 1);
}

/*
 * Canonical bytes: u8 sign (1 when negative, 0 otherwise), varuint number of
 * digits n (0 for zero); when n > 0, varuint index of the lowest nonzero limb
 * and the n limbs from there, each a varuint below 2^32, first and last nonzero.
 */
void
exactsum_encode(StringInfo buf, ExactSum *s)
{
	uint64		mag[EXACTSUM_LIMBS];
	bool		neg = exactsum_magnitude(s, mag);
	int			lo = 0,
				hi = EXACTSUM_LIMBS - 1;

	while (hi >= 0 && mag[hi] == 0)
		hi--;
	if (hi < 0)
	{
		summary_put_u8(buf, 0);
		summary_put_varuint(buf, 0);
		return;
	}
	while (mag[lo] == 0)
		lo++;
	summary_put_u8(buf, neg ? 1 : 0);
	summary_put_varuint(buf, hi - lo + 1);
	summary_put_varuint(buf, lo);
	for (int i = lo; i <= hi; i++)
		summary_put_varuint(buf, mag[i]);
}

/* Read and validate the canonical bytes of a sum */
void
exactsum_decode(SummaryReader *r, ExactSum *s)
{
	uint8		neg = summary_get_u8(r);
	uint64		n = summary_get_varuint(r);
	uint64		lo;

	exactsum_init(s);
	if (neg > 1)
		summary_corrupt(r, "The sum's sign byte is invalid.");
	if (n == 0)
	{
		if (neg)
			summary_corrupt(r, "A zero sum is not negative.");
		return;
	}
	lo = summary_get_varuint(r);
	if (n > EXACTSUM_VALUE_LIMBS || lo > EXACTSUM_VALUE_LIMBS - n)
		summary_corrupt(r, "The sum is out of range.");
	for (uint64 i = 0; i < n; i++)
	{
		uint64		w = summary_get_varuint(r);

		if (w > EXACTSUM_MASK)
			summary_corrupt(r, "A digit of the sum is out of range.");
		if (w == 0 && (i == 0 || i == n - 1))
			summary_corrupt(r, "The sum is not in canonical form.");
		s->limb[lo + i] = neg ? -(int64) w : (int64) w;
	}
	exactsum_normalize(s);
}

/*
 * Text: [-]0x<hex>p<+|-><exponent>, the value being hex * 2^exponent with an
 * odd hex mantissa, or 0x0p+0 for zero.
 */
void
exactsum_out(StringInfo buf, ExactSum *s)
{
	uint64		mag[EXACTSUM_LIMBS];
	uint64		sh[EXACTSUM_LIMBS];
	bool		neg = exactsum_magnitude(s, mag);
	int			b = 0,
				ws,
				bs,
				t;

	while (b < 32 * EXACTSUM_LIMBS && ((mag[b >> 5] >> (b & 31)) & 1) == 0)
		b++;
	if (b == 32 * EXACTSUM_LIMBS)
	{
		appendStringInfoString(buf, "0x0p+0");
		return;
	}
	ws = b >> 5;
	bs = b & 31;
	for (int i = 0; i < EXACTSUM_LIMBS; i++)
	{
		uint64		cur = i + ws < EXACTSUM_LIMBS ? mag[i + ws] : 0;
		uint64		next = i + ws + 1 < EXACTSUM_LIMBS ? mag[i + ws + 1] : 0;

		sh[i] = ((cur >> bs) | (bs ? next << (32 - bs) : 0)) & EXACTSUM_MASK;
	}
	t = EXACTSUM_LIMBS - 1;
	while (sh[t] == 0)
		t--;
	appendStringInfo(buf, "%s0x%x", neg ? "-" : "", (unsigned int) sh[t]);
	for (int i = t - 1; i >= 0; i--)
		appendStringInfo(buf, "%08x", (unsigned int) sh[i]);
	appendStringInfo(buf, "p%+d", b - 1074);
}

/* Value of a hex digit, or -1 */
static int
exactsum_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parse the text form written by exactsum_out; false when it is not one */
bool
exactsum_parse(const char *str, int len, ExactSum *s)
{
	const char *p = str,
			   *end = str + len,
			   *digits;
	bool		neg = false,
				eneg = false;
	int			nd = 0;
	int64		e = 0;
	int			ed = 0;
	int64		lsb,
				topbit;

	exactsum_init(s);
	if (p < end && *p == '-')
	{
		neg = true;
		p++;
	}
	if (end - p < 2 || p[0] != '0' || p[1] != 'x')
		return false;
	p += 2;
	digits = p;
	while (p < end && exactsum_hexval(*p) >= 0)
	{
		p++;
		if (++nd > EXACTSUM_MAX_HEX_DIGITS)
			return false;
	}
	if (nd == 0 || p == end || *p != 'p')
		return false;
	p++;
	if (p < end && (*p == '+' || *p == '-'))
		eneg = (*p++ == '-');
	while (p < end && *p >= '0' && *p <= '9')
	{
		e = e * 10 + (*p++ - '0');
		if (++ed > 6)
			return false;
	}
	if (ed == 0 || p != end)
		return false;
	if (eneg)
		e = -e;
	/* Canonical: zero is 0x0p+0; otherwise no leading zero and an odd mantissa. */
	if (nd == 1 && digits[0] == '0')
		return !neg && e == 0 && !eneg;
	if (digits[0] == '0' || (exactsum_hexval(digits[nd - 1]) & 1) == 0)
		return false;
	lsb = e + 1074;
	topbit = lsb + 4 * (nd - 1) + exactsum_bitlen(exactsum_hexval(digits[0]));
	if (lsb < 0 || topbit > 32 * EXACTSUM_VALUE_LIMBS)
		return false;
	for (int j = 0; j < nd; j++)
	{
		int64		pos = lsb + 4 * (int64) j;
		int64		v = exactsum_hexval(digits[nd - 1 - j]);

		s->limb[pos >> 5] += v << (pos & 31);
	}
	exactsum_normalize(s);
	if (neg)
	{
		for (int i = 0; i < EXACTSUM_LIMBS; i++)
			s->limb[i] = -s->limb[i];
		exactsum_normalize(s);
	}
	return true;
}
