/* crm_kpi.c: the module's entry point; _PG_init only calls each module's init. */
#include "postgres.h"

#include "fmgr.h"

#include "config.h"
#include "engine.h"
#include "info.h"
#include "lifecycle.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Initialize every module of the library */
void
_PG_init(void)
{
	ConfigInit();
	LifecycleInit();
	EngineInit();
	WorkerInit();
	/* InfoInit reserves the GUC prefix, so it comes after every module that defines GUCs. */
	InfoInit();
}
