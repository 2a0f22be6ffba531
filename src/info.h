/* info.h: what the loaded library knows about itself (version, how it was loaded). */
#ifndef CRM_KPI_INFO_H
#define CRM_KPI_INFO_H

extern void InfoInit(void);

#endif
