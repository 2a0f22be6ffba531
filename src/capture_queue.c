/*
 * capture_queue.c: the buffer of keys a capture trigger read, and its append
 * to crm_kpi.change_queue: each distinct key once, in key order.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "capture.h"

static void capture_append(QueuedKeys *keys, const char *target);

void
capture_keys_init(QueuedKeys *keys, Relation source, Oid queue, const char *kind)
{
	memset(keys, 0, sizeof(*keys));
	keys->allocated = 16;
	keys->items = palloc(keys->allocated * sizeof(QueuedKey));
	keys->source = source;
	keys->queue = queue;
	keys->kind = kind;
}

QueuedKey *
capture_keys_next(QueuedKeys *keys)
{
	QueuedKey  *key;

	if (keys->failed_message != NULL)
		keys->n = 0;			/* the whole kind is queued instead: its keys need not be kept */
	else if (keys->n >= CAPTURE_FLUSH_KEYS)
		capture_append(keys, keys->kind);
	if (keys->n == keys->allocated)
	{
		keys->allocated *= 2;
		keys->items = repalloc_huge(keys->items, keys->allocated * sizeof(QueuedKey));
	}
	key = &keys->items[keys->n];
	memset(key, 0, sizeof(*key));
	key->day_null = true;
	key->customer_null = true;
	return key;
}

void
capture_keys_fail(QueuedKeys *keys, int sqlstate, const char *message)
{
	if (keys->failed_message == NULL)
	{
		keys->failed_sqlstate = sqlstate;
		keys->failed_message = pstrdup(message);
	}
}

AttrNumber
capture_column(TupleDesc desc, const char *name)
{
	int			attnum = SPI_fnumber(desc, name);

	return attnum > 0 ? (AttrNumber) attnum : InvalidAttrNumber;
}

/* Order of keys, to find the distinct ones */
static int
capture_key_cmp(const void *a, const void *b)
{
	const QueuedKey *x = a;
	const QueuedKey *y = b;

	if (x->day_null != y->day_null)
		return x->day_null ? 1 : -1;
	if (!x->day_null && x->day != y->day)
		return x->day < y->day ? -1 : 1;
	if (x->customer_null != y->customer_null)
		return x->customer_null ? 1 : -1;
	if (!x->customer_null && x->customer != y->customer)
		return x->customer < y->customer ? -1 : 1;
	return 0;
}

uint64
capture_enqueue(QueuedKeys *keys)
{
	if (keys->failed_message != NULL)
	{
		ereport(WARNING,
				(errcode(keys->failed_sqlstate),
				 errmsg("crm_kpi could not compute the keys this write to %s.%s made stale: %s",
						get_namespace_name(RelationGetNamespace(keys->source)), RelationGetRelationName(keys->source),
						keys->failed_message),
				 errdetail("The write is kept; every KPI table the source kind \"%s\" feeds is rebuilt at the next refresh.",
						   keys->kind),
				 errhint("The refresh reports the same error in crm_kpi.status until the row is fixed.")));
		/* one blank key under '*' || kind (with what earlier batches appended: the rebuild covers them) */
		keys->n = 0;
		capture_keys_next(keys);
		keys->n = 1;
		capture_append(keys, psprintf("*%s", keys->kind));
	}
	else
		capture_append(keys, keys->kind);
	pfree(keys->items);
	keys->items = NULL;
	return keys->queued;
}

/* Append the distinct keys held under target, in key order, and empty the buffer */
static void
capture_append(QueuedKeys *keys, const char *target)
{
	Relation	rel;
	TupleDesc	desc;
	Datum	   *values;
	bool	   *nulls;
	AttrNumber	target_att,
				day_att,
				customer_att,
				queued_att;
	BulkInsertState bistate = NULL;
	CommandId	cid;
	int64		i;

	if (keys->n == 0)
		return;
	if (keys->n > 1)
		qsort(keys->items, keys->n, sizeof(QueuedKey), capture_key_cmp);

	rel = table_open(keys->queue, RowExclusiveLock);
	desc = RelationGetDescr(rel);
	target_att = capture_column(desc, "target");
	day_att = capture_column(desc, "day");
	customer_att = capture_column(desc, "customer_id");
	queued_att = capture_column(desc, "queued_at");
	if (target_att == InvalidAttrNumber || day_att == InvalidAttrNumber ||
		customer_att == InvalidAttrNumber || queued_att == InvalidAttrNumber || rel->rd_rel->relhasindex)
		elog(ERROR, "crm_kpi.change_queue does not have the definition capture expects");
	values = palloc0(desc->natts * sizeof(Datum));
	nulls = palloc(desc->natts * sizeof(bool));
	memset(nulls, true, desc->natts * sizeof(bool));
	values[target_att - 1] = CStringGetTextDatum(target);
	nulls[target_att - 1] = false;
	values[queued_att - 1] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	nulls[queued_att - 1] = false;
	if (keys->n > 1)
		bistate = GetBulkInsertState();
	cid = GetCurrentCommandId(true);
	for (i = 0; i < keys->n; i++)
	{
		const QueuedKey *key = &keys->items[i];
		HeapTuple	tuple;

		if (i > 0 && capture_key_cmp(key, &keys->items[i - 1]) == 0)
			continue;
		values[day_att - 1] = DateADTGetDatum(key->day);
		nulls[day_att - 1] = key->day_null;
		values[customer_att - 1] = Int64GetDatum(key->customer);
		nulls[customer_att - 1] = key->customer_null;
		tuple = heap_form_tuple(desc, values, nulls);
		heap_insert(rel, tuple, cid, 0, bistate);
		heap_freetuple(tuple);
		keys->queued++;
	}
	if (bistate != NULL)
		FreeBulkInsertState(bistate);
	table_close(rel, NoLock);
	pfree(values);
	pfree(nulls);
	keys->n = 0;
	/* Visible to the rest of the transaction, as the statement would make them */
	CommandCounterIncrement();
}
