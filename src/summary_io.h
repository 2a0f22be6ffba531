/* summary_io.h: the shared codec of summary types: canonical versioned bytes, text form, input errors. */
#ifndef CRM_KPI_SUMMARY_IO_H
#define CRM_KPI_SUMMARY_IO_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

/*
 * Every summary type is a varlena whose payload starts with a format version
 * byte and a kind byte, then fields in little-endian order. The bytes are the
 * same on disk, on the wire (send/recv) and between parallel workers
 * (serialize/deserialize), so one reader validates them all.
 */
#define SUMMARY_FORMAT_VERSION 1

typedef enum SummaryKind
{
	SUMMARY_NPS = 1,
	SUMMARY_CSAT = 2,
	SUMMARY_RATE = 3,
	SUMMARY_PURCHASE = 4,
	SUMMARY_SKETCH = 5
} SummaryKind;

/* Writing: summary_begin, then put calls, then summary_finish. */
extern void summary_begin(StringInfo buf, SummaryKind kind);
extern void summary_put_u8(StringInfo buf, uint8 v);
extern void summary_put_u64(StringInfo buf, uint64 v);
extern void summary_put_i64(StringInfo buf, int64 v);
extern void summary_put_f64(StringInfo buf, double v);
extern void summary_put_varuint(StringInfo buf, uint64 v);
extern void summary_put_varint(StringInfo buf, int64 v);
extern void summary_put_numeric(StringInfo buf, Numeric n);
extern bytea *summary_finish(StringInfo buf);

/* Reading: every get checks bounds; any inconsistency is an ERROR naming type_name. */
typedef struct SummaryReader
{
	const uint8 *pos;
	const uint8 *end;
	const char *type_name;
	int			errcode;		/* 22P03 for binary input, XX001 for stored data */
} SummaryReader;

extern void summary_read_begin(SummaryReader *r, const bytea *b, SummaryKind kind,
							   const char *type_name);
extern void summary_read_bytes_begin(SummaryReader *r, const char *data, int len,
									 SummaryKind kind, const char *type_name);
extern uint8 summary_get_u8(SummaryReader *r);
extern uint64 summary_get_u64(SummaryReader *r);
extern int64 summary_get_i64(SummaryReader *r);
extern double summary_get_f64(SummaryReader *r);
extern uint64 summary_get_varuint_long(SummaryReader *r);

/* Read a LEB128 unsigned integer: one byte inline (most are), longer forms out of line */
static inline uint64
summary_get_varuint(SummaryReader *r)
{
	if (likely(r->pos < r->end && *r->pos < 0x80))
		return *r->pos++;
	return summary_get_varuint_long(r);
}
extern int64 summary_get_varint(SummaryReader *r);
extern Numeric summary_get_numeric(SummaryReader *r);
extern void summary_read_end(SummaryReader *r);
extern void summary_corrupt(SummaryReader *r, const char *detail) pg_attribute_noreturn();

/* Text form "<tag> v1 key=value key=value ...", parsed strictly in field order. */
typedef struct SummaryText
{
	const char *input;
	const char *pos;
	const char *type_name;
} SummaryText;

extern void summary_text_begin(SummaryText *t, const char *input, const char *tag,
							   const char *type_name);
extern int64 summary_text_int64(SummaryText *t, const char *key);
extern double summary_text_float8(SummaryText *t, const char *key);
extern Numeric summary_text_numeric(SummaryText *t, const char *key);
extern TimestampTz summary_text_timestamptz(SummaryText *t, const char *key);
extern const char *summary_text_raw(SummaryText *t, const char *key, int *len);
extern void summary_text_end(SummaryText *t);
extern void summary_text_error(SummaryText *t, const char *detail) pg_attribute_noreturn();
extern void summary_text_out_begin(StringInfo buf, const char *tag);
extern void summary_text_out_timestamptz(StringInfo buf, const char *key, TimestampTz ts);

/* Checked arithmetic and range errors shared by the aggregates. */
extern int64 summary_add_count(int64 a, int64 b, const char *type_name);
extern void summary_check_count(SummaryReader *r, int64 v, const char *field);
extern void summary_score_range_error(int64 score, int lo, int hi, const char *what) pg_attribute_noreturn();

/* 100 * num / den as numeric (the caller handles den = 0 as NULL). */
extern Numeric summary_percent(int64 num, int64 den);
/* num / den as numeric, den > 0. */
extern Numeric summary_ratio(Numeric num, int64 den);

/* Return an aggregate state that may not exist yet: SQL NULL, never a NULL pointer. */
#define SUMMARY_RETURN_STATE(s) \
	do { \
		if ((s) == NULL) \
			PG_RETURN_NULL(); \
		PG_RETURN_POINTER(s); \
	} while (0)

/* The aggregate memory context, or an ERROR when not called as an aggregate. */
extern MemoryContext summary_agg_context(FunctionCallInfo fcinfo, const char *fname);

#endif
