package worker

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"testing"
	"time"
)

// TestJSONAccessLine: values that break a JSON-looking template (a quote
// and a backslash in the user agent, control bytes, invalid UTF-8) come
// out as one line that parses, with every atom's value.
func TestJSONAccessLine(t *testing.T) {
	r := httptest.NewRequest("GET", "/p/a?x=1", nil)
	r.RemoteAddr = "10.1.2.3:4567"
	r.Header.Set("User-Agent", "evil \"agent\" \\ \x01\x7f \xff \u2028 é")
	r.Header.Set("Referer", "ref\n")
	r.SetBasicAuth("bob", "pw")
	e := entry{r: r, status: 201, size: 5, start: time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC), elapsed: 1500 * time.Microsecond}
	var b bytes.Buffer
	jsonAccessLine(&b, &e)
	if bytes.ContainsAny(b.Bytes(), "\n\r\x01") {
		t.Fatalf("raw control bytes in %q", b.String())
	}
	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, b.String())
	}
	want := map[string]any{
		"h": "10.1.2.3", "u": "bob", "t": "2026-01-02T03:04:05.006+00:00", "r": "GET /p/a?x=1 HTTP/1.1",
		"m": "GET", "U": "/p/a", "q": "x=1", "H": "HTTP/1.1", "s": 201.0, "B": 5.0, "f": "ref\n",
		"a": "evil \"agent\" \\ \x01\x7f \ufffd \u2028 é", "T": 0.0, "M": 1.0, "D": 1500.0, "L": 0.0015,
		"p": float64(os.Getpid()),
	}
	if len(got) != len(want) {
		t.Errorf("keys: got %d, want %d: %s", len(got), len(want), b.String())
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "\"\\/", "\x00\x1f\t", "日本語", "a\xc3", "\u2029x"} {
		var b bytes.Buffer
		appendJSONString(&b, s)
		var back string
		if err := json.Unmarshal(b.Bytes(), &back); err != nil {
			t.Fatalf("%q encodes as %s: %v", s, b.String(), err)
		}
		if want := string(bytes.ToValidUTF8([]byte(s), []byte("\ufffd"))); back != want {
			t.Errorf("%q round-trips as %q", s, back)
		}
	}
}
