#!/usr/bin/env bash
# demo.sh: the main job. Installs what it needs, builds and installs crm_kpi,
# starts a private PostgreSQL cluster with the preload on a free localhost
# port, creates the extension in database "crm", the reference CRM schema and
# seeded sample data (with progress), prints the KPI report and the lines that
# start Grafana with the dashboards of grafana/ over it, and leaves the cluster
# running for psql and Grafana.
#
#   bash scripts/demo.sh          start (or restart) the demo
#   bash scripts/demo.sh status   is it running, and how to connect
#   bash scripts/demo.sh stop     stop it and remove its files
#
# It only ever touches the cluster it created (marked by a file in its data
# directory), under $CRM_KPI_DEMO_DIR (default /var/tmp/crm_kpi-demo).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEMO=${CRM_KPI_DEMO_DIR:-/var/tmp/crm_kpi-demo}
STAGE=$DEMO
DB=crm
READER=crm_kpi_demo
# Size and seed of the sample data (customers; about 3 orders per customer).
DEMO_CUSTOMERS=${CRM_KPI_DEMO_CUSTOMERS:-20000}
DEMO_SEED=${CRM_KPI_DEMO_SEED:-42}

is_ours() { [ -f "$DEMO/data/crm_kpi.private-cluster" ]; }

demo_stop() {
	if [ -e "$DEMO" ] && ! is_ours; then
		die "$DEMO exists but is not a crm_kpi demo cluster; not touching it"
	fi
	if [ -e "$DEMO" ]; then
		cluster_stop "$DEMO"
		rm -rf "$DEMO"
		say "demo stopped and removed ($DEMO)"
	else
		say "no demo running"
	fi
}

demo_info() {
	local port password g=$DEMO/grafana
	port=$(cat "$DEMO/port")
	password=$(cat "$DEMO/password")
	cat <<EOF

crm_kpi demo is running (PostgreSQL $PG_MAJOR, data in $DEMO/data, log $DEMO/server.log).

  psql:     psql "host=$DEMO port=$port dbname=$DB user=postgres"
            (as root or postgres, over the cluster's private socket)
  reader:   source $DEMO/env && psql
            (the read-only role $READER, over TCP on localhost)
  stop:     bash scripts/demo.sh stop

Grafana (10.3 or later) with the data source and the six dashboards of grafana/, reading
database $DB on localhost:$port as the read-only role $READER. Either Grafana installed
from its packages (files in $g; the environment is also in $g/env):

  CRM_KPI_PGHOST=localhost CRM_KPI_PGPORT=$port CRM_KPI_PGDATABASE=$DB \\
  CRM_KPI_PGUSER=$READER CRM_KPI_PGPASSWORD=$password \\
  GF_PATHS_PROVISIONING=$g/provisioning GF_PATHS_DATA=$g/data GF_PATHS_LOGS=$g/log \\
  grafana-server --homepath /usr/share/grafana

or Docker (host network, so that localhost is this machine):

  docker run --rm --network host \\
    -v $SRC_ROOT/grafana/provisioning/datasources:/etc/grafana/provisioning/datasources:ro \\
    -v $SRC_ROOT/grafana/provisioning/dashboards:/etc/grafana/provisioning/dashboards:ro \\
    -v $SRC_ROOT/grafana/dashboards:/var/lib/grafana/dashboards/crm_kpi:ro \\
    -e CRM_KPI_PGHOST=localhost -e CRM_KPI_PGPORT=$port -e CRM_KPI_PGDATABASE=$DB \\
    -e CRM_KPI_PGUSER=$READER -e CRM_KPI_PGPASSWORD=$password \\
    grafana/grafana

then open http://localhost:3000 (admin / admin): the dashboards are in the folder "CRM KPIs".
EOF
}

# Grafana's files for the demo in $DEMO/grafana: the provisioning files of grafana/ (the
# dashboard provider pointed at a copy of the dashboards there), and the environment
# that points the data source at this cluster.
demo_grafana_files() {
	local port=$1 password=$2 g=$DEMO/grafana
	mkdir -p "$g/provisioning/datasources" "$g/provisioning/dashboards" "$g/dashboards"
	cp "$SRC_ROOT/grafana/provisioning/datasources/crm_kpi.yaml" "$g/provisioning/datasources/"
	sed "s#^\( *path: \).*#\1$g/dashboards#" "$SRC_ROOT/grafana/provisioning/dashboards/crm_kpi.yaml" \
		>"$g/provisioning/dashboards/crm_kpi.yaml"
	cp "$SRC_ROOT"/grafana/dashboards/*.json "$g/dashboards/"
	(umask 077 && printf 'export CRM_KPI_PGHOST=localhost CRM_KPI_PGPORT=%s CRM_KPI_PGDATABASE=%s CRM_KPI_PGUSER=%s CRM_KPI_PGPASSWORD=%s\n' \
		"$port" "$DB" "$READER" "$password" >"$g/env")
}

demo_start() {
	[ "$(id -u)" -eq 0 ] || die "run the demo as root (it installs packages and runs PostgreSQL as '$PG_OS_USER')"
	ensure_packages "${DEPS_BUILD[@]}"
	demo_stop
	mkdir -p "$DEMO"
	chown "$PG_OS_USER:" "$DEMO"
	chmod 0755 "$DEMO"
	trap 'say "demo failed; cleaning up"; cluster_stop "$DEMO"; rm -rf "$DEMO"' ERR

	hold_install_lock
	stage_tree
	build_and_install
	rm -rf "$DEMO/src"

	local port password
	port=$(free_port 54400)
	password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
	say "starting a private cluster on localhost:$port"
	cluster_start "$DEMO" "$port" localhost </dev/null
	# The private socket is trusted (only root and $PG_OS_USER reach it);
	# TCP on localhost asks for a password.
	printf '%s\n' 'local all all trust' 'host all all 127.0.0.1/32 scram-sha-256' 'host all all ::1/128 scram-sha-256' \
		| as_pg tee "$DEMO/data/pg_hba.conf" >/dev/null
	as_pg pg_ctl -D "$DEMO/data" reload >/dev/null
	echo "$port" >"$DEMO/port"
	(umask 077 && echo "$password" >"$DEMO/password" &&
		printf 'export PGHOST=localhost PGPORT=%s PGDATABASE=%s PGUSER=%s PGPASSWORD=%s\n' \
			"$port" "$DB" "$READER" "$password" >"$DEMO/env")

	local psql=(as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$DEMO" -p "$port" -U postgres)
	"${psql[@]}" -d postgres -c "CREATE DATABASE $DB"
	"${psql[@]}" -d "$DB" >/dev/null <<SQL
CREATE EXTENSION crm_kpi;
CREATE ROLE $READER LOGIN PASSWORD '$password';
SELECT crm_kpi.grant_reader('$READER');
ALTER ROLE $READER SET statement_timeout = '5s';
SQL
	demo_grafana_files "$port" "$password"
	say "loading sample data: $DEMO_CUSTOMERS customers, seed $DEMO_SEED"
	"${psql[@]}" -d "$DB" -c "SELECT crm_kpi.create_reference_schema('crm')" >/dev/null
	# Two years up to today, so that every lifecycle stage is present now.
	"${psql[@]}" -d "$DB" -P footer=off \
		-c "SELECT * FROM crm_kpi.generate_sample_data('crm', $DEMO_CUSTOMERS, $DEMO_SEED, current_date - 730, 730)" 2>&1 \
		| sed 's/^psql:[^ ]* NOTICE: */  /'
	say "the refresh worker fills the KPI tables"
	local filled=f started=$SECONDS
	while [ "$filled" != t ]; do
		filled=$("${psql[@]}" -d "$DB" -At -c "SELECT crm_kpi.wait_for_refresh('1 second')")
		"${psql[@]}" -d "$DB" -At -c "
SELECT format('  %s s: %s, %s keys pending, %s rows in the KPI tables', $SECONDS - $started,
              (SELECT state FROM crm_kpi.worker_status()),
              (SELECT count(*) FROM crm_kpi.change_queue),
              (SELECT sum(n) FROM (SELECT count(*) AS n FROM crm_kpi.sales_daily UNION ALL
                                   SELECT count(*) FROM crm_kpi.customer_stats UNION ALL
                                   SELECT count(*) FROM crm_kpi.service_daily) x))"
		[ $((SECONDS - started)) -lt 600 ] || die "the KPI tables were not filled within 10 minutes"
	done
	"${psql[@]}" -d "$DB" -c "GRANT USAGE ON SCHEMA crm TO $READER; GRANT SELECT ON ALL TABLES IN SCHEMA crm TO $READER"
	trap - ERR

	echo
	echo "crm_kpi in database $DB:"
	"${psql[@]}" -d "$DB" -P footer=off -c "
SELECT e.extversion AS extension, crm_kpi.library_version() AS library,
       crm_kpi.preloaded() AS preloaded, current_setting('server_version') AS postgresql
FROM pg_extension e WHERE e.extname = 'crm_kpi';"
	as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$DEMO" -p "$port" -U postgres -d "$DB" -f - <"$SRC_ROOT/scripts/demo_report.sql"
	demo_info
}

case ${1:-start} in
start) demo_start ;;
stop) demo_stop ;;
status)
	if is_ours && as_pg pg_ctl -D "$DEMO/data" status >/dev/null 2>&1; then demo_info; else say "no demo running"; exit 1; fi
	;;
*) die "usage: bash scripts/demo.sh [start|status|stop]" ;;
esac
