package cmd

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// Gunicorn's settings, every one of them (Gunicorn 20.1's config.py: its
// name, its flags, its docs' section), and what each is in corral: the flag
// that means the same, or a one-line answer naming what to use instead or
// why it is not needed. A config file (TOML or gunicorn.conf.py) may use
// Gunicorn's names; the command line answers Gunicorn's flags that corral
// has not. docs/migrating-from-gunicorn.md is generated from this table
// (TestMigrationDoc), and TestGunicornTable checks it against the
// installed Gunicorn, so neither drifts.
//
// A flag that comes to mean a setting (TLS, metrics, ...) sets flag on its
// row and drops answer.

// gunicornSetting is one of Gunicorn's settings.
type gunicornSetting struct {
	name    string   // Gunicorn's name, as in gunicorn.conf.py
	section string   // its section in Gunicorn's docs
	cli     []string // Gunicorn's flags for it
	flag    string   // corral's flag that means the same; "" for none
	// answer, without a flag: what to use instead, or why it is not
	// needed; with one: how corral's differs, if it does.
	answer string
	// refuse: without a flag, a file that sets it is an error, since
	// corral cannot do what it asks; else it is a warning.
	refuse bool
	// deflt is Gunicorn's default, as a config file decodes it: a file
	// that sets a setting to it asks for nothing, and hears nothing.
	deflt any
	// value converts Gunicorn's value to what the flag takes.
	value func(any) (any, error)
}

// Gunicorn's docs' sections, in the order corral's --help shows them.
const (
	secConfig    = "Config File"
	secSocket    = "Server Socket"
	secWorkers   = "Worker Processes"
	secSecurity  = "Security"
	secLogging   = "Logging"
	secNaming    = "Process Naming"
	secMechanics = "Server Mechanics"
	secDebugging = "Debugging"
	secHooks     = "Server Hooks"
	secSSL       = "SSL"
)

const (
	noSyslog = "no syslog: log to stderr (--error-logfile -) and let journald or your supervisor keep it"
	noStatsd = "no StatsD client in corral: --metrics-bind serves the whole herd's metrics to Prometheus (docs/metrics.md)"
	goHook   = "a Go function in corral.Server's Hooks: "
)

var gunicornSettings = []gunicornSetting{
	{name: "config", section: secConfig, cli: []string{"-c", "--config"}, flag: "config",
		answer: "a TOML file, or a gunicorn.conf.py read with python3; no file is read unless named"},
	{name: "wsgi_app", section: secConfig, answer: "name the app on the command line: corral -k wsgi module:callable"},

	{name: "bind", section: secSocket, cli: []string{"-b", "--bind"}, flag: "bind", answer: "also fd://N; uwsgi:// and fastcgi:// prefixes"},
	{name: "backlog", section: secSocket, cli: []string{"--backlog"}, flag: "backlog"},

	{name: "workers", section: secWorkers, cli: []string{"-w", "--workers"}, flag: "workers"},
	{name: "worker_class", section: secWorkers, cli: []string{"-k", "--worker-class"}, flag: "worker-class",
		answer: "corral's types: goroutine (default), sync, event; or any program: corral -- COMMAND"},
	{name: "threads", section: secWorkers, cli: []string{"--threads"}, flag: "threads", answer: "-k wsgi: requests the app runs at once, as gthread; -k event: its epoll loops"},
	{name: "worker_connections", section: secWorkers, cli: []string{"--worker-connections"}, flag: "worker-connections"},
	{name: "max_requests", section: secWorkers, cli: []string{"--max-requests"}, flag: "max-requests"},
	{name: "max_requests_jitter", section: secWorkers, cli: []string{"--max-requests-jitter"}, flag: "max-requests-jitter"},
	{name: "timeout", section: secWorkers, cli: []string{"-t", "--timeout"}, flag: "timeout"},
	{name: "graceful_timeout", section: secWorkers, cli: []string{"--graceful-timeout"}, flag: "graceful-timeout"},
	{name: "keepalive", section: secWorkers, cli: []string{"--keep-alive"}, flag: "keep-alive", answer: "default 5 (Gunicorn's 2)"},

	{name: "limit_request_line", section: secSecurity, cli: []string{"--limit-request-line"}, flag: "limit-request-line"},
	{name: "limit_request_fields", section: secSecurity, cli: []string{"--limit-request-fields"}, flag: "limit-request-fields"},
	{name: "limit_request_field_size", section: secSecurity, cli: []string{"--limit-request-field_size"}, flag: "limit-request-field_size"},

	{name: "reload", section: secDebugging, cli: []string{"--reload"}, flag: "reload"},
	{name: "reload_engine", section: secDebugging, cli: []string{"--reload-engine"}, deflt: "auto",
		answer: "corral always watches with inotify, folders not files"},
	{name: "reload_extra_files", section: secDebugging, cli: []string{"--reload-extra-file"}, flag: "reload-extra-file",
		answer: "also folders and globs"},
	{name: "spew", section: secDebugging, cli: []string{"--spew"}, deflt: false,
		answer: "Python's line tracing has no Go equivalent: use --log-level debug"},
	{name: "check_config", section: secDebugging, cli: []string{"--check-config"}, flag: "check-config"},
	{name: "print_config", section: secDebugging, cli: []string{"--print-config"}, flag: "print-config"},

	{name: "preload_app", section: secMechanics, cli: []string{"--preload"}, deflt: false,
		answer: "not needed: each worker runs NewHandler (Go cannot fork a loaded app); --check-config builds the app once"},
	{name: "sendfile", section: secMechanics, cli: []string{"--no-sendfile"},
		answer: "not needed: net/http uses sendfile(2) where it can"},
	{name: "reuse_port", section: secMechanics, cli: []string{"--reuse-port"}, flag: "reuse-port"},
	{name: "chdir", section: secMechanics, cli: []string{"--chdir"}, flag: "chdir"},
	{name: "daemon", section: secMechanics, cli: []string{"-D", "--daemon"}, deflt: false, refuse: true,
		answer: "corral stays in the foreground: run it under systemd (Type=notify, examples/nginx/corral.service) or a supervisor"},
	{name: "raw_env", section: secMechanics, cli: []string{"-e", "--env"}, flag: "env", answer: "one KEY=VALUE per flag; commas are data"},
	{name: "pidfile", section: secMechanics, cli: []string{"-p", "--pid"}, flag: "pid"},
	{name: "worker_tmp_dir", section: secMechanics, cli: []string{"--worker-tmp-dir"},
		answer: "not needed: heartbeats are in memory (a memfd per worker), never on disk"},
	{name: "user", section: secMechanics, cli: []string{"-u", "--user"}, flag: "user"},
	{name: "group", section: secMechanics, cli: []string{"-g", "--group"}, flag: "group"},
	{name: "umask", section: secMechanics, cli: []string{"-m", "--umask"}, flag: "umask", answer: "applies to the unix socket files"},
	{name: "initgroups", section: secMechanics, cli: []string{"--initgroups"}, flag: "initgroups"},
	{name: "tmp_upload_dir", section: secMechanics,
		answer: "not needed: bodies are never spooled to disk (sync and event read one whole, up to --max-body)"},
	{name: "secure_scheme_headers", section: secMechanics,
		answer: "X-Forwarded-Proto and Forwarded from a --forwarded-allow-ips peer set the scheme; no other headers are read"},
	{name: "forwarded_allow_ips", section: secMechanics, cli: []string{"--forwarded-allow-ips"}, flag: "forwarded-allow-ips",
		answer: "default 127.0.0.1,::1"},
	{name: "pythonpath", section: secMechanics, cli: []string{"--pythonpath"}, flag: "pythonpath",
		answer: "folders first on sys.path for -k wsgi; for a Python worker (corral -- python3 ...), -e PYTHONPATH=..."},
	{name: "paste", section: secMechanics, cli: []string{"--paste", "--paster"}, refuse: true,
		answer: "no PasteDeploy: serve the app with its own server as the worker, corral -- COMMAND"},
	{name: "proxy_protocol", section: secMechanics, cli: []string{"--proxy-protocol"}, flag: "proxy-protocol",
		answer: "takes a value, off, v1, v2 or auto: Gunicorn's bare --proxy-protocol (or true in a file) is auto", value: proxyProtocolValue},
	{name: "proxy_allow_ips", section: secMechanics, cli: []string{"--proxy-allow-from"}, flag: "proxy-allow-from",
		answer: "default 127.0.0.1,::1"},
	{name: "raw_paste_global_conf", section: secMechanics, cli: []string{"--paste-global"}, deflt: []any{},
		answer: "no PasteDeploy (see paste)"},
	{name: "strip_header_spaces", section: secMechanics, cli: []string{"--strip-header-spaces"}, deflt: false,
		answer: "not offered: a space before a header's colon gets 400, as RFC 9112 requires"},
	{name: "tolerate_dangerous_framing", section: secMechanics, cli: []string{"--tolerate-dangerous-framing"}, deflt: false,
		answer: "not offered: corral's framing rules are fixed (README, Worker types)"},

	{name: "accesslog", section: secLogging, cli: []string{"--access-logfile"}, flag: "access-logfile"},
	{name: "disable_redirect_access_to_syslog", section: secLogging, cli: []string{"--disable-redirect-access-to-syslog"}, deflt: false,
		answer: noSyslog},
	{name: "access_log_format", section: secLogging, cli: []string{"--access-logformat"}, flag: "access-logformat",
		answer: "all of Gunicorn's atoms"},
	{name: "errorlog", section: secLogging, cli: []string{"--error-logfile", "--log-file"}, flag: "error-logfile"},
	{name: "loglevel", section: secLogging, cli: []string{"--log-level"}, flag: "log-level"},
	{name: "capture_output", section: secLogging, cli: []string{"--capture-output"}, flag: "capture-output",
		answer: "for COMMAND workers, and on by default; a Go worker's log goes to the error log anyway"},
	{name: "logger_class", section: secLogging, cli: []string{"--logger-class"}, deflt: "gunicorn.glogging.Logger",
		answer: "corral's log is its own, in Gunicorn's format: --log-level, --error-logfile, --access-logformat"},
	{name: "logconfig", section: secLogging, cli: []string{"--log-config"},
		answer: "no Python logging config: --log-level, --error-logfile, --access-logfile"},
	{name: "logconfig_dict", section: secLogging, deflt: map[string]any{},
		answer: "no Python logging config: --log-level, --error-logfile, --access-logfile"},
	{name: "syslog_addr", section: secLogging, cli: []string{"--log-syslog-to"}, deflt: "udp://localhost:514", answer: noSyslog},
	{name: "syslog", section: secLogging, cli: []string{"--log-syslog"}, deflt: false, answer: noSyslog},
	{name: "syslog_prefix", section: secLogging, cli: []string{"--log-syslog-prefix"}, answer: noSyslog},
	{name: "syslog_facility", section: secLogging, cli: []string{"--log-syslog-facility"}, deflt: "user", answer: noSyslog},
	{name: "enable_stdio_inheritance", section: secLogging, cli: []string{"-R", "--enable-stdio-inheritance"}, deflt: false,
		answer: "not needed: workers inherit stdout and stderr (COMMAND workers: --capture-output=false)"},
	{name: "statsd_host", section: secLogging, cli: []string{"--statsd-host"}, answer: noStatsd},
	{name: "dogstatsd_tags", section: secLogging, cli: []string{"--dogstatsd-tags"}, deflt: "", answer: noStatsd},
	{name: "statsd_prefix", section: secLogging, cli: []string{"--statsd-prefix"}, deflt: "", answer: noStatsd},

	{name: "proc_name", section: secNaming, cli: []string{"-n", "--name"}, flag: "name",
		answer: "workers show as \"corral: worker [NAME] gen N\" in ps; the arbiter's comm is NAME"},
	{name: "default_proc_name", section: secNaming, deflt: "gunicorn", answer: "not needed: without --name, ps shows the app's name"},

	{name: "on_starting", section: secHooks, answer: goHook + "OnStarting"},
	{name: "on_reload", section: secHooks, answer: goHook + "OnReload"},
	{name: "when_ready", section: secHooks, answer: goHook + "WhenReady"},
	{name: "pre_fork", section: secHooks, answer: "none: workers are exec'd, not forked; use OnStarting or ChildExit"},
	{name: "post_fork", section: secHooks, answer: goHook + "PostWorkerInit (in the worker)"},
	{name: "post_worker_init", section: secHooks, answer: goHook + "PostWorkerInit"},
	{name: "worker_int", section: secHooks, answer: "none: on INT or QUIT a worker stops at once"},
	{name: "worker_abort", section: secHooks, answer: "none: on SIGABRT a worker logs the requests it was stuck in"},
	{name: "pre_exec", section: secHooks, answer: "none: USR2 starts --upgrade-binary"},
	{name: "pre_request", section: secHooks, answer: "an http.Handler middleware around your handler"},
	{name: "post_request", section: secHooks, answer: "an http.Handler middleware around your handler"},
	{name: "child_exit", section: secHooks, answer: goHook + "ChildExit"},
	{name: "worker_exit", section: secHooks, answer: goHook + "WorkerExit"},
	{name: "nworkers_changed", section: secHooks, answer: goHook + "NWorkersChanged"},
	{name: "on_exit", section: secHooks, answer: goHook + "OnExit"},

	{name: "keyfile", section: secSSL, cli: []string{"--keyfile"}, flag: "keyfile"},
	{name: "certfile", section: secSSL, cli: []string{"--certfile"}, flag: "certfile",
		answer: "every TCP bind without a prefix serves TLS, as in Gunicorn; also https:// binds, unix ones too; HTTP/2 by ALPN (--http2)"},
	{name: "ssl_version", section: secSSL, cli: []string{"--ssl-version"}, flag: "ssl-version", value: sslVersionValue,
		answer: "mapped: TLS, TLS_SERVER, SSLv23 change nothing, TLSv1_2 (and 1, 1_1) pin that version, SSLv3 is refused; prefer --tls-min-version (default 1.2)"},
	{name: "cert_reqs", section: secSSL, cli: []string{"--cert-reqs"}, flag: "cert-reqs"},
	{name: "ca_certs", section: secSSL, cli: []string{"--ca-certs"}, flag: "ca-certs"},
	{name: "suppress_ragged_eofs", section: secSSL, cli: []string{"--suppress-ragged-eofs"}, deflt: true,
		answer: "not needed: a client that closes without close_notify ends its connection as any EOF does"},
	{name: "do_handshake_on_connect", section: secSSL, cli: []string{"--do-handshake-on-connect"}, deflt: false,
		answer: "not needed: the worker that accepted a connection runs its handshake (net/http's, within the header timeout)"},
	{name: "ciphers", section: secSSL, cli: []string{"--ciphers"}, flag: "ciphers",
		answer: "TLS 1.2 suites by OpenSSL or Go name, not OpenSSL rules (HIGH:!aNULL); TLS 1.3 suites are not configurable in Go"},
}

// gunicornClasses say what to use for Gunicorn's worker types, for the
// error an unknown --worker-class gets.
var gunicornClasses = map[string]string{
	"gthread":                       "use -k goroutine",
	"gevent":                        "use -k goroutine or -k event",
	"eventlet":                      "use -k goroutine or -k event",
	"tornado":                       "use -k goroutine or -k event",
	"uvicorn.workers.UvicornWorker": "run uvicorn as the worker: corral -- uvicorn --fd 3 APP",
}

// classHint is what to use instead of one of Gunicorn's worker types, or "".
func classHint(class string) string {
	for _, prefix := range []string{"", "gunicorn.workers.", "egg:gunicorn#"} {
		if h, ok := gunicornClasses[strings.TrimPrefix(class, prefix)]; ok {
			return "; for Gunicorn's " + class + ", " + h
		}
	}
	return ""
}

// gunicornByName finds a Gunicorn setting by its name.
func gunicornByName(name string) (gunicornSetting, bool) {
	for _, g := range gunicornSettings {
		if g.name == name {
			return g, true
		}
	}
	return gunicornSetting{}, false
}

// gunicornByFlag finds the Gunicorn setting with a command-line flag
// ("--preload", "-D").
func gunicornByFlag(flag string) (gunicornSetting, bool) {
	for _, g := range gunicornSettings {
		for _, f := range g.cli {
			if f == flag {
				return g, true
			}
		}
	}
	return gunicornSetting{}, false
}

// isDefault reports whether v is Gunicorn's default for g.
func (g gunicornSetting) isDefault(v any) bool {
	return g.deflt != nil && reflect.DeepEqual(normalize(v), g.deflt)
}

// normalize makes a decoded value comparable with a deflt: empty lists
// and tables of any element type compare equal.
func normalize(v any) any {
	switch x := v.(type) {
	case []any:
		if len(x) == 0 {
			return []any{}
		}
	case map[string]any:
		if len(x) == 0 {
			return map[string]any{}
		}
	}
	return v
}

// notApplied is the line a file's setting of g gets.
func (g gunicornSetting) notApplied() string {
	return fmt.Sprintf("%s is not applied: %s", g.name, g.answer)
}

// unknownFlagAnswer turns the flag package's error for one of Gunicorn's
// flags that corral has not ("flag provided but not defined: -preload")
// into that setting's answer; other errors come back as they are.
func unknownFlagAnswer(err error) error {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return err
	}
	for _, f := range []string{"--" + name, "-" + name} {
		if g, ok := gunicornByFlag(f); ok && g.flag == "" {
			return fmt.Errorf("%s (Gunicorn's %s) is not a corral flag: %s", f, g.name, g.answer)
		}
	}
	return err
}

// proxyProtocolValue reads Gunicorn's proxy_protocol, a boolean (it takes a
// PROXY v1 header when one comes), as corral's mode; a string passes.
// sslVersionValue is Python's ssl.PROTOCOL_* (a number in a
// gunicorn.conf.py) or its name, as --ssl-version takes it.
func sslVersionValue(v any) (any, error) {
	switch x := v.(type) {
	case int64:
		return strconv.FormatInt(x, 10), nil
	case string:
		return x, nil
	}
	return nil, fmt.Errorf("want a name such as TLSv1_2 or Python's ssl.PROTOCOL_* number, got %s", describe(v))
}

func proxyProtocolValue(v any) (any, error) {
	switch x := v.(type) {
	case bool:
		if x {
			return "auto", nil
		}
		return "off", nil
	case string:
		return x, nil
	}
	return nil, fmt.Errorf("want true, false or one of off, v1, v2, auto, got %s", describe(v))
}
