#!/usr/bin/env bash
# bench/run.sh -- make bench: corral against its peers on this machine, written to docs/benchmarks.md.
#
# Installs what it needs (wrk, gunicorn, gevent, uwsgi, gnuplot, h2load, openssl, nginx, strace,
# perf), builds corral and the Go peers, then runs, one server at a time, all on 127.0.0.1:
#   peers.sh       hello world under wrk, every peer and every corral worker type: keep-alive,
#                  then Connection: close (close.lua), then 16-deep pipelining (pipeline.lua)
#   (pinned)       every path of issue 21 again on one server core (2+ cores only): the server
#                  pinned to CPU 1 and wrk to CPU 0, one worker or process each: keep-alive
#                  (64 connections), 16-deep pipelining, Connection: close (32 connections, uWSGI
#                  too), and behind nginx over uwsgi and FastCGI (nginx, one worker, shares CPU 1
#                  with the backend); with the floor row (apps/gohello/floor), each server's
#                  share of it, and the issue's goal ratios, met or not: every row runs
#                  PINNED_ROUNDS (5) times, in rounds, and a goal is the median of the rounds'
#                  ratios (see goal); keep-alive and close with each server's tree capped
#                  at PINNED_QUOTA (30) percent of its core (empty: uncapped), as wrk's own core
#                  saturates first there
#   (profile)      bench/profile.sh on each path (keep-alive, pipeline, close, nginx-uwsgi):
#                  where the time per request goes (perf) and system calls per request (strace),
#                  beside bench/results/before/'s tables (main before issue 21's work)
#   nginx.sh       hello world through nginx: HTTP, uwsgi and FastCGI to corral, uwsgi to uWSGI,
#                  HTTP to Gunicorn
#   tls.sh         HTTP/2 over TLS (h2load), corral goroutine against net/http; TLS handshakes per
#                  second (a new connection per request), corral against nginx, same certificate
#                  and suite; the ratios of the run
#   reload.sh      faults under load: HUP every 500 ms, TTIN/TTOU every 250 ms, a binary upgrade
#                  (USR2), SIGKILL of a random worker every 500 ms: requests completed and failed
#   term.sh        TERM under load: requests answered, accepted connections broken (about 8 min
#                  for reload.sh and term.sh together)
#   idle_conns.sh  memory per idle keep-alive connection, 10,000 connections
#   idle.sh        the idle arbiter's RSS and CPU, worker boot time
#   (wsgi)         Python WSGI hello world (apps/hello_wsgi.py), 2 workers each: corral -k wsgi
#                  against Gunicorn sync, gthread and gevent and uWSGI over HTTP (peers.sh with
#                  wsgi_peers.sh), through nginx over uwsgi and HTTP (nginx.sh), and beside 200
#                  slow clients (slow.sh)
#   metrics.sh     throughput with the metrics off and on (--metrics-bind), same run, each worker
#                  type; the time of a /metrics scrape with 16 workers
#   burst.sh       a bursty load (idle, 64 connections of /work?ms=20, idle): -w MAX against
#                  -w 1:MAX, p99 and worker-seconds
# and writes the tables, the machine and the date to docs/benchmarks.md, and a chart to
# docs/benchmarks.png. Knobs: those of peers.sh, reload.sh, term.sh and lib.sh (WRK_DURATION,
# RELOAD_SERVERS, ...), and BENCH_STEPS (default: all of "peers close pipeline pinned profile nginx tls
# reload term idle_conns idle wsgi metrics burst"; PINNED_PATHS, "ka pipeline close nginx", and
# PROFILE_PATHS, "keep-alive pipeline close nginx-uwsgi", pick parts of those two) with BENCH_OUT (a folder of an earlier run's TSV files) to redo some steps
# and write the page again (a section whose TSV file is not in BENCH_OUT is left out: point
# BENCH_OUT at an earlier full run's folder to keep them all).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=""
for tp in wrk:wrk gunicorn:gunicorn uwsgi:uwsgi gnuplot:gnuplot-nox h2load:nghttp2-client openssl:openssl nginx:nginx \
	strace:strace perf:linux-perf; do
	command -v "${tp%%:*}" >/dev/null || missing="$missing ${tp##*:}"
done
/usr/bin/python3 -c 'import gevent' 2>/dev/null || missing="$missing python3-gevent"
[ -f /usr/lib/uwsgi/plugins/python3_plugin.so ] || missing="$missing uwsgi-plugin-python3"
if [ -n "$missing" ]; then
	sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q $missing
fi
go build -o bin/corral ./cmd/corral
export CORRAL_DEFER_ACCEPT=${CORRAL_DEFER_ACCEPT:-1} # see bench/lib.sh
out=${BENCH_OUT:-$(mktemp -d /tmp/corral-bench.XXXXXX)}
steps=" ${BENCH_STEPS:-peers close pipeline pinned profile nginx tls reload term idle_conns idle wsgi metrics burst} "
step() { [[ $steps == *" $1 "* ]]; }
if step peers; then EXTRA_PEERS=bench/corral_peers.sh bash bench/peers.sh >"$out/peers.tsv"; fi
if step close; then
	WRK_SCRIPT=$PWD/bench/close.lua EXTRA_PEERS=bench/corral_peers.sh bash bench/peers.sh >"$out/close.tsv"
fi
# Gunicorn and uWSGI answer pipelined requests one by one; the Go servers are the peers here.
if step pipeline; then
	WRK_SCRIPT=$PWD/bench/pipeline.lua PEERS="go-nethttp go-fasthttp floor" EXTRA_PEERS=bench/corral_peers.sh \
		bash bench/peers.sh >"$out/pipeline.tsv"
fi
BEFORE=bench/results/before # main's tables before issue 21's work (see its README)
pinned_paths=" ${PINNED_PATHS:-ka pipeline close nginx} "
pinned() { [[ $pinned_paths == *" $1 "* ]]; }
PINNED_NGINX_CASES="nginx-uwsgi-corral-goroutine nginx-uwsgi-corral-sync nginx-uwsgi-corral-event nginx-uwsgi-uwsgi"
PINNED_NGINX_CASES+=" nginx-uwsgi-floor nginx-fastcgi-corral-goroutine nginx-fastcgi-corral-sync nginx-fastcgi-corral-event"
PINNED_NGINX_CASES+=" nginx-fastcgi-uwsgi nginx-fastcgi-floor"
PINNED_QUOTA=${PINNED_QUOTA-30} # empty: no quota
if [[ -n $PINNED_QUOTA ]] && step pinned && ! LOG_DIR=${TMPDIR:-/tmp} bash -c 'source bench/lib.sh && quota_check'; then
	echo "bench/run.sh: no CPU quota on this machine: the pinned keep-alive and close paths run uncapped" >&2
	PINNED_QUOTA=""
fi
if step pinned && (($(nproc) >= 2)); then
	# One server core: the server on CPU 1, wrk on CPU 0, one worker (process) each, every row
	# PINNED_ROUNDS times (peers.sh's ROUNDS; the goals pair them round by round).  With keep-alive and with
	# a connection per request wrk's core saturates before the server's does (wrk 0.93-0.99 busy,
	# the floor's core 0.48-0.87): those two paths cap each server's tree at PINNED_QUOTA percent
	# of its core, so that rps compares the servers, not wrk.  Pipelined, every server but the
	# floor saturates its core first.
	export SERVER_CPUS=1 WRK_CPUS=0 CORRAL_WORKERS=1 UWSGI_PROCESSES=1 ROUNDS=${PINNED_ROUNDS:-5}
	if pinned ka; then
		SERVER_QUOTA=$PINNED_QUOTA PEERS="go-nethttp go-fasthttp floor" EXTRA_PEERS=bench/corral_peers.sh \
			bash bench/peers.sh >"$out/pinned.tsv"
	fi
	if pinned pipeline; then
		WRK_SCRIPT=$PWD/bench/pipeline.lua PEERS="go-nethttp go-fasthttp floor" EXTRA_PEERS=bench/corral_peers.sh \
			bash bench/peers.sh >"$out/pinned_pipeline.tsv"
	fi
	if pinned close; then
		SERVER_QUOTA=$PINNED_QUOTA WRK_CONNS=32 WRK_SCRIPT=$PWD/bench/close.lua PEERS="go-nethttp go-fasthttp uwsgi floor" \
			EXTRA_PEERS=bench/corral_peers.sh bash bench/peers.sh >"$out/pinned_close.tsv"
	fi
	# Behind nginx, nginx (one worker) shares CPU 1 with the backend: with a connection per
	# request nginx spends more CPU per request than any backend, so on wrk's core it would be
	# the bottleneck and every backend would score the same.
	if pinned nginx; then
		NGINX_WORKERS=1 BACKEND_WORKERS=1 CASES=$PINNED_NGINX_CASES bash bench/nginx.sh >"$out/pinned_nginx.tsv"
	fi
	unset SERVER_CPUS WRK_CPUS CORRAL_WORKERS UWSGI_PROCESSES ROUNDS
fi
if step profile && (($(nproc) >= 2)); then
	for p in ${PROFILE_PATHS:-keep-alive pipeline close nginx-uwsgi}; do
		bash bench/profile.sh "$p" >"$out/profile_$p.tsv"
	done
fi
if step nginx; then ROUNDS=${NGINX_ROUNDS:-3} bash bench/nginx.sh >"$out/nginx.tsv"; fi
if step tls; then bash bench/tls.sh >"$out/tls.tsv"; fi
if step reload; then bash bench/reload.sh >"$out/reload.tsv"; fi
if step term; then bash bench/term.sh >"$out/term.tsv"; fi
if step idle_conns; then bash bench/idle_conns.sh >"$out/idle_conns.tsv"; fi
if step idle; then bash bench/idle.sh >"$out/idle.tsv"; fi
if step wsgi; then
	PEERS="gunicorn-sync gunicorn-gthread gunicorn-gevent uwsgi" EXTRA_PEERS=bench/wsgi_peers.sh \
		bash bench/peers.sh >"$out/wsgi.tsv"
	CASES="nginx-uwsgi-corral-wsgi nginx-uwsgi-corral-wsgi-unpinned nginx-uwsgi-uwsgi nginx-http-corral-wsgi nginx-http-corral-wsgi-unpinned nginx-http-gunicorn-sync nginx-http-gunicorn-gthread" \
		bash bench/nginx.sh >"$out/wsgi_nginx.tsv"
	bash bench/slow.sh >"$out/wsgi_slow.tsv"
fi
if step metrics; then
	bash bench/metrics.sh throughput >"$out/metrics.tsv"
	bash bench/metrics.sh scrape >"$out/scrape.tsv"
fi
if step burst; then bash bench/burst.sh >"$out/burst.tsv"; fi

table() { # TSV on stdin -> markdown table
	awk -F'\t' 'NR == 1 {h = "|"; s = "|"; for (i = 1; i <= NF; i++) {h = h " " $i " |"; s = s " --- |"}; print h; print s; next}
		{r = "|"; for (i = 1; i <= NF; i++) r = r " " $i " |"; print r}'
}
have() { [[ -s $out/$1 ]]; } # a section is rendered only if its step left a TSV file
# pick FILE FAULT "COLUMNS": the header and the rows of reload.tsv whose fault is FAULT, with
# the columns named, in that order.
pick() {
	awk -F'\t' -v fault="$2" -v cols="$3" '
		NR == 1 {for (i = 1; i <= NF; i++) idx[$i] = i; n = split(cols, c, " ")
			for (j = 1; j <= n; j++) printf "%s%s", c[j], (j < n ? "\t" : "\n"); next}
		$idx["fault"] == fault {
			for (j = 1; j <= n; j++) printf "%s%s", ((c[j] in idx) ? $idx[c[j]] : "NA"), (j < n ? "\t" : "\n")
		}' "$1"
}
# span FILE COLUMN [FAULT]: "min" or "min-max" of a column over the rows (of that fault), NA left out.
span() {
	awk -F'\t' -v col="$2" -v fault="${3:-}" '
		NR == 1 {for (i = 1; i <= NF; i++) idx[$i] = i; next}
		(fault == "" || $idx["fault"] == fault) && (col in idx) && $idx[col] != "NA" {
			v = $idx[col] + 0; if (!n++ || v < lo) lo = v; if (n == 1 || v > hi) hi = v}
		END {if (!n) print "NA"; else if (lo == hi) print lo; else print lo "-" hi}' "$1"
}
# ratios FILE PEER...: corral's rows' rps over each PEER's rps in FILE (a peers.sh TSV).
ratios() {
	local f=$1
	shift
	awk -F'\t' -v peers="$*" '
		NR == 1 {next}
		{rps[$1] = $2; if ($1 ~ /^corral-/) order[++n] = $1}
		END {
			m = split(peers, p, " "); h = "name"; for (j = 1; j <= m; j++) h = h "\tx " p[j]; print h
			for (i = 1; i <= n; i++) {
				r = order[i]; line = r
				for (j = 1; j <= m; j++) line = line "\t" ((rps[r] + 0 > 0 && rps[p[j]] + 0 > 0) ? sprintf("%.2f", rps[r] / rps[p[j]]) : "NA")
				print line
			}
		}' "$f"
}
# floor_share FILE: a peers.sh or nginx.sh TSV with each server's share of its table's floor row
# ("floor"; behind nginx, the floor over the same protocol): x_floor_rps, its requests per second
# over the floor's; x_floor_cpu, its CPU time per request over the floor's.
floor_share() {
	awk -F'\t' '
		function fl(x) {return match(x, /^nginx-[a-z]+-/) ? substr(x, 1, RLENGTH) "floor" : "floor"}
		function ratio(a, b) {return (a + 0 > 0 && b + 0 > 0) ? sprintf("%.2f", a / b) : "NA"}
		NR == 1 {for (i = 1; i <= NF; i++) c[$i] = i; nginx = ("nginx_cpu_us_per_req" in c); next}
		{
			x = $1; name[++n] = x; rps[x] = $c["rps"]; p99[x] = $c["p99_ms"]; err[x] = $c["errors"]
			cpu[x] = ("cpu_us_per_req" in c) ? $c["cpu_us_per_req"] : "NA"
			if (nginx) ncpu[x] = $c["nginx_cpu_us_per_req"]
			steal[x] = ("steal_pct" in c) ? $c["steal_pct"] : "NA"
			rounds[x] = ("rps_rounds" in c) ? $c["rps_rounds"] : ""
		}
		END {
			printf "name\trps\tp99_ms\terrors\tcpu_us_per_req%s\tx_floor_rps\tx_floor_cpu\tsteal_pct%s\n",
				nginx ? "\tnginx_cpu_us_per_req" : "", ("rps_rounds" in c) ? "\trps_rounds" : ""
			for (i = 1; i <= n; i++) {
				x = name[i]; f = fl(x)
				printf "%s\t%s\t%s\t%s\t%s%s\t%s\t%s\t%s%s\n", x, rps[x], p99[x], err[x], cpu[x], nginx ? "\t" ncpu[x] : "",
					ratio(rps[x], rps[f]), ratio(cpu[x], cpu[f]), steal[x], ("rps_rounds" in c) ? "\t" rounds[x] : ""
			}
		}' "$1"
}
# goal LABEL FILE A B TARGET: a row of the goals table: A's requests per second over B's in
# FILE, the goal, whether this run meets it, A's share of the floor row (as floor_share), and
# the same ratio in CPU time per request (B's over A's: above 1, A costs less a request), which a
# shared machine moves less.  With rounds (an rps_rounds column) the ratio is the median of the
# rounds' ratios, A's round i over B's round i (run a few rows apart, in rounds whose order
# alternates: see lib.sh's run_rows), and round_ratios lists them all: best round over best
# round would compare two servers' luckiest minutes, which on a shared machine come at different
# times; without rounds, one run over the other.
goal() {
	[[ -s $2 ]] || return 0
	awk -F'\t' -v label="$1" -v a="$3" -v b="$4" -v t="$5" '
		function median(v, n,   i, j, x) {
			for (i = 2; i <= n; i++) {x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x}
			return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
		}
		NR == 1 {for (i = 1; i <= NF; i++) c[$i] = i; next}
		{r[$1] = $2; if ("cpu_us_per_req" in c) u[$1] = $c["cpu_us_per_req"]; if ("rps_rounds" in c) rr[$1] = $c["rps_rounds"]}
		END {
			v = (r[a] + 0 > 0 && r[b] + 0 > 0) ? r[a] / r[b] : -1
			list = "-"
			if (rr[a] != "" && rr[b] != "") {
				na = split(rr[a], ra, "/"); nb = split(rr[b], rb, "/"); n = 0; list = ""
				for (i = 1; i <= na && i <= nb; i++)
					if (ra[i] + 0 > 0 && rb[i] + 0 > 0) {q[++n] = ra[i] / rb[i]; list = list (n > 1 ? "/" : "") sprintf("%.2f", q[n])}
				v = n ? median(q, n) : -1
				if (!n) list = "NA"
			}
			f = match(a, /^nginx-[a-z]+-/) ? substr(a, 1, RLENGTH) "floor" : "floor"
			printf "%s\t%s / %s\t%s\t>= %.2f\t%s\t%s\t%s\t%s\n", label, a, b, (v < 0 ? "NA" : sprintf("%.2f", v)), t,
				(v < 0 ? "NA" : v >= t ? "met" : "**not met**"), (r[a] + 0 > 0 && r[f] + 0 > 0) ? sprintf("%.2f", r[a] / r[f]) : "NA",
				(u[a] + 0 > 0 && u[b] + 0 > 0) ? sprintf("%.2f", u[b] / u[a]) : "NA", list
		}' "$2"
}
# goals DIR: issue 21's goals, as ratios of the pinned step's TSVs in DIR (and of the 2-worker
# unpinned nginx step's, if DIR has it).
goals() {
	local d=$1
	printf 'path\tratio (requests per second)\tvalue\tgoal\tverdict\tx_floor_rps\tcpu_ratio\tround_ratios\n'
	goal "keep-alive, 64 conns" "$d/pinned.tsv" corral-event go-fasthttp 1.1
	goal "keep-alive, 64 conns" "$d/pinned.tsv" corral-goroutine go-nethttp 1.0
	goal "16-deep pipelining" "$d/pinned_pipeline.tsv" corral-event go-fasthttp 1.0
	goal "Connection: close" "$d/pinned_close.tsv" corral-event uwsgi 1.1
	goal "Connection: close" "$d/pinned_close.tsv" corral-event go-fasthttp 1.1
	goal "nginx, uwsgi" "$d/pinned_nginx.tsv" nginx-uwsgi-corral-event nginx-uwsgi-uwsgi 1.1
	goal "nginx, FastCGI (uWSGI over uwsgi)" "$d/pinned_nginx.tsv" nginx-fastcgi-corral-event nginx-uwsgi-uwsgi 1.1
	goal "nginx, FastCGI (uWSGI over FastCGI)" "$d/pinned_nginx.tsv" nginx-fastcgi-corral-event nginx-fastcgi-uwsgi 1.1
	goal "nginx 2-worker unpinned, uwsgi" "$d/nginx.tsv" nginx-uwsgi-corral-event nginx-uwsgi-uwsgi 1.1
	goal "nginx 2-worker unpinned, FastCGI (uWSGI over uwsgi)" "$d/nginx.tsv" nginx-fastcgi-corral-event nginx-uwsgi-uwsgi 1.1
	goal "nginx 2-worker unpinned, FastCGI (uWSGI over FastCGI)" "$d/nginx.tsv" nginx-fastcgi-corral-event nginx-fastcgi-uwsgi 1.1
}
R=$out/reload.tsv
RCOLS="name signals sent interval_ms duration_s requests rps connect read write timeout non2xx errors pids_seen"
LOADCOLS="duration_s requests rps connect read write timeout non2xx errors pids_seen"
load_line() { # FAULT: the wrk load of reload.tsv's rows of that fault, as measured
	echo "wrk -c ${RELOAD_CONNS:-32} on every row; the load lasted $(span "$R" duration_s "$1") s (as wrk measured it)"
}
{
	echo "# Benchmarks"
	echo
	echo "Generated by \`make bench\` (bench/run.sh) on $(date -u '+%Y-%m-%d %H:%M UTC'): $(nproc) cores,"
	echo "Linux $(uname -r), $(go version | awk '{print $3}'), wrk $(wrk -v 2>&1 | awk 'NR==1 {print $2}')."
	echo "Every server runs 2 workers on 127.0.0.1 (the pinned step: one core, see there), one at a time, on"
	echo "a shared machine: compare rows of one table with each other, not with another run. Steps rerun"
	echo "with BENCH_STEPS keep the other tables of the earlier run, so tables may come from different runs:"
	echo "$(for f in "$out"/*.tsv; do [[ -s $f ]] && printf '%s %s, ' "$(basename "$f" .tsv)" "$(date -u -r "$f" '+%H:%M')"; done | sed 's/, $//') UTC."
	echo
	if have peers.tsv; then
		echo "## Ratios: corral's requests per second over its peers', same run"
		echo
		echo "Keep-alive (the table below):"
		echo
		ratios "$out/peers.tsv" go-nethttp go-fasthttp gunicorn-sync uwsgi | table
		echo
		if have pipeline.tsv; then
			echo "16-deep pipelining:"
			echo
			ratios "$out/pipeline.tsv" go-nethttp go-fasthttp | table
			echo
		fi
		echo "## Hello world, keep-alive (wrk -c ${WRK_CONNS:-64} -d ${WRK_DURATION:-8}s)"
		echo
		table <"$out/peers.tsv"
		echo
		echo "![requests per second](benchmarks.png)"
		echo
	fi
	if have close.tsv; then
		echo "## Hello world, Connection: close (a new connection per request)"
		echo
		table <"$out/close.tsv"
		echo
	fi
	if have pipeline.tsv; then
		echo "## Hello world, 16 requests pipelined per connection"
		echo
		table <"$out/pipeline.tsv"
		echo
	fi
	if have pinned.tsv || have pinned_pipeline.tsv || have pinned_close.tsv || have pinned_nginx.tsv; then
		echo "## One server core: every path of issue 21, the server on CPU 1, wrk on CPU 0"
		echo
		echo "On a machine this small the load generator takes a core, and two worker processes share the"
		echo "other with it. Here every server is pinned to CPU 1 (Go sets GOMAXPROCS to 1 from the affinity)"
		echo "and wrk to CPU 0; corral runs one worker, uWSGI one process. Behind nginx, nginx (one worker)"
		echo "shares CPU 1 with the backend: with a connection per request it spends more CPU per request"
		echo "than any backend (nginx_cpu_us_per_req), so on wrk's core it would cap every backend at the"
		echo "same rate. The floor (bench/apps/gohello/floor: one thread, raw epoll, a fixed response for"
		echo "every request it finds, no parsing, no handler; over uwsgi and FastCGI behind nginx) is the"
		echo "most this kernel and loopback allow: x_floor_rps is each server's requests per second over the"
		echo "floor's, x_floor_cpu its CPU time per request over the floor's (it moves less than rps on a"
		echo "shared machine). cpu_us_per_req: the server's (the backend's) tree, user+system, per request."
		echo "Every row ran ${PINNED_ROUNDS:-5} times, in rounds through all the rows, the even rounds in the reverse"
		echo "order (rps_rounds: every round's rps, in the order of the rounds). A row below is its best round;"
		echo "a goal's ratio is the median of the rounds' ratios, each round's two rows a few rows apart (a"
		echo "minute at most), which on a shared machine, whose speed drifts by half from one minute to the"
		echo "next, says more than best over best. steal_pct: the percent of that best round's measured run"
		echo "the hypervisor gave CPU 1 to another guest."
		if [[ -n $PINNED_QUOTA ]]; then
			echo "With keep-alive and with a connection per request, wrk's core saturates before the server's"
			echo "(measured: wrk's core 0.93-0.99 busy, the floor's 0.48-0.87), so rps would compare wrk with itself:"
			echo "on those two paths each server's tree gets ${PINNED_QUOTA}% of CPU 1 (a cgroup CPU quota, 10 ms period),"
			echo "and the server is the bottleneck. Their p99 includes the quota's waits (up to one period)."
		fi
		if [[ $CORRAL_DEFER_ACCEPT == 1 ]]; then
			echo "corral's rows here and behind nginx bind with --defer-accept (TCP_DEFER_ACCEPT), as uWSGI"
			echo "binds by default and the floor does: a connection is accepted once its request came."
		fi
		echo
		echo "### Issue 21's goals, this run"
		echo
		echo "Computed by bench/run.sh from the tables below (and the 2-worker unpinned nginx step's, further"
		echo "down), same run: value, the median of round_ratios, the first server's requests per second over"
		echo "the second's in each round; x_floor_rps: the first server's best round over the floor's;"
		echo "cpu_ratio: the same comparison in CPU time per request (the second server's over the first's:"
		echo "above 1, the first costs less a request), which a shared machine moves less than rps:"
		echo
		goals "$out" | table
		echo
		if [[ -s $BEFORE/pinned.tsv ]]; then
			echo "Before (main, $(cat "$BEFORE/WHEN" 2>/dev/null || echo "see $BEFORE/README")):"
			echo
			goals "$BEFORE" | table
			echo
		fi
		for f in pinned:"Keep-alive, 64 connections" pinned_pipeline:"16 requests pipelined per connection (pipeline.lua), 64 connections" \
			pinned_close:"Connection: close, 32 connections (close.lua): a new connection per request" \
			pinned_nginx:"Behind nginx: uwsgi_pass and fastcgi_pass (keepalive, fastcgi_keep_conn on), wrk -c 64"; do
			have "${f%%:*}.tsv" || continue
			echo "### ${f#*:}"
			echo
			floor_share "$out/${f%%:*}.tsv" | table
			echo
			if [[ -s $BEFORE/${f%%:*}.tsv ]]; then
				echo "Before (main, $BEFORE; see its README: wrk -c 64 on every path, no floor row then):"
				echo
				floor_share "$BEFORE/${f%%:*}.tsv" | table
				echo
			fi
		done
	fi
	profiles="" # the paths in the issue's order, then any other
	for f in "$out"/profile_{keep-alive,pipeline,close,nginx-uwsgi}.tsv "$out"/profile_*.tsv; do
		[[ -s $f && " $profiles " != *" $(basename "$f" .tsv) "* ]] && profiles+=" $(basename "$f" .tsv)"
	done
	if [[ -n $profiles ]]; then
		echo "## Where the time per request goes (bench/profile.sh)"
		echo
		echo "Each path on one server core as in the pinned step, a bounded wrk run (${PROFILE_SECONDS:-4} s) under"
		echo "\`perf record -g\` of the server's tree, then one under \`strace -c -f\`. Each perf sample goes to"
		echo "one category: syscalls (kernel) if taken in the kernel (split below by system call), else the"
		echo "innermost Go frame that names one: syscall entry/exit on the Go side, parser (worker/http1 and"
		echo "its uwsgi parser; fasthttp's header parsing; the floor's counting), response writing, handler,"
		echo "Go runtime (GC, malloc), scheduler (schedule, findRunnable, netpoll, park/ready, channels,"
		echo "timers, sync), server loop (the server's other code: corral's event loop and conn state, net,"
		echo "internal/poll). Microseconds per request = the share of samples times the tree's CPU time per"
		echo "request in the perf run (perf's own overhead included). System calls per request: strace's"
		echo "counts over the requests wrk completed while it was attached (rows below 0.005 left out)."
		echo "The corral rows include the arbiter's few calls."
		echo
		if [[ -s $BEFORE/ANALYSIS.md ]]; then
			echo "### What the before tables say"
			echo
			cat "$BEFORE/ANALYSIS.md"
			echo
		fi
		if [[ -s bench/results/CHANGES.md ]]; then
			echo "### What changed since"
			echo
			cat bench/results/CHANGES.md
			echo
		fi
		for p in $profiles; do
			echo "### ${p#profile_}: this run"
			echo
			table <"$out/$p.tsv"
			echo
			if [[ -s $BEFORE/$p.tsv ]]; then
				echo "### ${p#profile_}: before (main, bench/results/before/$p.tsv)"
				echo
				table <"$BEFORE/$p.tsv"
				echo
			fi
		done
	fi
	if have nginx.tsv; then
		echo "## Behind nginx (wrk -c 64 through nginx to each server)"
		echo
		echo "2 nginx workers, 2 backend workers (processes), unpinned, every case ${NGINX_ROUNDS:-3} times in rounds as in"
		echo "the pinned step (each row: its best round). cpu_us_per_req: the backend's tree;"
		echo "nginx_cpu_us_per_req: nginx's. Issue 21's goal here, same run (the median of the rounds' ratios):"
		echo
		{
			printf 'path\tratio (requests per second)\tvalue\tgoal\tverdict\tx_floor_rps\tcpu_ratio\tround_ratios\n'
			goals "$out" | grep "unpinned"
		} | table
		echo
		table <"$out/nginx.tsv"
		echo
	fi
	if have idle_conns.tsv; then
		echo "## Memory per idle keep-alive connection (${IDLE_CONNS:-10000} connections, one request each, 1 worker)"
		echo
		table <"$out/idle_conns.tsv"
		echo
	fi
	if have reload.tsv && head -1 "$R" | grep -q $'\tfault\t'; then
		echo "## Faults under load: no fault (the baseline of the runs below)"
		echo
		echo "$(load_line none); no signal. connect/read/write/timeout: wrk's socket errors; non2xx: responses"
		echo ">= 400; errors: their sum; pids_seen: distinct PIDs in the server's tree over the run. Below, sent:"
		echo "the signals delivered; interval_ms: the mean gap between them, measured on each row."
		echo
		pick "$R" none "name $LOADCOLS" | table
		echo
		echo "## HUP under load"
		echo
		echo "$(load_line hup); a HUP to the master every $(span "$R" interval_ms hup) ms (the mean gap between the"
		echo "signals sent, per row, measured), $(span "$R" sent hup) per row."
		echo
		pick "$R" hup "$RCOLS" | table
		echo
		echo "## TTIN/TTOU under load"
		echo
		echo "$(load_line scale); TTIN and TTOU alternately (+1 worker, -1 worker) every $(span "$R" interval_ms scale) ms"
		echo "(measured), $(span "$R" sent scale) per row. uWSGI has no such signals."
		echo
		pick "$R" scale "$RCOLS" | table
		echo
		echo "## Binary upgrade under load"
		echo
		echo "$(load_line upgrade); the upgrade began $(span "$R" first_ms upgrade) ms into it. corral: one USR2"
		echo "(the new arbiter takes over by itself). Gunicorn: USR2, then, once the new master has its workers"
		echo "and ${RELOAD_UPGRADE_SETTLE_MS:-1000} ms more, WINCH and TERM to the old master. uWSGI has no binary"
		echo "upgrade of its own: its row is one HUP, which re-executes its binary in place. takeover_ms: from the"
		echo "first signal until the old master was gone (uWSGI: until all its workers were new)."
		echo
		pick "$R" upgrade "name signals sent takeover_ms $LOADCOLS" | table
		echo
		echo "## SIGKILL of a worker under load"
		echo
		echo "$(load_line kill); SIGKILL to a worker (a child of the master, picked at random) every"
		echo "$(span "$R" interval_ms kill) ms (measured), $(span "$R" sent kill) per row. Only the requests in flight"
		echo "on the killed worker may fail: at most one per connection it held. conns_killed: the connections the"
		echo "killed workers held when killed (counted while stopped by SIGSTOP), summed: errors above it failed elsewhere."
		echo
		pick "$R" kill "$RCOLS conns_killed" | table
		echo
	elif have reload.tsv; then # a reload.tsv from before the fault columns
		echo "## Reloads and scaling under load (wrk -c ${RELOAD_CONNS:-32} -d ${RELOAD_DURATION:-10}s)"
		echo
		table <"$R"
		echo
	fi
	if have term.tsv; then
		echo "## TERM under load"
		echo
		echo "bench/apps/gohello/termload -c ${TERM_CONNS:-32}, then TERM to the master after $(span "$out/term.tsv" load_s) s"
		echo "of load (load_s, measured); the load goes on until each connection has a connect refused. after_term:"
		echo "requests answered after the TERM; drain_ms: until the master exited; connect: failed connects (the"
		echo "listener closed: expected, at most one per connection); accepted_failed: read + write + timeout +"
		echo "non2xx, requests broken on connections the kernel had accepted (close: a new connection per request)."
		echo
		table <"$out/term.tsv"
		echo
	fi
	if have tls.tsv; then
		echo "## TLS and HTTP/2 (bench/tls.sh)"
		echo
		echo "h2-*: HTTP/2 by ALPN over kept connections (h2load -n ${H2_REQUESTS:-200000} -c ${H2_CONNS:-16} -m ${H2_STREAMS:-16}),"
		echo "corral -w 2 -k goroutine against net/http alone. hs-*: a new connection and a full TLS 1.2"
		echo "handshake per request (wrk with close.lua), ${HS_CIPHER:-ECDHE-ECDSA-AES128-GCM-SHA256} and one ECDSA P-256"
		echo "certificate on both sides, corral -w 2 against nginx with 2 worker processes. The ratio rows"
		echo "are of this run."
		echo
		table <"$out/tls.tsv"
		echo
	fi
	if have idle.tsv; then
		echo "## The idle arbiter and worker boot"
		echo
		table <"$out/idle.tsv"
		echo
	fi
	if have metrics.tsv; then
		echo "## What the metrics cost: --metrics-bind off and on, same run"
		echo
		echo "wrk -c ${WRK_CONNS:-64} -d ${WRK_DURATION:-5}s on 2 workers of each type, ${ROUNDS:-3} rounds of off and on"
		echo "alternately; with the metrics on, each worker fills its scoreboard and /metrics is scraped every"
		echo "${SCRAPE_EVERY:-1} s. rps: the median of the rounds, and of their on/off ratios; CPU per request: the server"
		echo "tree's, the least of the rounds (the least disturbed); cost_pct is its on/off (it moves less than rps"
		echo "on a shared machine). \`go test -bench ServeHTTP ./worker\` has the request path alone, off and on."
		echo
		table <"$out/metrics.tsv"
		echo
	fi
	if have scrape.tsv; then
		echo "## A /metrics scrape with ${SCRAPE_WORKERS:-16} workers"
		echo
		echo "curl's time_total over ${SCRAPES:-100} scrapes one after the other, on 127.0.0.1."
		echo
		table <"$out/scrape.tsv"
	fi
	if have wsgi.tsv; then
		echo
		echo "## Python WSGI: hello world (apps/hello_wsgi.py), keep-alive (wrk -c ${WRK_CONNS:-64} -d ${WRK_DURATION:-8}s)"
		echo
		echo "Every server: 2 workers, Debian's /usr/bin/python3. corral-wsgi: \`-k wsgi\` (each worker a Go"
		echo "process and a Python process; with 2 workers on 2 CPUs, \`--cpu-affinity auto\`, the default,"
		echo "runs each worker's two processes on one CPU); -threads: \`--threads 4\`; -unpinned:"
		echo "\`--cpu-affinity off\` (the processes placed by the kernel)."
		echo "uWSGI's --http-socket closes every connection. Ratios of corral's rows over each peer's"
		echo "requests per second, same run:"
		echo
		ratios "$out/wsgi.tsv" gunicorn-sync gunicorn-gthread gunicorn-gevent uwsgi | table
		echo
		table <"$out/wsgi.tsv"
	fi
	if have wsgi_nginx.tsv; then
		echo
		echo "## Python WSGI behind nginx (wrk -c 64 through nginx; uwsgi_pass, proxy_pass)"
		echo
		echo "corral -k wsgi's requests per second over uWSGI's behind uwsgi_pass: $(awk -F'\t' '{r[$1] = $2} END {
			b = r["nginx-uwsgi-uwsgi"]; s = ""
			n = split("nginx-uwsgi-corral-wsgi nginx-uwsgi-corral-wsgi-unpinned nginx-http-corral-wsgi nginx-http-corral-wsgi-unpinned", c, " ")
			for (i = 1; i <= n; i++) s = s (i > 1 ? ", " : "") c[i] " " ((r[c[i]] + 0 > 0 && b + 0 > 0) ? sprintf("%.2f", r[c[i]] / b) : "NA")
			print s}' "$out/wsgi_nginx.tsv")."
		echo
		table <"$out/wsgi_nginx.tsv"
	fi
	if have wsgi_slow.tsv; then
		echo
		echo "## Python WSGI beside slow clients"
		echo
		echo "wrk -c ${SLOW_WRK_CONNS:-16} -d ${WRK_DURATION:-8}s alone, then again while ${SLOW_CLIENTS:-200} clients send their"
		echo "requests a byte every ${SLOW_INTERVAL:-100ms} (bench/apps/gohello/slowclients). kept: the second rate over the"
		echo "first; slow_done: the slow clients' requests answered."
		echo
		table <"$out/wsgi_slow.tsv"
	fi
	if have burst.tsv; then
		echo
		echo "## A bursty load: -w MAX against -w 1:MAX"
		echo
		echo "sync workers of the demo app (bench/burst.sh): ${BURST_IDLE:-30} s idle, then ${BURST_COUNT:-1} time(s) ${BURST_SECONDS:-10} s of"
		echo "wrk -c${BURST_CONNS:-64} GET /work?ms=20 followed by ${BURST_IDLE:-30} s idle; -w 1:MAX with --scale-down-delay ${BURST_DELAY:-5}. p99_ms:"
		echo "the worst burst's. worker_seconds: the integral of the live workers (booting, serving, retiring)"
		echo "over the run, sampled about every 100 ms. Each round runs both herds (fixed first in odd rounds)."
		echo "**The goal of -w 1:MAX: a p99 within 20% of fixed MAX's (p99 ratio <= 1.20) at half its"
		echo "worker-seconds or less (worker-seconds ratio <= 0.50).**"
		echo
		table <"$out/burst.tsv"
		echo
		echo "This run, scaled over fixed, round by round:"
		echo
		awk -F'\t' 'NR == 1 {for (i = 1; i <= NF; i++) idx[$i] = i; next}
			{r = $idx["round"]; p[r, $idx["name"]] = $idx["p99_ms"]; w[r, $idx["name"]] = $idx["worker_seconds"]; if (!(r in seen)) {seen[r]; order[++n] = r}}
			END {
				print "| round | p99 ratio | worker-seconds ratio | goal met |"; print "| --- | --- | --- | --- |"
				for (k = 1; k <= n; k++) {
					r = order[k]
					if (p[r, "fixed"] + 0 <= 0 || w[r, "fixed"] + 0 <= 0 || p[r, "scaled"] == "NA") { print "| " r " | NA | NA | NA |"; continue }
					pr = p[r, "scaled"] / p[r, "fixed"]; wr = w[r, "scaled"] / w[r, "fixed"]
					printf "| %s | %.2f | %.2f | %s |\n", r, pr, wr, (pr <= 1.2 && wr <= 0.5) ? "yes" : "no"
					ps[++m] = pr; ws[m] = wr
				}
				if (m > 1) {
					pm = median(ps, m); wm = median(ws, m)
					printf "| median | %.2f | %.2f | %s |\n", pm, wm, (pm <= 1.2 && wm <= 0.5) ? "yes" : "no"
				}
			}
			function median(a, n,   i, j, t) {
				for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
				return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
			}' "$out/burst.tsv"
	fi
} >docs/benchmarks.md
if have peers.tsv; then
	awk -F'\t' 'NR > 1 && $2 != "NA" {print $1 "\t" $2}' "$out/peers.tsv" >"$out/rps.dat"
	gnuplot <<GP
set terminal png size 900,420
set output "docs/benchmarks.png"
set style data histograms
set style fill solid 0.8
set ylabel "requests/s"
set xtics rotate by -30
set key off
set title "hello world, keep-alive, 2 workers, 127.0.0.1"
plot "$out/rps.dat" using 2:xtic(1)
GP
fi
echo "wrote docs/benchmarks.md and docs/benchmarks.png (raw TSV in $out)"
