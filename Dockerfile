# corral in a container: a static binary (CGO off) in a FROM scratch image,
# serving the demo app. Build and run:
#
#   docker build -t corral .
#   docker run --rm -p 8000:8000 -p 9100:9100 --cpus 2 --memory 512m corral
#
# corral is PID 1: it reaps every orphan re-parented to it, ignores WINCH
# (a terminal's resize under docker run -t), and on TERM (docker stop) waits
# --shutdown-delay, then drains within --graceful-timeout. Give docker stop
# more than both: docker stop -t 40 for the defaults below (--print-config
# prints the sum). docs/containers.md has the rest; examples/docker/ builds
# your own handler the same way.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/corral ./cmd/corral
# An empty folder the workers' user owns: scratch has none to put the
# control socket in.
RUN mkdir -p /out/run

# The tests (integration/docker_test.go) build this stage, from here to the
# end, with the binary they built instead of the build stage's.
FROM scratch
COPY --from=build /out/corral /corral
COPY --from=build --chown=65534:65534 /out/run /run/corral
# Settings by environment (CORRAL_<FLAG>), so that the health check below,
# which runs in the container with the same environment, finds /readyz.
# -w auto: the CPUs of the container's cgroup (docker run --cpus); the
# herd's memory budget (--max-memory auto) is 90% of docker run --memory.
ENV CORRAL_BIND=0.0.0.0:8000 \
    CORRAL_CONTROL_SOCKET=/run/corral/corral.ctl \
    CORRAL_METRICS_BIND=0.0.0.0:9100 \
    CORRAL_WORKERS=auto \
    CORRAL_SHUTDOWN_DELAY=5 \
    CORRAL_GRACEFUL_TIMEOUT=30
EXPOSE 8000 9100
USER 65534:65534
STOPSIGNAL SIGTERM
# corral ctl ping asks the arbiter over its control socket
# ($CORRAL_CONTROL_SOCKET, the same environment) and exits 0 once the
# workers are ready; `corral probe` (GET /readyz at $CORRAL_METRICS_BIND)
# is the alternative for an image without a writable folder.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/corral", "ctl", "ping"]
ENTRYPOINT ["/corral"]
CMD ["demo"]
