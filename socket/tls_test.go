package socket

import "testing"

func TestParseHTTPSAddr(t *testing.T) {
	for in, want := range map[string]Addr{
		"https://127.0.0.1:8443":     {Network: "tcp", Address: "127.0.0.1:8443", Protocol: ProtocolHTTPS},
		"https://unix:/run/app.sock": {Network: "unix", Address: "/run/app.sock", Protocol: ProtocolHTTPS},
		"https://[::1]:443":          {Network: "tcp", Address: "[::1]:443", Protocol: ProtocolHTTPS},
	} {
		got, err := ParseAddr(in)
		if err != nil || got != want {
			t.Errorf("ParseAddr(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if got.String() != in {
			t.Errorf("%q.String() = %q", in, got.String())
		}
	}
	if _, err := ParseAddr("https://"); err == nil {
		t.Error(`ParseAddr("https://") took it`)
	}
	for in, want := range map[string]string{"http://127.0.0.1:1": "https://127.0.0.1:1", "unix:/a": "https://unix:/a", "https://x:1": "https://x:1"} {
		if got := HTTPS(in); got != want {
			t.Errorf("HTTPS(%q) = %q, want %q", in, got, want)
		}
	}
}
