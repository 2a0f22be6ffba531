/* capture.c: change capture: statement triggers that queue the keys a write to a bound source made stale. */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "nodes/pg_list.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "capture.h"
#include "worker.h"

/* The prepared capture statement of one trigger */
typedef struct CapturePlan
{
	Oid			tgoid;			/* hash key: the trigger */
	Oid			relid;			/* the table it is on */
	bool		valid;			/* false once the table's definition changed */
	bool		bound;			/* false when the table is no longer bound: the trigger does nothing */
	bool		direct;			/* keys read from the transition rows (capture_direct.c) */
	SPIPlanPtr	plan;			/* else: capture_sql's statement (capture_statement.c) */
	CaptureDirect columns;
} CapturePlan;

static HTAB *capture_plans = NULL;

/* crm_kpi.change_queue and its owner, looked up again after any relcache invalidation */
static Oid	capture_queue = InvalidOid;
static Oid	capture_owner = InvalidOid;

/* The search path capture statements run with: pg_catalog only */
static OverrideSearchPath capture_search_path = {NIL, true, false, 0};

/* Relcache callback: a table's triggers or definition changed, so its plans must be prepared again */
static void
capture_forget(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	CapturePlan *entry;

	capture_queue = InvalidOid;
	capture_owner = InvalidOid;
	hash_seq_init(&status, capture_plans);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (relid == InvalidOid || entry->relid == relid)
			entry->valid = false;
}

/* The plan cache, created on first use */
static HTAB *
capture_plan_cache(void)
{
	HASHCTL		ctl;

	if (capture_plans != NULL)
		return capture_plans;
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(CapturePlan);
	capture_plans = hash_create("crm_kpi capture plans", 64, &ctl, HASH_ELEM | HASH_BLOBS);
	CacheRegisterRelcacheCallback(capture_forget, (Datum) 0);
	return capture_plans;
}

/* The role that owns the extension's queue: capture statements run as it */
Oid
capture_queue_owner(void)
{
	Oid			queue;
	HeapTuple	tuple;
	Oid			owner;

	capture_plan_cache();		/* registers the callback that forgets the owner */
	if (OidIsValid(capture_owner))
		return capture_owner;
	queue = get_relname_relid("change_queue", get_namespace_oid("crm_kpi", false));
	if (!OidIsValid(queue))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("crm_kpi.change_queue does not exist")));
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(queue));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", queue);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	capture_queue = queue;
	capture_owner = owner;
	return owner;
}

/* The trigger event as crm_kpi.capture_sql names it */
static const char *
capture_event_name(TriggerEvent event)
{
	if (TRIGGER_FIRED_BY_INSERT(event))
		return "insert";
	if (TRIGGER_FIRED_BY_UPDATE(event))
		return "update";
	if (TRIGGER_FIRED_BY_DELETE(event))
		return "delete";
	return "truncate";
}

/* Work out (inside an SPI connection) how an entry's trigger queues its keys: directly, by a statement, or not at all */
static void
capture_prepare(CapturePlan *entry, TriggerData *trigdata, const char *kind)
{
	Oid			argtypes[3] = {TEXTOID, OIDOID, TEXTOID};
	Datum		args[3];
	Datum		value;
	bool		isnull;
	SPIPlanPtr	plan;

	args[0] = CStringGetTextDatum(kind);
	args[1] = ObjectIdGetDatum(entry->relid);
	args[2] = CStringGetTextDatum(capture_event_name(trigdata->tg_event));
	if (SPI_execute_with_args("SELECT crm_kpi.capture_sql($1, $2, $3)", 3, argtypes, args,
							  NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "crm_kpi.capture_sql failed");
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
	{
		/* No longer bound (a detached partition, say): the trigger does nothing. */
		entry->valid = true;
		return;
	}
	entry->bound = true;
	if (!TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event) &&
		capture_direct_prepare(trigdata->tg_relation, kind, &entry->columns))
	{
		entry->direct = true;
		entry->valid = true;
		return;
	}
	plan = SPI_prepare(TextDatumGetCString(value), 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare the capture statement: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	entry->plan = plan;
	entry->valid = true;
}

/* Connect to SPI as the queue's owner, with pg_catalog alone as search_path, like a SECURITY DEFINER function */
static void
capture_spi_begin(Oid *save_userid, int *save_sec_context)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	GetUserIdAndSecContext(save_userid, save_sec_context);
	SetUserIdAndSecContext(capture_queue_owner(),
						   *save_sec_context | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	/* the same path on every call keeps the cached plans valid */
	PushOverrideSearchPath(&capture_search_path);
}

static void
capture_spi_end(Oid save_userid, int save_sec_context)
{
	PopOverrideSearchPath();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	SPI_finish();
}

/* The cache entry of a trigger, prepared when new or invalidated */
static CapturePlan *
capture_entry(TriggerData *trigdata, const char *kind)
{
	CapturePlan *entry;
	bool		found;
	Oid			save_userid;
	int			save_sec_context;

	entry = hash_search(capture_plan_cache(), &trigdata->tg_trigger->tgoid, HASH_ENTER, &found);
	if (found && entry->valid)
		return entry;
	if (found && entry->plan != NULL)
		SPI_freeplan(entry->plan);
	entry->plan = NULL;
	entry->valid = false;
	entry->bound = false;
	entry->direct = false;
	entry->relid = RelationGetRelid(trigdata->tg_relation);
	capture_spi_begin(&save_userid, &save_sec_context);
	/* capture_sql's statement reads the transition tables: they must be known to parse it */
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "SPI_register_trigger_data failed");
	capture_prepare(entry, trigdata, kind);
	capture_spi_end(save_userid, save_sec_context);
	return entry;
}

PG_FUNCTION_INFO_V1(crm_kpi_capture);
/* Queue the keys a statement on a bound source made stale (AFTER ... FOR EACH STATEMENT trigger) */
Datum
crm_kpi_capture(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *kind;
	CapturePlan *entry;
	Oid			save_userid;
	int			save_sec_context;
	uint64		queued;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("crm_kpi.capture() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) || !TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("crm_kpi.capture() must be an AFTER ... FOR EACH STATEMENT trigger with one argument, the source kind")));
	kind = trigdata->tg_trigger->tgargs[0];

	entry = capture_entry(trigdata, kind);
	if (!entry->bound)
		return PointerGetDatum(NULL);
	capture_queue_owner();		/* looks the queue up when not known */
	if (entry->direct)
	{
		if (capture_direct_run(trigdata, kind, capture_queue, &entry->columns) > 0)
			worker_wake_after_commit();
		return PointerGetDatum(NULL);
	}

	capture_spi_begin(&save_userid, &save_sec_context);
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "SPI_register_trigger_data failed");
	if (SPI_is_cursor_plan(entry->plan))
	{
		/* the SELECT of the keys, which may fail on the CRM's values: read apart, then queued */
		QueuedKeys	keys;

		capture_keys_init(&keys, trigdata->tg_relation, capture_queue, kind);
		capture_statement_read(entry->plan, &keys);
		queued = capture_enqueue(&keys);
	}
	else
	{
		/* an INSERT of what the write made stale as a whole ('*' || kind), which reads no value */
		if (SPI_execute_plan(entry->plan, NULL, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "the capture statement failed");
		queued = SPI_processed;
	}
	capture_spi_end(save_userid, save_sec_context);
	if (queued > 0)
		worker_wake_after_commit();
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(crm_kpi_capture_loosen);
/*
 * Make a capture trigger depend automatically, not normally, on its function,
 * so that DROP EXTENSION removes the triggers it put on the CRM's tables.
 */
Datum
crm_kpi_capture_loosen(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *tgname = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Oid			tgoid = get_trigger_oid(relid, tgname, false);
	HeapTuple	tuple;
	ObjectAddress trigger,
				function;

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	if (!has_privs_of_role(GetUserId(), ((Form_pg_class) GETSTRUCT(tuple))->relowner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", get_rel_name(relid))));
	ReleaseSysCache(tuple);

	ObjectAddressSet(trigger, TriggerRelationId, tgoid);
	ObjectAddressSet(function, ProcedureRelationId,
					 LookupFuncName(list_make2(makeString("crm_kpi"), makeString("capture")), 0, NULL, false));
	if (deleteDependencyRecordsForClass(TriggerRelationId, tgoid, ProcedureRelationId, DEPENDENCY_NORMAL) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("trigger \"%s\" does not execute crm_kpi.capture()", tgname)));
	recordDependencyOn(&trigger, &function, DEPENDENCY_AUTO);
	CommandCounterIncrement();
	PG_RETURN_VOID();
}
