/* rate.c: rates (win rate, conversion, resolution rate): % of true among true and false. */
#include "postgres.h"

#include "fmgr.h"
#include "utils/numeric.h"

#include "counters.h"

enum
{
	RATE_SUCCESSES, RATE_FAILURES
};

/* The counter an outcome goes to */
int
rate_field_of(Datum value)
{
	return DatumGetBool(value) ? RATE_SUCCESSES : RATE_FAILURES;
}

/* The rate of a state: 100 * successes / trials, or NULL */
static Datum
rate_value(const CounterState *s, FunctionCallInfo fcinfo)
{
	if (s == NULL || s->total == 0)
		PG_RETURN_NULL();
	PG_RETURN_NUMERIC(summary_percent(s->c[RATE_SUCCESSES], s->total));
}

PG_FUNCTION_INFO_V1(crm_kpi_rate_trans);
/* Count one outcome (NULL ignored); the per-row hot path, like nps_trans */
Datum
crm_kpi_rate_trans(PG_FUNCTION_ARGS)
{
	CounterState *s;

	COUNTER_SKIP_NULL_INPUT();
	s = likely(!PG_ARGISNULL(0)) ? (CounterState *) PG_GETARG_POINTER(0)
		: counter_state_arg(fcinfo, &counter_rate);
	s->c[rate_field_of(PG_GETARG_DATUM(1))]++;
	s->total++;
	PG_RETURN_POINTER(s);
}

PG_FUNCTION_INFO_V1(crm_kpi_rate_final);
/* Finish the one-step rate */
Datum
crm_kpi_rate_final(PG_FUNCTION_ARGS)
{
	return rate_value(PG_ARGISNULL(0) ? NULL : (CounterState *) PG_GETARG_POINTER(0), fcinfo);
}

PG_FUNCTION_INFO_V1(crm_kpi_rate_summary_in);
/* Parse a rate_summary */
Datum
crm_kpi_rate_summary_in(PG_FUNCTION_ARGS)
{
	return counter_in(PG_GETARG_CSTRING(0), &counter_rate);
}

PG_FUNCTION_INFO_V1(crm_kpi_rate_summary_recv);
/* Receive a rate_summary */
Datum
crm_kpi_rate_summary_recv(PG_FUNCTION_ARGS)
{
	return counter_recv((StringInfo) PG_GETARG_POINTER(0), &counter_rate);
}

PG_FUNCTION_INFO_V1(crm_kpi_rate_summary_rate);
/* Read the rate out of a summary */
Datum
crm_kpi_rate_summary_rate(PG_FUNCTION_ARGS)
{
	CounterState s;

	counter_decode_arg(fcinfo, 0, &counter_rate, &s);
	return rate_value(&s, fcinfo);
}

PG_FUNCTION_INFO_V1(crm_kpi_rate_summary_successes);
/* Read the successes (true outcomes) out of a summary */
Datum
crm_kpi_rate_summary_successes(PG_FUNCTION_ARGS)
{
	CounterState s;

	counter_decode_arg(fcinfo, 0, &counter_rate, &s);
	PG_RETURN_INT64(s.c[RATE_SUCCESSES]);
}
