# soak.sh: the soak of scripts/bench.sh --soak, sourced by it (uses SOAK_MINUTES, COMMAND and
# lib.sh). In a private cluster with the refresh worker on, over generated CRM data: pgbench writers
# insert and update orders, tickets and survey responses at a paced rate (bench/soak_orders.sql,
# soak_tickets.sql, soak_surveys.sql), dashboard readers draw the Grafana panel queries as a role
# made by crm_kpi.grant_reader() (bench/soak_read.sql), and every SOAK_TICK seconds a sample records
# the worker's memory, the queue, the lag, the history and any refresh error (bench/soak.sql); the
# worker logs its memory contexts after the warm-up and at the end. After the load:
# crm_kpi.wait_for_refresh(), crm_kpi.verify(), the checks. Prints the section (bench/
# soak_report.sql) and writes it between marker comments into bench/RESULTS.md (a run of fewer than
# 10 minutes: bench/tmp/RESULTS.md), keeping the rest of the file; returns non-zero if a check fails.
# shellcheck shell=bash

SOAK_DB=crm_kpi_soak
SOAK_READER=crm_kpi_soak_reader
SOAK_CUSTOMERS=200000
SOAK_DAYS=730
SOAK_TICK=5
SOAK_SEED=20260901
SOAK_BEGIN='<!-- soak: begin (bash scripts/bench.sh --soak writes this section; a full run keeps it) -->'
SOAK_END='<!-- soak: end -->'
# The load: kind, clients, transactions per second (all clients).
SOAK_LOAD=('orders 2 20' 'tickets 2 10' 'surveys 2 10' 'readers 2 4')

psql_soak() { as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$STAGE" -p "$PORT" -U postgres -d "$SOAK_DB" "$@"; }
soak_meta() { psql_soak -c "INSERT INTO bench.meta VALUES ('$1', \$v\$$2\$v\$)"; }

# Private and resident memory of process $1 in kB, "NULL NULL" when it is gone. A read of
# /proc/<pid>/status that yields no RssAnon while the process is there (seen once in 120 samples)
# is tried again, at most twice, and said.
soak_memory() {
	local k v anon=NULL rss=NULL try
	for try in 1 2 3; do
		if [ -n "$1" ] && [ -r "/proc/$1/status" ]; then
			while read -r k v _; do
				case $k in RssAnon:) anon=$v ;; VmRSS:) rss=$v ;; esac
			done <"/proc/$1/status" || true
		fi
		if [ "$anon" != NULL ] || [ -z "$1" ] || ! [ -e "/proc/$1" ]; then break; fi
		say "soak: no RssAnon in /proc/$1/status (read $try of 3)"
	done
	printf '%s %s\n' "$anon" "$rss"
}

# The pid of the database's refresh worker ('' when there is none).
soak_worker_pid() {
	psql_soak -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'crm_kpi worker' AND datname = current_database()"
}

# One sample: tick number, phase.
soak_tick() {
	local pid anon rss
	pid=$(soak_worker_pid)
	read -r anon rss <<<"$(soak_memory "$pid")"
	psql_soak -c "SELECT bench.soak_take($1, '$2', ${pid:-NULL}, $anon, $rss)" >/dev/null
}

# Have the refresh worker (pid $1) log its memory contexts, wait for the dump (a poll with a deadline)
# and record it in bench.soak_context under name $2.
soak_contexts() {
	local pid=$1 dump=$2 log=$STAGE/server.log from deadline
	[ -n "$pid" ] || return 0
	from=$(($(stat -c %s "$log") + 1))
	psql_soak -At -c "SELECT pg_log_backend_memory_contexts($pid)" | grep -qx t || return 0
	deadline=$(($(date +%s) + 60))
	until tail -c "+$from" "$log" | grep -q "\[$pid\] LOG:  Grand total: "; do
		[ "$(date +%s)" -lt "$deadline" ] || { say "soak: the worker did not log its memory contexts in 60 s"; return 0; }
		sleep 0.2
	done
	tail -c "+$from" "$log" | grep -F "[$pid] LOG:  " >"$STAGE/soak_contexts_$dump.log"
	# "level: 2; CacheMemoryContext: 1048576 total in 8 blocks; ...": per level and name, a count and the bytes.
	sed -n -e 's/^.*LOG:  level: \([0-9]*\); \([^:]*\): \([0-9]*\) total in .*$/\1\t\2\t\3/p' \
		-e 's/^.*LOG:  level: \([0-9]*\); [0-9]* more child contexts containing \([0-9]*\) total in .*$/\1\t(more child contexts)\t\2/p' \
		"$STAGE/soak_contexts_$dump.log" |
		awk -F '\t' -v d="$dump" '{ n[$1 "\t" $2]++; b[$1 "\t" $2] += $3 } END { for (k in n) print d "\t" k "\t" n[k] "\t" b[k] }' |
		psql_soak -c '\copy bench.soak_context FROM STDIN'
}

# The cluster, the data, the KPI tables built by the worker, the panel queries, the reader role.
soak_setup() {
	PORT=$(free_port 55732)
	printf '%s\n' "shared_buffers = '256MB'" "crm_kpi.enabled = on" | cluster_start "$STAGE" "$PORT" ''
	say "soak: private cluster on socket $STAGE, port $PORT"
	as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$STAGE" -p "$PORT" -U postgres -d postgres \
		-c "CREATE DATABASE $SOAK_DB" -c "ALTER DATABASE $SOAK_DB SET TimeZone = 'UTC'"
	say "soak: generating $SOAK_DAYS days of CRM data ($SOAK_CUSTOMERS customers); the worker builds the KPI tables"
	SECONDS=0
	psql_soak -c 'CREATE EXTENSION crm_kpi' -f "$STAGE/src/bench/panels.sql" -f "$STAGE/src/bench/soak.sql" >/dev/null
	psql_soak -c "SET client_min_messages = warning" \
		-c "SELECT count(*) FROM crm_kpi.generate_sample_data('crm', $SOAK_CUSTOMERS, 1, current_date - $SOAK_DAYS, $SOAK_DAYS)" \
		>/dev/null
	psql_soak -At -c "SELECT crm_kpi.wait_for_refresh('900 seconds')" | grep -qx t \
		|| die "soak: the worker did not build the KPI tables in 15 minutes"
	psql_soak -c 'VACUUM ANALYZE'
	soak_meta verify_before "$(psql_soak -At -c 'SELECT count(*) FROM crm_kpi.verify()')"
	say "soak: data and KPI tables ready in ${SECONDS}s"
	psql_soak >/dev/null <<SQL
CREATE ROLE $SOAK_READER LOGIN;
SELECT crm_kpi.grant_reader('$SOAK_READER');
GRANT USAGE ON SCHEMA bench TO $SOAK_READER;
GRANT SELECT ON bench.panel TO $SOAK_READER;
INSERT INTO bench.meta
SELECT 'customers', '$SOAK_CUSTOMERS' UNION ALL SELECT 'days', '$SOAK_DAYS' UNION ALL SELECT 'tick', '$SOAK_TICK'
UNION ALL SELECT 'reps', max(rep_id)::text FROM crm.sales_reps
UNION ALL SELECT 'orders', count(*)::text FROM crm.orders UNION ALL SELECT 'max_order', max(order_id)::text FROM crm.orders
UNION ALL SELECT 'tickets', count(*)::text FROM crm.tickets UNION ALL SELECT 'max_ticket', max(ticket_id)::text FROM crm.tickets
UNION ALL SELECT 'responses', count(*)::text FROM crm.survey_responses
UNION ALL SELECT 'max_response', max(response_id)::text FROM crm.survey_responses
UNION ALL SELECT 'naptime', current_setting('crm_kpi.naptime')
UNION ALL SELECT 'refresh_batch_size', current_setting('crm_kpi.refresh_batch_size')
UNION ALL SELECT 'history_limit', current_setting('crm_kpi.history_limit')
UNION ALL SELECT 'shared_buffers', current_setting('shared_buffers');
SQL
	as_pg perl -I "$STAGE/src/test/tap" "$STAGE/src/bench/panels_expand.pl" "$STAGE/src" "$SOAK_DAYS" -- \
		psql -h "$STAGE" -p "$PORT" -U postgres -d "$SOAK_DB" >"$STAGE/soak_panels.sql" \
		|| die "soak: expanding the dashboards' queries failed"
	psql_soak -f "$STAGE/soak_panels.sql" >/dev/null
	soak_meta panels "$(psql_soak -At -c 'SELECT count(*) FROM bench.panel')"
}

# Start one pgbench of the load in the background: kind, clients, rate, seconds, then its -D options.
soak_pgbench() {
	local kind=$1 clients=$2 rate=$3 seconds=$4 user=postgres script=$1
	shift 4
	if [ "$kind" = readers ]; then user=$SOAK_READER script=read; fi
	as_pg "$PG_BIN/pgbench" -n -c "$clients" -j "$clients" -R "$rate" -T "$seconds" --random-seed="$SOAK_SEED" "$@" \
		-f "$STAGE/src/bench/soak_$script.sql" -h "$STAGE" -p "$PORT" -U "$user" "$SOAK_DB" >"$STAGE/soak_$kind.log" 2>&1
}

# Record what a finished pgbench reported: kind, clients, rate, exit status.
soak_pgbench_figures() {
	local log=$STAGE/soak_$1.log tx failed aborted tps latency
	tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log")
	failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$log")
	aborted=$(grep -c '^client [0-9]* aborted' "$log" || true)
	tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$log")
	latency=$(sed -n 's/^latency average = \([0-9.]*\) ms$/\1/p' "$log")
	psql_soak -c "INSERT INTO bench.soak_pgbench VALUES ('$1', $2, $3, ${tx:-NULL}, ${failed:-NULL}, $aborted,
	              ${tps:-NULL}, ${latency:-NULL}, $4)"
	[ "$4" -eq 0 ] || say "soak: pgbench $1 exited with status $4: $(grep -m1 -E 'ERROR|aborted' "$log" || true)"
}

# The load for SOAK_MINUTES, sampled; then the wait for the worker, verify(), the last sample.
soak_load() {
	local seconds=$((SOAK_MINUTES * 60)) started tick=0 next now spec kind clients rate status warm=
	local -a jobs=() vars
	# The pgbench scripts' variables: the customers and reps, the largest ids of the generated rows.
	mapfile -t vars < <(psql_soak -At -c "SELECT '-D' || format('%s=%s', v, value) FROM bench.meta,
	    (VALUES ('customers', 'customers'), ('reps', 'reps'), ('orders', 'max_order'), ('tickets', 'max_ticket'),
	            ('responses', 'max_response'), ('panels', 'panels')) m (v, key)
	    WHERE m.key = meta.key")
	say "soak: ${SOAK_MINUTES} minutes: ${SOAK_LOAD[*]} (kind, clients, rate per second)"
	started=$(date +%s)
	for spec in "${SOAK_LOAD[@]}"; do
		read -r kind clients rate <<<"$spec"
		soak_pgbench "$kind" "$clients" "$rate" "$seconds" "${vars[@]}" &
		jobs+=($!)
	done
	while [ "$(date +%s)" -lt $((started + seconds)) ]; do
		soak_tick "$tick" load
		# The worker's memory contexts once the warm-up (a tenth of the load) is over.
		if [ $((tick * SOAK_TICK)) -ge $((seconds / 10)) ] && [ -z "$warm" ]; then
			warm=$(soak_worker_pid)
			soak_contexts "$warm" warm
		fi
		if [ $((tick % (60 / SOAK_TICK))) -eq 0 ]; then
			say "soak: $(psql_soak -At -c "SELECT format('%s s: worker %s MB private, %s keys queued, oldest %s s, %s history rows',
			            round(extract(epoch FROM at - (SELECT min(at) FROM bench.soak_sample))), round(rss_anon_kb / 1024.0, 1),
			            queued, round(extract(epoch FROM queue_age)::numeric, 1), history_rows)
			            FROM bench.soak_sample WHERE tick = $tick")"
		fi
		tick=$((tick + 1))
		# The pace of the samples (the worker is never waited for with a sleep).
		next=$((started + tick * SOAK_TICK))
		now=$(date +%s)
		if [ "$next" -gt "$now" ]; then sleep $((next - now)); fi
	done
	for spec in "${SOAK_LOAD[@]}"; do
		read -r kind clients rate <<<"$spec"
		status=0
		wait "${jobs[0]}" || status=$?
		jobs=("${jobs[@]:1}")
		soak_pgbench_figures "$kind" "$clients" "$rate" "$status"
	done
	soak_tick "$tick" drain
	say "soak: load over; waiting for the worker to catch up (at most 300 s)"
	SECONDS=0
	soak_meta caught_up "$(psql_soak -At -c "SELECT crm_kpi.wait_for_refresh('300 seconds')")"
	soak_meta drain_seconds "$SECONDS"
	soak_tick $((tick + 1)) end
	soak_contexts "$(soak_worker_pid)" end
	soak_meta verify_after "$(psql_soak -At -c 'SELECT count(*) FROM crm_kpi.verify()')"
	psql_soak -At -c 'SELECT * FROM crm_kpi.verify() LIMIT 20' >"$STAGE/soak_verify.txt"
	# An autovacuum that gives way to a lock (ERROR: canceling autovacuum task) is PostgreSQL at work, not a failure.
	soak_meta server_log_errors "$(grep -E '(ERROR|FATAL|PANIC): ' "$STAGE/server.log" | grep -cv 'ERROR:  canceling autovacuum task$' || true)"
	soak_meta autovacuum_cancels "$(grep -c 'ERROR:  canceling autovacuum task$' "$STAGE/server.log" || true)"
}

# Replace the soak section of markdown file $1 by the one in file $2 (append it if there is none).
soak_write_section() {
	local file=$1 section=$2
	mkdir -p "$(dirname "$file")"
	if [ -f "$file" ] && grep -qxF "$SOAK_BEGIN" "$file"; then
		awk -v b="$SOAK_BEGIN" -v e="$SOAK_END" -v f="$section" '
			$0 == b { while ((getline l < f) > 0) print l; skip = 1; next }
			$0 == e { skip = 0; next }
			!skip' "$file" >"$file.new"
		mv "$file.new" "$file"
	else
		{ if [ -s "$file" ]; then echo; fi; cat "$section"; } >>"$file"
	fi
}

# The whole soak; the section goes to stdout and into the results file.
soak_main() {
	local results revision cpu holds
	STAGE=$(make_private_dir crm_kpi-soak)
	KEEP_DATA=0 # on a failed run the logs are kept, the data never
	begin_staged_run "soak logs"
	soak_setup
	revision=$(git -C "$SRC_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [ -n "$(git -C "$SRC_ROOT" status --porcelain -- src bench scripts Makefile ':!bench/RESULTS.md' 2>/dev/null)" ]; then
		revision="$revision, with uncommitted changes"
	fi
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
	soak_meta minutes "$SOAK_MINUTES"
	soak_meta command "$COMMAND"
	soak_meta revision "$revision"
	soak_meta machine "$(nproc) CPUs (${cpu:-unknown}), $(($(awk '/^MemTotal:/ { print $2 }' /proc/meminfo) / 1048576)) GiB memory"
	soak_meta pg_version "$(psql_soak -At -c 'SHOW server_version')"
	soak_meta crm_kpi_version "$(psql_soak -At -c "SELECT extversion FROM pg_extension WHERE extname = 'crm_kpi'")"
	soak_load
	soak_meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
	{
		echo "$SOAK_BEGIN"
		psql_soak -f "$STAGE/src/bench/soak_report.sql"
		echo "$SOAK_END"
	} >"$STAGE/soak.md"
	if [ "$SOAK_MINUTES" -ge 10 ]; then results=$SRC_ROOT/bench/RESULTS.md; else results=$SRC_ROOT/bench/tmp/RESULTS.md; fi
	soak_write_section "$results" "$STAGE/soak.md"
	echo
	cat "$STAGE/soak.md"
	say "written to ${results#"$SRC_ROOT"/}"
	holds=$(psql_soak -At -c 'SELECT bool_and(holds) FROM bench.soak_verdict')
	[ "$holds" = t ] || die "soak: a check failed (logs in $STAGE)"
	KEEP_STAGE=0
}
