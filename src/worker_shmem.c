/* worker_shmem.c: what backends share with the workers: slots per database, wake-ups, the SQL view of them. */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "worker.h"

WorkerShared *worker_shared = NULL;
char		worker_activity_prefix[64] = "";
bool		worker_enabled = true;
int			worker_naptime_ms = 1000;

static shmem_request_hook_type worker_prev_shmem_request = NULL;
static shmem_startup_hook_type worker_prev_shmem_startup = NULL;
static ProcessUtility_hook_type worker_prev_utility = NULL;
static bool worker_wake_pending = false;
static bool worker_launch_pending = false;
static bool worker_callback_registered = false;

/* Ask for the shared state and its lock */
static void
worker_shmem_request(void)
{
	if (worker_prev_shmem_request)
		worker_prev_shmem_request();
	RequestAddinShmemSpace(MAXALIGN(sizeof(WorkerShared)));
	RequestNamedLWLockTranche("crm_kpi", 1);
}

/* Create or attach to the shared state */
static void
worker_shmem_startup(void)
{
	bool		found;

	if (worker_prev_shmem_startup)
		worker_prev_shmem_startup();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	worker_shared = ShmemInitStruct("crm_kpi workers", sizeof(WorkerShared), &found);
	if (!found)
	{
		memset(worker_shared, 0, sizeof(WorkerShared));
		worker_shared->lock = &(GetNamedLWLockTranche("crm_kpi"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* The slot of a database (taking a free one when create); caller holds the lock exclusively to create */
WorkerSlot *
worker_slot_for(Oid dboid, bool create)
{
	int			i;
	WorkerSlot *free_slot = NULL;

	for (i = 0; i < WORKER_MAX_DATABASES; i++)
	{
		WorkerSlot *slot = &worker_shared->slots[i];

		if (slot->dboid == dboid)
			return slot;
		if (free_slot == NULL && slot->dboid == InvalidOid)
			free_slot = slot;
	}
	if (!create || free_slot == NULL)
		return NULL;
	memset(free_slot, 0, sizeof(WorkerSlot));
	free_slot->dboid = dboid;
	return free_slot;
}

/* Set the latch of a database's worker, if one runs */
void
worker_wake(Oid dboid)
{
	WorkerSlot *slot;

	if (worker_shared == NULL)
		return;
	LWLockAcquire(worker_shared->lock, LW_SHARED);
	slot = worker_slot_for(dboid, false);
	if (slot != NULL && slot->pid != 0 && slot->latch != NULL)
		SetLatch(slot->latch);
	LWLockRelease(worker_shared->lock);
}

/* Set the launcher's latch */
void
worker_wake_launcher(void)
{
	if (worker_shared != NULL && worker_shared->launcher_latch != NULL)
		SetLatch(worker_shared->launcher_latch);
}

/* Mark this database as wanting a worker and wake the launcher */
static void
worker_want_here(void)
{
	WorkerSlot *slot;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	slot = worker_slot_for(MyDatabaseId, true);
	if (slot != NULL)
	{
		slot->wanted = true;
		if (slot->state == WORKER_NO_EXTENSION)
			slot->state = WORKER_NONE;
	}
	LWLockRelease(worker_shared->lock);
	worker_wake_launcher();
}

/* At commit: wake the worker of a transaction that queued stale keys; ask for a worker after CREATE EXTENSION */
static void
worker_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		/* A disabled worker is not woken (each wake-up costs it a look at the catalogue) */
		if (worker_wake_pending && worker_enabled)
			worker_wake(MyDatabaseId);
		if (worker_launch_pending)
			worker_want_here();
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		worker_wake_pending = false;
		worker_launch_pending = false;
	}
}

/* Register the commit callback once per backend */
static void
worker_register_callback(void)
{
	if (!worker_callback_registered)
	{
		RegisterXactCallback(worker_xact_callback, NULL);
		worker_callback_registered = true;
	}
}

/* Arrange for the worker to be woken when the current transaction commits */
void
worker_wake_after_commit(void)
{
	if (worker_shared == NULL)
		return;
	worker_register_callback();
	worker_wake_pending = true;
}

/* Stop a database's worker before DROP DATABASE, which refuses to drop a database in use */
void
worker_stop_for_drop(Oid dboid)
{
	WorkerSlot *slot;
	pid_t		pid = 0;
	int			waited_ms;

	if (worker_shared == NULL || !OidIsValid(dboid))
		return;
	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	slot = worker_slot_for(dboid, false);
	if (slot != NULL)
	{
		pid = slot->pid;
		slot->wanted = false;
		slot->state = WORKER_NO_EXTENSION;	/* the launcher must not start it again */
	}
	LWLockRelease(worker_shared->lock);
	if (pid == 0)
		return;
	kill(pid, SIGTERM);
	for (waited_ms = 0; waited_ms < 10000; waited_ms += 10)
	{
		bool		gone;

		LWLockAcquire(worker_shared->lock, LW_SHARED);
		slot = worker_slot_for(dboid, false);
		gone = slot == NULL || slot->pid != pid;
		LWLockRelease(worker_shared->lock);
		if (gone)
			break;
		CHECK_FOR_INTERRUPTS();
		pg_usleep(10000L);
	}
}

/* ProcessUtility hook: DROP DATABASE stops that database's worker first */
static void
worker_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
			   ProcessUtilityContext context, ParamListInfo params,
			   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (IsA(pstmt->utilityStmt, DropdbStmt))
		worker_stop_for_drop(get_database_oid(((DropdbStmt *) pstmt->utilityStmt)->dbname, true));
	if (worker_prev_utility)
		worker_prev_utility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

/* Install the hooks (only when preloaded) */
void
worker_shmem_init(void)
{
	worker_prev_shmem_request = shmem_request_hook;
	shmem_request_hook = worker_shmem_request;
	worker_prev_shmem_startup = shmem_startup_hook;
	shmem_startup_hook = worker_shmem_startup;
	worker_prev_utility = ProcessUtility_hook;
	ProcessUtility_hook = worker_utility;
}

PG_FUNCTION_INFO_V1(crm_kpi_request_refresh);
/* Wake this database's worker now; false when no worker runs */
Datum
crm_kpi_request_refresh(PG_FUNCTION_ARGS)
{
	WorkerSlot *slot;
	bool		running = false;

	if (worker_shared == NULL)
		PG_RETURN_BOOL(false);
	LWLockAcquire(worker_shared->lock, LW_SHARED);
	slot = worker_slot_for(MyDatabaseId, false);
	if (slot != NULL && slot->pid != 0 && slot->latch != NULL)
	{
		SetLatch(slot->latch);
		running = slot->state != WORKER_DISABLED && slot->state != WORKER_NO_EXTENSION;
	}
	LWLockRelease(worker_shared->lock);
	PG_RETURN_BOOL(running);
}

PG_FUNCTION_INFO_V1(crm_kpi_worker_created);
/* The extension is being created here: have the launcher start a worker once this transaction commits */
Datum
crm_kpi_worker_created(PG_FUNCTION_ARGS)
{
	if (worker_shared == NULL)
		PG_RETURN_BOOL(false);
	worker_register_callback();
	worker_launch_pending = true;
	PG_RETURN_BOOL(true);
}

static const char *const worker_state_names[] = {
	"none", "starting", "idle", "refreshing", "backoff", "disabled", "no extension"
};

PG_FUNCTION_INFO_V1(crm_kpi_worker_status);
/* This database's worker: pid, state, started, last run, last error (one row; pid NULL when none runs) */
Datum
crm_kpi_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {true, false, true, true, true, true};
	WorkerSlot	copy;
	WorkerSlot *slot = NULL;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	memset(&copy, 0, sizeof(copy));
	if (worker_shared != NULL)
	{
		LWLockAcquire(worker_shared->lock, LW_SHARED);
		slot = worker_slot_for(MyDatabaseId, false);
		if (slot != NULL)
			copy = *slot;
		LWLockRelease(worker_shared->lock);
	}
	if (worker_shared == NULL)
		values[1] = CStringGetTextDatum("not preloaded");
	else
		values[1] = CStringGetTextDatum(worker_state_names[copy.pid != 0 || copy.state == WORKER_NO_EXTENSION
															? copy.state : WORKER_NONE]);
	if (copy.pid != 0)
	{
		values[0] = Int32GetDatum(copy.pid);
		nulls[0] = false;
	}
	if (copy.started_at != 0)
	{
		values[2] = TimestampTzGetDatum(copy.started_at);
		nulls[2] = false;
	}
	if (copy.last_run_at != 0)
	{
		values[3] = TimestampTzGetDatum(copy.last_run_at);
		nulls[3] = false;
	}
	if (copy.last_error[0] != '\0')
	{
		values[4] = CStringGetTextDatum(copy.last_error);
		nulls[4] = false;
		values[5] = TimestampTzGetDatum(copy.last_error_at);
		nulls[5] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(crm_kpi_report_activity);
/* In a refresh worker, show what it is doing in pg_stat_activity.query (after its batch number); elsewhere do nothing */
Datum
crm_kpi_report_activity(PG_FUNCTION_ARGS)
{
	if (MyBackendType == B_BG_WORKER && worker_activity_prefix[0] != '\0')
		pgstat_report_activity(STATE_RUNNING, psprintf("%s: %s", worker_activity_prefix,
													   text_to_cstring(PG_GETARG_TEXT_PP(0))));
	PG_RETURN_VOID();
}
