package frontend

import (
	"net/url"
	"testing"
)

// TestRequestPath: r.URL.Path is SCRIPT_NAME + PATH_INFO as the front end
// passed them, r.RequestURI the client's REQUEST_URI; REQUEST_URI gives the
// path only when neither is set.
func TestRequestPath(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		vars                 map[string]string
		path, rawPath, query string
		requestURI           string
	}{
		{"REQUEST_URI alone", map[string]string{"REQUEST_URI": "/a%20b?q=1"}, "/a b", "/a%20b", "q=1", "/a%20b?q=1"},
		// nginx: location /app/ { rewrite ^/app(/.*)$ $1 break; uwsgi_pass ...; }
		{"rewritten", map[string]string{"REQUEST_URI": "/app/x?q=1", "PATH_INFO": "/x", "QUERY_STRING": "q=1"}, "/x", "/x", "q=1", "/app/x?q=1"},
		// A rewrite that changes the query too.
		{"rewritten query", map[string]string{"REQUEST_URI": "/old?a=1", "PATH_INFO": "/new", "QUERY_STRING": "b=2"}, "/new", "/new", "b=2", "/old?a=1"},
		// Mounted under /app: uwsgi_param SCRIPT_NAME /app, PATH_INFO the rest.
		{"prefix mount", map[string]string{"REQUEST_URI": "/app/x", "SCRIPT_NAME": "/app", "PATH_INFO": "/x", "QUERY_STRING": ""}, "/app/x", "/app/x", "", "/app/x"},
		// FastCGI: fastcgi_params' SCRIPT_NAME is the URI after rewrites.
		{"FastCGI SCRIPT_NAME", map[string]string{"REQUEST_URI": "/a/echo?z", "SCRIPT_NAME": "/echo", "QUERY_STRING": "z"}, "/echo", "/echo", "z", "/a/echo?z"},
		// The variables are decoded; the path escapes again.
		{"decoded", map[string]string{"REQUEST_URI": "/a%20b%2Fc", "PATH_INFO": "/a b/c"}, "/a b/c", "/a%20b/c", "", "/a%20b%2Fc"},
		{"no QUERY_STRING", map[string]string{"REQUEST_URI": "/x?q=1", "PATH_INFO": "/y"}, "/y", "/y", "q=1", "/x?q=1"},
		{"no REQUEST_URI", map[string]string{"PATH_INFO": "/p q", "QUERY_STRING": "a=1"}, "/p q", "/p%20q", "a=1", "/p%20q?a=1"},
		{"nothing", map[string]string{}, "/", "/", "", "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.vars["REQUEST_METHOD"] = "GET"
			r, err := RequestFromVars(tc.vars, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.URL.Path != tc.path || r.URL.EscapedPath() != tc.rawPath || r.URL.RawQuery != tc.query || r.RequestURI != tc.requestURI {
				t.Errorf("path %q (%q) query %q uri %q; want %q (%q) %q %q",
					r.URL.Path, r.URL.EscapedPath(), r.URL.RawQuery, r.RequestURI, tc.path, tc.rawPath, tc.query, tc.requestURI)
			}
		})
	}
	for name, vars := range map[string]map[string]string{
		"relative PATH_INFO": {"PATH_INFO": "x"},
		"bad QUERY_STRING":   {"PATH_INFO": "/x", "QUERY_STRING": "a b"},
		"bad REQUEST_URI":    {"PATH_INFO": "/x", "REQUEST_URI": "no-slash"},
	} {
		vars["REQUEST_METHOD"] = "GET"
		if _, err := RequestFromVars(vars, nil, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

var plainURLSeeds = []string{
	"/", "/a/b.c", "/a?", "/a?b", "/a?b?", "/a?b=1&c=%20(x)!*'", "/~u/-_.$&+,:;=@", "/a??",
	"/a%20b", "//x", "/a b", "/a#f", "/a?b#f", "x", "", "/a!b", "/é",
}

// plainURL finds in the targets it takes what url.ParseRequestURI does.
func TestPlainURLAsParseRequestURI(t *testing.T) {
	for _, uri := range plainURLSeeds {
		checkPlainURL(t, uri)
	}
	for _, uri := range []string{"/a%20b", "//x", "/a b", "/a#f", "x", "", "/a!b", "/é"} {
		if plainURL(new(url.URL), uri) {
			t.Errorf("plainURL took %q, which needs url.ParseRequestURI", uri)
		}
	}
}

func FuzzPlainURL(f *testing.F) {
	for _, uri := range plainURLSeeds {
		f.Add(uri)
	}
	f.Fuzz(checkPlainURL)
}

func checkPlainURL(t *testing.T, uri string) {
	var got url.URL
	if !plainURL(&got, uri) {
		return
	}
	want, err := url.ParseRequestURI(uri)
	if err != nil {
		t.Errorf("plainURL took %q, which url.ParseRequestURI refuses: %v", uri, err)
		return
	}
	if got != *want {
		t.Errorf("plainURL(%q) = %#v, url.ParseRequestURI: %#v", uri, got, *want)
	}
}
