# crm_kpi: PGXS build. Run `make` then `make install`; the test and demo
# scripts in scripts/ do this for you on a private cluster.

EXTENSION = crm_kpi
# The one version variable: read from the control file so the two never differ.
EXTVERSION = $(shell sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" $(EXTENSION).control)

MODULE_big = crm_kpi
# One C file per concept; crm_kpi.c holds _PG_init only.
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# The install script is assembled from the SQL files that sit beside the C
# they declare, in this dependency order.
SQL_PARTS = $(wildcard src/schema.sql src/info.sql src/periods.sql src/counters.sql src/nps.sql src/csat.sql src/rate.sql \
	src/purchase.sql src/sketch.sql src/lifecycle.sql \
	src/sources.sql src/bind.sql \
	src/kpi_tables.sql src/kpi_views.sql src/capture.sql src/bind_watch.sql src/worker.sql src/kpi_fresh.sql src/refresh_registry.sql src/staging.sql src/refresh.sql src/deltas.sql src/verify.sql src/reports.sql src/quality.sql \
	src/reference_schema.sql src/sample_data.sql src/odoo.sql src/reader.sql)
# Upgrade scripts from each released version to the next (crm_kpi--<from>--<to>.sql), by wildcard; and the
# install script of the first release, assembled from its SQL files frozen as they shipped (src/upgrade/0.1.0/).
# A later earlier version installs as 0.1.0 and the update chain up to it, so that the chain from every earlier
# version can be installed and walked (test/tap/009_dump_restore.pl).
SQL_PARTS_0.1.0 = $(addprefix src/upgrade/0.1.0/,schema.sql info.sql periods.sql counters.sql nps.sql csat.sql rate.sql \
	purchase.sql sketch.sql lifecycle.sql sources.sql bind.sql \
	kpi_tables.sql kpi_views.sql capture.sql bind_watch.sql worker.sql kpi_fresh.sql refresh.sql deltas.sql verify.sql reports.sql quality.sql \
	reference_schema.sql sample_data.sql odoo.sql reader.sql)
DATA_built = $(EXTENSION)--$(EXTVERSION).sql $(EXTENSION)--0.1.0.sql
DATA = $(wildcard src/upgrade/$(EXTENSION)--*--*.sql)

# pg_regress (sql/ + expected/), isolation (test/isolation), TAP (test/tap).
REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=.
ISOLATION = $(patsubst test/isolation/specs/%.spec,%,$(sort $(wildcard test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test/isolation
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/tap/*.pl))
PROVE_FLAGS = --timer

PG_CPPFLAGS = -DCRM_KPI_VERSION=\"$(EXTVERSION)\"
# -Wextra minus the warnings PostgreSQL's own headers and fmgr conventions trip
# (unused fcinfo, designated initializers, signed/unsigned mixes in array.h).
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare

EXTRA_CLEAN = $(DATA_built) output_iso tmp_check tmp_check_iso results regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS) $(EXTENSION).control
	{ printf '%s\n' '-- $(EXTENSION) $(EXTVERSION): generated from $(SQL_PARTS); edit those, not this file.' \
	         '\echo Use "CREATE EXTENSION $(EXTENSION)" to load this file. \quit'; \
	  cat $(SQL_PARTS); } > $@

$(EXTENSION)--0.1.0.sql: $(SQL_PARTS_0.1.0)
	{ printf '%s\n' '-- $(EXTENSION) 0.1.0, as released: generated from src/upgrade/0.1.0/*.sql, which never change.' \
	         '\echo Use "CREATE EXTENSION $(EXTENSION) VERSION '"'"'0.1.0'"'"'" to load this file. \quit'; \
	  cat $^; } > $@

# Every object is rebuilt when a header changes (PGXS tracks no header dependencies here), and the one that
# holds the version when the control file changes.
$(OBJS): $(wildcard src/*.h)
src/info.o src/info.bc: $(EXTENSION).control

.PHONY: test demo bench
test:
	bash scripts/test.sh
demo:
	bash scripts/demo.sh
bench:
	bash scripts/bench.sh
