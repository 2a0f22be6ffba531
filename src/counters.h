/* counters.h: the engine shared by summaries that are a few exact counters (NPS, CSAT, rate). */
#ifndef CRM_KPI_COUNTERS_H
#define CRM_KPI_COUNTERS_H

#include "postgres.h"

#include "fmgr.h"

#include "summary_io.h"

#define COUNTER_MAX_FIELDS 5

/*
 * What a counter summary holds: its kind, text tag, SQL type name, field
 * names, and which field an input value counts in (checking its range).
 */
typedef struct CounterKind
{
	SummaryKind kind;
	const char *tag;
	const char *type_name;
	int			nfields;
	const char *fields[COUNTER_MAX_FIELDS];
	int			(*field_of) (Datum value);
} CounterKind;

/* The aggregate state, and the decoded form of a summary. */
typedef struct CounterState
{
	const CounterKind *kind;
	int64		total;
	int64		c[COUNTER_MAX_FIELDS];
} CounterState;

/*
 * The start of a counter transition function: a NULL input leaves the state
 * as it is (SQL NULL while there is none yet).
 */
#define COUNTER_SKIP_NULL_INPUT() \
	do { \
		if (PG_ARGISNULL(1)) \
		{ \
			if (PG_ARGISNULL(0)) \
				PG_RETURN_NULL(); \
			PG_RETURN_POINTER(PG_GETARG_POINTER(0)); \
		} \
	} while (0)

extern int	nps_field_of(Datum score);
extern int	csat_field_of(Datum score);
extern int	rate_field_of(Datum outcome);

extern const CounterKind counter_nps;
extern const CounterKind counter_csat;
extern const CounterKind counter_rate;

/* The transition state of argument 0, created in the aggregate context when NULL. */
extern CounterState *counter_state_arg(FunctionCallInfo fcinfo, const CounterKind *kind);
/* Add (delta = 1) or remove (delta = -1) one observation of field i. */
extern void counter_count(CounterState *s, int i, int delta);
/* Decode a summary argument of the given kind. */
extern void counter_decode_arg(FunctionCallInfo fcinfo, int argno, const CounterKind *kind,
							   CounterState *out);
/* Parse a summary's text form, for the kind's input function. */
extern Datum counter_in(const char *str, const CounterKind *kind);
/* Read a summary's binary form, for the kind's receive function. */
extern Datum counter_recv(StringInfo buf, const CounterKind *kind);

#endif
