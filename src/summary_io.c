/* summary_io.c: the shared codec of summary types: canonical versioned bytes, text form, input errors. */
#include "postgres.h"

#include <math.h>

#include "common/int.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "miscadmin.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "summary_io.h"

/* ---- writing ---- */

/* Start a summary's bytes: room for the varlena header, then version and kind */
void
summary_begin(StringInfo buf, SummaryKind kind)
{
	initStringInfo(buf);
	appendStringInfoSpaces(buf, VARHDRSZ);
	summary_put_u8(buf, SUMMARY_FORMAT_VERSION);
	summary_put_u8(buf, (uint8) kind);
}

/* Append one byte */
void
summary_put_u8(StringInfo buf, uint8 v)
{
	appendBinaryStringInfo(buf, (const char *) &v, 1);
}

/* Append an unsigned 64-bit integer, little-endian */
void
summary_put_u64(StringInfo buf, uint64 v)
{
	uint8		b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8) (v >> (8 * i));
	appendBinaryStringInfo(buf, (const char *) b, 8);
}

/* Append a signed 64-bit integer */
void
summary_put_i64(StringInfo buf, int64 v)
{
	summary_put_u64(buf, (uint64) v);
}

/* Append a double by its bit pattern */
void
summary_put_f64(StringInfo buf, double v)
{
	uint64		bits;

	memcpy(&bits, &v, sizeof(bits));
	summary_put_u64(buf, bits);
}

/* Append an unsigned integer in LEB128 (7 bits a byte) */
void
summary_put_varuint(StringInfo buf, uint64 v)
{
	do
	{
		uint8		b = v & 0x7F;

		v >>= 7;
		if (v)
			b |= 0x80;
		summary_put_u8(buf, b);
	} while (v);
}

/* Append a signed integer, zigzag-coded */
void
summary_put_varint(StringInfo buf, int64 v)
{
	summary_put_varuint(buf, ((uint64) v << 1) ^ (uint64) (v >> 63));
}

/* Append a numeric as its canonical text, length-prefixed */
void
summary_put_numeric(StringInfo buf, Numeric n)
{
	char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
	size_t		len = strlen(s);

	summary_put_varuint(buf, len);
	appendBinaryStringInfo(buf, s, len);
	pfree(s);
}

/* Close the bytes as a varlena */
bytea *
summary_finish(StringInfo buf)
{
	SET_VARSIZE(buf->data, buf->len);
	return (bytea *) buf->data;
}

/* ---- reading ---- */

/* Raise the error for bytes that are not a valid summary */
void
summary_corrupt(SummaryReader *r, const char *detail)
{
	ereport(ERROR,
			(errcode(r->errcode),
			 errmsg("invalid %s value", r->type_name),
			 errdetail("%s", detail)));
	pg_unreachable();
}

/* Start reading a detoasted summary varlena of the given kind */
void
summary_read_begin(SummaryReader *r, const bytea *b, SummaryKind kind, const char *type_name)
{
	summary_read_bytes_begin(r, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), kind, type_name);
}

/* Start reading raw summary bytes (without varlena header) of the given kind */
void
summary_read_bytes_begin(SummaryReader *r, const char *data, int len, SummaryKind kind,
						 const char *type_name)
{
	uint8		version,
				k;

	r->pos = (const uint8 *) data;
	r->end = r->pos + len;
	r->type_name = type_name;
	r->errcode = ERRCODE_INVALID_BINARY_REPRESENTATION;
	version = summary_get_u8(r);
	if (version != SUMMARY_FORMAT_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid %s value", type_name),
				 errdetail("Format version %d is not supported; this build reads version %d.",
						   version, SUMMARY_FORMAT_VERSION)));
	k = summary_get_u8(r);
	if (k != (uint8) kind)
		summary_corrupt(r, "The bytes belong to another summary type.");
}

/* Make sure n more bytes are there */
static inline void
summary_need(SummaryReader *r, size_t n)
{
	if ((size_t) (r->end - r->pos) < n)
		summary_corrupt(r, "The value is truncated.");
}

/* Read one byte */
uint8
summary_get_u8(SummaryReader *r)
{
	summary_need(r, 1);
	return *r->pos++;
}

/* Read an unsigned 64-bit little-endian integer */
uint64
summary_get_u64(SummaryReader *r)
{
	uint64		v = 0;

	summary_need(r, 8);
	for (int i = 0; i < 8; i++)
		v |= (uint64) r->pos[i] << (8 * i);
	r->pos += 8;
	return v;
}

/* Read a signed 64-bit integer */
int64
summary_get_i64(SummaryReader *r)
{
	return (int64) summary_get_u64(r);
}

/* Read a double by its bit pattern */
double
summary_get_f64(SummaryReader *r)
{
	uint64		bits = summary_get_u64(r);
	double		v;

	memcpy(&v, &bits, sizeof(v));
	return v;
}

/* Read a LEB128 unsigned integer of any length, rejecting overlong or overflowing forms */
uint64
summary_get_varuint_long(SummaryReader *r)
{
	uint64		v = 0;

	for (int shift = 0; shift < 64; shift += 7)
	{
		uint8		b = summary_get_u8(r);

		if (shift == 63 && (b & 0x7E))
			summary_corrupt(r, "A variable-length integer overflows 64 bits.");
		v |= (uint64) (b & 0x7F) << shift;
		if (!(b & 0x80))
		{
			if (b == 0 && shift > 0)
				summary_corrupt(r, "A variable-length integer is not in its shortest form.");
			return v;
		}
	}
	summary_corrupt(r, "A variable-length integer is too long.");
}

/* Read a zigzag-coded signed integer */
int64
summary_get_varint(SummaryReader *r)
{
	uint64		u = summary_get_varuint(r);

	return (int64) (u >> 1) ^ -(int64) (u & 1);
}

/*
 * The longest numeric_out of a finite numeric: a sign, 131072 digits before the
 * point (weight up to 32767, four digits each), the point, 16383 after it.
 */
#define SUMMARY_NUMERIC_MAX_TEXT (1 + 131072 + 1 + 16383)

/* Read a length-prefixed numeric; it must be finite and in canonical form */
Numeric
summary_get_numeric(SummaryReader *r)
{
	uint64		len = summary_get_varuint(r);
	char	   *s;
	Numeric		n;
	char	   *canon;

	if (len == 0 || len > SUMMARY_NUMERIC_MAX_TEXT)
		summary_corrupt(r, "A numeric field has an impossible length.");
	summary_need(r, len);
	s = pnstrdup((const char *) r->pos, len);
	r->pos += len;
	if (strlen(s) != len)
		summary_corrupt(r, "A numeric field is not a decimal number.");
	for (char *c = s; *c; c++)
		if (!((*c >= '0' && *c <= '9') || *c == '.' || *c == '-'))
			summary_corrupt(r, "A numeric field is not a decimal number.");
	n = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(s),
											ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	canon = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
	if (strcmp(canon, s) != 0)
		summary_corrupt(r, "A numeric field is not in canonical form.");
	pfree(canon);
	pfree(s);
	return n;
}

/* Check that every byte was consumed */
void
summary_read_end(SummaryReader *r)
{
	if (r->pos != r->end)
		summary_corrupt(r, "The value has trailing bytes.");
}

/* ---- text form ---- */

/* Raise the error for text that is not a valid summary */
void
summary_text_error(SummaryText *t, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid input syntax for type %s: \"%s\"", t->type_name, t->input),
			 errdetail("%s", detail)));
	pg_unreachable();
}

/* Start parsing "<tag> v<version>" */
void
summary_text_begin(SummaryText *t, const char *input, const char *tag, const char *type_name)
{
	size_t		taglen = strlen(tag);
	const char *p;
	char	   *end;
	long		version;

	t->input = input;
	t->type_name = type_name;
	if (strncmp(input, tag, taglen) != 0 || input[taglen] != ' ' || input[taglen + 1] != 'v')
		summary_text_error(t, psprintf("The value must start with \"%s v%d\".", tag, SUMMARY_FORMAT_VERSION));
	p = input + taglen + 2;
	errno = 0;
	version = strtol(p, &end, 10);
	if (!isdigit((unsigned char) *p) || errno != 0 || (*end != ' ' && *end != '\0'))
		summary_text_error(t, "The format version is not a number.");
	if (version != SUMMARY_FORMAT_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type %s: \"%s\"", type_name, input),
				 errdetail("Format version %ld is not supported; this build reads version %d.",
						   version, SUMMARY_FORMAT_VERSION)));
	t->pos = end;
}

/* Take " key=" and return the value's text (up to the next space), with its length */
const char *
summary_text_raw(SummaryText *t, const char *key, int *len)
{
	size_t		keylen = strlen(key);
	const char *v;

	if (t->pos[0] != ' ' || strncmp(t->pos + 1, key, keylen) != 0 || t->pos[1 + keylen] != '=')
		summary_text_error(t, psprintf("Expected field \"%s=\" at position %d.", key,
									   (int) (t->pos - t->input) + 1));
	v = t->pos + 1 + keylen + 1;
	t->pos = v;
	while (*t->pos != ' ' && *t->pos != '\0')
		t->pos++;
	*len = (int) (t->pos - v);
	if (*len == 0)
		summary_text_error(t, psprintf("Field \"%s\" has no value.", key));
	return v;
}

/* Take " key=<integer>" */
int64
summary_text_int64(SummaryText *t, const char *key)
{
	int			len;
	const char *v = summary_text_raw(t, key, &len);
	char	   *s = pnstrdup(v, len);
	char	   *end;
	int64		result;

	errno = 0;
	result = strtoi64(s, &end, 10);
	if (*end != '\0' || errno != 0 || !(isdigit((unsigned char) s[0]) || s[0] == '-'))
		summary_text_error(t, psprintf("Field \"%s\" is not a 64-bit integer.", key));
	pfree(s);
	return result;
}

/* Take " key=<float8>" (any float8 input, including NaN and Infinity) */
double
summary_text_float8(SummaryText *t, const char *key)
{
	int			len;
	const char *v = summary_text_raw(t, key, &len);
	char	   *s = pnstrdup(v, len);
	char	   *end;
	double		result;

	result = float8in_internal(s, &end, t->type_name, t->input);
	if (*end != '\0')
		summary_text_error(t, psprintf("Field \"%s\" is not a number.", key));
	pfree(s);
	return result;
}

/* Take " key=<numeric>" */
Numeric
summary_text_numeric(SummaryText *t, const char *key)
{
	int			len;
	const char *v = summary_text_raw(t, key, &len);
	char	   *s = pnstrdup(v, len);

	return DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(s),
											   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
}

/* Take " key=<timestamptz>" */
TimestampTz
summary_text_timestamptz(SummaryText *t, const char *key)
{
	int			len;
	const char *v = summary_text_raw(t, key, &len);
	char	   *s = pnstrdup(v, len);

	return DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(s),
												   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
}

/* Check that the whole text was consumed */
void
summary_text_end(SummaryText *t)
{
	if (*t->pos != '\0')
		summary_text_error(t, psprintf("Unexpected text at position %d.", (int) (t->pos - t->input) + 1));
}

/* Start a summary's text form */
void
summary_text_out_begin(StringInfo buf, const char *tag)
{
	initStringInfo(buf);
	appendStringInfo(buf, "%s v%d", tag, SUMMARY_FORMAT_VERSION);
}

/* Append " key=<timestamptz>" in ISO 8601 UTC with no spaces, whatever DateStyle and TimeZone */
void
summary_text_out_timestamptz(StringInfo buf, const char *key, TimestampTz ts)
{
	char		s[MAXDATELEN + 1];
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(ts))
		EncodeSpecialTimestamp(ts, s);
	else if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) == 0)
	{
		char	   *bc;

		tm.tm_isdst = 0;		/* UTC: print the +00:00 offset */
		EncodeDateTime(&tm, fsec, true, 0, NULL, USE_XSD_DATES, s);
		/* A year BC ends in " BC": "...+00:00BC" reads back the same and keeps the field one word. */
		if ((bc = strstr(s, " BC")) != NULL)
			memmove(bc, bc + 1, strlen(bc + 1) + 1);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	appendStringInfo(buf, " %s=%s", key, s);
}

/* ---- arithmetic and errors ---- */

/* Add two counts, raising an error on overflow */
int64
summary_add_count(int64 a, int64 b, const char *type_name)
{
	int64		r;

	if (pg_add_s64_overflow(a, b, &r))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("%s count out of range", type_name)));
	return r;
}

/* Reject a negative count read from a summary */
void
summary_check_count(SummaryReader *r, int64 v, const char *field)
{
	if (v < 0)
		summary_corrupt(r, psprintf("Count \"%s\" is negative.", field));
}

/* Raise the error for a score outside its scale */
void
summary_score_range_error(int64 score, int lo, int hi, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("%s %lld is out of range", what, (long long) score),
			 errdetail("Allowed values are the integers from %d to %d.", lo, hi)));
	pg_unreachable();
}

/* 100 * num / den as numeric */
Numeric
summary_percent(int64 num, int64 den)
{
	Datum		hundred_num = DirectFunctionCall2(numeric_mul,
												  NumericGetDatum(int64_to_numeric(num)),
												  NumericGetDatum(int64_to_numeric(100)));

	return DatumGetNumeric(DirectFunctionCall2(numeric_div, hundred_num,
											   NumericGetDatum(int64_to_numeric(den))));
}

/* num / den as numeric */
Numeric
summary_ratio(Numeric num, int64 den)
{
	return DatumGetNumeric(DirectFunctionCall2(numeric_div, NumericGetDatum(num),
											   NumericGetDatum(int64_to_numeric(den))));
}

/* The aggregate memory context, or an ERROR when not called as an aggregate */
MemoryContext
summary_agg_context(FunctionCallInfo fcinfo, const char *fname)
{
	MemoryContext ctx;

	if (!AggCheckCallContext(fcinfo, &ctx))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s called in non-aggregate context", fname)));
	return ctx;
}
