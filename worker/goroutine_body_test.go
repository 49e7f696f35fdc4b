package worker

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGuardBody(t *testing.T) {
	cfg := &Config{MaxBody: 10}
	srv := httptest.NewServer(guardBody(cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "the handler's own answer", http.StatusBadRequest) // dropped
			return
		}
		w.Write(b)
	})))
	defer srv.Close()
	for _, c := range []struct {
		name string
		body io.Reader
		want int
	}{
		{"within the limit", strings.NewReader("0123456789"), 200},
		{"a Content-Length over it", strings.NewReader(strings.Repeat("x", 11)), 413},
		{"a chunked body over it", io.MultiReader(strings.NewReader(strings.Repeat("x", 100))), 413},
	} {
		res, err := http.Post(srv.URL, "text/plain", c.body)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.want || (c.want == 413 && (!res.Close || string(b) != "413 Request Entity Too Large\n")) {
			t.Errorf("%s: %d %q close=%v, want %d", c.name, res.StatusCode, b, res.Close, c.want)
		}
	}
}
