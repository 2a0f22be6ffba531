/* engine.h: settings of the KPI-table engine: SLA, warning factor, batch size, history cap. */
#ifndef CRM_KPI_ENGINE_H
#define CRM_KPI_ENGINE_H

extern void EngineInit(void);

#endif
