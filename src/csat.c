/* csat.c: CSAT: % of responses scoring 4 or 5 (top-two-box) on 1-5, and the mean score. */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

#include "counters.h"

/* The counter a CSAT score goes to (score - 1), after checking its range */
int
csat_field_of(Datum value)
{
	int32		score = DatumGetInt32(value);

	if (score < 1 || score > 5)
		summary_score_range_error(score, 1, 5, "CSAT score");
	return score - 1;
}

/* The CSAT of a state: 100 * (fours + fives) / responses, or NULL */
static Datum
csat_value(const CounterState *s, FunctionCallInfo fcinfo)
{
	if (s == NULL || s->total == 0)
		PG_RETURN_NULL();
	PG_RETURN_NUMERIC(summary_percent(s->c[3] + s->c[4], s->total));
}

/* The mean score of a state: sum of scores / responses, or NULL */
static Datum
csat_mean_value(const CounterState *s, FunctionCallInfo fcinfo)
{
	Datum		sum = NumericGetDatum(int64_to_numeric(0));

	if (s == NULL || s->total == 0)
		PG_RETURN_NULL();
	for (int i = 0; i < 5; i++)
	{
		Datum		term = DirectFunctionCall2(numeric_mul,
											   NumericGetDatum(int64_to_numeric(s->c[i])),
											   NumericGetDatum(int64_to_numeric(i + 1)));

		sum = DirectFunctionCall2(numeric_add, sum, term);
	}
	PG_RETURN_NUMERIC(summary_ratio(DatumGetNumeric(sum), s->total));
}

PG_FUNCTION_INFO_V1(crm_kpi_csat_trans);
/* Count one CSAT score (NULL ignored); the per-row hot path, like nps_trans */
Datum
crm_kpi_csat_trans(PG_FUNCTION_ARGS)
{
	CounterState *s;
	int32		score;

	COUNTER_SKIP_NULL_INPUT();
	score = PG_GETARG_INT32(1);
	if (unlikely((uint32) (score - 1) > 4))
		summary_score_range_error(score, 1, 5, "CSAT score");
	s = likely(!PG_ARGISNULL(0)) ? (CounterState *) PG_GETARG_POINTER(0)
		: counter_state_arg(fcinfo, &counter_csat);
	s->c[score - 1]++;
	s->total++;
	PG_RETURN_POINTER(s);
}

PG_FUNCTION_INFO_V1(crm_kpi_csat_final);
/* Finish the one-step CSAT */
Datum
crm_kpi_csat_final(PG_FUNCTION_ARGS)
{
	return csat_value(PG_ARGISNULL(0) ? NULL : (CounterState *) PG_GETARG_POINTER(0), fcinfo);
}

PG_FUNCTION_INFO_V1(crm_kpi_csat_mean_final);
/* Finish the one-step mean CSAT score */
Datum
crm_kpi_csat_mean_final(PG_FUNCTION_ARGS)
{
	return csat_mean_value(PG_ARGISNULL(0) ? NULL : (CounterState *) PG_GETARG_POINTER(0), fcinfo);
}

PG_FUNCTION_INFO_V1(crm_kpi_csat_summary_in);
/* Parse a csat_summary */
Datum
crm_kpi_csat_summary_in(PG_FUNCTION_ARGS)
{
	return counter_in(PG_GETARG_CSTRING(0), &counter_csat);
}

PG_FUNCTION_INFO_V1(crm_kpi_csat_summary_recv);
/* Receive a csat_summary */
Datum
crm_kpi_csat_summary_recv(PG_FUNCTION_ARGS)
{
	return counter_recv((StringInfo) PG_GETARG_POINTER(0), &counter_csat);
}

PG_FUNCTION_INFO_V1(crm_kpi_csat_summary_csat);
/* Read the CSAT out of a summary */
Datum
crm_kpi_csat_summary_csat(PG_FUNCTION_ARGS)
{
	CounterState s;

	counter_decode_arg(fcinfo, 0, &counter_csat, &s);
	return csat_value(&s, fcinfo);
}

PG_FUNCTION_INFO_V1(crm_kpi_csat_summary_mean);
/* Read the mean score out of a summary */
Datum
crm_kpi_csat_summary_mean(PG_FUNCTION_ARGS)
{
	CounterState s;

	counter_decode_arg(fcinfo, 0, &counter_csat, &s);
	return csat_mean_value(&s, fcinfo);
}

PG_FUNCTION_INFO_V1(crm_kpi_csat_summary_satisfied);
/* Read the satisfied responses (4-5) out of a summary */
Datum
crm_kpi_csat_summary_satisfied(PG_FUNCTION_ARGS)
{
	CounterState s;

	counter_decode_arg(fcinfo, 0, &counter_csat, &s);
	PG_RETURN_INT64(s.c[3] + s.c[4]);
}

PG_FUNCTION_INFO_V1(crm_kpi_csat_summary_score_count);
/* Read how many responses gave one score (1-5) */
Datum
crm_kpi_csat_summary_score_count(PG_FUNCTION_ARGS)
{
	CounterState s;
	int			i = csat_field_of(PG_GETARG_DATUM(1));

	counter_decode_arg(fcinfo, 0, &counter_csat, &s);
	PG_RETURN_INT64(s.c[i]);
}
