/* info.c: what the loaded library knows about itself (version, how it was loaded). */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "info.h"

#ifndef CRM_KPI_VERSION
#error "CRM_KPI_VERSION must be defined by the build"
#endif

/* Whether this library was loaded through shared_preload_libraries. */
static bool info_preloaded = false;

/*
 * Record how the library was loaded and reserve the GUC prefix.  Called last
 * from _PG_init: reserving the prefix removes placeholders for names no
 * module has defined, so every module must have defined its GUCs before.
 */
void
InfoInit(void)
{
	info_preloaded = process_shared_preload_libraries_in_progress;
	MarkGUCPrefixReserved("crm_kpi");
}

PG_FUNCTION_INFO_V1(crm_kpi_library_version);
/* Return the version the loaded shared library was built as */
Datum
crm_kpi_library_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(CRM_KPI_VERSION));
}

PG_FUNCTION_INFO_V1(crm_kpi_preloaded);
/* Report whether the library came from shared_preload_libraries */
Datum
crm_kpi_preloaded(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(info_preloaded);
}
