/* exactsum.h: an exact, order-independent accumulator of double precision values. */
#ifndef CRM_KPI_EXACTSUM_H
#define CRM_KPI_EXACTSUM_H

#include "postgres.h"

#include "lib/stringinfo.h"

#include "summary_io.h"

/*
 * The sum is an integer multiple of 2^-1074 (the smallest subnormal double),
 * held as 32-bit digits in int64 limbs: limb k weighs 2^(32k - 1074). 66 limbs
 * cover every finite double; 4 more leave room for 2^63 additions. Limbs may
 * run ahead of their 32 bits between normalizations; after one, every limb
 * but the top is in [0, 2^32) and the top limb carries the sign.
 */
#define EXACTSUM_LIMBS 70

typedef struct ExactSum
{
	int64		limb[EXACTSUM_LIMBS];
	int32		pending;		/* additions since the last normalization */
} ExactSum;

extern void exactsum_init(ExactSum *s);
extern void exactsum_add(ExactSum *s, double x);
extern void exactsum_merge(ExactSum *s, const ExactSum *other);
extern bool exactsum_is_zero(ExactSum *s);
extern double exactsum_to_double(ExactSum *s);
extern double exactsum_mean(ExactSum *s, int64 n);
extern int	exactsum_cmp_affine(const ExactSum *s, int64 n, double x, double y);
extern void exactsum_encode(StringInfo buf, ExactSum *s);
extern void exactsum_decode(SummaryReader *r, ExactSum *s);
extern void exactsum_out(StringInfo buf, ExactSum *s);
extern bool exactsum_parse(const char *str, int len, ExactSum *s);

#endif
