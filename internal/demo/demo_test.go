package demo

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
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
