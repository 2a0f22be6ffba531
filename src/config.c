/* config.c: settings shared by every KPI: the time zone of day, week, month and quarter buckets. */
#include "postgres.h"

#include "pgtime.h"
#include "utils/guc.h"

#include "config.h"

/* crm_kpi.timezone: the zone KPI periods are taken in. */
static char *config_timezone = NULL;

/* Accept only a time zone PostgreSQL knows (a name such as 'Europe/Paris', or 'UTC') */
static bool
config_check_timezone(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0' || pg_tzset(*newval) == NULL)
	{
		GUC_check_errdetail("\"%s\" is not a time zone name known to PostgreSQL (see pg_timezone_names).",
							*newval ? *newval : "");
		return false;
	}
	return true;
}

/* Define the shared settings */
void
ConfigInit(void)
{
	DefineCustomStringVariable("crm_kpi.timezone",
							   "Time zone in which KPI days, weeks, months, quarters and years are taken.",
							   "A time zone name such as 'UTC' or 'America/New_York'.",
							   &config_timezone, "UTC", PGC_USERSET, 0,
							   config_check_timezone, NULL, NULL);
}
