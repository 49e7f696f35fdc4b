package demo

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func TestDemo(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	res, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "Hello, World!" {
		t.Errorf("GET / = %q", b)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/echo?a=1&b=2", strings.NewReader("payload"))
	req.Header.Add("X-Two", "2")
	req.Header.Add("X-One", "1")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e Echo
	if err := json.NewDecoder(res.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if e.Method != "POST" || e.Path != "/echo" || e.Query != "a=1&b=2" || e.Body != "payload" || e.Pid != os.Getpid() || e.Version != "HTTP/1.1" {
		t.Errorf("echo: %+v", e)
	}
	found := 0
	for _, h := range e.Headers {
		if h == [2]string{"X-One", "1"} || h == [2]string{"X-Two", "2"} {
			found++
		}
	}
	if found != 2 {
		t.Errorf("headers: %v", e.Headers)
	}
	res, _ = http.Get(srv.URL + "/sleep?seconds=nope")
	if res.StatusCode != 400 {
		t.Errorf("bad sleep: %d", res.StatusCode)
	}
	res, _ = http.Get(srv.URL + "/nothing")
	if res.StatusCode != 404 {
		t.Errorf("unknown path: %d", res.StatusCode)
	}
}

// get is the status and body of GET path on srv.
func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	res, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestWork(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	start := time.Now()
	if code, body := get(t, srv, "/work?ms=30"); code != 200 || !strings.HasPrefix(body, "worked 30ms") {
		t.Fatalf("/work?ms=30: %d %q", code, body)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("/work?ms=30 took %v", d)
	}
	for _, bad := range []string{"/work", "/work?ms=-1", "/work?ms=x", "/work?ms=60001"} {
		if code, _ := get(t, srv, bad); code != 400 {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
}

func TestGrow(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	if code, body := get(t, srv, "/grow?mb=2"); code != 200 || body != "keeping 2 MiB\n" {
		t.Fatalf("/grow?mb=2: %d %q", code, body)
	}
	if code, body := get(t, srv, "/grow?mb=3"); code != 200 || body != "keeping 5 MiB\n" {
		t.Fatalf("/grow?mb=3 after 2: %d %q", code, body)
	}
	for _, bad := range []string{"/grow", "/grow?mb=-1", "/grow?mb=4097"} {
		if code, _ := get(t, srv, bad); code != 400 {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
}

func TestFail(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	t.Setenv("CORRAL_WORKER_GENERATION", "1")
	t.Setenv(FailGenerationEnv, "")
	for _, c := range []struct {
		path string
		want int
	}{{"/fail", 200}, {"/fail?rate=0", 200}, {"/fail?rate=1", 500}, {"/fail?rate=2", 400}, {"/fail?rate=x", 400}} {
		if code, _ := get(t, srv, c.path); code != c.want {
			t.Errorf("%s: %d, want %d", c.path, code, c.want)
		}
	}
	fails := 0
	for range 200 {
		if code, _ := get(t, srv, "/fail?rate=0.5"); code == 500 {
			fails++
		}
	}
	if fails < 50 || fails > 150 {
		t.Errorf("/fail?rate=0.5: %d of 200 failed", fails)
	}
	t.Setenv(FailGenerationEnv, "2")
	if code, _ := get(t, srv, "/fail"); code != 200 {
		t.Errorf("generation 1 with %s=2: %d, want 200", FailGenerationEnv, code)
	}
	t.Setenv("CORRAL_WORKER_GENERATION", "2")
	if code, _ := get(t, srv, "/fail"); code != 500 {
		t.Errorf("generation 2 with %s=2: %d, want 500", FailGenerationEnv, code)
	}
}
