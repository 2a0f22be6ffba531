/* capture.h: the capture triggers' direct path, which queues keys read straight from the transition rows. */
#ifndef CRM_KPI_CAPTURE_H
#define CRM_KPI_CAPTURE_H

#include "postgres.h"

#include "access/attnum.h"
#include "commands/trigger.h"
#include "pgtime.h"
#include "utils/relcache.h"

/* At most this many (day, customer) pairs per kind of source (crm_kpi.capture_keys) */
#define CAPTURE_MAX_KEYS 4

/* Where one (day, customer) pair of keys is in a row of the trigger's table; 0 = the key is absent */
typedef struct CaptureKeyColumns
{
	AttrNumber	day_att;
	bool		day_is_date;	/* a date column, taken as it is; else a timestamptz, taken in the time zone */
	AttrNumber	customer_att;
	Oid			customer_type;	/* int2, int4 or int8 */
} CaptureKeyColumns;

/* How a trigger reads its keys when every key is a plain column of a suitable type */
typedef struct CaptureDirect
{
	int			nkeys;
	CaptureKeyColumns keys[CAPTURE_MAX_KEYS];
	pg_tz	   *tz;				/* the KPI tables' time zone, or NULL when it is a fixed-offset abbreviation */
	int			offset;			/* then: seconds east of UTC */
} CaptureDirect;

/*
 * Fill *direct for a trigger on rel from crm_kpi.capture_columns (inside an SPI
 * connection); false when the trigger must run capture_sql's statement instead.
 */
extern bool capture_direct_prepare(Relation rel, const char *kind, CaptureDirect *direct);

/* The role that owns the extension's queue table (the extension's owner) */
extern Oid capture_queue_owner(void);

/* Queue, once each, the keys of the trigger's transition rows under kind into the queue table; returns the rows queued */
extern uint64 capture_direct_run(TriggerData *trigdata, const char *kind, Oid queue, const CaptureDirect *direct);

#endif
