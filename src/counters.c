/* counters.c: the engine shared by summaries that are a few exact counters (NPS, CSAT, rate). */
#include "postgres.h"

#include "fmgr.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"

#include "counters.h"

const CounterKind counter_nps = {SUMMARY_NPS, "nps", "crm_kpi.nps_summary", 3,
{"promoters", "passives", "detractors"}, nps_field_of};
const CounterKind counter_csat = {SUMMARY_CSAT, "csat", "crm_kpi.csat_summary", 5,
{"s1", "s2", "s3", "s4", "s5"}, csat_field_of};
const CounterKind counter_rate = {SUMMARY_RATE, "rate", "crm_kpi.rate_summary", 2,
{"successes", "failures"}, rate_field_of};

/* The kind a summary's kind byte names, or NULL */
static const CounterKind *
counter_kind_of(uint8 kind)
{
	switch (kind)
	{
		case SUMMARY_NPS:
			return &counter_nps;
		case SUMMARY_CSAT:
			return &counter_csat;
		case SUMMARY_RATE:
			return &counter_rate;
		default:
			return NULL;
	}
}

/* The transition state of argument 0, created in the aggregate context when NULL */
CounterState *
counter_state_arg(FunctionCallInfo fcinfo, const CounterKind *kind)
{
	MemoryContext aggctx = summary_agg_context(fcinfo, kind->tag);
	CounterState *s;

	if (!PG_ARGISNULL(0))
		return (CounterState *) PG_GETARG_POINTER(0);
	s = MemoryContextAllocZero(aggctx, sizeof(CounterState));
	s->kind = kind;
	return s;
}

/* Add (delta = 1) or remove (delta = -1) one observation of field i */
void
counter_count(CounterState *s, int i, int delta)
{
	if (delta < 0 && s->c[i] <= 0)
		elog(ERROR, "%s: inverse transition removed more than was added", s->kind->type_name);
	s->c[i] = summary_add_count(s->c[i], delta, s->kind->type_name);
	s->total = summary_add_count(s->total, delta, s->kind->type_name);
}

/* Add every counter of b into a */
static void
counter_merge(CounterState *a, const CounterState *b)
{
	for (int i = 0; i < a->kind->nfields; i++)
		a->c[i] = summary_add_count(a->c[i], b->c[i], a->kind->type_name);
	a->total = summary_add_count(a->total, b->total, a->kind->type_name);
}

/* Encode a state as summary bytes */
static bytea *
counter_encode(const CounterState *s)
{
	StringInfoData buf;

	summary_begin(&buf, s->kind->kind);
	for (int i = 0; i < s->kind->nfields; i++)
		summary_put_varuint(&buf, (uint64) s->c[i]);
	return summary_finish(&buf);
}

/* Decode and validate summary bytes of an expected kind (NULL: any counter kind) */
static void
counter_decode_bytes(const char *data, int len, const CounterKind *kind, const char *type_name,
					 int sqlstate, CounterState *out)
{
	SummaryReader r;

	if (kind == NULL)
	{
		if (len < 2 || (kind = counter_kind_of((uint8) data[1])) == NULL)
			ereport(ERROR,
					(errcode(sqlstate),
					 errmsg("invalid %s value", type_name),
					 errdetail("The bytes are not a counter summary.")));
	}
	summary_read_bytes_begin(&r, data, len, kind->kind, kind->type_name);
	r.errcode = sqlstate;
	memset(out, 0, sizeof(*out));
	out->kind = kind;
	for (int i = 0; i < kind->nfields; i++)
	{
		uint64		v = summary_get_varuint(&r);

		if (v > (uint64) PG_INT64_MAX)
			summary_corrupt(&r, psprintf("Count \"%s\" is out of range.", kind->fields[i]));
		out->c[i] = (int64) v;
		out->total = summary_add_count(out->total, out->c[i], kind->type_name);
	}
	summary_read_end(&r);
}

/* Decode a summary argument of the given kind */
void
counter_decode_arg(FunctionCallInfo fcinfo, int argno, const CounterKind *kind, CounterState *out)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(argno);

	counter_decode_bytes(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), kind, kind->type_name,
						 ERRCODE_DATA_CORRUPTED, out);
}

/* Parse a summary's text form "<tag> v1 field=count ..." */
Datum
counter_in(const char *str, const CounterKind *kind)
{
	SummaryText t;
	CounterState s;

	memset(&s, 0, sizeof(s));
	s.kind = kind;
	summary_text_begin(&t, str, kind->tag, kind->type_name);
	for (int i = 0; i < kind->nfields; i++)
	{
		s.c[i] = summary_text_int64(&t, kind->fields[i]);
		if (s.c[i] < 0)
			summary_text_error(&t, psprintf("Count \"%s\" is negative.", kind->fields[i]));
		s.total = summary_add_count(s.total, s.c[i], kind->type_name);
	}
	summary_text_end(&t);
	PG_RETURN_BYTEA_P(counter_encode(&s));
}

/* Read a summary's binary form; the wire carries the canonical bytes */
Datum
counter_recv(StringInfo buf, const CounterKind *kind)
{
	int			len = buf->len - buf->cursor;
	const char *data = pq_getmsgbytes(buf, len);
	CounterState s;

	counter_decode_bytes(data, len, kind, kind->type_name, ERRCODE_INVALID_BINARY_REPRESENTATION, &s);
	PG_RETURN_BYTEA_P(counter_encode(&s));
}

PG_FUNCTION_INFO_V1(crm_kpi_counter_out);
/* Print a counter summary in its text form */
Datum
crm_kpi_counter_out(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	CounterState s;
	StringInfoData out;

	counter_decode_bytes(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), NULL, "counter summary",
						 ERRCODE_DATA_CORRUPTED, &s);
	summary_text_out_begin(&out, s.kind->tag);
	for (int i = 0; i < s.kind->nfields; i++)
		appendStringInfo(&out, " %s=" INT64_FORMAT, s.kind->fields[i], s.c[i]);
	PG_RETURN_CSTRING(out.data);
}

PG_FUNCTION_INFO_V1(crm_kpi_counter_send);
/* Send a counter summary's canonical bytes */
Datum
crm_kpi_counter_send(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbytes(&buf, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

PG_FUNCTION_INFO_V1(crm_kpi_counter_inv);
/* Remove one value leaving a moving window frame (the state knows its kind) */
Datum
crm_kpi_counter_inv(PG_FUNCTION_ARGS)
{
	CounterState *s;

	summary_agg_context(fcinfo, "counter inverse transition");
	if (PG_ARGISNULL(0))
		elog(ERROR, "inverse transition without a state");
	s = (CounterState *) PG_GETARG_POINTER(0);
	if (!PG_ARGISNULL(1))
		counter_count(s, s->kind->field_of(PG_GETARG_DATUM(1)), -1);
	PG_RETURN_POINTER(s);
}

PG_FUNCTION_INFO_V1(crm_kpi_counter_combine);
/* Merge two counter states (parallel and partial aggregation) */
Datum
crm_kpi_counter_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggctx = summary_agg_context(fcinfo, "counter combine");
	CounterState *a = PG_ARGISNULL(0) ? NULL : (CounterState *) PG_GETARG_POINTER(0);
	CounterState *b = PG_ARGISNULL(1) ? NULL : (CounterState *) PG_GETARG_POINTER(1);

	if (b == NULL)
		SUMMARY_RETURN_STATE(a);
	if (a == NULL)
	{
		a = MemoryContextAlloc(aggctx, sizeof(CounterState));
		memcpy(a, b, sizeof(CounterState));
		SUMMARY_RETURN_STATE(a);
	}
	counter_merge(a, b);
	SUMMARY_RETURN_STATE(a);
}

PG_FUNCTION_INFO_V1(crm_kpi_counter_serialize);
/* Serialize a counter state as its summary bytes */
Datum
crm_kpi_counter_serialize(PG_FUNCTION_ARGS)
{
	summary_agg_context(fcinfo, "counter serialize");
	PG_RETURN_BYTEA_P(counter_encode((CounterState *) PG_GETARG_POINTER(0)));
}

PG_FUNCTION_INFO_V1(crm_kpi_counter_deserialize);
/* Rebuild a counter state from its summary bytes */
Datum
crm_kpi_counter_deserialize(PG_FUNCTION_ARGS)
{
	MemoryContext aggctx = summary_agg_context(fcinfo, "counter deserialize");
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	CounterState *s = MemoryContextAlloc(aggctx, sizeof(CounterState));

	counter_decode_bytes(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), NULL, "counter state",
						 ERRCODE_DATA_CORRUPTED, s);
	SUMMARY_RETURN_STATE(s);
}

PG_FUNCTION_INFO_V1(crm_kpi_counter_rollup_trans);
/* Add a summary into the rollup state */
Datum
crm_kpi_counter_rollup_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggctx = summary_agg_context(fcinfo, "rollup");
	CounterState *a = PG_ARGISNULL(0) ? NULL : (CounterState *) PG_GETARG_POINTER(0);
	bytea	   *b;
	CounterState s;

	if (PG_ARGISNULL(1))
		SUMMARY_RETURN_STATE(a);
	b = PG_GETARG_BYTEA_PP(1);
	counter_decode_bytes(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), a ? a->kind : NULL, "counter summary",
						 ERRCODE_DATA_CORRUPTED, &s);
	if (a == NULL)
	{
		a = MemoryContextAlloc(aggctx, sizeof(CounterState));
		memcpy(a, &s, sizeof(CounterState));
	}
	else
		counter_merge(a, &s);
	SUMMARY_RETURN_STATE(a);
}

PG_FUNCTION_INFO_V1(crm_kpi_counter_summary_final);
/* Finish a counter state as a summary; NULL when nothing was counted */
Datum
crm_kpi_counter_summary_final(PG_FUNCTION_ARGS)
{
	CounterState *s = PG_ARGISNULL(0) ? NULL : (CounterState *) PG_GETARG_POINTER(0);

	if (s == NULL || s->total == 0)
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(counter_encode(s));
}

PG_FUNCTION_INFO_V1(crm_kpi_counter_total);
/* Read how many observations a counter summary holds */
Datum
crm_kpi_counter_total(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	CounterState s;

	counter_decode_bytes(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), NULL, "counter summary",
						 ERRCODE_DATA_CORRUPTED, &s);
	PG_RETURN_INT64(s.total);
}
