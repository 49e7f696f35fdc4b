#!/usr/bin/env bash
# bench/idle_conns.sh -- memory per idle keep-alive connection.
#
# For each server (corral -k event and -k goroutine with 1 worker, a plain net/http and a fasthttp
# server): start it on a free 127.0.0.1 port, read its process tree's RSS, open IDLE_CONNS keep-alive
# connections with one request each (apps/gohello/idleconns, source addresses 127.0.0.2, .3, ...),
# read the RSS again, and print (after - before) / IDLE_CONNS.
#   name  conns  rss_before_mb  rss_after_mb  bytes_per_conn
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IDLE_CONNS=${IDLE_CONNS:-10000}
CORRAL=${CORRAL:-$(cd "$BENCH_DIR/.." && pwd)/bin/corral}
# The server and the client each hold IDLE_CONNS descriptors, in their own processes.
ulimit -n $((IDLE_CONNS + 1024)) || die "cannot raise the fd limit to $((IDLE_CONNS + 1024)) (hard limit $(ulimit -Hn))"
need curl ss setsid go
mkdir -p "$BENCHBIN"
(cd "$APPS_DIR/gohello" && go build -o "$BENCHBIN/" ./nethttp ./fasthttp ./idleconns) || die "go build failed"
cleanup() { stop_server; }
trap cleanup EXIT

idle_row() {
	local name=$1
	shift
	local port
	port=$(free_port) || die "no free port"
	start_server "$name" "${@//\{PORT\}/$port}"
	if ! wait_ready "$port"; then
		log "$name: did not start; see $LOG_DIR/$name.log"
		stop_server
		return 0
	fi
	sleep 1
	local before after
	before=$(tree_mem "$SERVER_PID" | awk '{print $1}')
	"$BENCHBIN/idleconns" -addr "$HOST:$port" -n "$IDLE_CONNS" >"$LOG_DIR/$name.idle" 2>&1 &
	local client=$!
	for _ in $(seq 1 600); do
		grep -q "^held" "$LOG_DIR/$name.idle" && break
		kill -0 $client 2>/dev/null || break
		sleep 0.1
	done
	sleep 1
	remember_tree
	after=$(tree_mem "$SERVER_PID" | awk '{print $1}')
	local held
	held=$(awk '/^held/ {print $2}' "$LOG_DIR/$name.idle")
	kill -TERM $client 2>/dev/null
	wait $client 2>/dev/null
	stop_server
	printf '%s\t%s\t%s\t%s\t%s\n' "$name" "${held:-0}" "$before" "$after" \
		"$(calc "($after - $before) * 1048576 / ${held:-1}" 0)"
}

printf 'name\tconns\trss_before_mb\trss_after_mb\tbytes_per_conn\n'
for k in event goroutine; do
	"$CORRAL" -k "$k" --check-config demo >/dev/null 2>&1 || continue
	idle_row "corral-$k" "$CORRAL" -w 1 -k "$k" -b "$HOST:{PORT}" --worker-connections $((IDLE_CONNS + 100)) \
		--keep-alive 600 --log-level warning demo
done
idle_row go-nethttp "$BENCHBIN/nethttp" -addr "$HOST:{PORT}"
idle_row go-fasthttp "$BENCHBIN/fasthttp" -addr "$HOST:{PORT}"
