#!/usr/bin/env bash
# bench/nginx.sh -- hello world THROUGH nginx: corral and its peers behind a reverse proxy.
#
# Usage:
#   bash bench/nginx.sh > nginx.tsv                                   # every case
#   CASES="nginx-uwsgi-corral-sync nginx-uwsgi-uwsgi" bash bench/nginx.sh   # a subset
#   CASES="nginx-fastcgi-* nginx-only" bash bench/nginx.sh            # names or shell globs
#   WRK_DURATION=2 WARMUP=0 CASES="*-goroutine" bash bench/nginx.sh   # a quick look
#
# Each case runs two processes, on free ports of 127.0.0.1: nginx (NGINX_WORKERS worker
# processes, in the foreground, its own prefix, config and temp files in $LOG_DIR/NAME/) and,
# behind it, one backend with BACKEND_WORKERS workers.  nginx starts first; then the backend; we wait until GET /
# through nginx answers 2xx, warm up with wrk for WARMUP seconds, then measure with
#   wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_DURATION}s http://127.0.0.1:NGINX_PORT/
# read the memory, and stop both (SIGTERM to each one's own PID, then SIGKILL by PID to what
# is left of its tree after STOP_TIMEOUT).  Both are stopped on every path out, EXIT and
# INT/TERM included.  The cases:
#   nginx-http-corral-K      proxy_pass    -> corral -k K -b 127.0.0.1:PORT           (HTTP/1.1)
#   nginx-uwsgi-corral-K     uwsgi_pass    -> corral -k K -b uwsgi://127.0.0.1:PORT
#   nginx-fastcgi-corral-K   fastcgi_pass  -> corral -k K -b fastcgi://127.0.0.1:PORT
#       for K in goroutine sync event, and wsgi (apps/hello_wsgi.py); a worker type that will not serve a protocol (its
#       workers refuse to boot, and corral exits) gets a row of NA.  Nothing here assumes
#       which combinations work: every one is tried.
#   nginx-uwsgi-uwsgi        uwsgi_pass    -> uwsgi --socket 127.0.0.1:PORT (python3, --master
#                                             --processes 2, apps/hello_wsgi.py)
#   nginx-http-gunicorn-sync, nginx-http-gunicorn-gthread
#                            proxy_pass    -> gunicorn -w 2 (gthread: --threads 4), hello_wsgi
#   nginx-uwsgi-floor, nginx-fastcgi-floor
#                            the floor (apps/gohello/floor -proto uwsgi / fastcgi): a fixed
#                            answer to every request, no parsing, no handler; one thread
#   nginx-fastcgi-uwsgi      fastcgi_pass  -> uwsgi --fastcgi-socket 127.0.0.1:PORT (as above)
#   nginx-only               nginx answers by itself (return 200 "Hello, World!"): the ceiling
#
# The nginx configs are those of examples/nginx/*.conf, plus what a benchmark needs
# (worker_processes 2, access_log off, error log to stderr, prefix and temp paths in the
# case's folder):
#   HTTP     an upstream with keepalive, as a production config would have it: nginx keeps
#            up to NGINX_KEEPALIVE idle connections to the backend per worker process
#            (proxy_http_version 1.1, Connection ""), so a backend that keeps connections
#            open is not paying for a new TCP connection per request.  (The example has
#            keepalive 16; 64 holds all of wrk's 64 connections even if they all land on one
#            nginx worker, so none is closed and reopened for lack of room in the cache.)
#            Gunicorn sync and corral sync close after every response anyway, as they do
#            without nginx.
#   FastCGI  the same keepalive upstream, with fastcgi_keep_conn on.
#   uwsgi    no keepalive: nginx's uwsgi module sends one request per connection.
#
# stdout: a header, then one TSV row per case:
#   name  rps  p50_ms  p99_ms  errors  rss_mb  cpu_us_per_req  nginx_cpu_us_per_req  steal_pct
# steal_pct: as peers.sh's, of the CPUs the backend runs on (SERVER_CPUS; unpinned, all).
# errors = wrk socket errors (connect+read+write+timeout) + responses with status >= 400
# (a 502 from nginx counts).  rss_mb = the BACKEND's process tree (its master and workers:
# sum of VmRSS, shared pages counted once per process), NOT nginx's; nginx-only, having no
# backend, has NA there.  cpu_us_per_req: CPU time (user+system) of the backend's tree during
# the measured run, per request; nginx_cpu_us_per_req: nginx's.  stderr gets a detail line per case: error breakdown, the backend's
# PSS and process count, nginx's own RSS, and the CPU seconds the backend's tree and nginx's
# used during the measured run (processes alive at its end).  Logs and configs stay in $LOG_DIR.
#
# Environment (defaults): WRK_THREADS (1) WRK_CONNS (64) WRK_DURATION (8, seconds)
#   WARMUP (2, seconds) CASES (all: space-separated names or globs)
#   ROUNDS (1): N > 1 runs every case N times, round after round, and prints each case's best
#   round (most rps) with an extra column, rps_rounds, every round's rps (lib.sh's best_rounds)
#   NGINX (nginx) NGINX_KEEPALIVE (64) NGINX_PARAMS_DIR (/etc/nginx: uwsgi_params, fastcgi_params)
#   NGINX_WORKERS (2) BACKEND_WORKERS (2: corral -w, uWSGI --processes, Gunicorn -w)
#   NGINX_CPUS (SERVER_CPUS: nginx's taskset -c; SERVER_CPUS pins the backend)
#   MEASURE_HOOK (lib.sh: a script run around each measured wrk run, given the backend's PID)
#   CORRAL (bin/corral of this repo; build it first: go build -o bin/corral ./cmd/corral)
#   plus those listed at the top of lib.sh (WRK_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT,
#   SERVER_CPUS, WRK_CPUS, BENCHBIN -- where the floor is built --, GUNICORN, UWSGI).

set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WRK_CONNS=${WRK_CONNS:-64}
WRK_DURATION=${WRK_DURATION:-8}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-1}
CASES=${CASES:-all}
NGINX=${NGINX:-nginx}
NGINX_KEEPALIVE=${NGINX_KEEPALIVE:-64}
NGINX_PARAMS_DIR=${NGINX_PARAMS_DIR:-/etc/nginx}
NGINX_WORKERS=${NGINX_WORKERS:-2}
BACKEND_WORKERS=${BACKEND_WORKERS:-2}
NGINX_CPUS=${NGINX_CPUS-$SERVER_CPUS}
CORRAL=${CORRAL:-$(cd "$BENCH_DIR/.." && pwd)/bin/corral}

# lib.sh's start_server/stop_server track one process: SERVER_PID is the backend.  nginx is
# the second one, tracked here: its PID and its tree as "pid:starttime ..." (see remember_tree).
NGINX_PID=""
NGINX_TREE=""

# nginx_remember: add nginx's current process tree to NGINX_TREE.  lib.sh's remember_tree
# runs in a subshell with SERVER_PID set to nginx's, so the backend's variables in this shell
# are never swapped out, not even for an instant (a signal may come at any moment).
nginx_remember() {
	[[ -n $NGINX_PID ]] || return 0
	NGINX_TREE=$(
		SERVER_PID=$NGINX_PID SERVER_TREE=$NGINX_TREE
		remember_tree
		echo "$SERVER_TREE"
	)
}

# stop_nginx: lib.sh's stop_server applied to nginx (SIGTERM -- nginx's fast shutdown -- to
# its master, wait, SIGKILL by PID what is left of the recorded tree), in a subshell as above;
# then reap the master here, whose child it is.
stop_nginx() {
	[[ -n $NGINX_PID ]] || return 0
	nginx_remember
	(
		SERVER_PID=$NGINX_PID SERVER_TREE=$NGINX_TREE
		stop_server
	)
	wait "$NGINX_PID" 2>/dev/null
	NGINX_PID=""
	NGINX_TREE=""
}

cleanup() {
	stop_nginx
	stop_server
	quota_remove
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# nginx_conf DIR PORT PROTO BACKEND_PORT: write DIR/nginx.conf, listening on PORT and
# passing to 127.0.0.1:BACKEND_PORT over PROTO (http, uwsgi, fastcgi), or answering by
# itself (PROTO none).
nginx_conf() {
	local dir=$1 port=$2 proto=$3 bport=$4 upstream="" location
	case $proto in
	http)
		upstream="upstream backend { server $HOST:$bport; keepalive $NGINX_KEEPALIVE; }"
		# shellcheck disable=SC2016  # nginx variables
		location='proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;'
		;;
	uwsgi)
		upstream="upstream backend { server $HOST:$bport; }"
		location="include $NGINX_PARAMS_DIR/uwsgi_params;
            uwsgi_pass backend;"
		;;
	fastcgi)
		upstream="upstream backend { server $HOST:$bport; keepalive $NGINX_KEEPALIVE; }"
		location="include $NGINX_PARAMS_DIR/fastcgi_params;
            fastcgi_pass backend;
            fastcgi_keep_conn on;"
		;;
	none)
		location='default_type text/plain;
            return 200 "Hello, World!";'
		;;
	*) die "nginx_conf: unknown protocol $proto" ;;
	esac
	mkdir -p "$dir/tmp"
	cat >"$dir/nginx.conf" <<EOF
# generated by bench/nginx.sh
daemon off;
master_process on;
worker_processes $NGINX_WORKERS;
pid $dir/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body; proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi; uwsgi_temp_path $dir/tmp/uwsgi; scgi_temp_path $dir/tmp/scgi;
    $upstream
    server {
        listen $HOST:$port;
        client_max_body_size 16m;
        location / {
            $location
        }
    }
}
EOF
}

# status_of PORT: the HTTP status of GET / on PORT ("000" when nothing answers).
status_of() {
	curl -s -m 1 -o /dev/null -w '%{http_code}' "http://$HOST:$1/" 2>/dev/null
}

# na_row NAME [RSS]: the row of a case that could not be measured.
na_row() { printf '%s\tNA\tNA\tNA\tNA\t%s\tNA\tNA\t%s\n' "$1" "${2:-NA}" "${3:-NA}"; }

# last_error FILE: the first ERROR/emerg line of a log, for the stderr report.
last_error() { grep -m1 -E "ERROR|error|emerg" "$1" 2>/dev/null; }

# bench_case NAME PROTO [BACKEND_ARGV...]: measure GET / through nginx, passing over PROTO to
# the backend started with BACKEND_ARGV ("{PORT}" in it becomes its port); PROTO none and no
# argv for nginx alone.  Prints the TSV row.
bench_case() {
	local name=$1 proto=$2
	shift 2
	local dir=$LOG_DIR/$name port bport=""
	mkdir -p "$dir"
	port=$(free_port) || die "no free port"
	if (($#)); then
		bport=$(free_port) || die "no free port"
		while [[ $bport == "$port" ]]; do bport=$(free_port) || die "no free port"; done
	fi
	nginx_conf "$dir" "$port" "$proto" "$bport"

	# nginx first.  start_server sets SERVER_PID; hand it over to NGINX_PID at once (nothing
	# else runs yet, so cleanup would stop it under either name).
	[[ -z $SERVER_PID ]] || die "bench_case: a backend is still running"
	log "$name: nginx on $HOST:$port ($proto${bport:+ to $HOST:$bport})"
	SERVER_CPUS=$NGINX_CPUS start_server "$name.nginx" "$NGINX" -e stderr -p "$dir" -c "$dir/nginx.conf"
	NGINX_PID=$SERVER_PID NGINX_TREE=$SERVER_TREE
	SERVER_PID="" SERVER_TREE=""
	local deadline=$((SECONDS + START_TIMEOUT))
	while [[ $(status_of "$port") == 000 ]]; do
		if ! alive "$NGINX_PID" || ((SECONDS >= deadline)); then
			log "$name: nginx did not start: $(last_error "$LOG_DIR/$name.nginx.log"); see $LOG_DIR/$name.nginx.log"
			stop_nginx
			na_row "$name"
			return 0
		fi
		sleep 0.1
	done
	nginx_remember

	# Then the backend; wait until a request through nginx gets its 2xx.
	if (($#)); then
		local -a argv=("${@//\{PORT\}/$bport}")
		log "$name: backend on $HOST:$bport: ${argv[*]}"
		start_server "$name" "${argv[@]}"
	fi
	local code=""
	deadline=$((SECONDS + START_TIMEOUT))
	while :; do
		code=$(status_of "$port")
		[[ $code == 2* ]] && alive "$NGINX_PID" && break
		if [[ -n $SERVER_PID ]] && ! alive "$SERVER_PID"; then
			log "$name: the backend exited before serving: $(last_error "$LOG_DIR/$name.log"); see $LOG_DIR/$name.log"
			code=none
			break
		fi
		if ! alive "$NGINX_PID"; then
			log "$name: nginx exited; see $LOG_DIR/$name.nginx.log"
			code=none
			break
		fi
		if ((SECONDS >= deadline)); then
			log "$name: no 2xx through nginx within ${START_TIMEOUT}s (last status $code); see $LOG_DIR/$name.log"
			break
		fi
		sleep 0.1
	done
	if [[ $code != 2* ]]; then
		stop_nginx
		stop_server
		na_row "$name"
		return 0
	fi
	remember_tree
	nginx_remember
	local body
	body=$(curl -s -m 2 "http://$HOST:$port/" 2>/dev/null)
	[[ $body == "Hello, World!" ]] || log "$name: WARNING: GET / through nginx answered ${body@Q}"

	local -a cmd
	if ((WARMUP > 0)); then
		mapfile -d '' -t cmd < <(wrk_cmd "$WRK_CONNS" "$WARMUP" "$port")
		"${cmd[@]}" >"$LOG_DIR/$name.warmup.wrk" 2>&1
	fi
	local bcpu0=0 bcpu1=0 ncpu0 ncpu1
	[[ -n $SERVER_PID ]] && bcpu0=$(tree_cpu "$SERVER_PID")
	ncpu0=$(tree_cpu "$NGINX_PID")
	mapfile -d '' -t cmd < <(wrk_cmd "$WRK_CONNS" "$WRK_DURATION" "$port")
	local tick0 tick1
	tick0=$(cpu_ticks "$SERVER_CPUS")
	measure_hook start "$name"
	"${cmd[@]}" >"$LOG_DIR/$name.wrk" 2>&1
	measure_hook stop "$name"
	tick1=$(cpu_ticks "$SERVER_CPUS")
	local steal
	steal=$(steal_pct "$tick0" "$tick1")
	[[ -n $SERVER_PID ]] && bcpu1=$(tree_cpu "$SERVER_PID")
	ncpu1=$(tree_cpu "$NGINX_PID")
	# Memory right after the run, before stopping: the backend's tree (the row), nginx's (stderr).
	local mem="NA NA 0" nmem
	if [[ -n $SERVER_PID ]]; then
		mem=$(tree_mem "$SERVER_PID")
		alive "$SERVER_PID" || log "$name: the backend died during the run; see $LOG_DIR/$name.log"
	fi
	nmem=$(tree_mem "$NGINX_PID")
	alive "$NGINX_PID" || log "$name: nginx died during the run; see $LOG_DIR/$name.nginx.log"
	stop_nginx
	stop_server

	local rss pss nprocs
	read -r rss pss nprocs <<<"$mem"
	if ! parse_wrk "$LOG_DIR/$name.wrk"; then
		log "$name: no result from wrk; see $LOG_DIR/$name.wrk"
		na_row "$name" "$rss" "$steal"
		return 0
	fi
	local rps p50 p99 errors
	rps=$(calc "$W_requests / ($W_duration_us / 1e6)" 0)
	p50=$(calc "$W_p50_us / 1000" 3)
	p99=$(calc "$W_p99_us / 1000" 3)
	errors=$((W_connect + W_read + W_write + W_timeout + W_status))
	log "$name: requests=$W_requests connect=$W_connect read=$W_read write=$W_write" \
		"timeout=$W_timeout status>=400=$W_status backend_pss_mb=$pss backend_procs=$nprocs" \
		"nginx_rss_mb=${nmem%% *} cpu_s: backend=$(calc "$bcpu1 - $bcpu0" 2) nginx=$(calc "$ncpu1 - $ncpu0" 2)"
	local cpu_req=NA ncpu_req=NA
	if ((W_requests > 0)); then
		(($#)) && cpu_req=$(calc "($bcpu1 - $bcpu0) * 1e6 / $W_requests" 1)
		ncpu_req=$(calc "($ncpu1 - $ncpu0) * 1e6 / $W_requests" 1)
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rps" "$p50" "$p99" "$errors" "$rss" "$cpu_req" "$ncpu_req" "$steal"
}

# selected NAME: true if CASES is "all" or one of its words (a name or a glob) matches NAME.
selected() {
	[[ $CASES == all ]] && return 0
	local -a pats
	local pat
	read -ra pats <<<"${CASES//[$'\n\t']/ }" # read does not expand globs against the current folder
	for pat in "${pats[@]}"; do
		# shellcheck disable=SC2053  # $pat is a glob on purpose
		[[ $1 == $pat ]] && return 0
	done
	return 1
}

# case NAME PROTO [ARGV...]: bench_case, if NAME is selected by $CASES.
case_() {
	selected "$1" || return 0
	row bench_case "$@"
}

# ---------------------------------------------------------------------------------------
need wrk curl ss setsid timeout awk "$NGINX"
[[ -n $SERVER_CPUS || -n $WRK_CPUS ]] && need taskset
[[ -x $CORRAL ]] || die "$CORRAL not found; build it: go build -o bin/corral ./cmd/corral"

log "wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_DURATION}s (warm-up ${WARMUP}s) through nginx" \
	"($NGINX_WORKERS workers, upstream keepalive $NGINX_KEEPALIVE; $BACKEND_WORKERS backend workers)," \
	"server cpus: ${SERVER_CPUS:-any}, nginx cpus: ${NGINX_CPUS:-any}, wrk cpus: ${WRK_CPUS:-any}, logs: $LOG_DIR"
if command -v go >/dev/null; then
	mkdir -p "$BENCHBIN"
	(cd "$APPS_DIR/gohello" && go build -o "$BENCHBIN/" ./floor) || log "go build of the floor failed"
fi

GUNICORN_ARGS=(--chdir "$APPS_DIR" -b "$HOST:{PORT}" --log-level warning)
UWSGI_ARGS=(--plugin python3 --master --processes "$BACKEND_WORKERS" --chdir "$APPS_DIR"
	--module hello_wsgi:application --need-app --disable-logging --die-on-term --listen 1024)

# rows: every selected case.  The table: name, protocol nginx speaks to the backend, the
# backend's start command line.
rows() {
	for proto in http uwsgi fastcgi; do
		scheme=""
		[[ $proto == http ]] || scheme="$proto://"
		for k in goroutine sync event; do
			case_ "nginx-$proto-corral-$k" "$proto" \
				"$CORRAL" -w "$BACKEND_WORKERS" -k "$k" -b "$scheme$HOST:{PORT}" "${CORRAL_LISTEN[@]}" --log-level warning demo
		done
		case_ "nginx-$proto-corral-wsgi" "$proto" "$CORRAL" -w "$BACKEND_WORKERS" -k wsgi --python /usr/bin/python3 --chdir "$APPS_DIR" \
			-b "$scheme$HOST:{PORT}" "${CORRAL_LISTEN[@]}" --log-level warning hello_wsgi:application
		case_ "nginx-$proto-corral-wsgi-unpinned" "$proto" "$CORRAL" -w "$BACKEND_WORKERS" -k wsgi --cpu-affinity off --python /usr/bin/python3 \
			--chdir "$APPS_DIR" -b "$scheme$HOST:{PORT}" "${CORRAL_LISTEN[@]}" --log-level warning hello_wsgi:application
		case $proto in
		http)
			case_ nginx-http-gunicorn-sync http "$GUNICORN" "${GUNICORN_ARGS[@]}" -w "$BACKEND_WORKERS" hello_wsgi:app
			case_ nginx-http-gunicorn-gthread http \
				"$GUNICORN" "${GUNICORN_ARGS[@]}" -w "$BACKEND_WORKERS" -k gthread --threads 4 hello_wsgi:app
			;;
		uwsgi)
			case_ nginx-uwsgi-uwsgi uwsgi "$UWSGI" --socket "$HOST:{PORT}" "${UWSGI_ARGS[@]}"
			case_ nginx-uwsgi-floor uwsgi "$BENCHBIN/floor" -proto uwsgi -addr "$HOST:{PORT}"
			;;
		fastcgi)
			case_ nginx-fastcgi-uwsgi fastcgi "$UWSGI" --fastcgi-socket "$HOST:{PORT}" "${UWSGI_ARGS[@]}"
			case_ nginx-fastcgi-floor fastcgi "$BENCHBIN/floor" -proto fastcgi -addr "$HOST:{PORT}"
			;;
		esac
	done
	case_ nginx-only none
}

header='name\trps\tp50_ms\tp99_ms\terrors\trss_mb\tcpu_us_per_req\tnginx_cpu_us_per_req\tsteal_pct'
run_rows "$header"
log "done; logs in $LOG_DIR"
