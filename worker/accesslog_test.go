package worker

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAccessLogAtoms(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	format := `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(B)s "%(f)s" "%(a)s" %(m)s %(U)s %(q)s %(H)s %(T)s %(M)s %(D)s %(L)s %(p)s %({x-req}i)s %({content-type}o)s %({ACCESS_TEST}e)s`
	t.Setenv("ACCESS_TEST", "envval")
	a, err := OpenAccessLog(path, format)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/p/a?x=1", nil)
	r.RemoteAddr = "10.1.2.3:4567"
	r.Header.Set("User-Agent", "ua")
	r.Header.Set("Referer", "ref")
	r.Header.Set("X-Req", "rq")
	r.SetBasicAuth("bob", "pw")
	resp := http.Header{"Content-Type": {"text/plain"}}
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a.Log(r, 201, 0, resp, start, 1500*time.Millisecond)
	b, _ := os.ReadFile(path)
	want := `10.1.2.3 - bob [02/Jan/2026:03:04:05 +0000] "GET /p/a?x=1 HTTP/1.1" 201 - 0 "ref" "ua" GET /p/a x=1 HTTP/1.1 1 1500 1500000 1.500000 <` +
		strconv.Itoa(os.Getpid()) + `> rq text/plain envval` + "\n"
	if string(b) != want {
		t.Errorf("got  %q\nwant %q", b, want)
	}
	var nilLog *AccessLog
	nilLog.Log(r, 200, 1, resp, start, 0) // no access log: no panic, nothing written
}

func TestAccessLogFormatErrors(t *testing.T) {
	for _, f := range []string{"%(zz)s", "%(h", "%({x}q)s"} {
		if _, err := ParseAccessLogFormat(f); err == nil {
			t.Errorf("format %q accepted", f)
		}
	}
	atoms, err := ParseAccessLogFormat("")
	if err != nil || len(atoms) == 0 {
		t.Errorf("default format: %v", err)
	}
	var b bytes.Buffer
	for _, at := range atoms {
		at(&b, &entry{r: httptest.NewRequest("GET", "/", nil), status: 200, size: 5})
	}
	if !strings.Contains(b.String(), `"GET / HTTP/1.1" 200 5`) {
		t.Errorf("default format line %q", b.String())
	}
}

func TestChooseMaxRequests(t *testing.T) {
	if chooseMaxRequests(0, 10) != 0 {
		t.Error("0 must mean no limit")
	}
	seen := map[int64]bool{}
	for range 500 {
		n := chooseMaxRequests(50, 10)
		if n < 50 || n > 60 {
			t.Fatalf("limit %d outside [50, 60]", n)
		}
		seen[n] = true
	}
	if len(seen) < 5 {
		t.Errorf("jitter gave only %d distinct limits", len(seen))
	}
}
