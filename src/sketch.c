/* sketch.c: crm_kpi.sketch's engine: logarithmic buckets, uniform collapse, merge, canonical bytes, estimates. */
#include "postgres.h"

#include <math.h>

#include "common/int.h"
#include "common/shortest_dec.h"
#include "fmgr.h"
#include "utils/timestamp.h"

#include "exactsum.h"
#include "sketch.h"
#include "summary_io.h"

/* Raise the error for a relative error outside its range */
void
sketch_check_alpha(double alpha)
{
	char		buf[32];

	if (alpha >= SKETCH_MIN_ALPHA && alpha < 1.0)
		return;
	double_to_shortest_decimal_buf(alpha, buf);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("relative error %s is out of range", buf),
			 errdetail("The relative error must be greater than 0 and less than 1 (and at least 1e-09).")));
}

/* Raise the error for a percentile fraction outside [0, 1] */
void
sketch_check_q(double q)
{
	char		buf[32];

	if (q >= 0.0 && q <= 1.0)
		return;
	double_to_shortest_decimal_buf(q, buf);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("percentile %s is out of range", buf),
			 errdetail("The percentile must be between 0 and 1, inclusive.")));
}

/* Set up an empty state for the given relative error and flags */
void
sketch_init(SketchState *s, double alpha, uint8 flags, MemoryContext ctx)
{
	/* The last relative error's ln(gamma), kept: every sketch read sets one up, nearly always with the same */
	static double last_alpha = 0.0;
	static double last_ln_gamma = 0.0;

	if (alpha != last_alpha)
	{
		last_ln_gamma = log1p(alpha) - log1p(-alpha);
		last_alpha = alpha;
	}
	memset(s, 0, sizeof(SketchState));
	s->alpha = alpha;
	s->ln_gamma = last_ln_gamma;
	s->inv_ln_gamma = 1.0 / s->ln_gamma;
	s->flags = flags;
	s->q = 0.0;
	s->ctx = ctx;
	exactsum_init(&s->sum);
}

/* Map a level-0 index to a level shift levels up: ceil(i / 2^shift) */
static inline int64
sketch_map(int64 i, int shift)
{
	if (shift == 0)
		return i;
	return i > 0 ? ((i - 1) >> shift) + 1 : -((-i) >> shift);
}

/* The level-0 bucket index of a nonzero finite value */
static inline int64
sketch_index(const SketchState *s, double x)
{
	return (int64) ceil(log(fabs(x)) * s->inv_ln_gamma);
}

/* Number of indexes from the least to the greatest nonempty bucket, at shift levels up */
static inline int64
sketch_span(const SketchStore *st, int shift)
{
	return st->total ? sketch_map(st->hi, shift) - sketch_map(st->lo, shift) + 1 : 0;
}

/* Make the store's dense array cover [lo, hi] (a span of at most SKETCH_MAX_BUCKETS) */
static void
sketch_store_reserve(SketchStore *st, int64 lo, int64 hi, MemoryContext ctx)
{
	int64		need = hi - lo + 1;
	int64		cap,
				base;
	int64	   *counts;

	if (st->counts && lo >= st->base && hi < st->base + st->cap)
		return;
	cap = st->cap ? st->cap : 32;
	while (cap < 2 * need)
		cap *= 2;
	base = lo - (cap - need) / 2;
	counts = MemoryContextAllocZero(ctx, cap * sizeof(int64));
	if (st->total)
		memcpy(counts + (st->lo - base), st->counts + (st->lo - st->base),
			   (st->hi - st->lo + 1) * sizeof(int64));
	if (st->counts)
		pfree(st->counts);
	st->counts = counts;
	st->base = base;
	st->cap = cap;
}

/* Collapse a store one level: bucket i joins ceil(i/2), in place */
static void
sketch_store_collapse(SketchStore *st)
{
	int64		nlo,
				nhi;

	if (st->total == 0)
		return;
	nlo = sketch_map(st->lo, 1);
	nhi = sketch_map(st->hi, 1);
	/* New positions never pass old ones (ceil(i/2) - nlo <= i - base), so ascending is safe. */
	for (int64 i = st->lo; i <= st->hi; i++)
	{
		int64		c = st->counts[i - st->base];

		st->counts[i - st->base] = 0;
		st->counts[sketch_map(i, 1) - nlo] += c;
	}
	st->base = nlo;
	st->lo = nlo;
	st->hi = nhi;
}

/* Collapse the sketch one level */
static void
sketch_collapse(SketchState *s)
{
	if (s->level >= SKETCH_MAX_LEVEL)
		elog(ERROR, "crm_kpi.sketch cannot collapse beyond level %d", SKETCH_MAX_LEVEL);
	sketch_store_collapse(&s->neg);
	sketch_store_collapse(&s->pos);
	s->level++;
}

/* Add n to bucket i of a store, which already covers it */
static inline void
sketch_store_bump(SketchStore *st, int64 i, int64 n, MemoryContext ctx)
{
	int64		lo = st->total && st->lo < i ? st->lo : i;
	int64		hi = st->total && st->hi > i ? st->hi : i;

	sketch_store_reserve(st, lo, hi, ctx);
	st->counts[i - st->base] += n;
	st->lo = lo;
	st->hi = hi;
	st->total += n;
}

/* Raise the error for a value that is not finite */
static void
sketch_nonfinite_error(double x)
{
	char		buf[32];

	double_to_shortest_decimal_buf(x, buf);
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("value %s is out of range for %s", buf, SKETCH_TYPE),
			 errdetail("Values must be finite numbers.")));
}

/* Add one finite value (the hot path of every aggregate) */
void
sketch_add(SketchState *s, double x)
{
	if (unlikely(!isfinite(x)))
		sketch_nonfinite_error(x);
	if (x == 0.0)
	{
		x = 0.0;				/* -0.0 counts as 0.0 */
		s->zeros++;
	}
	else
	{
		SketchStore *st = x > 0 ? &s->pos : &s->neg;
		SketchStore *other = x > 0 ? &s->neg : &s->pos;
		int64		i0 = sketch_index(s, x);

		for (;;)
		{
			int64		i = sketch_map(i0, s->level);

			if (likely(st->total && i >= st->lo && i <= st->hi))
			{
				st->counts[i - st->base]++;
				st->total++;
				break;
			}
			if ((st->total ? Max(st->hi, i) - Min(st->lo, i) + 1 : 1) +
				sketch_span(other, 0) <= SKETCH_MAX_BUCKETS)
			{
				sketch_store_bump(st, i, 1, s->ctx);
				break;
			}
			sketch_collapse(s);
		}
	}
	if (s->count == 0 || x < s->min)
		s->min = x;
	if (s->count == 0 || x > s->max)
		s->max = x;
	s->count++;
	exactsum_add(&s->sum, x);
}

/*
 * Merge b into a (both nonempty), leaving b unchanged. b's buckets are its
 * stores' dense counts, or, when pairs is not NULL, the (index, count) pairs
 * read from its bytes (pairs[k] holding npairs[k] of them for store k: the
 * negative, then the positive one), its stores giving only lo, hi and total.
 */
static void
sketch_merge_into(SketchState *a, const SketchState *b, int64 *const *pairs, const int64 *npairs)
{
	int			level = Max(a->level, b->level);
	SketchStore *as[2] = {&a->neg, &a->pos};
	const SketchStore *bs[2] = {&b->neg, &b->pos};

	if (a->alpha != b->alpha || a->flags != b->flags)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot merge %s values with different relative errors or value types", SKETCH_TYPE),
				 errdetail("Relative errors %g and %g; %s and %s.", a->alpha, b->alpha,
						   a->flags & SKETCH_FLAG_INTERVAL ? "intervals" : "numbers",
						   b->flags & SKETCH_FLAG_INTERVAL ? "intervals" : "numbers")));
	/* The least level at which the union fits. */
	for (;;)
	{
		int64		span = 0;

		for (int k = 0; k < 2; k++)
		{
			int			sa = level - a->level,
						sb = level - b->level;

			if (as[k]->total && bs[k]->total)
				span += Max(sketch_map(as[k]->hi, sa), sketch_map(bs[k]->hi, sb)) -
					Min(sketch_map(as[k]->lo, sa), sketch_map(bs[k]->lo, sb)) + 1;
			else
				span += sketch_span(as[k], sa) + sketch_span(bs[k], sb);
		}
		if (span <= SKETCH_MAX_BUCKETS)
			break;
		level++;
	}
	while (a->level < level)
		sketch_collapse(a);
	for (int k = 0; k < 2; k++)
	{
		const SketchStore *src = bs[k];
		SketchStore *dst = as[k];
		int			sb = level - b->level;
		int64		lo,
					hi,
					off;

		if (src->total == 0)
			continue;
		lo = sketch_map(src->lo, sb);
		hi = sketch_map(src->hi, sb);
		if (dst->total)
		{
			lo = Min(dst->lo, lo);
			hi = Max(dst->hi, hi);
		}
		sketch_store_reserve(dst, lo, hi, a->ctx);
		off = dst->base;
		if (pairs)
			for (int64 j = 0; j < npairs[k]; j++)
				dst->counts[sketch_map(pairs[k][2 * j], sb) - off] += pairs[k][2 * j + 1];
		else
			for (int64 i = src->lo; i <= src->hi; i++)
				dst->counts[sketch_map(i, sb) - off] += src->counts[i - src->base];
		dst->lo = lo;
		dst->hi = hi;
		dst->total += src->total;
	}
	a->count = summary_add_count(a->count, b->count, SKETCH_TYPE);
	a->zeros += b->zeros;
	a->min = Min(a->min, b->min);
	a->max = Max(a->max, b->max);
	exactsum_merge(&a->sum, &b->sum);
}

/* Merge b into a (both nonempty), leaving b unchanged */
void
sketch_merge(SketchState *a, const SketchState *b)
{
	sketch_merge_into(a, b, NULL, NULL);
}

/* Copy a store's buckets into ctx */
static void
sketch_store_copy(SketchStore *dst, const SketchStore *src, MemoryContext ctx)
{
	memset(dst, 0, sizeof(SketchStore));
	if (src->total == 0)
		return;
	sketch_store_reserve(dst, src->lo, src->hi, ctx);
	memcpy(dst->counts + (src->lo - dst->base), src->counts + (src->lo - src->base),
		   (src->hi - src->lo + 1) * sizeof(int64));
	dst->lo = src->lo;
	dst->hi = src->hi;
	dst->total = src->total;
}

/* Copy a state into ctx */
SketchState *
sketch_copy(const SketchState *src, MemoryContext ctx)
{
	SketchState *s = MemoryContextAlloc(ctx, sizeof(SketchState));

	*s = *src;
	s->ctx = ctx;
	sketch_store_copy(&s->neg, &src->neg, ctx);
	sketch_store_copy(&s->pos, &src->pos, ctx);
	return s;
}

/* ---- canonical bytes ---- */

/* Append a store: varuint n, then first index (varint) and count, then (gap, count) pairs */
static void
sketch_encode_store(StringInfo buf, const SketchStore *st)
{
	int64		n = 0,
				prev = 0;
	bool		first = true;

	if (st->total)
		for (int64 i = st->lo; i <= st->hi; i++)
			n += st->counts[i - st->base] != 0;
	summary_put_varuint(buf, n);
	if (n == 0)
		return;
	for (int64 i = st->lo; i <= st->hi; i++)
	{
		int64		c = st->counts[i - st->base];

		if (c == 0)
			continue;
		if (first)
			summary_put_varint(buf, i);
		else
			summary_put_varuint(buf, i - prev);
		summary_put_varuint(buf, c);
		prev = i;
		first = false;
	}
}

/* Encode a state as a summary (the same bytes on disk, on the wire and between workers) */
bytea *
sketch_encode(SketchState *s)
{
	StringInfoData buf;

	summary_begin(&buf, SUMMARY_SKETCH);
	summary_put_u8(&buf, s->flags);
	summary_put_f64(&buf, s->alpha);
	summary_put_varuint(&buf, s->level);
	summary_put_varuint(&buf, s->count);
	summary_put_varuint(&buf, s->zeros);
	summary_put_f64(&buf, s->min);
	summary_put_f64(&buf, s->max);
	exactsum_encode(&buf, &s->sum);
	sketch_encode_store(&buf, &s->neg);
	sketch_encode_store(&buf, &s->pos);
	return summary_finish(&buf);
}

/* Read a store into (index, count) pairs, checking order, range and counts; returns them (NULL when none) */
static int64 *
sketch_decode_store(SummaryReader *r, SketchStore *st, int64 bound, int64 *npairs, MemoryContext ctx)
{
	uint64		n = summary_get_varuint(r);
	int64		i = 0;
	int64	   *pairs;

	if (n > SKETCH_MAX_BUCKETS)
		summary_corrupt(r, "A store holds more buckets than a sketch may.");
	*npairs = (int64) n;
	if (n == 0)
		return NULL;
	/* Each pair takes at least two bytes: a truncated value is caught before a large allocation. */
	if ((uint64) (r->end - r->pos) < 2 * n)
		summary_corrupt(r, "The value is truncated.");
	pairs = MemoryContextAlloc(ctx, 2 * n * sizeof(int64));
	for (uint64 k = 0; k < n; k++)
	{
		uint64		c;

		if (k == 0)
			i = summary_get_varint(r);
		else
		{
			uint64		gap = summary_get_varuint(r);

			if (gap == 0 || gap > (uint64) SKETCH_MAX_BUCKETS)
				summary_corrupt(r, "Bucket indexes are not strictly increasing, or span more than a sketch may.");
			i += (int64) gap;
		}
		if (i < -bound || i > bound)
			summary_corrupt(r, "A bucket index is out of range for the relative error and level.");
		c = summary_get_varuint(r);
		if (c == 0 || c > (uint64) PG_INT64_MAX)
			summary_corrupt(r, "A bucket count is out of range.");
		if (k == 0)
			st->lo = i;
		st->hi = i;
		if (pg_add_s64_overflow(st->total, (int64) c, &st->total))
			summary_corrupt(r, "Bucket counts overflow.");
		pairs[2 * k] = i;
		pairs[2 * k + 1] = (int64) c;
	}
	if (sketch_span(st, 0) > SKETCH_MAX_BUCKETS)
		summary_corrupt(r, "The buckets span more than a sketch may.");
	return pairs;
}

/* Fill a store's dense array from the (index, count) pairs read (strictly increasing indexes, lo to hi) */
static void
sketch_fill_store(SketchStore *st, const int64 *pairs, int64 npairs, MemoryContext ctx)
{
	int64		total = st->total;

	if (npairs == 0)
		return;
	st->total = 0;				/* no buckets to carry over into the new array */
	sketch_store_reserve(st, st->lo, st->hi, ctx);
	st->total = total;
	for (int64 k = 0; k < npairs; k++)
		st->counts[pairs[2 * k] - st->base] = pairs[2 * k + 1];
}

/* Whether a double is -0.0 */
static inline bool
sketch_is_neg_zero(double x)
{
	return x == 0.0 && signbit(x);
}

/*
 * Whether bucket i, at the sketch's level, is the one x falls in, give or take
 * one level-0 bucket (another platform's log() may round a value on a bucket
 * boundary the other way).
 */
static bool
sketch_holds(const SketchState *s, int64 i, double x)
{
	int64		i0 = sketch_index(s, x);

	return i >= sketch_map(i0 - 1, s->level) && i <= sketch_map(i0 + 1, s->level);
}

/*
 * The one validating reader of sketch bytes (sqlstate is the error code for
 * bad bytes): fills s but for its stores' dense counts, and returns the
 * stores' (index, count) pairs, allocated in ctx (NULL when a store is empty).
 */
static void
sketch_decode_pairs(const char *data, int len, int sqlstate, MemoryContext ctx, SketchState *s,
					int64 **pairs, int64 *npairs)
{
	SummaryReader r;
	uint8		flags;
	double		alpha;
	uint64		level,
				count,
				zeros;
	int64		bound,
				total;

	memset(s, 0, sizeof(SketchState));
	summary_read_bytes_begin(&r, data, len, SUMMARY_SKETCH, SKETCH_TYPE);
	r.errcode = sqlstate;
	flags = summary_get_u8(&r);
	if (flags & ~SKETCH_FLAG_INTERVAL)
		summary_corrupt(&r, "Unknown flags are set.");
	alpha = summary_get_f64(&r);
	if (!(alpha >= SKETCH_MIN_ALPHA && alpha < 1.0))
		summary_corrupt(&r, "The relative error is out of range.");
	sketch_init(s, alpha, flags, ctx);
	level = summary_get_varuint(&r);
	if (level > SKETCH_MAX_LEVEL)
		summary_corrupt(&r, "The collapse level is out of range.");
	s->level = (int) level;
	count = summary_get_varuint(&r);
	zeros = summary_get_varuint(&r);
	if (count == 0 || count > (uint64) PG_INT64_MAX || zeros > count)
		summary_corrupt(&r, "The count is out of range.");
	s->count = (int64) count;
	s->zeros = (int64) zeros;
	s->min = summary_get_f64(&r);
	s->max = summary_get_f64(&r);
	if (!isfinite(s->min) || !isfinite(s->max) || sketch_is_neg_zero(s->min) ||
		sketch_is_neg_zero(s->max) || s->min > s->max || (count == 1 && s->min != s->max))
		summary_corrupt(&r, "The minimum and maximum are inconsistent.");
	exactsum_decode(&r, &s->sum);
	/* No finite double has a level-0 index beyond 746 / ln(gamma) in magnitude. */
	bound = sketch_map((int64) ceil(746.0 * s->inv_ln_gamma) + 1, s->level) + 1;
	pairs[0] = sketch_decode_store(&r, &s->neg, bound, &npairs[0], ctx);
	pairs[1] = sketch_decode_store(&r, &s->pos, bound, &npairs[1], ctx);
	summary_read_end(&r);
	if (sketch_span(&s->neg, 0) + sketch_span(&s->pos, 0) > SKETCH_MAX_BUCKETS)
		summary_corrupt(&r, "The buckets span more than a sketch may.");
	/*
	 * The level is the least at which the values fit (sketches only grow, so
	 * they did not fit one level down): bucket j holds buckets 2j - 1 and 2j
	 * of the level below, where the buckets would span at most 2 (hi - lo) + 2.
	 */
	if (s->level > 0 &&
		(s->neg.total ? 2 * (s->neg.hi - s->neg.lo) + 2 : 0) +
		(s->pos.total ? 2 * (s->pos.hi - s->pos.lo) + 2 : 0) <= SKETCH_MAX_BUCKETS)
		summary_corrupt(&r, "The collapse level is higher than the values need.");
	if (pg_add_s64_overflow(s->neg.total, s->pos.total, &total) ||
		pg_add_s64_overflow(total, s->zeros, &total) || total != s->count)
		summary_corrupt(&r, "The bucket counts do not add up to the count.");
	if ((s->neg.total > 0) != (s->min < 0) || (s->pos.total > 0) != (s->max > 0) ||
		(s->zeros > 0 && (s->min > 0 || s->max < 0)))
		summary_corrupt(&r, "The minimum and maximum disagree with the buckets.");
	/* The least and greatest values sit in the outermost buckets of their sign. */
	if ((s->min < 0 && !sketch_holds(s, s->neg.hi, s->min)) ||
		(s->max < 0 && !sketch_holds(s, s->neg.lo, s->max)) ||
		(s->min > 0 && !sketch_holds(s, s->pos.lo, s->min)) ||
		(s->max > 0 && !sketch_holds(s, s->pos.hi, s->max)))
		summary_corrupt(&r, "The minimum or maximum is not in the outermost bucket.");
	/* Every value is in [min, max] and both occur: (n - 1) min + max <= sum <= (n - 1) max + min. */
	if (exactsum_cmp_affine(&s->sum, s->count - 1, s->min, s->max) < 0 ||
		exactsum_cmp_affine(&s->sum, s->count - 1, s->max, s->min) > 0)
		summary_corrupt(&r, "The sum disagrees with the values.");
}

/* Decode and validate sketch bytes into a state allocated in ctx; sqlstate is the error code for bad bytes */
SketchState *
sketch_decode(const char *data, int len, int sqlstate, MemoryContext ctx)
{
	SketchState *s = MemoryContextAlloc(ctx, sizeof(SketchState));
	int64	   *pairs[2];
	int64		npairs[2];

	sketch_decode_pairs(data, len, sqlstate, ctx, s, pairs, npairs);
	sketch_fill_store(&s->neg, pairs[0], npairs[0], ctx);
	sketch_fill_store(&s->pos, pairs[1], npairs[1], ctx);
	for (int k = 0; k < 2; k++)
		if (pairs[k])
			pfree(pairs[k]);
	return s;
}

/*
 * Merge sketch bytes into a (nonempty), validating them as sketch_decode
 * does, without building their dense stores: each bucket read is added
 * where it lands in a.
 */
void
sketch_merge_bytes(SketchState *a, const char *data, int len, int sqlstate)
{
	SketchState b;
	int64	   *pairs[2];
	int64		npairs[2];

	sketch_decode_pairs(data, len, sqlstate, CurrentMemoryContext, &b, pairs, npairs);
	sketch_merge_into(a, &b, pairs, npairs);
	for (int k = 0; k < 2; k++)
		if (pairs[k])
			pfree(pairs[k]);
}

/* Decode bytes, re-encode them and insist they were canonical */
bytea *
sketch_validate(const char *data, int len, int sqlstate)
{
	SketchState *s = sketch_decode(data, len, sqlstate, CurrentMemoryContext);
	bytea	   *out = sketch_encode(s);

	if ((int) (VARSIZE(out) - VARHDRSZ) != len || memcmp(VARDATA(out), data, len) != 0)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("invalid %s value", SKETCH_TYPE),
				 errdetail("The value is not in canonical form.")));
	return out;
}

/* ---- estimates ---- */

/* The relative error bound after the sketch's collapses: alpha of gamma^(2^level) */
double
sketch_error_bound(const SketchState *s)
{
	return s->level == 0 ? s->alpha : tanh(ldexp(s->ln_gamma, s->level - 1));
}

/* Estimate of bucket i at the sketch's level: 2 g^i / (g + 1), g = gamma^(2^level), in logs */
static double
sketch_bucket_estimate(const SketchState *s, int64 i)
{
	double		lg = ldexp(s->ln_gamma, s->level);

	return exp((double) (i - 1) * lg + M_LN2 - log1p(exp(-lg)));
}


/* The sketch's nonempty buckets in ascending value order, with cumulative counts */
SketchRun *
sketch_runs(const SketchState *s, int *nruns)
{
	SketchRun  *runs = palloc(sizeof(SketchRun) * (SKETCH_MAX_BUCKETS + 1));
	int			n = 0;
	int64		cum = 0;

	if (s->neg.total)
		for (int64 i = s->neg.hi; i >= s->neg.lo; i--)
			if (s->neg.counts[i - s->neg.base])
			{
				cum += s->neg.counts[i - s->neg.base];
				runs[n].end = cum;
				runs[n].index = i;
				runs[n++].sign = -1;
			}
	if (s->zeros)
	{
		cum += s->zeros;
		runs[n].end = cum;
		runs[n].index = 0;
		runs[n++].sign = 0;
	}
	if (s->pos.total)
		for (int64 i = s->pos.lo; i <= s->pos.hi; i++)
			if (s->pos.counts[i - s->pos.base])
			{
				cum += s->pos.counts[i - s->pos.base];
				runs[n].end = cum;
				runs[n].index = i;
				runs[n++].sign = 1;
			}
	*nruns = n;
	return runs;
}

/* Estimate of the k-th order statistic (0-based): exact at both ends, clamped to [min, max] */
static double
sketch_order_stat(const SketchState *s, const SketchRun *runs, int nruns, int64 k)
{
	int			lo = 0,
				hi = nruns - 1;
	double		v;

	if (k == 0)
		return s->min;
	if (k == s->count - 1)
		return s->max;
	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (runs[mid].end > k)
			hi = mid;
		else
			lo = mid + 1;
	}
	v = runs[lo].sign == 0 ? 0.0 : runs[lo].sign * sketch_bucket_estimate(s, runs[lo].index);
	return v < s->min ? s->min : (v > s->max ? s->max : v);
}

/*
 * percentile_cont's definition over the estimated order statistics: rank
 * r = q (n - 1), result v(floor r) + (r - floor r) (v(ceil r) - v(floor r)).
 * Each v(k) is within the bound of the true k-th value (v(0) and v(n-1) are
 * exact), so the result is within the bound of percentile_cont relative to
 * the larger magnitude of the two neighbouring values.
 */
double
sketch_percentile(const SketchState *s, const SketchRun *runs, int nruns, double q)
{
	double		last = (double) (s->count - 1);	/* rounded up when the count is near 2^63 */
	double		r = q * last;
	double		rf = floor(r);
	double		lo,
				hi,
				v;

	/* Ranks at or past the last (so beyond int64 too) are the last: the maximum. */
	lo = sketch_order_stat(s, runs, nruns, rf >= last ? s->count - 1 : (int64) rf);
	if (r == rf)
		return lo;
	hi = sketch_order_stat(s, runs, nruns, ceil(r) >= last ? s->count - 1 : (int64) ceil(r));
	v = lo + (hi - lo) * (r - rf);
	return v < s->min ? s->min : (v > s->max ? s->max : v);
}

/* Seconds in an interval, as extract(epoch from ...) counts them */
double
sketch_interval_seconds(const Interval *iv)
{
	return (double) iv->month * ((double) DAYS_PER_YEAR * SECS_PER_DAY / MONTHS_PER_YEAR) +
		(double) iv->day * SECS_PER_DAY + (double) iv->time / USECS_PER_SEC;
}

/* An interval of the given seconds (months and days zero), as x * interval '1 second' */
Interval *
sketch_seconds_interval(double secs)
{
	Interval   *iv = palloc0(sizeof(Interval));
	double		us = rint(secs * USECS_PER_SEC);

	if (!(us >= (double) PG_INT64_MIN && us < (double) PG_INT64_MAX))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("interval out of range")));
	iv->time = (int64) us;
	return iv;
}
