# corral's two commands: `make run` serves the demo app on 127.0.0.1:8000,
# `make test` runs every test on a fresh machine (installing what is missing).
GO      ?= go
BIN     := bin/corral
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT     := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get
# Debian packages the tests need, as "command:package".
# dockerd (docker.io) runs the container tests (integration/docker_test.go starts it).
TEST_TOOLS := systemd-socket-activate:systemd nginx:nginx python3:python3 node:nodejs dockerd:docker.io prometheus:prometheus promtool:prometheus curl:curl openssl:openssl
# Python modules the -k wsgi tests import with Debian's /usr/bin/python3, as "module:package".
TEST_PYTHON := django:python3-django flask:python3-flask

.PHONY: build run test deps lint vet unit fuzz integration bench soak clean

# --version: the build info's VCS revision (-buildvcs=auto, where Go can read it; not in a git
# worktree), and git's description of the tree as the version.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null)
build:
	$(GO) build -buildvcs=auto -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/corral

run: build
	$(BIN) -w 2 -b 127.0.0.1:8000 demo

test: deps lint unit fuzz integration

# deps installs the test tools that are missing, and the Go modules.
deps:
	@missing=""; for tp in $(TEST_TOOLS); do command -v "$${tp%%:*}" >/dev/null || missing="$$missing $${tp##*:}"; done; \
	for mp in $(TEST_PYTHON); do /usr/bin/python3 -c "import $${mp%%:*}" 2>/dev/null || missing="$$missing $${mp##*:}"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; $(APT) update -q && $(APT) install -y -q $$missing; fi
	$(GO) mod download
	@command -v h2spec >/dev/null || [ -x "$$($(GO) env GOPATH)/bin/h2spec" ] || \
		{ echo "installing: h2spec"; $(GO) install github.com/summerwind/h2spec/cmd/h2spec@latest; }
	cd examples/kubernetes && $(GO) mod download

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# unit also runs the Kubernetes manifests' test, a module of its own
# (examples/kubernetes/go.mod), so the main module needs no k8s.io.
unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)
	cd examples/kubernetes && $(GO) vet ./... && $(GO) test -race -count=1 ./...

# fuzz runs the HTTP/1.1 and uwsgi parsers' fuzz targets, the differential one
# (worker/http1 against net/http) and the uwsgi/FastCGI REQUEST_URI fast path, each
# for a bounded count of inputs (10 to 20 s here); their seed corpora are in
# testdata/fuzz. A count, not a time: with -fuzztime 10s, Go 1.26's coordinator can
# fail at the deadline with a bare "context deadline exceeded" on a loaded machine
# (golang/go#75804, fixed in Go 1.27), which is no finding.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 150000x ./worker/http1/
	$(GO) test -run '^$$' -fuzz FuzzUwsgi -fuzztime 80000x ./worker/http1/
	$(GO) test -run '^$$' -fuzz FuzzDifferential -fuzztime 80000x ./worker/http1/
	$(GO) test -run '^$$' -fuzz FuzzPlainURL -fuzztime 80000x ./worker/frontend/

integration: build
	$(GO) test -race -count=1 -timeout 12m ./integration/

# bench runs the Go benchmarks, then corral against its peers (bench/run.sh),
# which writes docs/benchmarks.md and docs/benchmarks.png.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v /integration)
	bash bench/run.sh

# soak sends 1,000 HUPs and 1,000 TTIN/TTOU under light load, then checks the
# arbiter for leaked fds, memory and goroutines, and for zombies and orphans.
soak: build
	$(GO) test -race -count=1 -tags soak -run TestSoak -timeout 30m -v ./integration/

clean:
	rm -rf bin
