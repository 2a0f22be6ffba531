/*
 * capture.h: the capture triggers' two ways of reading the keys a write made
 * stale (straight from the transition rows, or by capture_sql's statement) and
 * the buffer both fill, which is then appended to crm_kpi.change_queue.
 */
#ifndef CRM_KPI_CAPTURE_H
#define CRM_KPI_CAPTURE_H

#include "postgres.h"

#include "access/attnum.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "pgtime.h"
#include "utils/date.h"
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

/* One (day, customer) key read from a transition row */
typedef struct QueuedKey
{
	int64		customer;
	DateADT		day;
	bool		day_null;
	bool		customer_null;
} QueuedKey;

/*
 * Keys held in memory at most: a statement of more appends them to the queue
 * this many at a time (6 MB), each batch's distinct ones, so that a bulk load
 * takes no memory in proportion to its rows.
 */
#define CAPTURE_FLUSH_KEYS 262144

/* The keys of a statement, growing as rows are read, and where they go */
typedef struct QueuedKeys
{
	QueuedKey  *items;
	int64		n;
	int64		allocated;
	Relation	source;			/* the table written to */
	Oid			queue;			/* crm_kpi.change_queue */
	const char *kind;			/* the source's kind: the keys' target */
	uint64		queued;			/* rows appended to the queue so far */
	/* set when a key could not be computed: then the whole kind is queued as stale instead */
	int			failed_sqlstate;
	char	   *failed_message;
} QueuedKeys;

extern void capture_keys_init(QueuedKeys *keys, Relation source, Oid queue, const char *kind);

/*
 * The next key, blank (both keys NULL), counted only once the caller increments
 * keys->n; the keys held are appended to the queue first when there are CAPTURE_FLUSH_KEYS
 */
extern QueuedKey *capture_keys_next(QueuedKeys *keys);

/* Record the first key that could not be computed (with the error it raised) */
extern void capture_keys_fail(QueuedKeys *keys, int sqlstate, const char *message);

/*
 * Append the distinct keys still held under kind to the queue table; when a key
 * could not be computed, a WARNING and '*' || kind instead (a rebuild of the
 * tables the kind feeds, which reports the error until the data is fixed).
 * Returns the rows queued by the statement in all, and frees the keys.
 */
extern uint64 capture_enqueue(QueuedKeys *keys);

/* The attribute number of a column of desc, or 0 when it has none of that name */
extern AttrNumber capture_column(TupleDesc desc, const char *name);

/*
 * Fill *direct for a trigger on rel from crm_kpi.capture_columns (inside an SPI
 * connection); false when the trigger must run capture_sql's statement instead.
 */
extern bool capture_direct_prepare(Relation rel, const char *kind, CaptureDirect *direct);

/* The role that owns the extension's queue table (the extension's owner) */
extern Oid capture_queue_owner(void);

/* Queue, once each, the keys of the trigger's transition rows under kind into the queue table; returns the rows queued */
extern uint64 capture_direct_run(TriggerData *trigdata, const char *kind, Oid queue, const CaptureDirect *direct);

/*
 * Read the keys capture_sql's SELECT gives (inside an SPI connection with the
 * transition tables registered) in a subtransaction that writes nothing: a
 * value the binding cannot convert is recorded in keys (capture_keys_fail)
 * instead of failing the CRM's write. Errors that are not about the data
 * (cancel, shutdown, out of memory, serialization) are raised as they are.
 */
extern void capture_statement_read(SPIPlanPtr plan, QueuedKeys *keys);

#endif
