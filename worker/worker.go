// Package worker owns what runs inside a worker process: the contract with
// the arbiter (the Config it passes, the status pipe a worker reports on),
// the runtime that turns inherited fds into listeners and signals into
// stops, the access log, and the pluggable worker types (-k NAME) that
// serve an http.Handler on those listeners: sync and goroutine here, the
// others in packages of their own (worker/event, worker/wsgi) that
// register themselves. The protocols spoken with a
// front end (uwsgi, FastCGI, PROXY, forwarding headers) are package
// worker/frontend's; the HTTP/1.x wire format is package worker/http1's.
package worker

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/corral-server/corral/socket"
)

// EnvConfig is the environment variable through which the arbiter hands a
// worker its Config, as JSON. Its presence is what makes a process a worker.
const EnvConfig = "CORRAL_WORKER"

// ExitBootError is the exit code of a worker that could not start serving,
// as Gunicorn's WORKER_BOOT_ERROR: the arbiter stops retrying at start-up.
const ExitBootError = 3

// Status messages a worker writes, one per line, on its status pipe.
const (
	StatusReady   = "ready"   // accepting connections
	StatusRecycle = "recycle" // served --max-requests; replace me
	StatusError   = "error"   // "error <text>": why the worker is about to exit
)

// Config is everything a worker process needs to know, set by the arbiter.
type Config struct {
	Class       string             `json:"class"`        // worker type, as given to -k
	App         string             `json:"app"`          // the positional app name
	Name        string             `json:"name"`         // --name, for process titles
	Listeners   []socket.Inherited `json:"listeners"`    // inherited at fds 3, 4, ...
	StatusFD    int                `json:"status_fd"`    // the write end of the status pipe
	HeartbeatFD int                `json:"heartbeat_fd"` // the heartbeat memfd; 0 for none
	ArbiterPid  int                `json:"arbiter_pid"`  // exit when the parent is not this
	Age         int                `json:"age"`          // spawn sequence number, as Gunicorn's worker age
	Generation  int                `json:"generation"`   // bumped by every reload
	// Slot is the worker's stable number, 0 to N-1, which its
	// replacement takes over: the metrics label it.
	Slot int `json:"slot"`
	// CPUs (--cpu-affinity) are the CPUs the worker runs on, and what it
	// starts; none: wherever the kernel puts it.
	CPUs []int `json:"cpus,omitempty"`
	// Metrics (--metrics-bind) has the worker fill the scoreboard in its
	// heartbeat memfd; off, a request pays nothing for it.
	Metrics bool `json:"metrics,omitempty"`
	// Exec, in exec mode (corral -- COMMAND), makes the worker a shim
	// that execs the command; see exec.go.
	Exec *ExecConfig `json:"exec,omitempty"`

	Timeout           time.Duration `json:"timeout"`
	GracefulTimeout   time.Duration `json:"graceful_timeout"`
	KeepAlive         time.Duration `json:"keep_alive"`
	DrainIdle         time.Duration `json:"drain_idle"` // a draining worker closes connections idle this long
	WorkerConnections int           `json:"worker_connections"`
	MaxRequests       int           `json:"max_requests"`
	MaxRequestsJitter int           `json:"max_requests_jitter"`

	// Request limits (--limit-request-line, --limit-request-fields,
	// --limit-request-field_size), as Gunicorn's; see RequestLimits. Every
	// type parses with worker/http1 and enforces them exactly (the
	// goroutine type's net/http reads through an http1.Screen).
	LimitRequestLine      int `json:"limit_request_line"`
	LimitRequestFields    int `json:"limit_request_fields"`
	LimitRequestFieldSize int `json:"limit_request_field_size"`
	// MaxBody (--max-body) is the largest request body, answered with
	// 413 (the sync and event types read it into memory; the goroutine
	// type a small one that has arrived whole, and streams any other to
	// the handler). 0 is no limit.
	MaxBody int64 `json:"max_body,omitempty"`
	// BodyTimeout (--body-timeout) bounds the wait for a request body:
	// see BodyTimedOut. 0 is no limit.
	BodyTimeout time.Duration `json:"body_timeout,omitempty"`
	// Threads (--threads) is the number of event loops per event worker;
	// EventInline (--event-inline) runs handlers on the loop itself.
	Threads     int  `json:"threads,omitempty"`
	EventInline bool `json:"event_inline,omitempty"`
	// EventProcs is the event worker's GOMAXPROCS when the environment
	// sets none; 0 is one per loop. The wsgi type sets it (see there).
	EventProcs int `json:"event_procs,omitempty"`

	// Front ends: the wire protocol of listeners whose bind named none
	// ("http", "uwsgi", "fastcgi"; "" is http), the PROXY protocol mode
	// ("off", "v1", "v2", "auto"; "" is off), and the peers trusted to
	// speak uwsgi, to send PROXY headers and to send X-Forwarded-* and
	// Forwarded headers (addresses, networks or "*"; nil trusts no TCP
	// peer). See Process.FrontEnd and frontend.TrustForwarded.
	Protocol          string   `json:"protocol,omitempty"`
	UwsgiAllowFrom    []string `json:"uwsgi_allow_from,omitempty"`
	ProxyProtocol     string   `json:"proxy_protocol,omitempty"`
	ProxyAllowFrom    []string `json:"proxy_allow_from,omitempty"`
	ForwardedAllowIPs []string `json:"forwarded_allow_ips,omitempty"`

	// TLS is the certificate and its settings, nil without --certfile;
	// HTTP2 is --http2 (HTTP2Off, HTTP2On, HTTP2H2C; "" is on); TicketsFD
	// is the inherited memfd of the session-ticket keys the workers share
	// (0 for none). See tls.go.
	TLS       *TLSConfig `json:"tls,omitempty"`
	HTTP2     string     `json:"http2,omitempty"`
	TicketsFD int        `json:"tickets_fd,omitempty"`

	// AbortGrace (--abort-grace) is how long a process this worker
	// aborts gets to say what it was stuck in before SIGKILL.
	AbortGrace time.Duration `json:"abort_grace,omitempty"`
	// Python (--python) and PythonPath (--pythonpath) are the wsgi type's:
	// the interpreter, and folders put first on sys.path.
	Python     string   `json:"python,omitempty"`
	PythonPath []string `json:"python_path,omitempty"`

	ErrorLog        string `json:"error_log"`
	LogLevel        string `json:"log_level"`
	LogFormat       string `json:"log_format,omitempty"` // --log-format: text or json
	AccessLog       string `json:"access_log"`
	AccessLogFormat string `json:"access_log_format"`
}

// Encode returns the Config as the value of EnvConfig.
func (c *Config) Encode() string {
	b, _ := json.Marshal(c)
	return string(b)
}

// DecodeConfig parses the value of EnvConfig.
func DecodeConfig(s string) (*Config, error) {
	var c Config
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return nil, fmt.Errorf("worker config in %s: %w", EnvConfig, err)
	}
	return &c, nil
}

// A Worker serves requests on a Process's listeners.
type Worker interface {
	// Serve accepts and serves connections until Stop has run its course,
	// calling p.Ready once it accepts. It returns after the last
	// connection is closed.
	Serve(p *Process) error
	// Stop asks Serve to end; it does not wait. A graceful stop accepts
	// what is already in the listen backlog, then stops accepting,
	// finishes the requests in flight, answers the next request on each
	// open connection with "Connection: close", and closes connections
	// idle for DrainIdle. A quick stop closes everything at once.
	//
	// The runtime calls Stop only once Serve has called p.Ready: a stop
	// that comes earlier is held until then, so a type need not keep one
	// that came before it had anything to stop.
	Stop(graceful bool)
}

// AppLoader is implemented by worker types that load the app themselves
// instead of taking the program's handler: the wsgi type imports a Python
// app in a Python process of its own. The runtime calls LoadApp at boot,
// before the listeners are opened; its error fails the boot (exit 3).
type AppLoader interface {
	LoadApp(p *Process) (http.Handler, error)
}

// LoadsApp reports whether worker type class loads its own app (an
// AppLoader), so that the command line passes the app's name on as it is.
func LoadsApp(class string) bool {
	c, ok := Lookup(class)
	if !ok {
		return false
	}
	_, loads := c().(AppLoader)
	return loads
}

// AppChecker is implemented by AppLoader types that can check the app
// without serving it, for --check-config: the wsgi type imports it in a
// Python process, which it then stops.
type AppChecker interface {
	CheckApp(cfg *Config) error
}

// CheckApp checks cfg's app as a worker of type cfg.Class would load it:
// through the type when it is an AppChecker, else through apps.
func CheckApp(cfg *Config, apps AppFunc) error {
	if c, ok := Lookup(cfg.Class); ok {
		if ch, ok := c().(AppChecker); ok {
			return ch.CheckApp(cfg)
		}
	}
	_, err := apps(cfg.App)
	return err
}

// SelfBeating is implemented by worker types that beat the heartbeat
// themselves (Process.Beat), such as one that beats only between
// requests so that --timeout limits each request. For other types the
// runtime beats on a ticker, so --timeout catches a wedged process.
type SelfBeating interface{ BeatsItself() bool }

// Class makes a new Worker of one type.
type Class func() Worker

var (
	registryMu sync.Mutex
	registry   = map[string]Class{}
)

// Register makes a worker type available to -k name. It panics on a
// duplicate name, as http.Handle does, since that is a programming error.
func Register(name string, c Class) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("worker: Register called twice for " + name)
	}
	registry[name] = c
}

// Lookup returns the worker type registered as name.
func Lookup(name string) (Class, bool) {
	registryMu.Lock()
	defer registryMu.Unlock()
	c, ok := registry[name]
	return c, ok
}

// Classes lists the registered worker types, sorted.
func Classes() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	var names []string
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Hooks are the worker-side server hooks, run in the worker process.
type Hooks struct {
	// PostWorkerInit runs after the worker has its listeners and handler,
	// before it serves (Gunicorn's post_worker_init).
	PostWorkerInit func(p *Process)
	// WorkerExit runs after serving ended, just before the process exits
	// (Gunicorn's worker_exit).
	WorkerExit func(p *Process)
}

// AppFunc resolves the positional app name to the handler to serve.
type AppFunc func(name string) (http.Handler, error)
