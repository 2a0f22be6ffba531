/* config.h: settings shared by every KPI: the time zone of day, week, month and quarter buckets. */
#ifndef CRM_KPI_CONFIG_H
#define CRM_KPI_CONFIG_H

extern void ConfigInit(void);

#endif
