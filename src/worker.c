/* worker.c: the launcher (one per server) and the refresh worker (one per database with the extension). */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "worker.h"

PGDLLEXPORT void crm_kpi_launcher_main(Datum arg);
PGDLLEXPORT void crm_kpi_worker_main(Datum arg);

/* Set by SIGTERM; while a refresh runs, SIGTERM also cancels its statement at once */
static volatile sig_atomic_t worker_got_sigterm = false;
static volatile sig_atomic_t worker_in_refresh = false;

/*
 * SIGTERM: during a refresh, cancel the running statement (its transaction is
 * rolled back, then the worker exits); otherwise exit at the next wake-up.
 */
static void
worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	worker_got_sigterm = true;
	SetLatch(MyLatch);
	if (worker_in_refresh)
		StatementCancelHandler(postgres_signal_arg);
	errno = save_errno;
}

/* Between two rounds: exit on SIGTERM, reload the configuration on SIGHUP */
static void
worker_handle_signals(void)
{
	CHECK_FOR_INTERRUPTS();
	if (worker_got_sigterm)
		proc_exit(0);
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/* The longest wait after errors in a row */
#define WORKER_MAX_BACKOFF_MS 60000
/* How often the launcher looks for databases even without being woken */
#define LAUNCHER_RESCAN_MS 60000

/* Define the worker GUCs and, when preloaded, register the launcher */
void
WorkerInit(void)
{
	BackgroundWorker bgw;

	DefineCustomBoolVariable("crm_kpi.enabled",
							 "Whether the background workers keep the KPI tables fresh.",
							 NULL, &worker_enabled, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("crm_kpi.naptime",
							"How long a refresh worker sleeps when no change wakes it.",
							NULL, &worker_naptime_ms, 1000, 10, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;
	worker_shmem_init();

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;	/* never on a standby */
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "crm_kpi");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "crm_kpi_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "crm_kpi launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "crm_kpi launcher");
	RegisterBackgroundWorker(&bgw);
}

/* Start the refresh worker of a database; false when the server has no free worker slot */
static bool
launcher_start_worker(Oid dboid)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher restarts it */
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "crm_kpi");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "crm_kpi_worker_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "crm_kpi worker for database %u", dboid);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "crm_kpi worker");
	bgw.bgw_main_arg = ObjectIdGetDatum(dboid);
	bgw.bgw_notify_pid = MyProcPid;
	return RegisterDynamicBackgroundWorker(&bgw, &handle);
}

/* The databases a worker may connect to */
static List *
launcher_databases(void)
{
	List	   *result = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	MemoryContext caller = CurrentMemoryContext;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		if (db->datallowconn && !db->datistemplate)
		{
			MemoryContext old = MemoryContextSwitchTo(caller);

			result = lappend_oid(result, db->oid);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return result;
}

/*
 * Start a worker for each database that needs one: on a full scan every
 * database not known to lack the extension, otherwise those marked wanted or
 * whose worker stopped unexpectedly.
 */
static void
launcher_start_needed(bool full_scan)
{
	List	   *databases = full_scan ? launcher_databases() : NIL;
	ListCell   *lc;
	Oid			to_start[WORKER_MAX_DATABASES];
	int			n = 0,
				i;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	foreach(lc, databases)
	{
		WorkerSlot *slot = worker_slot_for(lfirst_oid(lc), true);

		if (slot == NULL)
			ereport(WARNING,
					(errmsg("crm_kpi: more than %d databases; database %u gets no worker",
							WORKER_MAX_DATABASES, lfirst_oid(lc))));
	}
	for (i = 0; i < WORKER_MAX_DATABASES; i++)
	{
		WorkerSlot *slot = &worker_shared->slots[i];

		if (slot->dboid == InvalidOid || slot->pid != 0 || slot->state == WORKER_STARTING)
			continue;
		if (slot->state == WORKER_NO_EXTENSION && !slot->wanted)
			continue;
		slot->state = WORKER_STARTING;
		slot->wanted = false;
		slot->started_at = GetCurrentTimestamp();
		to_start[n++] = slot->dboid;
	}
	LWLockRelease(worker_shared->lock);

	for (i = 0; i < n; i++)
		if (!launcher_start_worker(to_start[i]))
		{
			LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
			worker_slot_for(to_start[i], false)->state = WORKER_NONE;
			LWLockRelease(worker_shared->lock);
			ereport(LOG,
					(errmsg("crm_kpi: no free background worker slot for database %u; will retry",
							to_start[i]),
					 errhint("Raise max_worker_processes.")));
		}
	list_free(databases);
}

/* Forget workers that exited without clearing their slot (a crash), so that they are started again */
static void
launcher_reap(void)
{
	int			i;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < WORKER_MAX_DATABASES; i++)
	{
		WorkerSlot *slot = &worker_shared->slots[i];

		if (slot->pid != 0 && kill(slot->pid, 0) != 0)
		{
			slot->pid = 0;
			slot->latch = NULL;
			slot->state = WORKER_NONE;
		}
		/* a start that never reported (no free slot, or died at once) is retried */
		if (slot->state == WORKER_STARTING && slot->pid == 0 &&
			TimestampDifferenceExceeds(slot->started_at, GetCurrentTimestamp(), 10000))
			slot->state = WORKER_NONE;
	}
	LWLockRelease(worker_shared->lock);
}

/* The launcher: keeps one refresh worker per database with the extension */
void
crm_kpi_launcher_main(Datum arg)
{
	TimestampTz last_scan = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, worker_sigterm);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("crm_kpi launcher");

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	worker_shared->launcher_pid = MyProcPid;
	worker_shared->launcher_latch = MyLatch;
	LWLockRelease(worker_shared->lock);

	for (;;)
	{
		bool		full_scan;

		worker_handle_signals();
		launcher_reap();
		full_scan = last_scan == 0 ||
			TimestampDifferenceExceeds(last_scan, GetCurrentTimestamp(), LAUNCHER_RESCAN_MS);
		launcher_start_needed(full_scan);
		if (full_scan)
			last_scan = GetCurrentTimestamp();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* Update this worker's slot */
static void
worker_set_state(WorkerState state, const char *error)
{
	WorkerSlot *slot;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	slot = worker_slot_for(MyDatabaseId, false);
	if (slot != NULL)
	{
		slot->state = state;
		if (state == WORKER_IDLE || state == WORKER_BACKOFF)
			slot->last_run_at = GetCurrentTimestamp();
		if (error != NULL)
		{
			strlcpy(slot->last_error, error, WORKER_ERROR_LENGTH);
			slot->last_error_at = GetCurrentTimestamp();
			slot->errors_in_a_row++;
		}
		else if (state == WORKER_IDLE)
			slot->errors_in_a_row = 0;
	}
	LWLockRelease(worker_shared->lock);
}

/* At exit, free the slot for the launcher */
static void
worker_detach(int code, Datum arg)
{
	WorkerSlot *slot;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	slot = worker_slot_for(DatumGetObjectId(arg), false);
	if (slot != NULL && slot->pid == MyProcPid)
	{
		slot->pid = 0;
		slot->latch = NULL;
		if (slot->state != WORKER_NO_EXTENSION)
			slot->state = WORKER_NONE;
	}
	LWLockRelease(worker_shared->lock);
	worker_wake_launcher();
}

/*
 * One batch in its own transaction: returns the keys still pending (-1 when
 * the extension is gone, 0 when it took none: those pending belong to tables
 * it holds back after a failure); *error gets the refresh's error, if any.
 */
static int64
worker_run_batch(int batch, char **error)
{
	int64		pending = 0;
	bool		isnull;
	char		activity[128];
	int32		batches;
	char	   *mode;

	*error = NULL;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* A snapshot per statement, whatever default_transaction_isolation says: refresh() needs it. */
	XactIsoLevel = XACT_READ_COMMITTED;
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'crm_kpi'", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look for the crm_kpi extension");
	if (SPI_processed == 0)
		pending = -1;
	else
	{
		snprintf(activity, sizeof(activity), "crm_kpi: refresh batch %d", batch);
		strlcpy(worker_activity_prefix, activity, sizeof(worker_activity_prefix));
		pgstat_report_activity(STATE_RUNNING, activity);
		if (SPI_execute("SELECT pending_after, error, batches, mode FROM crm_kpi.refresh(max_batches => 1)", false, 1) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "crm_kpi.refresh() returned no row");
		pending = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		if (isnull)
			pending = 0;
		batches = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
		mode = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4);
		/* a run that neither took keys nor rebuilt can do no more now: the keys left wait for a retry */
		if (batches == 0 && (mode == NULL || strcmp(mode, "rebuild") != 0))
			pending = 0;
		*error = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		if (*error != NULL)
			*error = MemoryContextStrdup(TopMemoryContext, *error);
		snprintf(activity, sizeof(activity), "crm_kpi: refresh batch %d done, " INT64_FORMAT " keys pending",
				 batch, pending);
		pgstat_report_activity(STATE_RUNNING, activity);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return pending;
}

/* Refresh until nothing is pending; returns the error of the last batch, or NULL. Exits when the extension is gone. */
static char *
worker_refresh_all(void)
{
	MemoryContext loop_context = CurrentMemoryContext;
	volatile int batch = 1;
	char	   *volatile error = NULL;

	for (;;)
	{
		int64		pending;

		/*
		 * A SIGTERM sets the flag before it cancels: exit here, between
		 * committed batches, and let a cancel it left pending be raised only
		 * inside the PG_TRY below (raised out here, it would end the worker
		 * with an error).
		 */
		if (worker_got_sigterm)
			proc_exit(0);
		PG_TRY();
		{
			char	   *batch_error;

			CHECK_FOR_INTERRUPTS();
			pending = worker_run_batch(batch, &batch_error);
			error = batch_error;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(loop_context);
			edata = CopyErrorData();
			FlushErrorState();
			AbortCurrentTransaction();
			if (worker_got_sigterm)
				proc_exit(0);	/* the cancel was our SIGTERM: the batch is rolled back, nothing is lost */
			error = psprintf("%s: %s", unpack_sql_state(edata->sqlerrcode), edata->message);
			ereport(LOG, (errmsg("crm_kpi worker: refresh failed: %s", error)));
			FreeErrorData(edata);
			return error;
		}
		PG_END_TRY();
		if (worker_got_sigterm)
			proc_exit(0);		/* the batch committed; a cancel may be pending */
		if (pending < 0)
		{
			worker_set_state(WORKER_NO_EXTENSION, NULL);
			ereport(LOG, (errmsg("crm_kpi worker: the extension is not installed in this database; stopping")));
			proc_exit(0);
		}
		if (error != NULL)
		{
			ereport(LOG, (errmsg("crm_kpi worker: refresh failed: %s", error)));
			return error;
		}
		if (pending == 0)
			return NULL;
		batch++;
	}
}

/* Whether this database has the extension */
static bool
worker_extension_exists(void)
{
	bool		found;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	found = SPI_execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'crm_kpi'", true, 1) == SPI_OK_SELECT
		&& SPI_processed > 0;
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return found;
}

/* A database's refresh worker */
void
crm_kpi_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	WorkerSlot *slot;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, worker_sigterm);
	BackgroundWorkerUnblockSignals();

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	slot = worker_slot_for(dboid, true);
	if (slot == NULL || (slot->pid != 0 && kill(slot->pid, 0) == 0))
	{
		LWLockRelease(worker_shared->lock);
		proc_exit(0);			/* no slot, or another worker already serves this database */
	}
	slot->pid = MyProcPid;
	slot->latch = MyLatch;
	slot->state = WORKER_IDLE;
	slot->started_at = GetCurrentTimestamp();
	LWLockRelease(worker_shared->lock);
	before_shmem_exit(worker_detach, ObjectIdGetDatum(dboid));

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("crm_kpi worker");

	for (;;)
	{
		long		delay_ms;

		worker_handle_signals();
		delay_ms = worker_naptime_ms;
		if (!worker_enabled)
		{
			if (!worker_extension_exists())
			{
				worker_set_state(WORKER_NO_EXTENSION, NULL);
				proc_exit(0);
			}
			worker_set_state(WORKER_DISABLED, NULL);
			pgstat_report_activity(STATE_IDLE, "crm_kpi: disabled (crm_kpi.enabled = off)");
		}
		else
		{
			char	   *error;

			worker_set_state(WORKER_REFRESHING, NULL);
			worker_in_refresh = true;
			if (worker_got_sigterm)
				proc_exit(0);
			error = worker_refresh_all();
			worker_in_refresh = false;
			if (worker_got_sigterm)
				proc_exit(0);	/* before a cancel it may have left pending is raised */
			if (error == NULL)
			{
				worker_set_state(WORKER_IDLE, NULL);
				pgstat_report_activity(STATE_IDLE, "crm_kpi: waiting for changes");
			}
			else
			{
				int			errors;

				worker_set_state(WORKER_BACKOFF, error);
				LWLockAcquire(worker_shared->lock, LW_SHARED);
				errors = worker_slot_for(dboid, false)->errors_in_a_row;
				LWLockRelease(worker_shared->lock);
				/* a growing delay after errors in a row: naptime x 2^errors, capped */
				delay_ms = Min((long) WORKER_MAX_BACKOFF_MS, (long) worker_naptime_ms << Min(errors, 16));
				pgstat_report_activity(STATE_IDLE, "crm_kpi: backing off after an error");
				pfree(error);
			}
		}
		pgstat_report_stat(true);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 delay_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
