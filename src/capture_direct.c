/*
 * capture_direct.c: the capture triggers' direct path. When every key of a
 * bound source is a plain column, a trigger reads the (day, customer) keys
 * straight from its transition rows, sorts them, and appends each distinct one
 * to crm_kpi.change_queue, with no SQL statement to plan or execute.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "parser/scansup.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "capture.h"

bool
capture_direct_prepare(Relation rel, const char *kind, CaptureDirect *direct)
{
	Oid			argtypes[2] = {TEXTOID, OIDOID};
	Datum		args[2];
	TupleDesc	desc = RelationGetDescr(rel);
	char	   *tzname = NULL;
	char	   *lower;
	int			offset;
	pg_tz	   *abbrev_tz;
	uint64		i;

	memset(direct, 0, sizeof(*direct));
	args[0] = CStringGetTextDatum(kind);
	args[1] = ObjectIdGetDatum(RelationGetRelid(rel));
	if (SPI_execute_with_args("SELECT day_column, day_is_date, customer_column, timezone "
							  "FROM crm_kpi.capture_columns($1, $2)",
							  2, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "crm_kpi.capture_columns failed");
	if (SPI_processed == 0 || SPI_processed > CAPTURE_MAX_KEYS)
		return false;
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	rowdesc = SPI_tuptable->tupdesc;
		char	   *day = SPI_getvalue(row, rowdesc, 1);
		char	   *is_date = SPI_getvalue(row, rowdesc, 2);
		char	   *customer = SPI_getvalue(row, rowdesc, 3);
		CaptureKeyColumns *key = &direct->keys[i];

		tzname = SPI_getvalue(row, rowdesc, 4);
		if (day != NULL)
		{
			key->day_att = capture_column(desc, day);
			key->day_is_date = is_date != NULL && is_date[0] == 't';
			if (key->day_att == InvalidAttrNumber ||
				TupleDescAttr(desc, key->day_att - 1)->atttypid != (key->day_is_date ? DATEOID : TIMESTAMPTZOID))
				return false;
		}
		if (customer != NULL)
		{
			Oid			type;

			key->customer_att = capture_column(desc, customer);
			if (key->customer_att == InvalidAttrNumber)
				return false;
			type = TupleDescAttr(desc, key->customer_att - 1)->atttypid;
			if (type != INT2OID && type != INT4OID && type != INT8OID)
				return false;
			key->customer_type = type;
		}
		if (key->day_att == InvalidAttrNumber && key->customer_att == InvalidAttrNumber)
			return false;
	}
	direct->nkeys = (int) SPI_processed;

	/* A fixed-offset abbreviation (UTC, say) or a zone name, read as AT TIME ZONE reads them */
	if (tzname == NULL)
		return false;
	lower = downcase_truncate_identifier(tzname, strlen(tzname), false);
	switch (DecodeTimezoneAbbrev(0, lower, &offset, &abbrev_tz))
	{
		case TZ:
		case DTZ:
			direct->offset = offset;
			return true;
		case UNKNOWN_FIELD:
			direct->tz = pg_tzset(tzname);
			return direct->tz != NULL;
		default:
			return false;		/* an abbreviation whose offset changed over time */
	}
}

/*
 * The day of a timestamptz in the KPI time zone, as (ts AT TIME ZONE zone)::date
 * computes it; false when that is out of range (where the statement would fail)
 */
static bool
capture_day(TimestampTz ts, const CaptureDirect *direct, DateADT *day)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			tzoff;
	Timestamp	local;

	if (TIMESTAMP_IS_NOBEGIN(ts))
	{
		DATE_NOBEGIN(*day);
		return true;
	}
	if (TIMESTAMP_IS_NOEND(ts))
	{
		DATE_NOEND(*day);
		return true;
	}
	if (direct->tz == NULL)
	{
		local = ts + (Timestamp) direct->offset * USECS_PER_SEC;
		if (!IS_VALID_TIMESTAMP(local) || timestamp2tm(local, NULL, &tm, &fsec, NULL, NULL) != 0)
			return false;
	}
	else if (timestamp2tm(ts, &tzoff, &tm, &fsec, NULL, direct->tz) != 0 || tm2timestamp(&tm, fsec, NULL, &local) != 0)
		return false;
	*day = date2j(tm.tm_year, tm.tm_mon, tm.tm_mday) - POSTGRES_EPOCH_JDATE;
	return true;
}

/* Append the keys of every row of a transition table */
static void
capture_read(Tuplestorestate *rows, TupleTableSlot *slot, const CaptureDirect *direct, QueuedKeys *keys)
{
	int			pointer;

	if (rows == NULL)
		return;
	/* A read pointer of our own, from the start: other triggers read the same rows */
	pointer = tuplestore_alloc_read_pointer(rows, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(rows, pointer);
	tuplestore_rescan(rows);
	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		int			k;

		for (k = 0; k < direct->nkeys; k++)
		{
			const CaptureKeyColumns *columns = &direct->keys[k];
			QueuedKey  *key;
			Datum		value;
			bool		isnull;

			key = capture_keys_next(keys);
			if (columns->day_att != InvalidAttrNumber)
			{
				value = slot_getattr(slot, columns->day_att, &isnull);
				if (!isnull)
				{
					key->day_null = false;
					if (columns->day_is_date)
						key->day = DatumGetDateADT(value);
					else if (!capture_day(DatumGetTimestampTz(value), direct, &key->day))
						capture_keys_fail(keys, ERRCODE_DATETIME_VALUE_OUT_OF_RANGE, "timestamp out of range");
				}
			}
			if (columns->customer_att != InvalidAttrNumber)
			{
				value = slot_getattr(slot, columns->customer_att, &isnull);
				if (!isnull)
				{
					key->customer = columns->customer_type == INT8OID ? DatumGetInt64(value)
						: columns->customer_type == INT4OID ? DatumGetInt32(value)
						: DatumGetInt16(value);
					key->customer_null = false;
				}
			}
			/* A row with neither key makes nothing stale */
			if (!key->day_null || !key->customer_null)
				keys->n++;
		}
	}
	tuplestore_select_read_pointer(rows, 0);
}

uint64
capture_direct_run(TriggerData *trigdata, const char *kind, Oid queue, const CaptureDirect *direct)
{
	QueuedKeys	keys;
	TupleTableSlot *slot;

	capture_keys_init(&keys, trigdata->tg_relation, queue, kind);
	slot = MakeSingleTupleTableSlot(RelationGetDescr(trigdata->tg_relation), &TTSOpsMinimalTuple);
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		capture_read(trigdata->tg_oldtable, slot, direct, &keys);
	if (!TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		capture_read(trigdata->tg_newtable, slot, direct, &keys);
	ExecDropSingleTupleTableSlot(slot);
	return capture_enqueue(&keys);
}
