/* lifecycle.c: the customer lifecycle: legal moves, classification from activity, its GUCs, funnel counts. */
#include "postgres.h"

#include <limits.h>

#include "access/htup_details.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "lifecycle.h"
#include "summary_io.h"

/* The stages, in the enum's order. */
typedef enum LifecycleStage
{
	STAGE_PROSPECT, STAGE_CONTACTED, STAGE_CUSTOMER, STAGE_ACTIVE, STAGE_LOYAL,
	STAGE_AT_RISK, STAGE_CHURNED, STAGE_COUNT
} LifecycleStage;

static const char *const lifecycle_labels[STAGE_COUNT] = {
	"prospect", "contacted", "customer", "active", "loyal", "at_risk", "churned"
};

/* legal[from][to]: the moves of KPI_SPEC.md "The customer lifecycle". */
static const bool lifecycle_legal[STAGE_COUNT][STAGE_COUNT] = {
	/* prospect  */ {false, true, true, false, false, false, false},
	/* contacted */ {false, false, true, false, false, false, false},
	/* customer  */ {false, false, false, true, false, true, true},
	/* active    */ {false, false, false, false, true, true, true},
	/* loyal     */ {false, false, false, false, false, true, true},
	/* at_risk   */ {false, false, true, true, true, false, true},
	/* churned   */ {false, false, true, false, false, false, false},
};

/* GUCs: the source strings, and the parsed intervals the assign hooks keep. */
static char *lifecycle_active_window_str = NULL;
static char *lifecycle_churn_after_str = NULL;
static char *lifecycle_loyal_min_tenure_str = NULL;
static int	lifecycle_loyal_min_orders = 5;
static Interval lifecycle_active_window;
static Interval lifecycle_churn_after;
static Interval lifecycle_loyal_min_tenure;

/* Parse an interval GUC without raising errors; it must be positive and not mix signs */
bool
lifecycle_check_interval(char **newval, void **extra, GucSource source)
{
	char		workbuf[256];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf,
				dtype,
				dterr;
	struct pg_itm_in itm;
	Interval	span;
	Interval   *result;
	char	   *copy;

	if (*newval == NULL || strlen(*newval) >= sizeof(workbuf) / 2)
	{
		GUC_check_errdetail("The value must be an interval such as '90 days'.");
		return false;
	}
	dterr = ParseDateTime(*newval, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf);
	if (dterr == 0)
		dterr = DecodeInterval(field, ftype, nf, INTERVAL_FULL_RANGE, &dtype, &itm);
	if (dterr == DTERR_BAD_FORMAT)
	{
		copy = pstrdup(*newval);
		dterr = DecodeISO8601Interval(copy, &dtype, &itm);
		pfree(copy);
	}
	if (dterr != 0 || dtype != DTK_DELTA || itmin2interval(&itm, &span) != 0)
	{
		GUC_check_errdetail("\"%s\" is not an interval such as '90 days'.", *newval);
		return false;
	}
	if (span.month < 0 || span.day < 0 || span.time < 0 ||
		(span.month == 0 && span.day == 0 && span.time == 0))
	{
		GUC_check_errdetail("The interval must be positive, with no negative part.");
		return false;
	}
	result = malloc(sizeof(Interval));	/* the GUC machinery free()s extra */
	if (result == NULL)
		return false;
	*result = span;
	*extra = result;
	return true;
}

/* Keep the parsed active window */
static void
lifecycle_assign_active_window(const char *newval, void *extra)
{
	lifecycle_active_window = *(Interval *) extra;
}

/* Keep the parsed churn threshold */
static void
lifecycle_assign_churn_after(const char *newval, void *extra)
{
	lifecycle_churn_after = *(Interval *) extra;
}

/* Keep the parsed loyalty tenure */
static void
lifecycle_assign_loyal_min_tenure(const char *newval, void *extra)
{
	lifecycle_loyal_min_tenure = *(Interval *) extra;
}

/* Define the lifecycle GUCs */
void
LifecycleInit(void)
{
	DefineCustomStringVariable("crm_kpi.active_window",
							   "How recent a customer's last order must be to count as active.",
							   "An interval; a customer whose last order is older is at_risk, then churned.",
							   &lifecycle_active_window_str, "90 days", PGC_USERSET, 0,
							   lifecycle_check_interval, lifecycle_assign_active_window, NULL);
	DefineCustomStringVariable("crm_kpi.churn_after",
							   "How long without an order makes a customer churned.",
							   "An interval, longer than crm_kpi.active_window.",
							   &lifecycle_churn_after_str, "180 days", PGC_USERSET, 0,
							   lifecycle_check_interval, lifecycle_assign_churn_after, NULL);
	DefineCustomStringVariable("crm_kpi.loyal_min_tenure",
							   "How long ago a loyal customer's first order must be.",
							   NULL,
							   &lifecycle_loyal_min_tenure_str, "365 days", PGC_USERSET, 0,
							   lifecycle_check_interval, lifecycle_assign_loyal_min_tenure, NULL);
	DefineCustomIntVariable("crm_kpi.loyal_min_orders",
							"How many completed orders a loyal customer has at least.",
							NULL,
							&lifecycle_loyal_min_orders, 5, 1, INT_MAX, PGC_USERSET, 0,
							NULL, NULL, NULL);
}

/* Raise the error for lifecycle settings that contradict each other */
static void
lifecycle_check_settings(void)
{
	if (DatumGetInt32(DirectFunctionCall2(interval_cmp, IntervalPGetDatum(&lifecycle_churn_after),
										  IntervalPGetDatum(&lifecycle_active_window))) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("crm_kpi.churn_after (%s) must be longer than crm_kpi.active_window (%s)",
						lifecycle_churn_after_str, lifecycle_active_window_str)));
}

/* The enum value OIDs of the stage type, in LifecycleStage order, cached in fn_extra */
typedef struct LifecycleStageOids
{
	Oid			type;
	Oid			oids[STAGE_COUNT];
} LifecycleStageOids;

/* Look up (once per call site) the OIDs of the stage labels of enum type typoid */
static LifecycleStageOids *
lifecycle_stage_oids(FunctionCallInfo fcinfo, Oid typoid)
{
	LifecycleStageOids *cache = (LifecycleStageOids *) fcinfo->flinfo->fn_extra;
	CatCList   *list;

	if (cache != NULL && cache->type == typoid)
		return cache;
	if (!OidIsValid(typoid))
		elog(ERROR, "could not determine the lifecycle stage type");
	cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(LifecycleStageOids));
	cache->type = typoid;
	list = SearchSysCacheList1(ENUMTYPOIDNAME, ObjectIdGetDatum(typoid));
	for (int i = 0; i < list->n_members; i++)
	{
		HeapTuple	tup = &list->members[i]->tuple;
		Form_pg_enum e = (Form_pg_enum) GETSTRUCT(tup);

		for (int s = 0; s < STAGE_COUNT; s++)
			if (strcmp(NameStr(e->enumlabel), lifecycle_labels[s]) == 0)
				cache->oids[s] = e->oid;
	}
	ReleaseSysCacheList(list);
	for (int s = 0; s < STAGE_COUNT; s++)
		if (!OidIsValid(cache->oids[s]))
			elog(ERROR, "type %s has no lifecycle stage \"%s\"", format_type_be(typoid), lifecycle_labels[s]);
	fcinfo->flinfo->fn_extra = cache;
	return cache;
}

/* The LifecycleStage of an enum value */
static LifecycleStage
lifecycle_stage_of(LifecycleStageOids *cache, Oid value)
{
	for (int s = 0; s < STAGE_COUNT; s++)
		if (cache->oids[s] == value)
			return (LifecycleStage) s;
	elog(ERROR, "%u is not a lifecycle stage", value);
}

PG_FUNCTION_INFO_V1(crm_kpi_lifecycle_can_move);
/* Tell whether a customer may move from one stage to another */
Datum
crm_kpi_lifecycle_can_move(PG_FUNCTION_ARGS)
{
	LifecycleStageOids *cache = lifecycle_stage_oids(fcinfo, get_fn_expr_argtype(fcinfo->flinfo, 0));
	LifecycleStage from = lifecycle_stage_of(cache, PG_GETARG_OID(0));
	LifecycleStage to = lifecycle_stage_of(cache, PG_GETARG_OID(1));

	PG_RETURN_BOOL(lifecycle_legal[from][to]);
}

/* t + span, in the session's time zone */
static TimestampTz
lifecycle_plus(TimestampTz t, Interval *span)
{
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval, TimestampTzGetDatum(t),
												   IntervalPGetDatum(span)));
}

/* Raise the error for activity that cannot be */
static void
lifecycle_bad_activity(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("inconsistent customer activity"),
			 errdetail("%s", detail)));
}

PG_FUNCTION_INFO_V1(crm_kpi_lifecycle_classify);
/*
 * Classify a customer at instant "at" from its activity at or before it:
 * interactions, completed orders, first and last order time.
 */
Datum
crm_kpi_lifecycle_classify(PG_FUNCTION_ARGS)
{
	LifecycleStageOids *cache;
	TimestampTz at,
				first = 0,
				last = 0;
	int64		interactions = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1);
	int64		orders = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT64(2);
	LifecycleStage stage;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	at = PG_GETARG_TIMESTAMPTZ(0);
	if (TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("classification instant must be finite")));
	if (interactions < 0 || orders < 0)
		lifecycle_bad_activity("Interaction and order counts cannot be negative.");
	if (orders > 0)
	{
		if (PG_ARGISNULL(3) || PG_ARGISNULL(4))
			lifecycle_bad_activity("A customer with orders has a first and a last order time.");
		first = PG_GETARG_TIMESTAMPTZ(3);
		last = PG_GETARG_TIMESTAMPTZ(4);
		if (TIMESTAMP_NOT_FINITE(first) || TIMESTAMP_NOT_FINITE(last))
			lifecycle_bad_activity("Order times must be finite.");
		if (first > last)
			lifecycle_bad_activity("The first order is after the last.");
		if (last > at)
			lifecycle_bad_activity("Classification uses only orders at or before the instant classified.");
		if (orders == 1 && first != last)
			lifecycle_bad_activity("With one order, the first and last order times are the same.");
	}
	lifecycle_check_settings();

	if (orders == 0)
		stage = interactions > 0 ? STAGE_CONTACTED : STAGE_PROSPECT;
	else if (lifecycle_plus(last, &lifecycle_churn_after) <= at)
		stage = STAGE_CHURNED;	/* no order for churn_after or longer */
	else if (lifecycle_plus(last, &lifecycle_active_window) < at)
		stage = STAGE_AT_RISK;	/* last order older than the active window */
	else if (orders >= lifecycle_loyal_min_orders &&
			 lifecycle_plus(first, &lifecycle_loyal_min_tenure) <= at)
		stage = STAGE_LOYAL;
	else if (orders >= 2)
		stage = STAGE_ACTIVE;
	else
		stage = STAGE_CUSTOMER;

	cache = lifecycle_stage_oids(fcinfo, get_fn_expr_rettype(fcinfo->flinfo));
	PG_RETURN_OID(cache->oids[stage]);
}

/* A funnel state: customers per stage, as a bigint[] of STAGE_COUNT elements */
static int64 *
lifecycle_funnel_counts(ArrayType *a)
{
	if (ARR_NDIM(a) != 1 || ARR_DIMS(a)[0] != STAGE_COUNT || ARR_HASNULL(a) ||
		ARR_ELEMTYPE(a) != INT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a funnel state is an array of %d bigints", STAGE_COUNT)));
	return (int64 *) ARR_DATA_PTR(a);
}

PG_FUNCTION_INFO_V1(crm_kpi_lifecycle_funnel_trans);
/* Count one customer's stage into the funnel state (in place, as an aggregate) */
Datum
crm_kpi_lifecycle_funnel_trans(PG_FUNCTION_ARGS)
{
	ArrayType  *state;
	LifecycleStageOids *cache;

	summary_agg_context(fcinfo, "crm_kpi.funnel");
	state = PG_GETARG_ARRAYTYPE_P(0);
	if (!PG_ARGISNULL(1))
	{
		cache = lifecycle_stage_oids(fcinfo, get_fn_expr_argtype(fcinfo->flinfo, 1));
		lifecycle_funnel_counts(state)[lifecycle_stage_of(cache, PG_GETARG_OID(1))]++;
	}
	PG_RETURN_ARRAYTYPE_P(state);
}

PG_FUNCTION_INFO_V1(crm_kpi_lifecycle_funnel_combine);
/* Add one funnel state into another (in place, as an aggregate) */
Datum
crm_kpi_lifecycle_funnel_combine(PG_FUNCTION_ARGS)
{
	ArrayType  *a;
	int64	   *ca,
			   *cb;

	summary_agg_context(fcinfo, "crm_kpi.funnel");
	a = PG_GETARG_ARRAYTYPE_P(0);
	ca = lifecycle_funnel_counts(a);
	cb = lifecycle_funnel_counts(PG_GETARG_ARRAYTYPE_P(1));
	for (int s = 0; s < STAGE_COUNT; s++)
		ca[s] = summary_add_count(ca[s], cb[s], "crm_kpi.funnel");
	PG_RETURN_ARRAYTYPE_P(a);
}
