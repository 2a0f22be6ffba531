/* sketch.h: crm_kpi.sketch's engine: buckets, collapse, merge, canonical bytes, estimates. */
#ifndef CRM_KPI_SKETCH_H
#define CRM_KPI_SKETCH_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/timestamp.h"

#include "exactsum.h"

#define SKETCH_TYPE "crm_kpi.sketch"
/* The most buckets a sketch holds (span of the negative plus the positive store). */
#define SKETCH_MAX_BUCKETS 2048
#define SKETCH_DEFAULT_ALPHA 0.01
/* Below this requested error the bucket indexes would need more than 40 bits. */
#define SKETCH_MIN_ALPHA 1e-9
#define SKETCH_MAX_LEVEL 62
#define SKETCH_FLAG_INTERVAL 0x01

/*
 * Buckets. A nonzero x goes to the level-0 index i0 = ceil(ln|x| / ln gamma),
 * gamma = (1 + alpha) / (1 - alpha), so bucket i holds (gamma^(i-1), gamma^i]
 * and its estimate 2 gamma^i / (gamma + 1) is within alpha of all of it.
 * After l collapses a bucket is i_l = ceil(i0 / 2^l), an integer map, so the
 * same multiset gives the same buckets whatever the order of insertion and
 * merges: the level is always the least one at which the whole multiset
 * spans at most SKETCH_MAX_BUCKETS, and the bound grows to that of
 * gamma^(2^l).
 */
typedef struct SketchStore
{
	int64	   *counts;			/* dense counts; counts[0] is index base */
	int64		base;
	int64		cap;
	int64		lo;				/* least and greatest nonempty index, when total > 0 */
	int64		hi;
	int64		total;
} SketchStore;

typedef struct SketchState
{
	double		alpha;
	double		ln_gamma;
	double		inv_ln_gamma;
	int			level;
	uint8		flags;
	int64		count;
	int64		zeros;
	double		min;
	double		max;
	ExactSum	sum;
	SketchStore neg;			/* indexes of |x| for negative x */
	SketchStore pos;
	double		q;				/* approx_percentile's fraction */
	MemoryContext ctx;
} SketchState;

/* One nonempty bucket in value order: order statistics below end fall in it (its estimate is computed when asked) */
typedef struct SketchRun
{
	int64		end;
	int64		index;			/* the bucket's index in its store */
	int			sign;			/* -1 for the negative store, 1 for the positive one, 0 for the zeros */
} SketchRun;

extern void sketch_check_alpha(double alpha);
extern void sketch_check_q(double q);
extern void sketch_init(SketchState *s, double alpha, uint8 flags, MemoryContext ctx);
extern void sketch_add(SketchState *s, double x);
extern void sketch_merge(SketchState *a, const SketchState *b);
extern SketchState *sketch_copy(const SketchState *src, MemoryContext ctx);
extern bytea *sketch_encode(SketchState *s);
extern SketchState *sketch_decode(const char *data, int len, int sqlstate, MemoryContext ctx);
extern void sketch_merge_bytes(SketchState *a, const char *data, int len, int sqlstate);
extern bytea *sketch_validate(const char *data, int len, int sqlstate);
extern double sketch_error_bound(const SketchState *s);
extern SketchRun *sketch_runs(const SketchState *s, int *nruns);
extern double sketch_percentile(const SketchState *s, const SketchRun *runs, int nruns, double q);
extern double sketch_interval_seconds(const Interval *iv);
extern Interval *sketch_seconds_interval(double secs);

#endif
