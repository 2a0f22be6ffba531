/* lifecycle.h: the customer lifecycle: legal moves, classification from activity, its GUCs, funnel counts. */
#ifndef CRM_KPI_LIFECYCLE_H
#define CRM_KPI_LIFECYCLE_H

extern void LifecycleInit(void);

#endif
