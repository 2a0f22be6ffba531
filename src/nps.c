/* nps.c: Net Promoter Score: % promoters (9-10) minus % detractors (0-6) over scores 0-10. */
#include "postgres.h"

#include "fmgr.h"
#include "utils/numeric.h"

#include "counters.h"

enum
{
	NPS_PROMOTERS, NPS_PASSIVES, NPS_DETRACTORS
};

/* The counter an NPS score goes to, after checking its range */
int
nps_field_of(Datum value)
{
	int32		score = DatumGetInt32(value);

	if (score < 0 || score > 10)
		summary_score_range_error(score, 0, 10, "NPS score");
	return score >= 9 ? NPS_PROMOTERS : score >= 7 ? NPS_PASSIVES : NPS_DETRACTORS;
}

/* The NPS of a state: 100 * (promoters - detractors) / responses, or NULL */
static Datum
nps_value(const CounterState *s, FunctionCallInfo fcinfo)
{
	if (s == NULL || s->total == 0)
		PG_RETURN_NULL();
	PG_RETURN_NUMERIC(summary_percent(s->c[NPS_PROMOTERS] - s->c[NPS_DETRACTORS], s->total));
}

/* The counter of each valid score, for the per-row fast path. */
static const int8 nps_bucket_of[11] = {
	NPS_DETRACTORS, NPS_DETRACTORS, NPS_DETRACTORS, NPS_DETRACTORS, NPS_DETRACTORS, NPS_DETRACTORS,
	NPS_DETRACTORS, NPS_PASSIVES, NPS_PASSIVES, NPS_PROMOTERS, NPS_PROMOTERS
};

PG_FUNCTION_INFO_V1(crm_kpi_nps_trans);
/*
 * Count one NPS score (NULL ignored). This is the per-row hot path: once the
 * state exists it only checks the range and increments two counters (a
 * count cannot reach 2^63 one row at a time; merges of summaries are checked).
 */
Datum
crm_kpi_nps_trans(PG_FUNCTION_ARGS)
{
	CounterState *s;
	int32		score;

	COUNTER_SKIP_NULL_INPUT();
	score = PG_GETARG_INT32(1);
	if (unlikely((uint32) score > 10))
		summary_score_range_error(score, 0, 10, "NPS score");
	s = likely(!PG_ARGISNULL(0)) ? (CounterState *) PG_GETARG_POINTER(0)
		: counter_state_arg(fcinfo, &counter_nps);
	s->c[nps_bucket_of[score]]++;
	s->total++;
	PG_RETURN_POINTER(s);
}

PG_FUNCTION_INFO_V1(crm_kpi_nps_final);
/* Finish the one-step NPS */
Datum
crm_kpi_nps_final(PG_FUNCTION_ARGS)
{
	return nps_value(PG_ARGISNULL(0) ? NULL : (CounterState *) PG_GETARG_POINTER(0), fcinfo);
}

PG_FUNCTION_INFO_V1(crm_kpi_nps_summary_in);
/* Parse an nps_summary */
Datum
crm_kpi_nps_summary_in(PG_FUNCTION_ARGS)
{
	return counter_in(PG_GETARG_CSTRING(0), &counter_nps);
}

PG_FUNCTION_INFO_V1(crm_kpi_nps_summary_recv);
/* Receive an nps_summary */
Datum
crm_kpi_nps_summary_recv(PG_FUNCTION_ARGS)
{
	return counter_recv((StringInfo) PG_GETARG_POINTER(0), &counter_nps);
}

PG_FUNCTION_INFO_V1(crm_kpi_nps_summary_nps);
/* Read the NPS out of a summary */
Datum
crm_kpi_nps_summary_nps(PG_FUNCTION_ARGS)
{
	CounterState s;

	counter_decode_arg(fcinfo, 0, &counter_nps, &s);
	return nps_value(&s, fcinfo);
}

PG_FUNCTION_INFO_V1(crm_kpi_nps_summary_promoters);
/* Read the promoters (9-10) out of a summary */
Datum
crm_kpi_nps_summary_promoters(PG_FUNCTION_ARGS)
{
	CounterState s;

	counter_decode_arg(fcinfo, 0, &counter_nps, &s);
	PG_RETURN_INT64(s.c[NPS_PROMOTERS]);
}

PG_FUNCTION_INFO_V1(crm_kpi_nps_summary_passives);
/* Read the passives (7-8) out of a summary */
Datum
crm_kpi_nps_summary_passives(PG_FUNCTION_ARGS)
{
	CounterState s;

	counter_decode_arg(fcinfo, 0, &counter_nps, &s);
	PG_RETURN_INT64(s.c[NPS_PASSIVES]);
}

PG_FUNCTION_INFO_V1(crm_kpi_nps_summary_detractors);
/* Read the detractors (0-6) out of a summary */
Datum
crm_kpi_nps_summary_detractors(PG_FUNCTION_ARGS)
{
	CounterState s;

	counter_decode_arg(fcinfo, 0, &counter_nps, &s);
	PG_RETURN_INT64(s.c[NPS_DETRACTORS]);
}
