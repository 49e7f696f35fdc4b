package wsgi

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// python is Debian's interpreter: the one python3-django and python3-flask
// install for, and the one the integration tests use.
const python = "/usr/bin/python3"

// validated wraps the app named in the module in wsgiref.validate's
// validator, so that a PEP 3333 violation on either side fails the test.
const validated = `
from wsgiref.validate import validator as _validator
application = _validator(app)
`

// output collects the lines a Python process wrote.
type output struct {
	mu    sync.Mutex
	lines []string
	t     testing.TB
}

func (o *output) add(_ int, line string) {
	o.mu.Lock()
	o.lines = append(o.lines, line)
	o.mu.Unlock()
	o.t.Log("python: " + line)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.lines, "\n")
}

// waitFor waits until the output contains s.
func (o *output) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(o.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in Python's output:\n%s", s, o)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeApp writes files (name -> Python source) into a new folder.
func writeApp(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// start runs the app in Python, and serves it on an httptest server.
func start(t *testing.T, opts Options) (*App, *httptest.Server, *output) {
	t.Helper()
	app, out, err := tryStart(t, opts)
	if err != nil {
		t.Fatalf("Start: %v\n%s", err, out)
	}
	srv := httptest.NewServer(app)
	t.Cleanup(func() {
		srv.Close()
		app.Close(5 * time.Second)
	})
	return app, srv, out
}

func tryStart(t *testing.T, opts Options) (*App, *output, error) {
	t.Helper()
	if _, err := os.Stat(python); err != nil {
		t.Skipf("no %s", python)
	}
	out := &output{t: t}
	opts.Python = python
	opts.Output = out.add
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	app, err := Start(opts)
	return app, out, err
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp, string(b)
}

const helloApp = `
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-App", "hello")])
    return [b"Hello, ", b"World!"]
` + validated

func TestHello(t *testing.T) {
	dir := writeApp(t, map[string]string{"hello.py": helloApp})
	app, srv, _ := start(t, Options{App: "hello", Dir: dir})
	if !strings.HasPrefix(app.Version(), "3.") {
		t.Errorf("Version() = %q, want 3.x", app.Version())
	}
	for range 3 { // keep-alive: the same connection serves them all
		resp, body := get(t, srv.URL+"/")
		if resp.StatusCode != 200 || body != "Hello, World!" {
			t.Fatalf("GET / = %d %q, want 200 Hello, World!", resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-App"); got != "hello" {
			t.Errorf("X-App = %q, want hello", got)
		}
		if got := resp.Header.Get("Content-Length"); got != "13" {
			t.Errorf("Content-Length = %q, want 13", got)
		}
	}
}

const environApp = `
import json
KEYS = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH",
        "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "HTTP_HOST", "HTTP_X_FOO",
        "HTTP_COOKIE", "REQUEST_URI", "HTTPS", "wsgi.url_scheme", "wsgi.multithread", "wsgi.multiprocess",
        "wsgi.run_once", "wsgi.version"]
def app(environ, start_response):
    got = {k: environ[k] for k in KEYS if k in environ}
    got["types"] = sorted({type(v).__name__ for k, v in environ.items() if k.isupper()})
    got["http_content"] = [k for k in environ if k in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH")]
    body = json.dumps(got).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
` + validated

func TestEnviron(t *testing.T) {
	dir := writeApp(t, map[string]string{"envapp.py": environApp})
	_, srv, _ := start(t, Options{App: "envapp:application", Dir: dir, Threads: 2, Processes: 3, ScriptName: "/mnt"})
	req, _ := http.NewRequest("POST", srv.URL+"/mnt/a%20b/c?x=1&y=%2F", strings.NewReader("hello"))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Add("X-Foo", "one")
	req.Header.Add("X-Foo", "two")
	req.Header.Add("Cookie", "a=1")
	req.Header.Add("Cookie", "b=2")
	env := getJSON(t, req)
	host := strings.TrimPrefix(srv.URL, "http://")
	h, p, _ := net.SplitHostPort(host)
	want := map[string]any{
		"REQUEST_METHOD": "POST", "SCRIPT_NAME": "/mnt", "PATH_INFO": "/a b/c", "QUERY_STRING": "x=1&y=%2F",
		"CONTENT_TYPE": "text/plain", "CONTENT_LENGTH": "5", "SERVER_NAME": h, "SERVER_PORT": p,
		"SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": host, "HTTP_X_FOO": "one, two",
		"HTTP_COOKIE": "a=1; b=2", "REQUEST_URI": "/mnt/a%20b/c?x=1&y=%2F", "wsgi.url_scheme": "http",
		"wsgi.multithread": true, "wsgi.multiprocess": true, "wsgi.run_once": false,
		"wsgi.version": []any{1.0, 0.0}, "types": []any{"str"}, "http_content": []any{},
	}
	for k, v := range want {
		if fmt.Sprint(env[k]) != fmt.Sprint(v) {
			t.Errorf("environ[%q] = %#v, want %#v", k, env[k], v)
		}
	}
	if _, ok := env["HTTPS"]; ok {
		t.Errorf("HTTPS is set for a plain http request: %v", env["HTTPS"])
	}

	// Without a body or a declared length there is no CONTENT_LENGTH;
	// a path outside SCRIPT_NAME is passed whole.
	req, _ = http.NewRequest("GET", srv.URL+"/other", nil)
	env = getJSON(t, req)
	if _, ok := env["CONTENT_LENGTH"]; ok {
		t.Errorf("CONTENT_LENGTH = %v for a GET without a body, want none", env["CONTENT_LENGTH"])
	}
	if env["PATH_INFO"] != "/other" {
		t.Errorf("PATH_INFO = %v, want /other", env["PATH_INFO"])
	}
	// A latin-1 round trip: bytes over 0x7f in the path arrive as the
	// code points of the same value (PEP 3333's native strings).
	req, _ = http.NewRequest("GET", srv.URL+"/mnt/caf%C3%A9", nil)
	if env = getJSON(t, req); env["PATH_INFO"] != "/caf\u00c3\u00a9" {
		t.Errorf("PATH_INFO = %q, want the latin-1 decoding of the UTF-8 bytes", env["PATH_INFO"])
	}
	// A percent-encoded NUL cannot be framed: 400.
	resp, _ := get(t, srv.URL+"/a%00b")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET /a%%00b = %d, want 400", resp.StatusCode)
	}
}

func TestURLScheme(t *testing.T) {
	dir := writeApp(t, map[string]string{"envapp.py": environApp})
	app, _, _ := start(t, Options{App: "envapp", Dir: dir})
	srv := httptest.NewTLSServer(app)
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/", nil)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatal(err)
	}
	if env["wsgi.url_scheme"] != "https" || env["HTTPS"] != "on" {
		t.Errorf("over TLS: wsgi.url_scheme = %v, HTTPS = %v; want https, on", env["wsgi.url_scheme"], env["HTTPS"])
	}
	// A front end's https facts (r.URL.Scheme, as worker sets it from
	// HTTPS=on or a trusted X-Forwarded-Proto) count too.
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil)
	r.URL.Scheme = "https"
	app.ServeHTTP(rec, r)
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
		t.Fatal(err)
	}
	if env["wsgi.url_scheme"] != "https" {
		t.Errorf("with r.URL.Scheme https: wsgi.url_scheme = %v", env["wsgi.url_scheme"])
	}
}

func getJSON(t *testing.T, req *http.Request) map[string]any {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s = %d %s", req.Method, req.URL, resp.StatusCode, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

const inputApp = `
import json
def app(environ, start_response):
    inp = environ["wsgi.input"]
    mode = environ["QUERY_STRING"]
    n = int(environ.get("CONTENT_LENGTH") or 0)
    if mode == "read":
        parts = [inp.read(3).decode(), inp.read(n).decode(), inp.read(1).decode()]
    elif mode == "readline":
        parts = [inp.readline().decode(), inp.readline(2).decode(), inp.readline().decode(), inp.readline().decode()]
    elif mode == "readlines":
        parts = [l.decode() for l in inp.readlines()]
    else:
        parts = [l.decode() for l in inp]
    body = json.dumps(parts).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
` + validated

func TestInput(t *testing.T) {
	dir := writeApp(t, map[string]string{"inputapp.py": inputApp})
	_, srv, _ := start(t, Options{App: "inputapp", Dir: dir})
	body := "line one\nline two\nlast"
	for mode, want := range map[string]string{
		"read":      `["lin", "e one\nline two\nlast", ""]`,
		"readline":  `["line one\n", "li", "ne two\n", "last"]`,
		"readlines": `["line one\n", "line two\n", "last"]`,
		"iterate":   `["line one\n", "line two\n", "last"]`,
	} {
		for _, chunked := range []bool{false, true} {
			var r io.Reader = strings.NewReader(body)
			if chunked { // no Content-Length: Go reads it whole, then says how long
				r = io.MultiReader(strings.NewReader(body[:5]), strings.NewReader(body[5:]))
			}
			req, _ := http.NewRequest("POST", srv.URL+"/?"+mode, r)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(got) != want {
				t.Errorf("%s (chunked %v): %s, want %s", mode, chunked, got, want)
			}
		}
	}
	// A large body arrives whole: more than the runner reads at once.
	big := strings.Repeat("0123456789abcdef", 1<<16) + "\n" // 1 MiB
	resp, err := http.Post(srv.URL+"/?readlines", "text/plain", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	json.NewDecoder(resp.Body).Decode(&lines)
	resp.Body.Close()
	if len(lines) != 1 || lines[0] != big {
		t.Errorf("a 1 MiB body: %d lines back, want it whole", len(lines))
	}
}

const streamApp = `
import threading, time
release = threading.Event()
def app(environ, start_response):
    if environ["PATH_INFO"] == "/release":
        release.set()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"released"]
    def gen():
        yield b""  # an empty chunk sends nothing, not even the head
        yield b"first;"
        # the client must have the first chunk while this waits
        if not release.wait(10):
            yield b"timeout;"
        release.clear()
        yield b"second"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return gen()
` + validated

func TestStreaming(t *testing.T) {
	dir := writeApp(t, map[string]string{"streamapp.py": streamApp})
	_, srv, _ := start(t, Options{App: "streamapp", Dir: dir, Threads: 2})
	resp, err := http.Get(srv.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	first := make([]byte, len("first;"))
	if _, err := io.ReadFull(br, first); err != nil || string(first) != "first;" {
		t.Fatalf("first chunk: %q, %v", first, err)
	}
	if _, body := get(t, srv.URL+"/release"); body != "released" {
		t.Fatalf("/release: %q", body)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "second" {
		t.Errorf("after the first chunk: %q, want second", rest)
	}
	if resp.TransferEncoding == nil || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("a streamed body without a length: transfer encoding %v, want chunked", resp.TransferEncoding)
	}
}

const writeApp_ = `
def app(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    write(b"")
    return [b"and returned"]
` + validated

func TestLegacyWrite(t *testing.T) {
	dir := writeApp(t, map[string]string{"writeapp.py": writeApp_})
	_, srv, _ := start(t, Options{App: "writeapp", Dir: dir})
	if resp, body := get(t, srv.URL+"/"); resp.StatusCode != 200 || body != "written and returned" {
		t.Errorf("GET / = %d %q", resp.StatusCode, body)
	}
}

const errorsApp = `
import sys, os
closed = []
class Body:
    def __init__(self, chunks, fail_at=None):
        self.chunks, self.fail_at = chunks, fail_at
    def __iter__(self):
        for i, c in enumerate(self.chunks):
            if i == self.fail_at:
                raise RuntimeError("broke mid-body")
            yield c
    def close(self):
        closed.append(1)
        print("closed", len(closed), file=sys.stderr)

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise ValueError("app bug")
    if path == "/excinfo":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("later")
        except KeyError:
            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"oops page"]
    if path == "/midbody":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body([b"part one;", b"part two"], fail_at=1)
    if path == "/errors":
        environ["wsgi.errors"].write("to wsgi.errors\n")
        environ["wsgi.errors"].flush()
        start_response("204 No Content", [])
        return Body([])
    if path == "/badstatus":
        start_response("20 OK", [("Content-Type", "text/plain")])
        return [b""]
    if path == "/exit":
        os._exit(7)
    if path == "/closed":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(closed)).encode()]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Body([b"fine"])
`

func TestAppErrors(t *testing.T) {
	// /badstatus is a PEP 3333 violation the validator would stop before
	// the server sees it: this app is the one not wrapped, to test the
	// server's own checks.
	dir := writeApp(t, map[string]string{"errapp.py": errorsApp + "\napplication = app\n", "errapp_v.py": "from errapp import app\n" + validated})
	_, srv, out := start(t, Options{App: "errapp_v", Dir: dir})
	_, raw, _ := start(t, Options{App: "errapp", Dir: dir})

	resp, body := get(t, srv.URL+"/raise")
	if resp.StatusCode != 500 {
		t.Errorf("an app that raises: %d %q, want 500", resp.StatusCode, body)
	}
	out.waitFor(t, "ValueError: app bug")
	out.waitFor(t, "Error handling request GET /raise")

	resp, body = get(t, srv.URL+"/excinfo")
	if resp.StatusCode != 500 || body != "oops page" {
		t.Errorf("start_response with exc_info before the head went out: %d %q, want 500 oops page", resp.StatusCode, body)
	}

	// A body that breaks after its head went out is cut: the client must
	// not take it for a whole one.
	resp, err := http.Get(srv.URL + "/midbody")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Errorf("a body that broke off read as whole: %q", got)
	}
	out.waitFor(t, "RuntimeError: broke mid-body")

	if resp, _ := get(t, srv.URL+"/errors"); resp.StatusCode != 204 || resp.Header["Content-Length"] != nil {
		t.Errorf("/errors = %d with Content-Length %q, want 204 without", resp.StatusCode, resp.Header["Content-Length"])
	}
	out.waitFor(t, "to wsgi.errors")

	resp, body = get(t, raw.URL+"/badstatus")
	if resp.StatusCode != 500 {
		t.Errorf("a malformed status: %d %q, want 500", resp.StatusCode, body)
	}

	// close() was called on every iterable that has one: /midbody,
	// /errors (and the validator checks it for the wrapped app).
	before := strings.Count(out.String(), "closed ")
	get(t, srv.URL+"/fine")
	out.waitFor(t, fmt.Sprintf("closed %d", before+1))

	// After all that the process serves on.
	if resp, body := get(t, srv.URL+"/fine"); resp.StatusCode != 200 || body != "fine" {
		t.Errorf("after the errors: %d %q", resp.StatusCode, body)
	}
}

func TestPythonExit(t *testing.T) {
	dir := writeApp(t, map[string]string{"errapp.py": errorsApp + validated})
	app, srv, _ := start(t, Options{App: "errapp", Dir: dir})
	if resp, _ := get(t, srv.URL+"/exit"); resp.StatusCode != 500 {
		t.Errorf("the request Python died in: %d, want 500", resp.StatusCode)
	}
	select {
	case <-app.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after Python exited")
	}
	if err := app.Err(); err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Errorf("Err() = %v, want the exit status", err)
	}
	if resp, _ := get(t, srv.URL+"/fine"); resp.StatusCode != 503 {
		t.Errorf("a request after Python died: %d, want 503", resp.StatusCode)
	}
}

// fileApp is testdata/fileapp.py, which the integration tests serve too.
var fileApp = func() string {
	b, err := os.ReadFile("testdata/fileapp.py")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

func TestFileWrapper(t *testing.T) {
	data := strings.Repeat("0123456789", 100_000) // 1 MB
	dir := writeApp(t, map[string]string{"fileapp.py": fileApp, "data.bin": data})
	_, srv, _ := start(t, Options{App: "fileapp", Dir: dir})
	for q, want := range map[string]string{"": data, "offset": data[10:], "length": data[:5], "bytesio": "from memory"} {
		resp, body := get(t, srv.URL+"/?"+q)
		if resp.StatusCode != 200 || body != want {
			t.Errorf("?%s: %d, %d bytes, want %d", q, resp.StatusCode, len(body), len(want))
		}
		if q != "bytesio" && resp.ContentLength != int64(len(want)) {
			t.Errorf("?%s: Content-Length %d, want %d", q, resp.ContentLength, len(want))
		}
	}
	// The descriptors handed over are closed once sent.
	before := countFDs(t)
	for range 20 {
		get(t, srv.URL+"/?offset")
	}
	if after := countFDs(t); after > before+2 {
		t.Errorf("open fds: %d before 20 file responses, %d after", before, after)
	}
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(ents)
}

const threadsApp = `
import threading
barrier = threading.Barrier(4)
def app(environ, start_response):
    # Passes only when 4 requests run at once.
    barrier.wait(timeout=10)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [threading.current_thread().name.encode()]
` + validated

func TestThreads(t *testing.T) {
	dir := writeApp(t, map[string]string{"threadsapp.py": threadsApp})
	_, srv, _ := start(t, Options{App: "threadsapp", Dir: dir, Threads: 4})
	var wg sync.WaitGroup
	names := make(chan string, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := get(t, srv.URL+"/")
			if resp.StatusCode != 200 {
				t.Errorf("GET / = %d %q", resp.StatusCode, body)
			}
			names <- body
		}()
	}
	wg.Wait()
	close(names)
	seen := map[string]bool{}
	for n := range names {
		seen[n] = true
	}
	if len(seen) != 4 {
		t.Errorf("4 requests at once ran on threads %v, want 4 different ones", seen)
	}
}

const slowApp = `
import time
def stuck_here(seconds):
    time.sleep(seconds)
def app(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        stuck_here(60)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"quick"]
` + validated

func TestTimeout(t *testing.T) {
	dir := writeApp(t, map[string]string{"slowapp.py": slowApp})
	app, srv, out := start(t, Options{App: "slowapp", Dir: dir, Timeout: 500 * time.Millisecond, AbortGrace: time.Second})
	if _, body := get(t, srv.URL+"/"); body != "quick" {
		t.Fatalf("GET / = %q", body)
	}
	resp, _ := get(t, srv.URL+"/slow")
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("the request that timed out: %d, want 504", resp.StatusCode)
	}
	<-app.Done()
	var te *TimeoutError
	if err := app.Err(); !errors.As(err, &te) || te.URI != "/slow" {
		t.Errorf("Err() = %v, want a TimeoutError for /slow", err)
	}
	// faulthandler's dump of every thread: the frame it was stuck in.
	out.waitFor(t, "in stuck_here")
	out.waitFor(t, "Fatal Python error: Aborted")
}

func TestClose(t *testing.T) {
	dir := writeApp(t, map[string]string{"slowapp.py": strings.Replace(slowApp, "stuck_here(60)", "stuck_here(0.5)", 1)})
	app, out, err := tryStart(t, Options{App: "slowapp", Dir: dir})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	srv := httptest.NewServer(app)
	defer srv.Close()
	got := make(chan string, 1)
	go func() {
		_, body := get(t, srv.URL+"/slow")
		got <- body
	}()
	time.Sleep(100 * time.Millisecond) // the request is in Python
	app.Close(5 * time.Second)         // it finishes first
	if body := <-got; body != "quick" {
		t.Errorf("the request in flight during Close: %q, want quick", body)
	}
	if !errors.Is(app.Err(), ErrClosed) {
		t.Errorf("Err() after Close = %v, want ErrClosed", app.Err())
	}
	<-app.Exited()
	if resp, _ := get(t, srv.URL+"/"); resp.StatusCode != 503 {
		t.Errorf("after Close: %d, want 503", resp.StatusCode)
	}
}

func TestBootErrors(t *testing.T) {
	dir := writeApp(t, map[string]string{
		"raises.py":       "x = 1\n1 / 0\n",
		"syntax.py":       "def broken(:\n    pass\n",
		"noapp.py":        "other = 1\n",
		"factory.py":      "def create(name='x', n=0):\n    def app(e, s):\n        s('200 OK', [('Content-Type', 'text/plain')]); return [f'{name} {n}'.encode()]\n    return app\ndef bad():\n    raise RuntimeError('factory failed')\nnotcallable = 3\nnone = None\n",
		"pkg/__init__.py": "",
		"pkg/mod.py":      "from wsgiref.validate import validator\nclass obj:\n    @staticmethod\n    def app(e, s):\n        s('200 OK', [('Content-Type', 'text/plain')]); return [b'nested']\n    app = validator(app)\n",
	})
	for spec, want := range map[string]string{
		"missing_module":      "ModuleNotFoundError: No module named 'missing_module'",
		"raises:app":          "ZeroDivisionError: division by zero (at " + filepath.Join(dir, "raises.py") + ":2 in <module>: 1 / 0)",
		"syntax":              "SyntaxError",
		"noapp":               "Failed to find attribute 'application' in 'noapp'.",
		"noapp:nothing":       "Failed to find attribute 'nothing' in 'noapp'.",
		"factory:bad()":       "RuntimeError: factory failed (at " + filepath.Join(dir, "factory.py") + ":6 in bad",
		"factory:notcallable": "Application object must be callable",
		"factory:none":        "Failed to find application object",
		"factory:create(x)":   "Failed to parse arguments as literal values",
		"factory:1+":          "Failed to parse",
		"factory:create()[0]": "Failed to parse",
	} {
		_, out, err := tryStart(t, Options{App: spec, Dir: dir})
		var be *BootError
		if !errors.As(err, &be) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("app %q: error %v, want one line with %q\n%s", spec, err, want, out)
		}
	}
	// The syntax error's line says where.
	if _, _, err := tryStart(t, Options{App: "syntax", Dir: dir}); err == nil || !strings.Contains(err.Error(), "syntax.py") {
		t.Errorf("a syntax error: %v, want the file named", err)
	}
	// What does load: a factory with literal arguments, a nested attribute.
	for spec, want := range map[string]string{"factory:create()": "x 0", "factory:create('y', n=2)": "y 2", "pkg.mod:obj.app": "nested"} {
		app, out, err := tryStart(t, Options{App: spec, Dir: dir})
		if err != nil {
			t.Errorf("app %q: %v\n%s", spec, err, out)
			continue
		}
		rec := httptest.NewRecorder()
		app.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Body.String() != want {
			t.Errorf("app %q: %q, want %q", spec, rec.Body.String(), want)
		}
		app.Close(5 * time.Second)
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(Options{App: "x", Python: "/nonexistent/python3"}); err == nil || !strings.Contains(err.Error(), "--python /nonexistent/python3") {
		t.Errorf("a missing interpreter: %v", err)
	}
	// An interpreter that dies before the handshake: its last words.
	if _, err := Start(Options{App: "x", Python: "false"}); err == nil || !strings.Contains(err.Error(), "python exited before the app") {
		t.Errorf("an interpreter that exits: %v", err)
	}
}

func TestPythonPath(t *testing.T) {
	// lib/deep comes before the working directory, whose hello.py is not
	// a WSGI app.
	dir := writeApp(t, map[string]string{"lib/deep/hello.py": helloApp, "hello.py": "application = None\n"})
	app, out, err := tryStart(t, Options{App: "hello", Dir: dir, PythonPath: []string{"lib/deep"}})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	defer app.Close(5 * time.Second)
	rec := httptest.NewRecorder()
	app.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil).WithContext(context.Background()))
	if rec.Body.String() != "Hello, World!" {
		t.Errorf("an app on --pythonpath: %q", rec.Body.String())
	}
}

// TestManyAtOnce sends requests from many goroutines, so that frames of
// several requests share reads and writes on both sides.
func TestManyAtOnce(t *testing.T) {
	dir := writeApp(t, map[string]string{"envapp.py": environApp, "hello.py": helloApp})
	for _, threads := range []int{1, 4} {
		app, out, err := tryStart(t, Options{App: "envapp", Dir: dir, Threads: threads})
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					rec := httptest.NewRecorder()
					path := fmt.Sprintf("/g%d/r%d", g, i)
					app.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
					var env map[string]any
					if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env["PATH_INFO"] != path {
						t.Errorf("threads %d: %s answered %q (%v)", threads, path, rec.Body.String(), err)
						return
					}
				}
			}()
		}
		wg.Wait()
		app.Close(5 * time.Second)
	}
}
