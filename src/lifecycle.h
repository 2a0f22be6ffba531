/* lifecycle.h: the customer lifecycle: legal moves, classification from activity, its GUCs, funnel counts. */
#ifndef CRM_KPI_LIFECYCLE_H
#define CRM_KPI_LIFECYCLE_H

#include "utils/guc.h"

extern void LifecycleInit(void);

/* GUC check hook for positive intervals such as '90 days' (shared with other interval settings) */
extern bool lifecycle_check_interval(char **newval, void **extra, GucSource source);

#endif
