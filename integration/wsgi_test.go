package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// -k wsgi: Python WSGI apps served by corral, with Debian's interpreter,
// the one python3-django and python3-flask are installed for (make test
// installs them). Every app is wrapped in wsgiref.validate's validator.

const wsgiPython = "/usr/bin/python3"

// needPython fails unless Debian's python3 can import the modules.
func needPython(t *testing.T, modules ...string) {
	t.Helper()
	for _, m := range append([]string{"wsgiref"}, modules...) {
		if out, err := exec.Command(wsgiPython, "-c", "import "+m).CombinedOutput(); err != nil {
			t.Fatalf("%s cannot import %s (make test installs python3-%s): %v %s", wsgiPython, m, m, err, out)
		}
	}
}

// writeFiles writes name -> content under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, src := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// startWSGI runs corral -k wsgi with the app in dir.
func startWSGI(t *testing.T, dir string, args ...string) *server {
	t.Helper()
	return start(t, corralBin, append([]string{"-k", "wsgi", "--python", wsgiPython, "--chdir", dir}, args...))
}

// serveWSGI writes src as module.py into a new folder and serves it with
// workers workers on 127.0.0.1, args added; it returns once they are ready,
// with the folder.
func serveWSGI(t *testing.T, module, src string, workers int, args ...string) (*server, string) {
	t.Helper()
	needPython(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{module + ".py": src})
	s := startWSGI(t, dir, append(append([]string{"-w", strconv.Itoa(workers), "-b", "127.0.0.1:0"}, args...), module)...)
	s.waitLog(fmt.Sprintf(`Ready: %d workers serving`, workers), 30*time.Second)
	return s, dir
}

// listening returns the address of the listener whose URL starts with prefix.
func (s *server) listening(prefix string) string {
	s.t.Helper()
	m := s.waitLog(`Listening at: (`+prefix+`\S+) \(`, 5*time.Second)
	return bareAddr(m[1])
}

// djangoProject makes a project with django-admin startproject, a view
// that reads a POST body, one that streams, and validated.application: the
// project's WSGI app in wsgiref.validate's validator.
func djangoProject(t *testing.T) string {
	t.Helper()
	needPython(t, "django")
	dir := t.TempDir()
	if out, err := exec.Command(wsgiPython, "-m", "django", "startproject", "mysite", dir).CombinedOutput(); err != nil {
		t.Fatalf("django-admin startproject: %v\n%s", err, out)
	}
	writeFiles(t, dir, map[string]string{
		"mysite/views.py": `import hashlib, os
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

def hello(request):
    return HttpResponse("Hello from Django", content_type="text/plain")

@csrf_exempt
def upload(request):
    body = request.body
    return JsonResponse({"method": request.method, "length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                         "scheme": request.scheme, "host": request.get_host(), "worker": os.getppid()})

def stream(request):
    def lines():
        for i in range(5):
            yield "line %d\n" % i
    return StreamingHttpResponse(lines(), content_type="text/plain")
`,
		"validated.py": "from wsgiref.validate import validator\nfrom mysite.wsgi import application as _app\napplication = validator(_app)\n",
	})
	urls := filepath.Join(dir, "mysite", "urls.py")
	b, _ := os.ReadFile(urls)
	b = append(b, "\nfrom mysite import views\nurlpatterns += [path('', views.hello), path('upload/', views.upload), path('stream/', views.stream)]\n"...)
	os.WriteFile(urls, b, 0o644)
	settings := filepath.Join(dir, "mysite", "settings.py")
	b, _ = os.ReadFile(settings)
	b = bytes.Replace(b, []byte("DEBUG = True"), []byte("DEBUG = False"), 1)
	b = bytes.Replace(b, []byte("ALLOWED_HOSTS = []"), []byte("ALLOWED_HOSTS = ['*']"), 1)
	os.WriteFile(settings, b, 0o644)
	return dir
}

const flaskApp = `import hashlib, os
from flask import Flask, Response, request, stream_with_context, url_for
from wsgiref.validate import validator

flask_app = Flask(__name__)

@flask_app.route("/")
def hello():
    return Response("Hello from Flask", mimetype="text/plain")

@flask_app.route("/upload/", methods=["POST"])
def upload():
    body = request.get_data()
    return {"method": request.method, "length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
            "scheme": request.scheme, "host": request.host, "worker": os.getppid()}

@flask_app.route("/stream/")
def stream():
    def lines():
        for i in range(5):
            yield "line %d\n" % i
    return Response(stream_with_context(lines()), mimetype="text/plain")

@flask_app.route("/where/")
def where():
    return Response(url_for("where") + " " + request.environ["SCRIPT_NAME"] + " " + request.environ["PATH_INFO"], mimetype="text/plain")

application = validator(flask_app.wsgi_app)
`

// upload is what the upload views answer.
type upload struct {
	Method, Sha256, Scheme, Host string
	Length, Worker               int
}

// checkApp checks the hello, upload and streaming views through base
// (http://host:port), where hello says greeting.
func checkApp(t *testing.T, base, greeting string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	checkBody(t, base+"/", greeting)
	body := make([]byte, 300_000)
	rand.Read(body)
	sum := sha256.Sum256(body)
	res, err := client.Post(base+"/upload/", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var u upload
	err = json.NewDecoder(res.Body).Decode(&u)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 || u.Length != len(body) || u.Sha256 != hex.EncodeToString(sum[:]) || u.Method != "POST" {
		t.Errorf("POST %s/upload/ of %d bytes: %d %+v %v", base, len(body), res.StatusCode, u, err)
	}
	res, err = client.Get(base + "/stream/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := "line 0\nline 1\nline 2\nline 3\nline 4\n"; string(b) != want {
		t.Errorf("GET %s/stream/: %q, want %q", base, b, want)
	}
}

func TestWSGIDjango(t *testing.T) {
	dir := djangoProject(t)
	s := startWSGI(t, dir, "-w", "2", "-b", "127.0.0.1:0", "-b", "uwsgi://127.0.0.1:0", "validated:application")
	s.waitLog(`Ready: 2 workers serving`, 30*time.Second)
	s.waitLog(`Booted WSGI app validated:application \(python 3\.\d+\.\d+, pid \d+, threads 1\)`, time.Second)
	checkApp(t, "http://"+s.Addr, "Hello from Django")
	ng := startNginx(t, "uwsgi_pass.conf", "127.0.0.1:3031", s.listening("uwsgi://"))
	checkApp(t, "http://"+ng.Addr, "Hello from Django")
	// Each worker's Python has its socketpair and stdio, none of the
	// worker's fds (listeners, status pipe, heartbeat).
	for _, w := range s.waitWorkers(2, 5*time.Second) {
		kids, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", w))
		var pys []string
		for _, k := range kids {
			b, _ := os.ReadFile(k)
			pys = append(pys, strings.Fields(string(b))...)
		}
		if len(pys) != 1 {
			t.Fatalf("worker %d has children %v, want its one Python", w, pys)
		}
		fds, _ := os.ReadDir("/proc/" + pys[0] + "/fd")
		if len(fds) != 4 {
			var names []string
			for _, f := range fds {
				l, _ := os.Readlink("/proc/" + pys[0] + "/fd/" + f.Name())
				names = append(names, f.Name()+"->"+l)
			}
			t.Errorf("python %s of worker %d has fds %v, want 0-3 only", pys[0], w, names)
		}
	}
}

func TestWSGIFlask(t *testing.T) {
	needPython(t, "flask")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"flaskapp.py": flaskApp})
	s := startWSGI(t, dir, "-w", "2", "--threads", "4", "-b", "127.0.0.1:0", "-b", "uwsgi://127.0.0.1:0", "flaskapp")
	s.waitLog(`Ready: 2 workers serving`, 30*time.Second)
	checkApp(t, "http://"+s.Addr, "Hello from Flask")
	ng := startNginx(t, "uwsgi_pass.conf", "127.0.0.1:3031", s.listening("uwsgi://"))
	checkApp(t, "http://"+ng.Addr, "Hello from Flask")
	// Mounted under a prefix: nginx's SCRIPT_NAME over uwsgi (the
	// example's location /mount); url_for builds URLs under it.
	checkBody(t, "http://"+ng.Addr+"/mount/where/", "/mount/where/ /mount /where/")
	checkBody(t, "http://"+ng.Addr+"/where/", "/where/  /where/")
	checkBody(t, "http://"+s.Addr+"/where/", "/where/  /where/")
}

// checkBody checks that GET url answers 200 and want.
func checkBody(t *testing.T, url, want string) {
	t.Helper()
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(b) != want {
		t.Errorf("GET %s: %d %q, want 200 %q", url, res.StatusCode, b, want)
	}
}

// pidApp answers with the pid of its worker: the Go process, Python's parent.
const pidApp = `import os
from wsgiref.validate import validator
VERSION = "v1"
def app(environ, start_response):
    body = str(os.getppid()).encode() if environ["PATH_INFO"] == "/" else VERSION.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
application = validator(app)
`

func TestWSGIHUPUnderLoad(t *testing.T) {
	s, _ := serveWSGI(t, "pidapp", pidApp, 2)
	hupUnderLoad(t, s, 2, "wsgi")
}

func TestWSGIImportErrorAtStart(t *testing.T) {
	needPython(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"broken.py": "import os\nraise RuntimeError('no database configured')\n"})
	for app, want := range map[string]string{
		"broken:application": `RuntimeError: no database configured \(at .*broken\.py:2 in <module>`,
		"nothere":            `ModuleNotFoundError: No module named 'nothere'`,
	} {
		code, _, stderr := run(t, nil, "-k", "wsgi", "--python", wsgiPython, "--chdir", dir, "-b", "127.0.0.1:0", app)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		last := lines[len(lines)-1]
		if code != 3 || !regexp.MustCompile(want).MatchString(last) || !strings.HasPrefix(last, "corral: error: ") {
			t.Errorf("app %s: exit %d, last line %q; want exit 3 and one line matching %q\n%s", app, code, last, want, stderr)
		}
	}
	// --check-config imports the app: the same line, exit 2; a good app, 0.
	code, _, stderr := run(t, nil, "-k", "wsgi", "--python", wsgiPython, "--chdir", dir, "--check-config", "broken:application")
	if lines := strings.Split(strings.TrimSpace(stderr), "\n"); code != 2 || !strings.Contains(lines[len(lines)-1], "RuntimeError: no database configured") {
		t.Errorf("--check-config of a broken app: exit %d, %q", code, stderr)
	}
	writeFiles(t, dir, map[string]string{"good.py": pidApp})
	if code, out, stderr := run(t, nil, "-k", "wsgi", "--python", wsgiPython, "--chdir", dir, "--check-config", "good"); code != 0 || out+stderr != "" {
		t.Errorf("--check-config of a good app: exit %d, %q %q", code, out, stderr)
	}
	// --python that is not there: a usage error at once, exit 2.
	code, _, stderr = run(t, nil, "-k", "wsgi", "--python", "/nonexistent/python3", "-b", "127.0.0.1:0", "x:app")
	if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "--python") {
		t.Errorf("a missing --python: exit %d, %q; want exit 2 and one line", code, stderr)
	}
}

// TestWSGIReloadOnChange edits the app under --reload: a broken edit
// keeps the old generation serving, the fix rolls the workers.
func TestWSGIReloadOnChange(t *testing.T) {
	needPython(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"pidapp.py": pidApp})
	s := startWSGI(t, dir, "-w", "2", "-b", "127.0.0.1:0", "--reload", "--reload-delay", "0.1", "pidapp")
	s.waitLog(`Ready: 2 workers serving`, 30*time.Second)
	if got := mustGet(t, s.Addr, "/version"); got != "v1" {
		t.Fatalf("GET /version = %q", got)
	}
	old := s.waitWorkers(2, 5*time.Second)
	writeFiles(t, dir, map[string]string{"pidapp.py": strings.Replace(pidApp, `VERSION = "v1"`, `VERSION = "v2" +`, 1)})
	s.waitLog(`Reload failed \(after change of \S*pidapp\.py\): .*SyntaxError`, 20*time.Second)
	for range 10 {
		if got := mustGet(t, s.Addr, "/version"); got != "v1" {
			t.Fatalf("after a broken edit: %q, want the old generation's v1", got)
		}
	}
	if now := s.waitWorkers(2, 5*time.Second); !hasPid(now, old[0]) || !hasPid(now, old[1]) {
		t.Errorf("workers %v after a failed reload, want the old ones %v", now, old)
	}
	writeFiles(t, dir, map[string]string{"pidapp.py": strings.Replace(pidApp, `VERSION = "v1"`, `VERSION = "v2"`, 1)})
	s.waitLog(`Reload complete: generation \d+, 2 workers serving`, 20*time.Second)
	// An old worker may still take a connection from the backlog as it drains.
	deadline := time.Now().Add(10 * time.Second)
	for got := mustGet(t, s.Addr, "/version"); got != "v2"; got = mustGet(t, s.Addr, "/version") {
		if time.Now().After(deadline) {
			t.Fatalf("after the fix: %q, want v2", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// HUP with a broken app: the same, through the signal.
	writeFiles(t, dir, map[string]string{"pidapp.py": "raise ImportError('broken on purpose')\n"})
	s.waitLog(`Reload failed \(after change of \S*pidapp\.py\): .*broken on purpose`, 20*time.Second)
	s.signal(syscall.SIGHUP)
	s.waitLog(`Reload failed \(after HUP\): .*broken on purpose`, 20*time.Second)
	if got := mustGet(t, s.Addr, "/version"); got != "v2" {
		t.Errorf("after a HUP with a broken app: %q, want v2", got)
	}
}

const stuckApp = `import time
from wsgiref.validate import validator
def stuck_in_the_database(seconds):
    time.sleep(seconds)
def app(environ, start_response):
    if environ["PATH_INFO"] == "/stuck":
        stuck_in_the_database(60)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
application = validator(app)
`

// TestWSGITimeout: a request stuck in Python past --timeout is aborted,
// every Python thread's traceback goes to the log, and the worker is
// replaced.
func TestWSGITimeout(t *testing.T) {
	s, _ := serveWSGI(t, "stuckapp", stuckApp, 1, "--timeout", "1")
	old := s.waitWorkers(1, 5*time.Second)
	code, _, err := get(s.Addr, "/stuck")
	if err != nil || code != http.StatusGatewayTimeout {
		t.Errorf("GET /stuck: %d %v, want 504", code, err)
	}
	s.waitLog(`WSGI request timed out \(pid:\d+\): GET /stuck running for 1\.\d+s`, 10*time.Second)
	s.waitLog(`line \d+ in stuck_in_the_database`, 5*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		now := s.children()
		if len(now) == 1 && now[0] != old[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers %v, want a new one in place of %v", now, old)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := mustGetEventually(t, s.Addr, "/"); got != "ok" {
		t.Errorf("after the timeout: %q", got)
	}
}

// mustGetEventually retries a GET for a while: a replacement worker boots.
func mustGetEventually(t *testing.T, addr, path string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body, err := get(addr, path)
		if err == nil && code == 200 {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %v", path, code, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestWSGIMaxRequests(t *testing.T) {
	s, _ := serveWSGI(t, "pidapp", pidApp, 1, "--max-requests", "20")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := keepAliveLoad(ctx, s.Addr, 2, 100, "/version")
	if r.failed() != 0 || r.ok != 100 {
		t.Errorf("100 requests with --max-requests 20: %s", r)
	}
	s.waitLog(`Max requests reached \(20\)`, 10*time.Second)
}

// envApp answers with the parts of the environ the front ends set.
const envApp = `import json
from wsgiref.validate import validator
def app(environ, start_response):
    keys = ["REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REMOTE_ADDR", "wsgi.url_scheme", "CONTENT_LENGTH"]
    got = {k: environ.get(k) for k in keys}
    got["body"] = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)).decode()
    body = json.dumps(got).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
application = validator(app)
`

// TestWSGIFrontEnds: FastCGI on a unix socket, and PROXY protocol v1 on
// TCP, reach the app with the client's facts.
func TestWSGIFrontEnds(t *testing.T) {
	needPython(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"envapp.py": envApp})
	sock := filepath.Join(t.TempDir(), "f.sock")
	s := startWSGI(t, dir, "-w", "1", "-b", "127.0.0.1:0", "-b", "fastcgi://unix:"+sock, "--proxy-protocol", "auto", "envapp")
	s.waitLog(`Ready: 1 workers serving`, 30*time.Second)

	out := exchange(t, "unix", sock, fcgiRequest(1, "hello", "REQUEST_METHOD", "PUT", "REQUEST_URI", "/f?x=1",
		"SERVER_PROTOCOL", "HTTP/1.1", "CONTENT_LENGTH", "5", "REMOTE_ADDR", "192.0.2.5", "REMOTE_PORT", "99", "HTTPS", "on"))
	rep := parseFCGI(t, out)
	_, body, _ := strings.Cut(rep.stdout, "\r\n\r\n")
	var env map[string]any
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("FastCGI: %v: %q", err, rep.stdout)
	}
	for k, v := range map[string]any{"REQUEST_METHOD": "PUT", "PATH_INFO": "/f", "QUERY_STRING": "x=1", "REMOTE_ADDR": "192.0.2.5",
		"wsgi.url_scheme": "https", "body": "hello"} {
		if env[k] != v {
			t.Errorf("FastCGI: environ[%s] = %v, want %v", k, env[k], v)
		}
	}

	out = exchange(t, "tcp", s.Addr, []byte("PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\nGET /p HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
	res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
	if err != nil {
		t.Fatalf("PROXY: %q: %v", out, err)
	}
	json.NewDecoder(res.Body).Decode(&env)
	if env["REMOTE_ADDR"] != "203.0.113.7" || env["PATH_INFO"] != "/p" {
		t.Errorf("PROXY v1: environ %v", env)
	}
}

// TestWSGIFileWrapper serves a wsgi.file_wrapper response from the event
// loop, which sends it by sendfile(2) as far as the socket takes it and
// the rest through its buffer: a client that reads at once and one that
// waits first (its socket buffer fills: the rest goes the other way) get
// every byte, in order; HEAD gets the length and no body.
func TestWSGIFileWrapper(t *testing.T) {
	needPython(t)
	dir := t.TempDir()
	data := make([]byte, 12<<20) // more than a loopback socket's buffers hold
	rand.Read(data)
	app, err := os.ReadFile(filepath.Join(repoRoot, "worker", "wsgi", "testdata", "fileapp.py"))
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{"fileapp.py": string(app), "data.bin": string(data)})
	s := startWSGI(t, dir, "-w", "1", "-b", "127.0.0.1:0", "fileapp")
	s.waitLog(`Ready: 1 workers serving`, 30*time.Second)
	for q, want := range map[string][]byte{"": data, "offset": data[10:], "length": data[:5]} {
		res, err := http.Get("http://" + s.Addr + "/?" + q)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 || res.ContentLength != int64(len(want)) || !bytes.Equal(b, want) {
			t.Errorf("?%s: %d, Content-Length %d, %d bytes (%v), want %d", q, res.StatusCode, res.ContentLength, len(b), err, len(want))
		}
	}
	c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET /?offset HTTP/1.1\r\nHost: t\r\n\r\nHEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
	time.Sleep(300 * time.Millisecond) // the server meets a full socket
	br := bufio.NewReader(c)
	for _, method := range []string{"GET", "HEAD"} {
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%s after a wait: %v", method, err)
		}
		b, err := io.ReadAll(res.Body)
		want := data[10:]
		if method == "HEAD" {
			want = nil
		}
		if err != nil || res.StatusCode != 200 || !bytes.Equal(b, want) {
			t.Errorf("%s after a wait: %d, %d bytes (%v), want %d", method, res.StatusCode, len(b), err, len(want))
		}
		if method == "HEAD" && res.ContentLength != int64(len(data)) {
			t.Errorf("HEAD: Content-Length %d, want %d", res.ContentLength, len(data))
		}
	}
}

// slowViewApp has a view that takes its time and one that answers at once,
// each with its worker's pid.
const slowViewApp = `import os, time
from wsgiref.validate import validator
def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        open(environ["QUERY_STRING"], "w").close()  # it has begun
        time.sleep(4)
    body = str(os.getppid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
application = validator(app)
`

// TestWSGIBusyWorkerTakesNoConnection: a worker whose Python threads all
// run slow requests takes no new connection, so requests on new
// connections go to an idle worker rather than queue behind a slow view
// (as a Gunicorn sync worker or a uWSGI process accepts only when it is
// free).
func TestWSGIBusyWorkerTakesNoConnection(t *testing.T) {
	s, dir := serveWSGI(t, "slowview", slowViewApp, 2)
	s.waitWorkers(2, 5*time.Second)
	begun := filepath.Join(dir, "begun")
	slow := make(chan string, 1)
	go func() {
		_, body, err := get(s.Addr, "/slow?"+begun)
		if err != nil {
			body = err.Error()
		}
		slow <- body
	}()
	deadline := time.Now().Add(10 * time.Second)
	for _, err := os.Stat(begun); err != nil; _, err = os.Stat(begun) {
		if time.Now().After(deadline) {
			t.Fatal("the slow view never began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A request counts as slow once it has run 50 ms, which the loop sees
	// at its next timer scan, at most 100 ms later.
	time.Sleep(300 * time.Millisecond)
	for i := range 20 {
		began := time.Now()
		code, body, err := get(s.Addr, "/")
		if took := time.Since(began); err != nil || code != 200 || took > 2*time.Second {
			t.Fatalf("request %d on a new connection while a worker runs a 4 s view: %d %q %v after %s, want 200 at once from the other worker", i, code, body, err, took.Round(time.Millisecond))
		}
	}
	if body := <-slow; !regexp.MustCompile(`^\d+$`).MatchString(body) {
		t.Errorf("the slow view: %q", body)
	}
}

// TestWSGIHeaderTimeout: an idle wsgi worker still runs its timers. A
// request head that stops halfway gets 408, and a connection that sends
// nothing is closed, as on every other worker type
// (TestFaultHeaderTimeoutEveryType); its loop used to skip its timer scans
// for as long as nothing else came.
func TestWSGIHeaderTimeout(t *testing.T) {
	s, _ := serveWSGI(t, "pidapp", pidApp, 1, "-t", "4")
	checkHeaderTimeouts(t, s.Addr)
}
