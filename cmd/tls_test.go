package cmd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseCiphers(t *testing.T) {
	ids, err := parseCiphers("ECDHE-RSA-AES128-GCM-SHA256:TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, AES256-GCM-SHA384")
	want := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384}
	if err != nil || !slices.Equal(ids, want) {
		t.Errorf("parseCiphers = %v, %v; want %v", ids, err, want)
	}
	for list, msg := range map[string]string{
		"TLS_AES_128_GCM_SHA256": "TLS 1.3 suite",
		"HIGH:!aNULL":            "OpenSSL cipher rule",
		"ECDHE-RSA-AES999-SHA":   "unknown TLS 1.2 suite",
	} {
		if _, err := parseCiphers(list); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("parseCiphers(%q): %v, want %q", list, err, msg)
		}
	}
}

func TestTLSFlags(t *testing.T) {
	p := testProgram()
	cert := selfSigned(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-b", "https://127.0.0.1:1"}, "-b https://127.0.0.1:1 serves TLS: it needs --certfile"},
		{[]string{"--keyfile", "k.pem"}, "--keyfile needs --certfile"},
		{[]string{"--cert-reqs", "3"}, "--cert-reqs must be 0 (none), 1 (optional) or 2 (required), got 3"},
		{[]string{"--http2", "yes"}, `--http2 must be one of off, on, h2c, got "yes"`},
		{[]string{"--tls-min-version", "1.4"}, `--tls-min-version must be 1.0, 1.1, 1.2 or 1.3, got "1.4"`},
		{[]string{"--ssl-version", "SSLv3"}, "--ssl-version SSLv3: SSL 2 and 3 are not served"},
		{[]string{"--ssl-version", "TLSv1_2", "--tls-min-version", "1.3"}, "--ssl-version TLSv1_2 and --tls-min-version both choose"},
		{[]string{"--certfile", "/nonexistent/c.pem"}, "--certfile/--keyfile: certificate: open /nonexistent/c.pem"},
		{[]string{"-k", "event", "-b", "https://127.0.0.1:1", "--certfile", cert}, "-k event: the event worker does not serve TLS"},
		{[]string{"-k", "sync", "--http2", "h2c"}, "-k sync: the sync worker does not serve HTTP/2: --http2 h2c needs -k goroutine"},
		{[]string{"--session-ticket-rotation", "0.5"}, "--session-ticket-rotation must be 1 second or more"},
	} {
		_, err := p.load(append([]string{"corral"}, c.args...), io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || len(errorLines(err)) != 1 {
			t.Errorf("%q: error %v, want one line starting %q", c.args, err, c.want)
		}
	}
	for in, want := range map[string][2]uint16{
		"":        {tls.VersionTLS12, 0},
		"TLS":     {tls.VersionTLS12, 0},
		"17":      {tls.VersionTLS12, 0},
		"TLSv1_1": {tls.VersionTLS11, tls.VersionTLS11},
		"5":       {tls.VersionTLS12, tls.VersionTLS12},
		"TLSv1":   {tls.VersionTLS10, tls.VersionTLS10},
	} {
		s, err := p.parse([]string{"corral", "-b", "127.0.0.1:0", "--certfile", cert, "--ssl-version", in}, io.Discard)
		if err != nil {
			t.Fatalf("--ssl-version %q: %v", in, err)
		}
		w := s.arbiter.Worker
		if w.TLS == nil || w.TLS.MinVersion != want[0] || w.TLS.MaxVersion != want[1] || !w.TLS.AllTCP || w.TLS.KeyFile != cert || w.HTTP2 != "on" {
			t.Errorf("--ssl-version %q: %+v, http2 %q; want versions %x-%x", in, w.TLS, w.HTTP2, want[0], want[1])
		}
	}
}

// selfSigned writes a certificate and its key, both in one PEM file.
func selfSigned(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb})...)
	path := filepath.Join(t.TempDir(), "both.pem")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTLSGunicornNames: a config file's Gunicorn names set the TLS flags,
// ssl_version as Python's number.
func TestTLSGunicornNames(t *testing.T) {
	cert := selfSigned(t)
	path := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(path, []byte("certfile = \""+cert+"\"\nkeyfile = \""+cert+"\"\nssl_version = 5\ncert_reqs = 0\nciphers = \"ECDHE-ECDSA-AES128-GCM-SHA256\"\n"), 0o600)
	s, err := testProgram().parse([]string{"corral", "-c", path, "-b", "127.0.0.1:0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	w := s.arbiter.Worker.TLS
	if w == nil || w.CertFile != cert || w.MinVersion != tls.VersionTLS12 || w.MaxVersion != tls.VersionTLS12 ||
		!slices.Equal(w.Ciphers, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}) {
		t.Errorf("TLS from Gunicorn's names: %+v", w)
	}
}
