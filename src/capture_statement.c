/*
 * capture_statement.c: the capture triggers' statement path. When a key of a
 * bound source is an expression, or the binding has a filter, the trigger runs
 * crm_kpi.capture_sql's SELECT of the distinct keys over its transition rows.
 * The SELECT runs in a subtransaction that writes nothing (so it takes no
 * transaction id): a value the binding cannot convert, such as a customer id
 * 'oops' cast to bigint, is caught there and never fails the CRM's write.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "capture.h"

/* Rows fetched from the SELECT at a time */
#define CAPTURE_FETCH 10000

/*
 * Whether an error is about the transaction or the server rather than the
 * rows (cancel, shutdown, out of memory, serialization, locks, internal):
 * those are raised as they are, the others caught.
 */
static bool
capture_error_is_fatal_to_write(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_TRANSACTION_ROLLBACK:	/* 40: serialization failure, deadlock */
		case ERRCODE_INSUFFICIENT_RESOURCES:	/* 53: out of memory, disk full */
		case ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE:	/* 55: lock not available */
		case ERRCODE_OPERATOR_INTERVENTION: /* 57: query canceled, shutdown */
		case ERRCODE_SYSTEM_ERROR:	/* 58: I/O error */
		case ERRCODE_INTERNAL_ERROR:	/* XX */
			return true;
		default:
			return false;
	}
}

/* Append the rows of the last fetch to keys */
static void
capture_statement_append(QueuedKeys *keys)
{
	uint64		i;

	for (i = 0; i < SPI_processed; i++)
	{
		QueuedKey  *key = capture_keys_next(keys);
		Datum		value;
		bool		isnull;

		value = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
		{
			key->day = DatumGetDateADT(value);
			key->day_null = false;
		}
		value = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);
		if (!isnull)
		{
			key->customer = DatumGetInt64(value);
			key->customer_null = false;
		}
		keys->n++;
	}
}

void
capture_statement_read(SPIPlanPtr plan, QueuedKeys *keys)
{
	MemoryContext outer = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(outer);
	PG_TRY();
	{
		Portal		portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);

		for (;;)
		{
			SPI_cursor_fetch(portal, true, CAPTURE_FETCH);
			if (SPI_processed == 0)
				break;
			if (SPI_tuptable->tupdesc->natts != 2 || SPI_tuptable->tupdesc->attrs[0].atttypid != DATEOID ||
				SPI_tuptable->tupdesc->attrs[1].atttypid != INT8OID)
				elog(ERROR, "the capture statement must return (day date, customer_id bigint)");
			capture_statement_append(keys);
			SPI_freetuptable(SPI_tuptable);
		}
		SPI_cursor_close(portal);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(outer);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *error;

		MemoryContextSwitchTo(outer);
		error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(outer);
		CurrentResourceOwner = owner;
		if (error->elevel > ERROR || capture_error_is_fatal_to_write(error->sqlerrcode))
			ReThrowError(error);
		capture_keys_fail(keys, error->sqlerrcode, error->message);
		FreeErrorData(error);
	}
	PG_END_TRY();
}
