/* worker.h: the background workers: a launcher and one refresh worker per database with the extension. */
#ifndef CRM_KPI_WORKER_H
#define CRM_KPI_WORKER_H

#include "datatype/timestamp.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

#define WORKER_MAX_DATABASES 64
#define WORKER_ERROR_LENGTH 512

/* What a database's refresh worker is doing */
typedef enum WorkerState
{
	WORKER_NONE = 0,			/* no worker for this database */
	WORKER_STARTING,
	WORKER_IDLE,
	WORKER_REFRESHING,
	WORKER_BACKOFF,				/* waiting longer after an error */
	WORKER_DISABLED,			/* crm_kpi.enabled is off */
	WORKER_NO_EXTENSION			/* the database does not have crm_kpi: nothing to do */
} WorkerState;

/* One database's slot in shared memory */
typedef struct WorkerSlot
{
	Oid			dboid;			/* InvalidOid: free slot */
	pid_t		pid;			/* the worker's pid, 0 when none runs */
	Latch	   *latch;			/* the worker's latch, to wake it */
	WorkerState state;
	bool		wanted;			/* the extension was created here: start a worker */
	TimestampTz started_at;
	TimestampTz last_run_at;	/* end of the last refresh batch */
	TimestampTz last_error_at;
	int			errors_in_a_row;
	char		last_error[WORKER_ERROR_LENGTH];
} WorkerSlot;

typedef struct WorkerShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	WorkerSlot	slots[WORKER_MAX_DATABASES];
} WorkerShared;

extern WorkerShared *worker_shared;
extern char worker_activity_prefix[64];
extern bool worker_enabled;
extern int	worker_naptime_ms;

extern void WorkerInit(void);
extern void worker_shmem_init(void);
extern WorkerSlot *worker_slot_for(Oid dboid, bool create);
extern void worker_wake(Oid dboid);
extern void worker_wake_launcher(void);
extern void worker_wake_after_commit(void);
extern void worker_stop_for_drop(Oid dboid);

#endif
