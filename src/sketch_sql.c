/* sketch_sql.c: crm_kpi.sketch's SQL interface: text and binary I/O, aggregates, accessors. */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/int.h"
#include "common/shortest_dec.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "exactsum.h"
#include "sketch.h"
#include "summary_io.h"

/* Decode a sketch argument (stored data: corruption is XX001) */
static SketchState *
sketch_decode_arg(FunctionCallInfo fcinfo, int argno, MemoryContext ctx)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(argno);

	return sketch_decode(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), ERRCODE_DATA_CORRUPTED, ctx);
}

/* ---- text form ---- */

/* Append " key=" and a store's buckets as "index:count,..." or "none" */
static void
sketch_out_store(StringInfo buf, const char *key, const SketchStore *st)
{
	bool		first = true;

	appendStringInfo(buf, " %s=", key);
	if (st->total)
		for (int64 i = st->lo; i <= st->hi; i++)
			if (st->counts[i - st->base])
			{
				appendStringInfo(buf, "%s" INT64_FORMAT ":" INT64_FORMAT, first ? "" : ",",
								 i, st->counts[i - st->base]);
				first = false;
			}
	if (first)
		appendStringInfoString(buf, "none");
}

/* Append " key=<shortest exact decimal>" */
static void
sketch_out_float8(StringInfo buf, const char *key, double x)
{
	char		s[32];

	double_to_shortest_decimal_buf(x, s);
	appendStringInfo(buf, " %s=%s", key, s);
}

/* Parse " key=index:count,..." (or "none") into the canonical store bytes */
static void
sketch_in_store(SummaryText *t, const char *key, StringInfo buf)
{
	int			len,
				n = 1;
	const char *v = summary_text_raw(t, key, &len);
	char	   *s = pnstrdup(v, len),
			   *p = s;
	int64		prev = 0;

	if (strcmp(s, "none") == 0)
	{
		summary_put_varuint(buf, 0);
		return;
	}
	for (int k = 0; k < len; k++)
		n += s[k] == ',';
	if (n > SKETCH_MAX_BUCKETS)
		summary_text_error(t, psprintf("Field \"%s\" lists more buckets than a sketch may hold.", key));
	summary_put_varuint(buf, n);
	for (int k = 0; k < n; k++)
	{
		char	   *end;
		int64		i,
					c,
					gap;

		errno = 0;
		i = strtoi64(p, &end, 10);
		if (end == p || errno || *end != ':' || !(isdigit((unsigned char) *p) || *p == '-'))
			summary_text_error(t, psprintf("Field \"%s\" is not a list of index:count.", key));
		p = end + 1;
		c = strtoi64(p, &end, 10);
		if (end == p || errno || (*end != ',' && *end != '\0') || !isdigit((unsigned char) *p))
			summary_text_error(t, psprintf("Field \"%s\" is not a list of index:count.", key));
		p = end + 1;
		if (c < 1)
			summary_text_error(t, psprintf("Field \"%s\" has a bucket count below 1.", key));
		if (k == 0)
			summary_put_varint(buf, i);
		else
		{
			if (pg_sub_s64_overflow(i, prev, &gap) || gap < 1)
				summary_text_error(t, psprintf("Field \"%s\" has indexes not strictly increasing.", key));
			summary_put_varuint(buf, (uint64) gap);
		}
		summary_put_varuint(buf, (uint64) c);
		prev = i;
	}
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_in);
/* Parse the text form into a validated sketch */
Datum
crm_kpi_sketch_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	SummaryText t;
	StringInfoData buf;
	ExactSum	sum;
	const char *v;
	int			len;
	int64		level,
				count,
				zeros;
	uint8		flags;

	summary_text_begin(&t, str, "sketch", SKETCH_TYPE);
	v = summary_text_raw(&t, "values", &len);
	if (len == 6 && strncmp(v, "double", 6) == 0)
		flags = 0;
	else if (len == 8 && strncmp(v, "interval", 8) == 0)
		flags = SKETCH_FLAG_INTERVAL;
	else
		summary_text_error(&t, "Field \"values\" must be \"double\" or \"interval\".");
	summary_begin(&buf, SUMMARY_SKETCH);
	summary_put_u8(&buf, flags);
	summary_put_f64(&buf, summary_text_float8(&t, "alpha"));
	level = summary_text_int64(&t, "level");
	count = summary_text_int64(&t, "count");
	zeros = summary_text_int64(&t, "zeros");
	if (level < 0 || count < 0 || zeros < 0)
		summary_text_error(&t, "Level and counts must not be negative.");
	summary_put_varuint(&buf, level);
	summary_put_varuint(&buf, count);
	summary_put_varuint(&buf, zeros);
	summary_put_f64(&buf, summary_text_float8(&t, "min"));
	summary_put_f64(&buf, summary_text_float8(&t, "max"));
	v = summary_text_raw(&t, "sum", &len);
	if (!exactsum_parse(v, len, &sum))
		summary_text_error(&t, "Field \"sum\" is not an exact sum such as -0x1d3p-12.");
	exactsum_encode(&buf, &sum);
	sketch_in_store(&t, "neg", &buf);
	sketch_in_store(&t, "pos", &buf);
	summary_text_end(&t);
	PG_RETURN_BYTEA_P(sketch_validate(buf.data + VARHDRSZ, buf.len - VARHDRSZ,
									  ERRCODE_INVALID_TEXT_REPRESENTATION));
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_out);
/* Write a sketch's text form */
Datum
crm_kpi_sketch_out(PG_FUNCTION_ARGS)
{
	SketchState *s = sketch_decode_arg(fcinfo, 0, CurrentMemoryContext);
	StringInfoData buf;

	summary_text_out_begin(&buf, "sketch");
	appendStringInfo(&buf, " values=%s", s->flags & SKETCH_FLAG_INTERVAL ? "interval" : "double");
	sketch_out_float8(&buf, "alpha", s->alpha);
	appendStringInfo(&buf, " level=%d count=" INT64_FORMAT " zeros=" INT64_FORMAT,
					 s->level, s->count, s->zeros);
	sketch_out_float8(&buf, "min", s->min);
	sketch_out_float8(&buf, "max", s->max);
	appendStringInfoString(&buf, " sum=");
	exactsum_out(&buf, &s->sum);
	sketch_out_store(&buf, "neg", &s->neg);
	sketch_out_store(&buf, "pos", &s->pos);
	PG_RETURN_CSTRING(buf.data);
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_recv);
/* Read a sketch's binary form, validating it */
Datum
crm_kpi_sketch_recv(PG_FUNCTION_ARGS)
{
	StringInfo	msg = (StringInfo) PG_GETARG_POINTER(0);
	bytea	   *b = sketch_validate(msg->data + msg->cursor, msg->len - msg->cursor,
									ERRCODE_INVALID_BINARY_REPRESENTATION);

	msg->cursor = msg->len;
	PG_RETURN_BYTEA_P(b);
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_send);
/* Write a sketch's binary form: its canonical bytes */
Datum
crm_kpi_sketch_send(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	bytea	   *out = palloc(VARSIZE_ANY_EXHDR(b) + VARHDRSZ);

	SET_VARSIZE(out, VARSIZE_ANY_EXHDR(b) + VARHDRSZ);
	memcpy(VARDATA(out), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
	PG_RETURN_BYTEA_P(out);
}

/* ---- aggregates ---- */

/* The state, created on the first value with the relative error given (or the default) */
static SketchState *
sketch_state(FunctionCallInfo fcinfo, const char *fname, uint8 flags, int alpha_arg)
{
	MemoryContext ctx = summary_agg_context(fcinfo, fname);
	SketchState *s = PG_ARGISNULL(0) ? NULL : (SketchState *) PG_GETARG_POINTER(0);
	double		alpha = SKETCH_DEFAULT_ALPHA;

	if (alpha_arg > 0 && alpha_arg < PG_NARGS())
	{
		if (PG_ARGISNULL(alpha_arg))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("relative error must not be NULL")));
		alpha = PG_GETARG_FLOAT8(alpha_arg);
	}
	if (s == NULL)
	{
		sketch_check_alpha(alpha);
		s = MemoryContextAlloc(ctx, sizeof(SketchState));
		sketch_init(s, alpha, flags, ctx);
	}
	else if (alpha != s->alpha)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("relative error %g differs from %g given on an earlier row", alpha, s->alpha),
				 errdetail("The relative error must be the same on every row.")));
	return s;
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_trans);
/* Add one double precision value (NULLs ignored) */
Datum
crm_kpi_sketch_trans(PG_FUNCTION_ARGS)
{
	SketchState *s;

	if (PG_ARGISNULL(1))
		SUMMARY_RETURN_STATE(PG_ARGISNULL(0) ? NULL : PG_GETARG_POINTER(0));
	s = sketch_state(fcinfo, "crm_kpi.sketch_agg", 0, 2);
	sketch_add(s, PG_GETARG_FLOAT8(1));
	PG_RETURN_POINTER(s);
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_interval_trans);
/* Add one interval, in seconds (NULLs ignored) */
Datum
crm_kpi_sketch_interval_trans(PG_FUNCTION_ARGS)
{
	SketchState *s;

	if (PG_ARGISNULL(1))
		SUMMARY_RETURN_STATE(PG_ARGISNULL(0) ? NULL : PG_GETARG_POINTER(0));
	s = sketch_state(fcinfo, "crm_kpi.sketch_agg", SKETCH_FLAG_INTERVAL, 2);
	sketch_add(s, sketch_interval_seconds(PG_GETARG_INTERVAL_P(1)));
	PG_RETURN_POINTER(s);
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_rollup_trans);
/* Merge one sketch into a rollup (NULLs ignored) */
Datum
crm_kpi_sketch_rollup_trans(PG_FUNCTION_ARGS)
{
	MemoryContext ctx = summary_agg_context(fcinfo, "crm_kpi.rollup");
	SketchState *s = PG_ARGISNULL(0) ? NULL : (SketchState *) PG_GETARG_POINTER(0);
	bytea	   *b;

	if (PG_ARGISNULL(1))
		SUMMARY_RETURN_STATE(s);
	if (s == NULL)
		PG_RETURN_POINTER(sketch_decode_arg(fcinfo, 1, ctx));
	b = PG_GETARG_BYTEA_PP(1);
	sketch_merge_bytes(s, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), ERRCODE_DATA_CORRUPTED);
	PG_RETURN_POINTER(s);
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_combine);
/* Merge two partial states */
Datum
crm_kpi_sketch_combine(PG_FUNCTION_ARGS)
{
	MemoryContext ctx = summary_agg_context(fcinfo, "crm_kpi.sketch_combine");
	SketchState *a = PG_ARGISNULL(0) ? NULL : (SketchState *) PG_GETARG_POINTER(0);
	SketchState *b = PG_ARGISNULL(1) ? NULL : (SketchState *) PG_GETARG_POINTER(1);

	if (b == NULL)
		SUMMARY_RETURN_STATE(a);
	if (a == NULL)
		PG_RETURN_POINTER(sketch_copy(b, ctx));
	if (a->q != b->q)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("percentile %g differs from %g given on another row", b->q, a->q),
				 errdetail("The percentile must be the same on every row.")));
	sketch_merge(a, b);
	PG_RETURN_POINTER(a);
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_serialize);
/* Serialize a state as its canonical sketch bytes */
Datum
crm_kpi_sketch_serialize(PG_FUNCTION_ARGS)
{
	summary_agg_context(fcinfo, "crm_kpi.sketch_serialize");
	PG_RETURN_BYTEA_P(sketch_encode((SketchState *) PG_GETARG_POINTER(0)));
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_deserialize);
/* Rebuild a state from its sketch bytes, validating them */
Datum
crm_kpi_sketch_deserialize(PG_FUNCTION_ARGS)
{
	MemoryContext ctx = summary_agg_context(fcinfo, "crm_kpi.sketch_deserialize");
	bytea	   *b = PG_GETARG_BYTEA_PP(0);

	PG_RETURN_POINTER(sketch_decode(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b),
									ERRCODE_INVALID_BINARY_REPRESENTATION, ctx));
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_final);
/* Finish a state as a sketch (NULL over no values) */
Datum
crm_kpi_sketch_final(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(sketch_encode((SketchState *) PG_GETARG_POINTER(0)));
}

PG_FUNCTION_INFO_V1(crm_kpi_approx_percentile_trans);
/* Add one value to a one-step percentile; q must be the same on every row */
Datum
crm_kpi_approx_percentile_trans(PG_FUNCTION_ARGS)
{
	SketchState *s;
	double		q;

	if (PG_ARGISNULL(1))
		SUMMARY_RETURN_STATE(PG_ARGISNULL(0) ? NULL : PG_GETARG_POINTER(0));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("percentile must not be NULL")));
	q = PG_GETARG_FLOAT8(2);
	if (PG_ARGISNULL(0))
	{
		sketch_check_q(q);
		s = sketch_state(fcinfo, "crm_kpi.approx_percentile", 0, 0);
		s->q = q;
	}
	else
	{
		s = (SketchState *) PG_GETARG_POINTER(0);
		if (q != s->q)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("percentile %g differs from %g given on an earlier row", q, s->q),
					 errdetail("The percentile must be the same on every row.")));
	}
	sketch_add(s, PG_GETARG_FLOAT8(1));
	PG_RETURN_POINTER(s);
}

PG_FUNCTION_INFO_V1(crm_kpi_approx_percentile_serialize);
/* Serialize a one-step percentile state: q (8 bytes, little-endian) then the sketch bytes */
Datum
crm_kpi_approx_percentile_serialize(PG_FUNCTION_ARGS)
{
	SketchState *s = (SketchState *) PG_GETARG_POINTER(0);
	bytea	   *sk;
	StringInfoData buf;

	summary_agg_context(fcinfo, "crm_kpi.approx_percentile_serialize");
	sk = sketch_encode(s);
	initStringInfo(&buf);
	appendStringInfoSpaces(&buf, VARHDRSZ);
	summary_put_f64(&buf, s->q);
	appendBinaryStringInfo(&buf, VARDATA(sk), VARSIZE(sk) - VARHDRSZ);
	SET_VARSIZE(buf.data, buf.len);
	PG_RETURN_BYTEA_P(buf.data);
}

PG_FUNCTION_INFO_V1(crm_kpi_approx_percentile_deserialize);
/* Rebuild a one-step percentile state, validating it */
Datum
crm_kpi_approx_percentile_deserialize(PG_FUNCTION_ARGS)
{
	MemoryContext ctx = summary_agg_context(fcinfo, "crm_kpi.approx_percentile_deserialize");
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	const char *data = VARDATA_ANY(b);
	int			len = VARSIZE_ANY_EXHDR(b);
	SummaryReader r;
	double		q;
	SketchState *s;

	r.pos = (const uint8 *) data;
	r.end = r.pos + len;
	r.type_name = "crm_kpi.approx_percentile state";
	r.errcode = ERRCODE_INVALID_BINARY_REPRESENTATION;
	q = summary_get_f64(&r);
	if (!(q >= 0.0 && q <= 1.0))
		summary_corrupt(&r, "The percentile is out of range.");
	s = sketch_decode(data + 8, len - 8, ERRCODE_INVALID_BINARY_REPRESENTATION, ctx);
	s->q = q;
	PG_RETURN_POINTER(s);
}

PG_FUNCTION_INFO_V1(crm_kpi_approx_percentile_final);
/* Finish a one-step percentile (NULL over no values) */
Datum
crm_kpi_approx_percentile_final(PG_FUNCTION_ARGS)
{
	SketchState *s;
	SketchRun  *runs;
	int			nruns;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	s = (SketchState *) PG_GETARG_POINTER(0);
	runs = sketch_runs(s, &nruns);
	PG_RETURN_FLOAT8(sketch_percentile(s, runs, nruns, s->q));
}

/* ---- accessors ---- */

PG_FUNCTION_INFO_V1(crm_kpi_sketch_percentile);
/* Estimate percentile_cont(q) */
Datum
crm_kpi_sketch_percentile(PG_FUNCTION_ARGS)
{
	SketchState *s = sketch_decode_arg(fcinfo, 0, CurrentMemoryContext);
	double		q = PG_GETARG_FLOAT8(1);
	SketchRun  *runs;
	int			nruns;

	sketch_check_q(q);
	runs = sketch_runs(s, &nruns);
	PG_RETURN_FLOAT8(sketch_percentile(s, runs, nruns, q));
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_percentiles);
/* Estimate percentile_cont at each q of an array, reading the sketch once */
Datum
crm_kpi_sketch_percentiles(PG_FUNCTION_ARGS)
{
	SketchState *s = sketch_decode_arg(fcinfo, 0, CurrentMemoryContext);
	ArrayType  *qs = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				nruns;
	SketchRun  *runs;

	deconstruct_array(qs, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, &n);
	for (int k = 0; k < n; k++)
	{
		if (nulls[k])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("percentile must not be NULL")));
		sketch_check_q(DatumGetFloat8(elems[k]));
	}
	runs = sketch_runs(s, &nruns);
	for (int k = 0; k < n; k++)
		elems[k] = Float8GetDatum(sketch_percentile(s, runs, nruns, DatumGetFloat8(elems[k])));
	if (n == 0)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(FLOAT8OID));
	PG_RETURN_ARRAYTYPE_P(construct_md_array(elems, NULL, ARR_NDIM(qs), ARR_DIMS(qs), ARR_LBOUND(qs),
											 FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
											 TYPALIGN_DOUBLE));
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_percentile_interval);
/* Estimate percentile_cont(q) of a sketch of intervals, as an interval */
Datum
crm_kpi_sketch_percentile_interval(PG_FUNCTION_ARGS)
{
	SketchState *s = sketch_decode_arg(fcinfo, 0, CurrentMemoryContext);
	double		q = PG_GETARG_FLOAT8(1);
	SketchRun  *runs;
	int			nruns;

	if (!(s->flags & SKETCH_FLAG_INTERVAL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s holds numbers, not intervals", SKETCH_TYPE),
				 errhint("Use crm_kpi.percentile() for a sketch made from double precision values.")));
	sketch_check_q(q);
	runs = sketch_runs(s, &nruns);
	PG_RETURN_INTERVAL_P(sketch_seconds_interval(sketch_percentile(s, runs, nruns, q)));
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_count);
/* Return the exact number of values */
Datum
crm_kpi_sketch_count(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(sketch_decode_arg(fcinfo, 0, CurrentMemoryContext)->count);
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_min);
/* Return the exact least value */
Datum
crm_kpi_sketch_min(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(sketch_decode_arg(fcinfo, 0, CurrentMemoryContext)->min);
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_max);
/* Return the exact greatest value */
Datum
crm_kpi_sketch_max(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(sketch_decode_arg(fcinfo, 0, CurrentMemoryContext)->max);
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_sum);
/* Return the exact sum, rounded once to double precision */
Datum
crm_kpi_sketch_sum(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(exactsum_to_double(&sketch_decode_arg(fcinfo, 0, CurrentMemoryContext)->sum));
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_mean);
/* Return the mean: the exact sum divided by the count, within [min, max] */
Datum
crm_kpi_sketch_mean(PG_FUNCTION_ARGS)
{
	SketchState *s = sketch_decode_arg(fcinfo, 0, CurrentMemoryContext);
	double		m = exactsum_mean(&s->sum, s->count);

	PG_RETURN_FLOAT8(m < s->min ? s->min : (m > s->max ? s->max : m));
}

PG_FUNCTION_INFO_V1(crm_kpi_sketch_relative_error);
/* Return the guaranteed relative error, grown by collapses */
Datum
crm_kpi_sketch_relative_error(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(sketch_error_bound(sketch_decode_arg(fcinfo, 0, CurrentMemoryContext)));
}
