/* purchase.c: purchase summary: orders, revenue, first and last order, mean gap (AOV, CLV, RFM inputs). */
#include "postgres.h"

#include "common/int.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "summary_io.h"

#define PURCHASE_TYPE "crm_kpi.purchase_summary"

/* The aggregate state, and the decoded form of a summary. */
typedef struct PurchaseState
{
	int64		orders;
	Numeric		revenue;
	TimestampTz first;
	TimestampTz last;
} PurchaseState;

/* A zero revenue, in the given context */
static Numeric
purchase_zero(MemoryContext ctx)
{
	MemoryContext old = MemoryContextSwitchTo(ctx);
	Numeric		z = int64_to_numeric(0);

	MemoryContextSwitchTo(old);
	return z;
}

/* Add revenue into the state, keeping the sum in ctx */
static void
purchase_add_revenue(PurchaseState *s, Numeric amount, MemoryContext ctx)
{
	Numeric		sum = DatumGetNumeric(DirectFunctionCall2(numeric_add, NumericGetDatum(s->revenue),
														  NumericGetDatum(amount)));
	MemoryContext old = MemoryContextSwitchTo(ctx);
	Numeric		kept = DatumGetNumeric(datumCopy(NumericGetDatum(sum), false, -1));

	MemoryContextSwitchTo(old);
	pfree(s->revenue);
	pfree(sum);
	s->revenue = kept;
}

/* Merge b into a (a non-empty) */
static void
purchase_merge(PurchaseState *a, const PurchaseState *b, MemoryContext ctx)
{
	a->orders = summary_add_count(a->orders, b->orders, PURCHASE_TYPE);
	purchase_add_revenue(a, b->revenue, ctx);
	if (b->first < a->first)
		a->first = b->first;
	if (b->last > a->last)
		a->last = b->last;
}

/* Encode a state as summary bytes */
static bytea *
purchase_encode(const PurchaseState *s)
{
	StringInfoData buf;

	summary_begin(&buf, SUMMARY_PURCHASE);
	summary_put_varuint(&buf, (uint64) s->orders);
	summary_put_numeric(&buf, s->revenue);
	summary_put_i64(&buf, s->first);
	summary_put_i64(&buf, s->last);
	return summary_finish(&buf);
}

/* Check a decoded summary's fields agree with each other */
static const char *
purchase_inconsistency(const PurchaseState *s)
{
	if (s->orders < 1)
		return "A purchase summary holds at least one order.";
	if (numeric_is_nan(s->revenue) || numeric_is_inf(s->revenue))
		return "Revenue must be a finite number.";
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(s->revenue),
										  NumericGetDatum(int64_to_numeric(0)))) < 0)
		return "Revenue must not be negative.";
	if (TIMESTAMP_NOT_FINITE(s->first) || TIMESTAMP_NOT_FINITE(s->last) ||
		!IS_VALID_TIMESTAMP(s->first) || !IS_VALID_TIMESTAMP(s->last))
		return "First and last order times must be finite timestamps.";
	if (s->first > s->last)
		return "The first order is after the last.";
	if (s->orders == 1 && s->first != s->last)
		return "With one order, the first and last order times are the same.";
	return NULL;
}

/* Decode and validate summary bytes */
static void
purchase_decode_bytes(const char *data, int len, int sqlstate, PurchaseState *out)
{
	SummaryReader r;
	uint64		orders;
	const char *bad;

	summary_read_bytes_begin(&r, data, len, SUMMARY_PURCHASE, PURCHASE_TYPE);
	r.errcode = sqlstate;
	orders = summary_get_varuint(&r);
	if (orders > (uint64) PG_INT64_MAX)
		summary_corrupt(&r, "Count \"orders\" is out of range.");
	out->orders = (int64) orders;
	out->revenue = summary_get_numeric(&r);
	out->first = summary_get_i64(&r);
	out->last = summary_get_i64(&r);
	summary_read_end(&r);
	if ((bad = purchase_inconsistency(out)) != NULL)
		summary_corrupt(&r, bad);
}

/* Decode a summary argument */
static void
purchase_decode_arg(FunctionCallInfo fcinfo, int argno, PurchaseState *out)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(argno);

	purchase_decode_bytes(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), ERRCODE_DATA_CORRUPTED, out);
}

/* Copy a decoded state into the aggregate context */
static PurchaseState *
purchase_copy(const PurchaseState *src, MemoryContext ctx)
{
	PurchaseState *s = MemoryContextAlloc(ctx, sizeof(PurchaseState));

	*s = *src;
	s->revenue = purchase_zero(ctx);
	purchase_add_revenue(s, src->revenue, ctx);
	return s;
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_trans);
/* Count one order: its amount and time (rows with a NULL are ignored) */
Datum
crm_kpi_purchase_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggctx = summary_agg_context(fcinfo, "crm_kpi.purchase_agg");
	PurchaseState *s = PG_ARGISNULL(0) ? NULL : (PurchaseState *) PG_GETARG_POINTER(0);
	Numeric		amount;
	TimestampTz at;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		SUMMARY_RETURN_STATE(s);
	amount = PG_GETARG_NUMERIC(1);
	at = PG_GETARG_TIMESTAMPTZ(2);
	if (numeric_is_nan(amount) || numeric_is_inf(amount) ||
		DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(amount),
										  NumericGetDatum(int64_to_numeric(0)))) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("order amount %s is out of range",
						DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(amount)))),
				 errdetail("An order amount must be a finite number of 0 or more.")));
	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("order time %s is out of range",
						DatumGetCString(DirectFunctionCall1(timestamptz_out, TimestampTzGetDatum(at)))),
				 errdetail("An order time must be a finite timestamp.")));
	if (s == NULL)
	{
		s = MemoryContextAlloc(aggctx, sizeof(PurchaseState));
		s->orders = 0;
		s->revenue = purchase_zero(aggctx);
		s->first = s->last = at;
	}
	s->orders = summary_add_count(s->orders, 1, PURCHASE_TYPE);
	purchase_add_revenue(s, amount, aggctx);
	if (at < s->first)
		s->first = at;
	if (at > s->last)
		s->last = at;
	SUMMARY_RETURN_STATE(s);
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_rollup_trans);
/* Add a purchase summary into the rollup state */
Datum
crm_kpi_purchase_rollup_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggctx = summary_agg_context(fcinfo, "crm_kpi.rollup");
	PurchaseState *s = PG_ARGISNULL(0) ? NULL : (PurchaseState *) PG_GETARG_POINTER(0);
	PurchaseState in;

	if (PG_ARGISNULL(1))
		SUMMARY_RETURN_STATE(s);
	purchase_decode_arg(fcinfo, 1, &in);
	if (s == NULL)
		PG_RETURN_POINTER(purchase_copy(&in, aggctx));
	purchase_merge(s, &in, aggctx);
	SUMMARY_RETURN_STATE(s);
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_combine);
/* Merge two purchase states (parallel and partial aggregation) */
Datum
crm_kpi_purchase_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggctx = summary_agg_context(fcinfo, "crm_kpi.purchase_combine");
	PurchaseState *a = PG_ARGISNULL(0) ? NULL : (PurchaseState *) PG_GETARG_POINTER(0);
	PurchaseState *b = PG_ARGISNULL(1) ? NULL : (PurchaseState *) PG_GETARG_POINTER(1);

	if (b == NULL)
		SUMMARY_RETURN_STATE(a);
	if (a == NULL)
		PG_RETURN_POINTER(purchase_copy(b, aggctx));
	purchase_merge(a, b, aggctx);
	SUMMARY_RETURN_STATE(a);
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_serialize);
/* Serialize a purchase state as its summary bytes */
Datum
crm_kpi_purchase_serialize(PG_FUNCTION_ARGS)
{
	summary_agg_context(fcinfo, "crm_kpi.purchase_serialize");
	PG_RETURN_BYTEA_P(purchase_encode((PurchaseState *) PG_GETARG_POINTER(0)));
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_deserialize);
/* Rebuild a purchase state from its summary bytes */
Datum
crm_kpi_purchase_deserialize(PG_FUNCTION_ARGS)
{
	MemoryContext aggctx = summary_agg_context(fcinfo, "crm_kpi.purchase_deserialize");
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	PurchaseState in;

	purchase_decode_bytes(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), ERRCODE_DATA_CORRUPTED, &in);
	PG_RETURN_POINTER(purchase_copy(&in, aggctx));
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_final);
/* Finish a purchase state as a summary (NULL over no orders) */
Datum
crm_kpi_purchase_final(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(purchase_encode((PurchaseState *) PG_GETARG_POINTER(0)));
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_summary_in);
/* Parse a purchase_summary "purchase v1 orders=N revenue=X first=T last=T" */
Datum
crm_kpi_purchase_summary_in(PG_FUNCTION_ARGS)
{
	const char *str = PG_GETARG_CSTRING(0);
	SummaryText t;
	PurchaseState s;
	const char *bad;

	summary_text_begin(&t, str, "purchase", PURCHASE_TYPE);
	s.orders = summary_text_int64(&t, "orders");
	s.revenue = summary_text_numeric(&t, "revenue");
	s.first = summary_text_timestamptz(&t, "first");
	s.last = summary_text_timestamptz(&t, "last");
	summary_text_end(&t);
	if ((bad = purchase_inconsistency(&s)) != NULL)
		summary_text_error(&t, bad);
	PG_RETURN_BYTEA_P(purchase_encode(&s));
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_summary_out);
/* Print a purchase_summary */
Datum
crm_kpi_purchase_summary_out(PG_FUNCTION_ARGS)
{
	PurchaseState s;
	StringInfoData out;

	purchase_decode_arg(fcinfo, 0, &s);
	summary_text_out_begin(&out, "purchase");
	appendStringInfo(&out, " orders=" INT64_FORMAT " revenue=%s", s.orders,
					 DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(s.revenue))));
	summary_text_out_timestamptz(&out, "first", s.first);
	summary_text_out_timestamptz(&out, "last", s.last);
	PG_RETURN_CSTRING(out.data);
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_summary_recv);
/* Receive a purchase_summary, validating its bytes */
Datum
crm_kpi_purchase_summary_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int			len = buf->len - buf->cursor;
	const char *data = pq_getmsgbytes(buf, len);
	PurchaseState s;

	purchase_decode_bytes(data, len, ERRCODE_INVALID_BINARY_REPRESENTATION, &s);
	PG_RETURN_BYTEA_P(purchase_encode(&s));
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_summary_send);
/* Send a purchase_summary's canonical bytes */
Datum
crm_kpi_purchase_summary_send(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbytes(&buf, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b));
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_orders);
/* Read the number of orders */
Datum
crm_kpi_purchase_orders(PG_FUNCTION_ARGS)
{
	PurchaseState s;

	purchase_decode_arg(fcinfo, 0, &s);
	PG_RETURN_INT64(s.orders);
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_revenue);
/* Read the revenue (the historical CLV of one customer) */
Datum
crm_kpi_purchase_revenue(PG_FUNCTION_ARGS)
{
	PurchaseState s;

	purchase_decode_arg(fcinfo, 0, &s);
	PG_RETURN_NUMERIC(s.revenue);
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_aov);
/* Read the average order value: revenue / orders */
Datum
crm_kpi_purchase_aov(PG_FUNCTION_ARGS)
{
	PurchaseState s;

	purchase_decode_arg(fcinfo, 0, &s);
	PG_RETURN_NUMERIC(summary_ratio(s.revenue, s.orders));
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_first);
/* Read the time of the first order */
Datum
crm_kpi_purchase_first(PG_FUNCTION_ARGS)
{
	PurchaseState s;

	purchase_decode_arg(fcinfo, 0, &s);
	PG_RETURN_TIMESTAMPTZ(s.first);
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_last);
/* Read the time of the last order */
Datum
crm_kpi_purchase_last(PG_FUNCTION_ARGS)
{
	PurchaseState s;

	purchase_decode_arg(fcinfo, 0, &s);
	PG_RETURN_TIMESTAMPTZ(s.last);
}

PG_FUNCTION_INFO_V1(crm_kpi_purchase_mean_gap);
/* Read the mean gap between orders, (last - first) / (orders - 1); NULL under two orders */
Datum
crm_kpi_purchase_mean_gap(PG_FUNCTION_ARGS)
{
	PurchaseState s;
	Interval   *gap;
	int64		usecs;

	purchase_decode_arg(fcinfo, 0, &s);
	if (s.orders < 2)
		PG_RETURN_NULL();
	if (pg_sub_s64_overflow(s.last, s.first, &usecs))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("interval out of range")));
	usecs /= s.orders - 1;
	gap = palloc0(sizeof(Interval));
	gap->day = (int32) (usecs / USECS_PER_DAY);
	gap->time = usecs % USECS_PER_DAY;
	PG_RETURN_INTERVAL_P(gap);
}
