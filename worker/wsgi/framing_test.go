package wsgi

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// decodeRequest splits a request frame as the runner does.
func decodeRequest(t *testing.T, b []byte) (id uint32, body string, env map[string]string) {
	t.Helper()
	size := binary.LittleEndian.Uint32(b)
	if int(size) != len(b) {
		t.Fatalf("frame size %d, have %d bytes", size, len(b))
	}
	id = binary.LittleEndian.Uint32(b[4:])
	n := binary.LittleEndian.Uint32(b[8:])
	body = string(b[requestHeaderSize : requestHeaderSize+n])
	parts := strings.Split(string(b[requestHeaderSize+n:]), "\x00")
	if len(parts)%2 != 0 {
		t.Fatalf("env of %d parts: %q", len(parts), parts)
	}
	env = map[string]string{}
	for i := 0; i < len(parts); i += 2 {
		env[parts[i]] = parts[i+1]
	}
	return id, body, env
}

func TestAppendRequest(t *testing.T) {
	r := httptest.NewRequest("POST", "http://example.com:8080/app/x%2Fy?q=1", io.MultiReader(strings.NewReader("ab"), strings.NewReader("cd")))
	r.ContentLength = -1 // as for a chunked body
	r.Header.Set("Content-Type", "text/plain")
	r.Header.Add("X-Multi", "a")
	r.Header.Add("X-Multi", "b")
	r.Header.Set("Transfer-Encoding", "chunked")
	r.RemoteAddr = "192.0.2.1:1234"
	b, err := appendRequest([]byte("keep"), request{id: 7, scriptName: "/app"}, r)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:4]) != "keep" {
		t.Fatalf("the bytes before the frame changed: %q", b[:4])
	}
	id, body, env := decodeRequest(t, b[4:])
	if id != 7 || body != "abcd" {
		t.Errorf("id %d body %q", id, body)
	}
	for k, v := range map[string]string{
		"REQUEST_METHOD": "POST", "SCRIPT_NAME": "/app", "PATH_INFO": "/x/y", "QUERY_STRING": "q=1",
		"CONTENT_LENGTH": "4", "CONTENT_TYPE": "text/plain", "HTTP_X_MULTI": "a, b", "SERVER_NAME": "example.com",
		"SERVER_PORT": "8080", "HTTP_HOST": "example.com:8080", "REMOTE_ADDR": "192.0.2.1", "REMOTE_PORT": "1234",
		"wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1",
	} {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	for _, k := range []string{"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING", "HTTPS"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s is set: %q", k, env[k])
		}
	}

	r = httptest.NewRequest("GET", "/", nil)
	r.TLS = &tls.ConnectionState{}
	r.Host = "h"
	b, err = appendRequest(nil, request{id: 8}, r)
	if err != nil {
		t.Fatal(err)
	}
	_, _, env = decodeRequest(t, b)
	if _, ok := env["CONTENT_LENGTH"]; ok || env["HTTPS"] != "on" || env["wsgi.url_scheme"] != "https" || env["SERVER_PORT"] != "443" {
		t.Errorf("a GET over TLS: %v", env)
	}

	r = httptest.NewRequest("POST", "/", strings.NewReader("12345"))
	r.ContentLength = -1
	if _, err := appendRequest(nil, request{maxBody: 4}, r); !errors.Is(err, errTooLarge) {
		t.Errorf("a body over maxBody: %v", err)
	}
	r = httptest.NewRequest("POST", "/", strings.NewReader("1234"))
	if _, err := appendRequest(nil, request{maxBody: 4}, r); err != nil {
		t.Errorf("a body of maxBody: %v", err)
	}

	r = httptest.NewRequest("GET", "/a%00b", nil)
	if b, err := appendRequest([]byte("x"), request{}, r); !errors.Is(err, errNUL) || string(b) != "x" {
		t.Errorf("a NUL in the path: %q, %v", b, err)
	}
	r = httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Bad", "a\x00b")
	if _, err := appendRequest(nil, request{}, r); !errors.Is(err, errNUL) {
		t.Errorf("a NUL in a header: %v", err)
	}
}

func TestParseHead(t *testing.T) {
	h, err := parseHead([]byte("201 Created\x00Location\x00/x\x00set-cookie\x00a=1\x00Set-Cookie\x00b=2\x00Connection\x00close\x00Transfer-Encoding\x00chunked"))
	if err != nil || h.status != 201 {
		t.Fatalf("%+v %v", h, err)
	}
	rec := httptest.NewRecorder()
	h.apply(rec)
	got := rec.Header()
	if got.Get("Location") != "/x" || len(got["Set-Cookie"]) != 2 || got.Get("Connection") != "close" || got.Get("Transfer-Encoding") != "" {
		t.Errorf("applied header: %v", got)
	}
	if h, err := parseHead([]byte("204 No Content")); err != nil || h.status != 204 || len(h.fields) != 0 {
		t.Errorf("a head without fields: %+v %v", h, err)
	}
	for _, bad := range []string{"", "20", "200OK", "abc OK", "99 Low", "100 Continue", "200 OK\x00Name-without-value"} {
		if _, err := parseHead([]byte(bad)); err == nil {
			t.Errorf("parseHead(%q) took it", bad)
		}
	}
}

var _ http.Handler = (*App)(nil)
