# bench/corral_peers.sh -- corral's rows for peers.sh (sourced through EXTRA_PEERS).
# One row per worker type this build has, CORRAL_WORKERS (2) workers like the peers, the demo
# app's hello world.  CORRAL_PEERS (all): the rows to run, e.g. "corral-event corral-goroutine".
CORRAL=${CORRAL:-$(cd "$BENCH_DIR/.." && pwd)/bin/corral}
CORRAL_WORKERS=${CORRAL_WORKERS:-2}
CORRAL_PEERS=${CORRAL_PEERS:-all}
corral_peer() {
	[[ $CORRAL_PEERS == all || " $CORRAL_PEERS " == *" $1 "* ]] || return 0
	row bench_peer "$@"
}
for k in goroutine sync event; do
	"$CORRAL" -k "$k" --check-config demo >/dev/null 2>&1 || continue
	corral_peer "corral-$k" "$CORRAL" -w "$CORRAL_WORKERS" -k "$k" -b "$HOST:{PORT}" "${CORRAL_LISTEN[@]}" --log-level warning demo
done
# The demo's hello world never blocks: the event worker may run it on its loop.
corral_peer corral-event-inline "$CORRAL" -w "$CORRAL_WORKERS" -k event --event-inline -b "$HOST:{PORT}" "${CORRAL_LISTEN[@]}" --log-level warning demo
