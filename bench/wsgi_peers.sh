# bench/wsgi_peers.sh -- corral's WSGI rows for peers.sh (sourced through EXTRA_PEERS): the
# hello world of apps/hello_wsgi.py, as the Python peers serve it, CORRAL_WORKERS (2) workers.
#   corral-wsgi           -k wsgi: each worker one Python process, requests one at a time; with a
#                         worker for every CPU here, each worker's Go and Python processes on one
#                         CPU (--cpu-affinity auto, the default)
#   corral-wsgi-threads   -k wsgi --threads 4 (Gunicorn's gthread)
#   corral-wsgi-unpinned  -k wsgi --cpu-affinity off: the processes placed by the kernel
CORRAL=${CORRAL:-$(cd "$BENCH_DIR/.." && pwd)/bin/corral}
CORRAL_WORKERS=${CORRAL_WORKERS:-2}
CORRAL_WSGI_ARGS=(-w "$CORRAL_WORKERS" -k wsgi --python /usr/bin/python3 --chdir "$APPS_DIR"
	-b "$HOST:{PORT}" "${CORRAL_LISTEN[@]}" --log-level warning hello_wsgi:application)
row bench_peer corral-wsgi "$CORRAL" "${CORRAL_WSGI_ARGS[@]}"
row bench_peer corral-wsgi-threads "$CORRAL" --threads 4 "${CORRAL_WSGI_ARGS[@]}"
row bench_peer corral-wsgi-unpinned "$CORRAL" --cpu-affinity off "${CORRAL_WSGI_ARGS[@]}"
