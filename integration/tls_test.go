package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/demo"
)

// testPKI is a certificate authority made for one test, and the files of
// what it signed: a server certificate for 127.0.0.1 and localhost, and
// client certificates (one from another CA, which the server must refuse).
type testPKI struct {
	t    *testing.T
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool

	CAFile, CertFile, KeyFile string // the CA; the server's certificate and key
	ClientCert, ClientKey     string // signed by the CA, CN "client"
	StrangerCert, StrangerKey string // signed by another CA, CN "stranger"
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{t: t, dir: t.TempDir()}
	p.ca, p.key = selfSignedCA(t, "corral test CA")
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	p.CAFile = p.path("ca.pem")
	writePEM(t, p.CAFile, "CERTIFICATE", p.ca.Raw)
	p.CertFile, p.KeyFile = p.path("server.pem"), p.path("server.key")
	p.issueServer(p.CertFile, p.KeyFile, "server gen1", time.Now().Add(24*time.Hour))
	p.ClientCert, p.ClientKey = p.path("client.pem"), p.path("client.key")
	p.issue(p.ca, p.key, p.ClientCert, p.ClientKey, "client", time.Now().Add(time.Hour), x509.ExtKeyUsageClientAuth)
	other, otherKey := selfSignedCA(t, "stranger CA")
	p.StrangerCert, p.StrangerKey = p.path("stranger.pem"), p.path("stranger.key")
	p.issue(other, otherKey, p.StrangerCert, p.StrangerKey, "stranger", time.Now().Add(time.Hour), x509.ExtKeyUsageClientAuth)
	return p
}

func (p *testPKI) path(name string) string { return filepath.Join(p.dir, name) }

func selfSignedCA(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

// issueServer writes a server certificate for 127.0.0.1 and localhost,
// with common name cn, valid until notAfter.
func (p *testPKI) issueServer(certFile, keyFile, cn string, notAfter time.Time) {
	p.issue(p.ca, p.key, certFile, keyFile, cn, notAfter, x509.ExtKeyUsageServerAuth)
}

var serial = struct {
	sync.Mutex
	n int64
}{n: 100}

func (p *testPKI) issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, certFile, keyFile, cn string, notAfter time.Time, usage x509.ExtKeyUsage) {
	t := p.t
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial.Lock()
	serial.n++
	sn := serial.n
	serial.Unlock()
	notBefore := time.Now().Add(-time.Hour)
	if notAfter.Before(notBefore) {
		notBefore = notAfter.Add(-time.Hour)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(sn), Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "PRIVATE KEY", kb)
	writePEM(t, certFile, "CERTIFICATE", der)
}

// writePEM writes one PEM block to path by renaming a complete file over
// it, as a certificate renewal does.
func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	renameOver(t, tmp, path)
}

// tlsArgs are the flags that serve p's server certificate.
func (p *testPKI) tlsArgs(more ...string) []string {
	return append([]string{"--certfile", p.CertFile, "--keyfile", p.KeyFile}, more...)
}

// clientConfig trusts p's CA; with cert, presents that client certificate.
func (p *testPKI) clientConfig(certFile, keyFile string) *tls.Config {
	c := &tls.Config{RootCAs: p.pool, ServerName: "127.0.0.1"}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			p.t.Fatal(err)
		}
		// Present it even if the server asks for another CA's (Go's
		// client would send none then), so the server has to refuse it.
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return c
}

// startHTTPS starts corral and waits for it to serve; it returns the
// server, with Addr its first https:// listener, and every listener URL.
func startHTTPS(t *testing.T, args ...string) (*server, []string) {
	t.Helper()
	s := startNoWait(t, corralBin, args)
	s.waitLog(`Ready: \d+ workers? serving`, 15*time.Second)
	var urls []string
	for _, m := range regexp.MustCompile(`Listening at: (\S+) \(`).FindAllStringSubmatch(s.log.String(), -1) {
		urls = append(urls, m[1])
		if s.Addr == "" && strings.HasPrefix(m[1], "https://") {
			s.Addr = strings.TrimPrefix(m[1], "https://")
		}
	}
	return s, urls
}

// curl runs curl with args and returns its stdout, stderr and error.
func curl(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	bin, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is not installed; make test installs it (package curl)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-sS"}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// decodeEcho parses /echo's JSON that curl printed before -w's last line.
func decodeEcho(t *testing.T, out string) (demo.Echo, string) {
	t.Helper()
	i := strings.LastIndexByte(strings.TrimRight(out, "\n"), '\n')
	var e demo.Echo
	if i < 0 || json.Unmarshal([]byte(out[:i]), &e) != nil {
		t.Fatalf("curl printed no /echo JSON: %q", out)
	}
	return e, strings.TrimSpace(out[i+1:])
}

// TestTLSCurlVersionsAndHTTP2 has curl ask each worker type for TLS 1.2
// and 1.3, and HTTP/2 by ALPN: goroutine negotiates h2, sync stays on
// HTTP/1.1. /echo and the access log say what was served.
func TestTLSCurlVersionsAndHTTP2(t *testing.T) {
	p := newTestPKI(t)
	for _, class := range []string{"goroutine", "sync"} {
		t.Run(class, func(t *testing.T) {
			access := filepath.Join(t.TempDir(), "access.log")
			s, _ := startHTTPS(t, p.tlsArgs("-w", "2", "-k", class, "-b", "127.0.0.1:0", "--access-logfile", access,
				"--access-logformat", `%(H)s %(s)s "%(r)s"`, "demo")...)
			url := "https://" + s.Addr + "/echo"
			for _, v := range []string{"1.2", "1.3"} {
				out, stderr, err := curl(t, "-v", "--cacert", p.CAFile, "--tlsv"+v, "--tls-max", v, "--http1.1", "-w", "\n%{http_version}", url)
				if err != nil {
					t.Fatalf("curl TLS %s: %v\n%s", v, err, stderr)
				}
				e, httpVersion := decodeEcho(t, out)
				if e.TLS == nil || e.TLS.Version != "TLS "+v || e.Version != "HTTP/1.1" || httpVersion != "1.1" {
					t.Errorf("TLS %s: served %+v over %s (curl: %s)", v, e.TLS, e.Version, httpVersion)
				}
				if !strings.Contains(stderr, "SSL connection using TLSv"+v) {
					t.Errorf("curl did not report TLSv%s:\n%s", v, stderr)
				}
			}
			out, stderr, err := curl(t, "--cacert", p.CAFile, "--http2", "-w", "\n%{http_version}", url)
			if err != nil {
				t.Fatalf("curl --http2: %v\n%s", err, stderr)
			}
			e, httpVersion := decodeEcho(t, out)
			want, wantALPN, wantLog := "2", "h2", "HTTP/2.0 200"
			if class == "sync" {
				want, wantALPN, wantLog = "1.1", "http/1.1", "HTTP/1.1 200"
			}
			if httpVersion != want || e.TLS == nil || e.TLS.ALPN != wantALPN || e.Version != strings.Fields(wantLog)[0] {
				t.Errorf("curl --http2 to -k %s: curl saw HTTP/%s, /echo %s with %+v; want HTTP/%s, ALPN %s", class, httpVersion, e.Version, e.TLS, want, wantALPN)
			}
			waitFileContains(t, access, wantLog+` "GET /echo `+strings.Fields(wantLog)[0]+`"`)
			waitFileContains(t, access, `HTTP/1.1 200 "GET /echo HTTP/1.1"`)
		})
	}
}

func waitFileContains(t *testing.T, path, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no %q:\n%s", path, s, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTLSOldVersionsRefused: TLS 1.0 and 1.1 get a protocol_version alert
// (openssl s_client, its security level lowered so that it offers them);
// the same client gets TLS 1.2.
func TestTLSOldVersionsRefused(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is not installed; make test installs it (package openssl)")
	}
	p := newTestPKI(t)
	s, _ := startHTTPS(t, p.tlsArgs("-b", "127.0.0.1:0", "demo")...)
	for _, v := range []string{"-tls1", "-tls1_1", "-tls1_2"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, bin, "s_client", "-connect", s.Addr, v, "-cipher", "DEFAULT:@SECLEVEL=0", "-CAfile", p.CAFile)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		cancel()
		switch {
		case v == "-tls1_2" && (err != nil || !strings.Contains(string(out), "TLSv1.2")):
			t.Errorf("openssl s_client -tls1_2 failed: %v\n%s", err, out)
		case v != "-tls1_2" && (err == nil || !strings.Contains(string(out), "alert protocol version")):
			t.Errorf("openssl s_client %s was not refused with a protocol_version alert: %v\n%s", v, err, out)
		}
	}
}

// TestHTTP2PriorKnowledgeH2C: --http2 h2c serves cleartext HTTP/2 with
// prior knowledge on a plain bind (http:// keeps it plain next to
// --certfile) and HTTP/1.1 there still; --http2 off keeps TLS on HTTP/1.1.
func TestHTTP2PriorKnowledgeH2C(t *testing.T) {
	p := newTestPKI(t)
	s, urls := startHTTPS(t, p.tlsArgs("-b", "127.0.0.1:0", "-b", "http://127.0.0.1:0", "--http2", "h2c", "demo")...)
	if len(urls) != 2 || !strings.HasPrefix(urls[0], "https://") || !strings.HasPrefix(urls[1], "http://") {
		t.Fatalf("listening at %q, want an https:// and an http:// listener", urls)
	}
	plain := urls[1]
	for _, c := range []struct {
		flag, want string
	}{{"--http2-prior-knowledge", "2"}, {"--http1.1", "1.1"}} {
		out, stderr, err := curl(t, c.flag, "-w", "\n%{http_version}", plain+"/echo")
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", c.flag, err, stderr)
		}
		e, v := decodeEcho(t, out)
		if v != c.want || e.TLS != nil {
			t.Errorf("curl %s: HTTP/%s, TLS %+v; want HTTP/%s in clear", c.flag, v, e.TLS, c.want)
		}
	}
	out, _, err := curl(t, "--cacert", p.CAFile, "--http2", "-o", "/dev/null", "-w", "%{http_version}", "https://"+s.Addr+"/")
	if err != nil || out != "2" {
		t.Errorf("curl --http2 over TLS with --http2 h2c: %q %v", out, err)
	}

	off, _ := startHTTPS(t, p.tlsArgs("-b", "127.0.0.1:0", "--http2", "off", "demo")...)
	out, _, err = curl(t, "--cacert", p.CAFile, "--http2", "-o", "/dev/null", "-w", "%{http_version}", "https://"+off.Addr+"/")
	if err != nil || out != "1.1" {
		t.Errorf("curl --http2 with --http2 off: HTTP/%s %v, want 1.1", out, err)
	}
}

// tlsEcho does GET /echo over TLS with config on a new connection.
func tlsEcho(addr string, config *tls.Config) (demo.Echo, *tls.ConnectionState, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: config, DisableKeepAlives: true}}
	res, err := c.Get("https://" + addr + "/echo")
	if err != nil {
		return demo.Echo{}, nil, err
	}
	defer res.Body.Close()
	var e demo.Echo
	if err := json.NewDecoder(res.Body).Decode(&e); err != nil {
		return e, res.TLS, err
	}
	if res.StatusCode != 200 {
		return e, res.TLS, fmt.Errorf("status %d", res.StatusCode)
	}
	return e, res.TLS, nil
}

// TestTLSMutual: --cert-reqs 2 refuses a client without a certificate or
// with one from another CA and hands the handler the chain of one from
// --ca-certs; --cert-reqs 1 serves a client without one too.
func TestTLSMutual(t *testing.T) {
	p := newTestPKI(t)
	for _, reqs := range []string{"2", "1"} {
		t.Run("cert-reqs="+reqs, func(t *testing.T) {
			for _, class := range []string{"goroutine", "sync"} {
				s, _ := startHTTPS(t, p.tlsArgs("-k", class, "-b", "127.0.0.1:0", "--ca-certs", p.CAFile, "--cert-reqs", reqs, "demo")...)
				e, _, err := tlsEcho(s.Addr, p.clientConfig(p.ClientCert, p.ClientKey))
				if err != nil || e.TLS == nil || len(e.TLS.Client) == 0 || e.TLS.Client[0] != "CN=client" {
					t.Errorf("-k %s: with a client certificate: %+v, %v", class, e.TLS, err)
				}
				_, _, err = tlsEcho(s.Addr, p.clientConfig(p.StrangerCert, p.StrangerKey))
				if err == nil {
					t.Errorf("-k %s: a certificate from another CA was accepted", class)
				}
				e, _, err = tlsEcho(s.Addr, p.clientConfig("", ""))
				switch {
				case reqs == "2" && err == nil:
					t.Errorf("-k %s: a client without a certificate was served under --cert-reqs 2", class)
				case reqs == "1" && (err != nil || e.TLS == nil || len(e.TLS.Client) != 0):
					t.Errorf("-k %s: without a certificate under --cert-reqs 1: %+v, %v", class, e.TLS, err)
				}
				_, stderr, err := curl(t, "--cacert", p.CAFile, "--cert", p.ClientCert, "--key", p.ClientKey, "https://"+s.Addr+"/")
				if err != nil {
					t.Errorf("-k %s: curl with a client certificate: %v %s", class, err, stderr)
				}
			}
		})
	}
}

// TestTLSResumesOnAnotherWorker: a session ticket one worker issued
// resumes on another (the arbiter's keys are every worker's), over TLS
// 1.2 and 1.3.
func TestTLSResumesOnAnotherWorker(t *testing.T) {
	p := newTestPKI(t)
	for _, class := range []string{"goroutine", "sync"} {
		s, _ := startHTTPS(t, p.tlsArgs("-w", "3", "-k", class, "-b", "127.0.0.1:0", "demo")...)
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			name := "-k " + class + " " + tls.VersionName(v)
			config := p.clientConfig("", "")
			config.MaxVersion = v
			config.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			prev, across, resumed := 0, 0, 0
			for i := 0; i < 60 && across < 3; i++ {
				e, st, err := tlsEcho(s.Addr, config)
				if err != nil {
					t.Fatalf("%s request %d: %v", name, i, err)
				}
				if i > 0 && !st.DidResume {
					t.Errorf("%s request %d did not resume (worker %d, the ticket from %d)", name, i, e.Pid, prev)
				}
				if st.DidResume != e.TLS.Resumed {
					t.Errorf("%s: client says resumed=%v, the worker %v", name, st.DidResume, e.TLS.Resumed)
				}
				if st.DidResume {
					resumed++
					if e.Pid != prev {
						across++
					}
				}
				prev = e.Pid
			}
			t.Logf("%s: %d resumed, %d of them on another worker than the ticket's", name, resumed, across)
			if across == 0 {
				t.Errorf("%s: no session resumed on another worker", name)
			}
		}
	}
}

// firstTicket is a client session cache that keeps the first ticket it
// gets, so a test can offer that one ticket again and again.
type firstTicket struct {
	mu sync.Mutex
	cs *tls.ClientSessionState
}

func (f *firstTicket) Get(string) (*tls.ClientSessionState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cs, f.cs != nil
}

func (f *firstTicket) Put(_ string, cs *tls.ClientSessionState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cs == nil && cs != nil {
		f.cs = cs
	}
}

// TestTLSTicketKeysRotate: with --session-ticket-rotation 2, a ticket
// still resumes after one rotation (the previous key decrypts) and no
// longer after two; the rotations reach the running workers.
func TestTLSTicketKeysRotate(t *testing.T) {
	p := newTestPKI(t)
	s, _ := startHTTPS(t, p.tlsArgs("-w", "2", "-b", "127.0.0.1:0", "--session-ticket-rotation", "2", "--log-level", "debug", "demo")...)
	config := p.clientConfig("", "")
	config.ClientSessionCache = &firstTicket{}
	if _, _, err := tlsEcho(s.Addr, config); err != nil {
		t.Fatal(err)
	}
	got := time.Now()
	resumes := func() bool {
		t.Helper()
		_, st, err := tlsEcho(s.Addr, config)
		if err != nil {
			t.Fatal(err)
		}
		return st.DidResume
	}
	if !resumes() {
		t.Fatal("the ticket did not resume at once")
	}
	// Rotations come every 2 s, up to a second late (the arbiter's tick):
	// 3 s on, one or none happened since the ticket; 8 s on, two did.
	time.Sleep(time.Until(got.Add(3 * time.Second)))
	if !resumes() {
		t.Error("the ticket no longer resumed after one rotation")
	}
	s.waitLogN(`Rotated the TLS session ticket keys`, 3, 10*time.Second)
	time.Sleep(time.Until(got.Add(8 * time.Second)))
	if resumes() {
		t.Error("the ticket still resumed after two rotations")
	}
}

// tlsLoad runs clients against https://addr/ until ctx ends or total
// requests were sent: keepAlive clients on kept connections (HTTP/1.1 or,
// with h2, HTTP/2), the others on a new connection (a full handshake) per
// request. It counts every request that failed.
func tlsLoad(ctx context.Context, addr string, config *tls.Config, clients, total int, keepAlive, h2 bool) *loadResult {
	r := &loadResult{}
	var wg sync.WaitGroup
	var left atomic.Int64
	left.Store(int64(total))
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{TLSClientConfig: config.Clone(), DisableKeepAlives: !keepAlive, ForceAttemptHTTP2: h2}
			defer tr.CloseIdleConnections()
			c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
			for ctx.Err() == nil && left.Add(-1) >= 0 {
				res, err := c.Get("https://" + addr + "/")
				if err == nil {
					_, err = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if err == nil && res.StatusCode != 200 {
						err = fmt.Errorf("status %d", res.StatusCode)
					}
					if err == nil && h2 != (res.ProtoMajor == 2) {
						err = fmt.Errorf("served over %s", res.Proto)
					}
				}
				switch {
				case errors.Is(err, syscall.ECONNREFUSED):
					// The listeners closed (a stop): no connection was accepted.
					r.mu.Lock()
					r.refused++
					r.mu.Unlock()
					time.Sleep(5 * time.Millisecond)
				case err != nil:
					r.fail("request", err)
				default:
					r.mu.Lock()
					r.ok++
					r.mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return r
}

// servedCert is the common name of the certificate a new handshake gets.
func servedCert(t *testing.T, addr string, config *tls.Config) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, config)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestTLSHUPServesNewCertificateUnderLoad replaces the certificate and
// sends HUP under a load of new handshakes, kept HTTP/1.1 connections and
// HTTP/2: the new generation serves the new certificate, and no request
// fails.
func TestTLSHUPServesNewCertificateUnderLoad(t *testing.T) {
	p := newTestPKI(t)
	s, _ := startHTTPS(t, p.tlsArgs("-w", "2", "-b", "127.0.0.1:0", "demo")...)
	config := p.clientConfig("", "")
	if cn := servedCert(t, s.Addr, config); cn != "server gen1" {
		t.Fatalf("serving %q", cn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type named struct {
		name string
		r    *loadResult
	}
	results := make(chan named, 3)
	for _, c := range []struct {
		name             string
		clients          int
		keepAlive, http2 bool
	}{{"a handshake per request", 8, false, false}, {"HTTP/1.1 keep-alive", 4, true, false}, {"HTTP/2", 4, true, true}} {
		go func() {
			results <- named{c.name, tlsLoad(ctx, s.Addr, config, c.clients, 100000, c.keepAlive, c.http2)}
		}()
	}
	time.Sleep(time.Second)
	p.issueServer(p.CertFile, p.KeyFile, "server gen2", time.Now().Add(24*time.Hour))
	s.signal(syscall.SIGHUP)
	s.waitReloaded("2 workers", 15*time.Second)
	if cn := servedCert(t, s.Addr, config); cn != "server gen2" {
		t.Errorf("after the HUP a new handshake got %q, want the new certificate", cn)
	}
	time.Sleep(time.Second)
	cancel()
	for range 3 {
		r := <-results
		t.Logf("%s: %s", r.name, r.r)
		if r.r.failed() != 0 || r.r.ok == 0 {
			t.Errorf("%s: requests failed across the HUP: %s", r.name, r.r)
		}
	}
}

// TestTLSReloadWaitsForAMatchingPair: under --reload, a renewal that
// writes the key first is not loaded half-way: the reload fails and the
// old certificate serves on, until the certificate lands too.
func TestTLSReloadWaitsForAMatchingPair(t *testing.T) {
	p := newTestPKI(t)
	s, _ := startHTTPS(t, p.tlsArgs("-w", "2", "-b", "127.0.0.1:0", "--reload", "--reload-delay", "0.2", "demo")...)
	config := p.clientConfig("", "")
	newCert, newKey := p.path("new.pem"), p.path("new.key")
	p.issueServer(newCert, newKey, "server gen2", time.Now().Add(24*time.Hour))
	copyFile(t, newKey, p.KeyFile+".tmp")
	renameOver(t, p.KeyFile+".tmp", p.KeyFile)
	s.waitLog(`Reload failed: .*does not match`, 10*time.Second)
	if cn := servedCert(t, s.Addr, config); cn != "server gen1" {
		t.Fatalf("with the key alone renewed, serving %q", cn)
	}
	copyFile(t, newCert, p.CertFile+".tmp")
	renameOver(t, p.CertFile+".tmp", p.CertFile)
	s.waitLog(`Reload complete: generation 2`, 15*time.Second)
	if cn := servedCert(t, s.Addr, config); cn != "server gen2" {
		t.Errorf("after the whole renewal, serving %q", cn)
	}
}

// TestTLSBadCertificatesExitTwo: a missing, unreadable or malformed
// certificate, a key that does not match it, and what the worker types
// cannot serve each exit 2 with one line, at start and under
// --check-config; an expired certificate is served with a warning.
func TestTLSBadCertificatesExitTwo(t *testing.T) {
	p := newTestPKI(t)
	garbage := p.path("garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate\n"), 0o600)
	otherCert, otherKey := p.path("other.pem"), p.path("other.key")
	p.issueServer(otherCert, otherKey, "other", time.Now().Add(time.Hour))
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--certfile", p.path("missing.pem")}, "no such file"},
		{[]string{"--certfile", p.dir, "--keyfile", p.KeyFile}, "is a directory"},
		{[]string{"--certfile", garbage, "--keyfile", p.KeyFile}, "garbage.pem"},
		{[]string{"--certfile", p.CertFile, "--keyfile", otherKey}, "does not match"},
		{p.tlsArgs("--cert-reqs", "2"), "--cert-reqs 2 needs --ca-certs"},
		{p.tlsArgs("--ciphers", "TLS_AES_128_GCM_SHA256"), "TLS 1.3 suite"},
		{p.tlsArgs("--ssl-version", "SSLv3"), "SSL 2 and 3"},
		{p.tlsArgs("-k", "event"), "does not serve TLS"},
		{[]string{"-b", "https://127.0.0.1:0"}, "needs --certfile"},
		{[]string{"-k", "sync", "--http2", "h2c"}, "--http2 h2c needs -k goroutine"},
	}
	for _, c := range cases {
		for _, check := range []bool{false, true} {
			args := append([]string{"-b", "127.0.0.1:0"}, c.args...)
			if check {
				args = append(args, "--check-config")
			}
			code, _, stderr := run(t, nil, append(args, "demo")...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if code != 2 || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
				t.Errorf("corral %s: exit %d, %q; want exit 2 and one line with %q", strings.Join(args, " "), code, stderr, c.want)
			}
		}
	}
	expired, expiredKey := p.path("expired.pem"), p.path("expired.key")
	p.issueServer(expired, expiredKey, "expired", time.Now().Add(-time.Hour))
	code, _, stderr := run(t, nil, "--certfile", expired, "--keyfile", expiredKey, "--check-config", "demo")
	if code != 0 || !strings.Contains(stderr, "warning") || !strings.Contains(stderr, "expired") {
		t.Errorf("an expired certificate: exit %d, %q; want 0 and a warning", code, stderr)
	}
}

// TestH2Spec runs h2spec against corral's goroutine worker over TLS and
// h2c, and against a plain net/http server in this process the same way:
// corral fails no case that Go's own server passes.
func TestH2Spec(t *testing.T) {
	bin := h2specBin(t)
	p := newTestPKI(t)
	s, urls := startHTTPS(t, p.tlsArgs("-w", "1", "-b", "127.0.0.1:0", "-b", "http://127.0.0.1:0", "--http2", "h2c", "demo")...)
	goTLS, goH2C := plainGoServer(t, p)
	for _, c := range []struct {
		name          string
		corral, goSrv string
		tls           bool
	}{{"TLS", s.Addr, goTLS, true}, {"h2c", bareAddr(urls[1]), goH2C, false}} {
		corralFailed, corralN := runH2Spec(t, bin, c.corral, c.tls)
		goFailed, goN := runH2Spec(t, bin, c.goSrv, c.tls)
		t.Logf("h2spec over %s: corral fails %d of %d %v, net/http %d of %d %v", c.name, len(corralFailed), corralN, slices.Sorted(maps.Keys(corralFailed)),
			len(goFailed), goN, slices.Sorted(maps.Keys(goFailed)))
		if corralN == 0 || corralN != goN {
			t.Errorf("h2spec over %s ran %d cases on corral, %d on net/http", c.name, corralN, goN)
		}
		for id := range corralFailed {
			if goFailed[id] {
				continue
			}
			// Some cases race the server's own answer (a stream that
			// ends before the frame under test arrives): a case counts
			// as failed when it fails three runs more.
			if again := reH2Spec(t, bin, c.corral, c.tls, id, 3); again < 3 {
				t.Logf("h2spec over %s: corral failed %s once, then %d of 3 runs", c.name, id, again)
				continue
			}
			t.Errorf("h2spec over %s: corral fails %s, which net/http passes", c.name, id)
		}
	}
}

func h2specBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "h2spec")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("h2spec is not installed; make deps installs it (go install github.com/summerwind/h2spec/cmd/h2spec@latest)")
	return ""
}

// plainGoServer serves the demo with net/http alone, as corral's
// goroutine worker is configured: HTTP/2 over TLS and h2c.
func plainGoServer(t *testing.T, p *testPKI) (tlsAddr, h2cAddr string) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: demo.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	lt, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(lt, "", "")
	go srv.Serve(lp)
	t.Cleanup(func() { srv.Close() })
	return lt.Addr().String(), lp.Addr().String()
}

// runH2Spec runs h2spec against addr and returns the cases that failed
// (by section and description, from its JUnit report) and how many ran.
func runH2Spec(t *testing.T, bin, addr string, useTLS bool, ids ...string) (map[string]bool, int) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	report := filepath.Join(t.TempDir(), "h2spec.xml")
	// /echo reads the whole body before it answers, so a case about the
	// body (a content-length that DATA contradicts) meets the request
	// still open, not a response that raced it.
	args := []string{"-h", host, "-p", port, "-P", "/echo", "-j", report, "-o", "3"}
	if useTLS {
		args = append(args, "-t", "-k")
	}
	args = append(args, ids...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("h2spec: %v\n%s", err, out)
	}
	b, rerr := os.ReadFile(report)
	if rerr != nil {
		t.Fatalf("h2spec wrote no report (%v):\n%s", rerr, out)
	}
	return parseJUnit(t, b)
}

// reH2Spec runs the one case id n times and returns how many it failed.
func reH2Spec(t *testing.T, bin, addr string, useTLS bool, id string, n int) int {
	t.Helper()
	fails := 0
	for range n {
		failed, ran := runH2Spec(t, bin, addr, useTLS, id)
		if ran == 0 || len(failed) > 0 {
			fails++
		}
	}
	return fails
}

// parseJUnit reads h2spec's JUnit XML: the ID of each case that ran
// ("http2/6.9.1/3": its section and its number there, as h2spec takes it
// on its command line), and whether it has a failure or error element.
func parseJUnit(t *testing.T, b []byte) (map[string]bool, int) {
	t.Helper()
	failed := map[string]bool{}
	n := 0
	suites := regexp.MustCompile(`(?s)<testsuite [^>]*?package="([^"]*)"[^>]*?>(.*?)</testsuite>`)
	cases := regexp.MustCompile(`(?s)<testcase [^>]*?(/>|>(.*?)</testcase>)`)
	for _, su := range suites.FindAllStringSubmatch(string(b), -1) {
		for i, c := range cases.FindAllStringSubmatch(su[2], -1) {
			n++
			if strings.Contains(c[2], "<failure") || strings.Contains(c[2], "<error") {
				failed[fmt.Sprintf("%s/%d", su[1], i+1)] = true
			}
		}
	}
	return failed, n
}

// TestTLSUnixSocketAndHTTP2Limits: an https://unix: bind serves TLS next
// to a plain unix bind, and HTTP/2's header list is bounded by the
// --limit-request-* settings as an HTTP/1.1 head is (431).
func TestTLSUnixSocketAndHTTP2Limits(t *testing.T) {
	p := newTestPKI(t)
	dir := t.TempDir()
	secure, plain := filepath.Join(dir, "tls.sock"), filepath.Join(dir, "plain.sock")
	s, urls := startHTTPS(t, p.tlsArgs("-b", "127.0.0.1:0", "-b", "https://unix:"+secure, "-b", "unix:"+plain,
		"--limit-request-line", "100", "--limit-request-fields", "2", "--limit-request-field_size", "100", "demo")...)
	if len(urls) != 3 || urls[1] != "https://unix:"+secure || urls[2] != "unix:"+plain {
		t.Fatalf("listening at %q", urls)
	}
	out, stderr, err := curl(t, "--cacert", p.CAFile, "--unix-socket", secure, "-w", "\n%{http_version}", "https://localhost/echo")
	if err != nil {
		t.Fatalf("curl over https://unix: %v %s", err, stderr)
	}
	if e, v := decodeEcho(t, out); e.TLS == nil || v != "2" {
		t.Errorf("https://unix: served HTTP/%s with TLS %+v", v, e.TLS)
	}
	// Host only: the plain bind enforces --limit-request-fields 2 too.
	out, _, err = curl(t, "--unix-socket", plain, "-H", "User-Agent:", "-H", "Accept:", "-w", "\n%{http_version}", "http://localhost/echo")
	if e, _ := decodeEcho(t, out); err != nil || e.TLS != nil {
		t.Errorf("unix: %v, TLS %+v; want plain", err, e.TLS)
	}
	// The limits allow a head of 308 bytes; net/http reads 4 KiB more
	// for HTTP/1.1, and HTTP/2's header list counts 32 bytes per field
	// and 320 of slack. (A single field longer than the whole list is a
	// connection error in net/http's HTTP/2: a GOAWAY, not a 431.)
	for _, c := range []struct {
		proto, want string
		size        int
	}{{"--http2", "2 431", 500}, {"--http1.1", "1.1 431", 6000}, {"--http2", "2 200", 10}} {
		big := "X-Big: " + strings.Repeat("b", c.size)
		out, _, err := curl(t, c.proto, "--cacert", p.CAFile, "-H", big, "-o", "/dev/null", "-w", "%{http_version} %{http_code}", "https://"+s.Addr+"/")
		if err != nil || out != c.want {
			t.Errorf("curl %s with a %d-byte header and small limits: %q %v, want %q", c.proto, c.size, out, err, c.want)
		}
	}
}

// TestTLSTERMUnderLoadResetsNothing stops each worker type under a load of
// TLS clients, a handshake per request and kept connections: every
// connection the kernel accepted is answered (a refused connect, once the
// listeners closed, is no failure).
func TestTLSTERMUnderLoadResetsNothing(t *testing.T) {
	p := newTestPKI(t)
	for _, class := range []string{"goroutine", "sync"} {
		s, _ := startHTTPS(t, p.tlsArgs("-w", "2", "-k", class, "-b", "127.0.0.1:0", "demo")...)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		results := make(chan *loadResult, 2)
		config := p.clientConfig("", "")
		go func() { results <- tlsLoad(ctx, s.Addr, config, 8, 1000000, false, false) }()
		go func() { results <- tlsLoad(ctx, s.Addr, config, 4, 1000000, true, class == "goroutine") }()
		time.Sleep(time.Second)
		s.signal(syscall.SIGTERM)
		if code := s.wait(15 * time.Second); code != 0 {
			t.Errorf("-k %s: exit code %d after TERM", class, code)
		}
		time.Sleep(200 * time.Millisecond)
		cancel()
		for range 2 {
			r := <-results
			t.Logf("-k %s: TERM under TLS load: %s", class, r)
			if r.failed() != 0 || r.ok == 0 {
				t.Errorf("-k %s: requests failed at TERM: %s", class, r)
			}
		}
	}
}

// TestTLSSlowHeadEndsCleanly: a TLS client that sends half a request
// head and stops is closed at the header timeout with a close_notify, not
// answered with a clear-text 408 inside its TLS stream.
func TestTLSSlowHeadEndsCleanly(t *testing.T) {
	p := newTestPKI(t)
	s, _ := startHTTPS(t, p.tlsArgs("-b", "127.0.0.1:0", "demo")...)
	c, err := tls.Dial("tcp", s.Addr, p.clientConfig("", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: t\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || strings.Contains(string(b), "408") {
		t.Errorf("after the header timeout: read %q, %v; want a clean end (close_notify), no clear-text answer", b, err)
	}
}
