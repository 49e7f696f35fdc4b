#!/usr/bin/env bash
# bench/tls.sh -- TLS and HTTP/2: corral against net/http and nginx, one server at a time, on 127.0.0.1.
#
# Usage:
#   bash bench/tls.sh > tls.tsv            # every case (BENCH_STEPS=tls in bench/run.sh)
#   H2_REQUESTS=20000 DURATION=3 bash bench/tls.sh   # a quick look
#
# One certificate for every server: ECDSA P-256, self-signed, made here with openssl. The cases:
#   h2-corral-goroutine   corral -w 2 -k goroutine --certfile ...: HTTP/2 by ALPN
#   h2-go-nethttp         net/http alone (bench/apps/gohello/nethttp -cert ...), HTTP/2 by ALPN
#       measured with h2load -n $H2_REQUESTS -c $H2_CONNS -m $H2_STREAMS (streams per connection)
#       -t $H2_THREADS: requests per second over kept HTTP/2 connections.
#   hs-corral-goroutine, hs-corral-sync   corral -w 2, TLS 1.2 and one suite only
#   hs-nginx              nginx, 2 worker processes, return 200 "Hello, World!", the same
#                         protocol (ssl_protocols TLSv1.2) and suite (ssl_ciphers)
#       measured with wrk -c $HS_CONNS -d $DURATION and close.lua (Connection: close): every
#       request is a new TCP connection and a full TLS handshake (wrk resumes no session), so
#       requests per second are handshakes per second.  The suite, $HS_CIPHER, is the same on
#       both sides; TLS 1.2 because Go lets no TLS 1.3 suite be chosen.
# stdout: a header, then one TSV row per case:
#   name  tool  rps  errors
# then, as rows too, the ratios of one run: h2-ratio (corral over net/http) and hs-ratio-K
# (corral -k K over nginx).  errors = h2load's failed+errored, or wrk's socket errors plus
# non-2xx answers.  Logs stay in $LOG_DIR.
#
# Environment (defaults): H2_REQUESTS (200000) H2_CONNS (16) H2_STREAMS (16) H2_THREADS (1)
#   HS_CONNS (32) DURATION (8, seconds) WARMUP (2, seconds)
#   HS_CIPHER (ECDHE-ECDSA-AES128-GCM-SHA256) NGINX (nginx) CORRAL (bin/corral)
#   plus those of lib.sh (WRK_THREADS, WRK_TIMEOUT, START_TIMEOUT, STOP_TIMEOUT, BENCHBIN, ...).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
need h2load wrk openssl curl
NGINX=${NGINX:-nginx}
CORRAL=${CORRAL:-$PWD/bin/corral}
H2_REQUESTS=${H2_REQUESTS:-200000}
H2_CONNS=${H2_CONNS:-16}
H2_STREAMS=${H2_STREAMS:-16}
H2_THREADS=${H2_THREADS:-1}
HS_CONNS=${HS_CONNS:-32}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
HS_CIPHER=${HS_CIPHER:-ECDHE-ECDSA-AES128-GCM-SHA256}
trap 'stop_server' EXIT
trap 'stop_server; exit 130' INT TERM

dir=$LOG_DIR/tls
mkdir -p "$dir"
cert=$dir/cert.pem key=$dir/key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$key" -out "$cert" \
	-days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null || die "openssl could not make a certificate"
mkdir -p "$BENCHBIN"
(cd "$APPS_DIR/gohello" && go build -o "$BENCHBIN/" ./nethttp) || die "go build failed"

# wait_tls PORT: poll GET https://127.0.0.1:PORT/ until it answers 200.
wait_tls() {
	local deadline=$((SECONDS + START_TIMEOUT))
	while ((SECONDS < deadline)); do
		alive "$SERVER_PID" || return 1
		curl -kfsS -m 1 -o /dev/null "https://$HOST:$1/" 2>/dev/null && { remember_tree; return 0; }
		sleep 0.1
	done
	return 1
}

# h2 NAME PORT: h2load against the running server; prints the row.
h2() {
	local out=$LOG_DIR/$1.h2load
	h2load -n "$((H2_REQUESTS / 10))" -c "$H2_CONNS" -m "$H2_STREAMS" -t "$H2_THREADS" "https://$HOST:$2/" >/dev/null 2>&1 # warm-up
	timeout -k 5 120 h2load -n "$H2_REQUESTS" -c "$H2_CONNS" -m "$H2_STREAMS" -t "$H2_THREADS" "https://$HOST:$2/" >"$out" 2>&1
	local rps errs proto
	rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$out")
	errs=$(awk '/^requests:/ {print $10 + $12}' "$out")
	proto=$(awk '/^Application protocol:/ {print $3}' "$out")
	[[ $proto == h2 ]] || log "$1: h2load negotiated '${proto:-nothing}', not h2"
	printf '%s\th2load -c%s -m%s\t%s\t%s\n' "$1" "$H2_CONNS" "$H2_STREAMS" "${rps:-NA}" "${errs:-NA}"
}

# hs NAME PORT: wrk with a new connection and handshake per request; prints the row.
hs() {
	local out=$LOG_DIR/$1.wrk
	local -a cmd=(timeout --foreground -k 5 $((DURATION + 15)) wrk -t"$WRK_THREADS" -c"$HS_CONNS"
		--timeout "${WRK_TIMEOUT}s" -s "$BENCH_DIR/close.lua" "https://$HOST:$2/")
	[[ -n $WRK_CPUS ]] && cmd=(taskset -c "$WRK_CPUS" "${cmd[@]}")
	((WARMUP > 0)) && "${cmd[@]}" -d"${WARMUP}s" >/dev/null 2>&1
	"${cmd[@]}" -d"${DURATION}s" >"$out" 2>&1
	if ! parse_wrk "$out"; then
		printf '%s\twrk close.lua -c%s\tNA\tNA\n' "$1" "$HS_CONNS"
		return
	fi
	local rps errs
	rps=$(calc "$W_requests / ($W_duration_us / 1000000)")
	errs=$((W_connect + W_read + W_write + W_timeout + W_status))
	printf '%s\twrk close.lua -c%s\t%.0f\t%s\n' "$1" "$HS_CONNS" "$rps" "$errs"
}

# case NAME KIND ARGV...: start the server (ARGV, {PORT} replaced), measure with KIND, stop it.
case_() {
	local name=$1 kind=$2 port
	shift 2
	port=$(free_port) || die "no free port"
	local -a argv=("${@//\{PORT\}/$port}")
	log "$name: ${argv[*]}"
	start_server "$name" "${argv[@]}"
	if ! wait_tls "$port"; then
		log "$name did not serve; see $LOG_DIR/$name.log"
		printf '%s\t%s\tNA\tNA\n' "$name" "$kind"
		stop_server
		return
	fi
	"$kind" "$name" "$port"
	stop_server
}

nginx_conf() { # PORT -> the config on stdout
	cat <<EOF
worker_processes 2;
error_log stderr warn;
pid $dir/nginx.pid;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $dir/body; proxy_temp_path $dir/proxy; fastcgi_temp_path $dir/fastcgi;
	uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
	server {
		listen $HOST:$1 ssl;
		ssl_certificate $cert;
		ssl_certificate_key $key;
		ssl_protocols TLSv1.2;
		ssl_ciphers $HS_CIPHER;
		location / { return 200 "Hello, World!"; }
	}
}
EOF
}

# nginx gets its config written with the port, so it runs through a small shell.
run_nginx() { # PORT
	nginx_conf "$1" >"$dir/nginx.conf"
	exec "$NGINX" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;'
}
export -f nginx_conf run_nginx
export dir cert key HS_CIPHER HOST NGINX

printf 'name\ttool\trps\terrors\n'
rows=$LOG_DIR/tls.rows
{
	case_ h2-corral-goroutine h2 "$CORRAL" -w 2 -k goroutine -b "$HOST:{PORT}" --certfile "$cert" --keyfile "$key" demo
	case_ h2-go-nethttp h2 "$BENCHBIN/nethttp" -addr "$HOST:{PORT}" -cert "$cert" -key "$key"
	for k in goroutine sync; do
		case_ "hs-corral-$k" hs "$CORRAL" -w 2 -k "$k" -b "$HOST:{PORT}" --certfile "$cert" --keyfile "$key" \
			--ssl-version TLSv1_2 --ciphers "$HS_CIPHER" demo
	done
	case_ hs-nginx hs bash -c 'run_nginx "$0"' "{PORT}"
} | tee "$rows"
# The ratios of this run.
awk -F'\t' '{rps[$1] = $3}
	function ratio(a, b) { return (rps[a] + 0 > 0 && rps[b] + 0 > 0) ? sprintf("%.2f", rps[a] / rps[b]) : "NA" }
	END {
		printf "h2-ratio\tcorral goroutine / net/http\t%s\t-\n", ratio("h2-corral-goroutine", "h2-go-nethttp")
		printf "hs-ratio-goroutine\tcorral goroutine / nginx\t%s\t-\n", ratio("hs-corral-goroutine", "hs-nginx")
		printf "hs-ratio-sync\tcorral sync / nginx\t%s\t-\n", ratio("hs-corral-sync", "hs-nginx")
	}' "$rows"
