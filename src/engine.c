/* engine.c: settings of the KPI-table engine: SLA, warning factor, batch size, history cap. */
#include "postgres.h"

#include <float.h>
#include <limits.h>

#include "utils/guc.h"

#include "engine.h"
#include "lifecycle.h"

static char *engine_resolution_sla = NULL;
static double engine_warning_factor = 2.0;
static int	engine_batch_size = 10000;
static int	engine_history_limit = 1000;

/* Define the engine's GUCs */
void
EngineInit(void)
{
	DefineCustomStringVariable("crm_kpi.resolution_sla",
							   "Resolution time within which a ticket counts as resolved within SLA.",
							   "A positive interval; changing it marks the KPI tables as needing a rebuild.",
							   &engine_resolution_sla, "72 hours", PGC_USERSET, 0,
							   lifecycle_check_interval, NULL, NULL);
	DefineCustomRealVariable("crm_kpi.warning_factor",
							 "Churn early warning: days since the last order above this many mean gaps raise the flag.",
							 NULL,
							 &engine_warning_factor, 2.0, 1.0, 1000.0, PGC_USERSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("crm_kpi.refresh_batch_size",
							"Stale keys (customers, or days or months of a family) the refresh engine recomputes per batch.",
							NULL,
							&engine_batch_size, 10000, 1, 10000000, PGC_USERSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("crm_kpi.history_limit",
							"Refresh runs kept in crm_kpi.refresh_history; older runs are deleted.",
							NULL,
							&engine_history_limit, 1000, 1, INT_MAX, PGC_SUSET, 0,
							NULL, NULL, NULL);
}
