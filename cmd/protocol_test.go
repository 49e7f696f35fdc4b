package cmd

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestProtocolFlags(t *testing.T) {
	p := testProgram()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--protocol", "scgi"}, `--protocol must be one of http, uwsgi, fastcgi, got "scgi"`},
		{[]string{"--proxy-protocol", "v3"}, `--proxy-protocol must be one of off, v1, v2, auto, got "v3"`},
		{[]string{"--uwsgi-allow-from", "localhost"}, `--uwsgi-allow-from: "localhost" is not an IP address or network`},
		{[]string{"--proxy-allow-from", "10.0.0.0/40"}, `--proxy-allow-from: "10.0.0.0/40" is not an IP address or network`},
		{[]string{"--forwarded-allow-ips", "1.2.3.4,nope"}, `--forwarded-allow-ips: "nope" is not an IP address or network`},
		{[]string{"-b", "scgi://127.0.0.1:1"}, `bind "scgi://127.0.0.1:1"`},
	} {
		_, err := p.load(append([]string{"corral"}, c.args...), io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v, want one line starting %q", c.args, err, c.want)
		}
	}

	// Every worker type serves every front end.
	for _, class := range []string{"goroutine", "sync", "event"} {
		for _, args := range [][]string{
			{"-b", "uwsgi://127.0.0.1:0"},
			{"-b", "fastcgi://127.0.0.1:0"},
			{"--protocol", "fastcgi", "-b", "127.0.0.1:0"},
			{"--proxy-protocol", "v1"}, {"--proxy-protocol", "v2"}, {"--proxy-protocol", "auto"},
		} {
			if _, err := p.load(append([]string{"corral", "-k", class}, args...), io.Discard); err != nil {
				t.Errorf("-k %s %q: %v", class, args, err)
			}
		}
	}

	// Defaults: HTTP, no PROXY header, loopback trusted.
	s, err := p.load([]string{"corral", "-b", "127.0.0.1:0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	wc := s.arbiter.Worker
	loop := []string{"127.0.0.1", "::1"}
	if wc.Protocol != "http" || wc.ProxyProtocol != "off" || !slices.Equal(wc.UwsgiAllowFrom, loop) ||
		!slices.Equal(wc.ProxyAllowFrom, loop) || !slices.Equal(wc.ForwardedAllowIPs, loop) || !slices.Equal(s.arbiter.Binds, []string{"127.0.0.1:0"}) {
		t.Errorf("defaults: %+v binds %q", wc, s.arbiter.Binds)
	}

	// --protocol prefixes the binds that name none; the command line's
	// comma lists, the environment and the config file all work.
	dir := t.TempDir()
	conf := filepath.Join(dir, "corral.toml")
	os.WriteFile(conf, []byte("protocol = \"uwsgi\"\nforwarded_allow_ips = \"10.0.0.0/8, 192.0.2.1\"\nproxy-allow-from = [\"*\"]\n"), 0o644)
	t.Setenv("CORRAL_PROXY_PROTOCOL", "auto")
	s, err = p.load([]string{"corral", "-c", conf, "-b", "127.0.0.1:3031", "-b", "fastcgi://unix:/tmp/x.sock", "-b", "http://127.0.0.1:8000",
		"--uwsgi-allow-from", "127.0.0.1,10.1.0.0/16"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	wc = s.arbiter.Worker
	if want := []string{"uwsgi://127.0.0.1:3031", "fastcgi://unix:/tmp/x.sock", "http://127.0.0.1:8000"}; !slices.Equal(s.arbiter.Binds, want) {
		t.Errorf("binds %q, want %q", s.arbiter.Binds, want)
	}
	if wc.Protocol != "uwsgi" || wc.ProxyProtocol != "auto" || !slices.Equal(wc.UwsgiAllowFrom, []string{"127.0.0.1", "10.1.0.0/16"}) ||
		!slices.Equal(wc.ProxyAllowFrom, []string{"*"}) || !slices.Equal(wc.ForwardedAllowIPs, []string{"10.0.0.0/8", "192.0.2.1"}) {
		t.Errorf("settings: %+v", wc)
	}
	if got := s.values["bind"]; got != `["127.0.0.1:3031", "fastcgi://unix:/tmp/x.sock", "http://127.0.0.1:8000"]` {
		t.Errorf("--print-config bind = %s, want the binds as given", got)
	}
}
