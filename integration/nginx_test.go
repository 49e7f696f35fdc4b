package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-server/corral/internal/demo"
)

// nginx is one nginx process a test started, with its own prefix.
type nginx struct {
	Addr   string // host:port it listens on
	dir    string
	cmd    *exec.Cmd
	done   chan struct{}
	output bytes.Buffer
}

// startNginx runs examples/nginx/<example> with its listen address and its
// upstream address (upstreamInFile, as written in the file) replaced:
// nginx listens on a free loopback port and forwards to upstream. It runs
// in the foreground, one process, with its prefix, logs and temp files in
// t.TempDir(), and is stopped by its pid when the test ends.
func startNginx(t *testing.T, example, upstreamInFile, upstream string) *nginx {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Fatal("nginx is not installed; make test installs it (package nginx)")
	}
	conf, err := os.ReadFile(filepath.Join(repoRoot, "examples", "nginx", example))
	if err != nil {
		t.Fatal(err)
	}
	const listenInFile = "listen 127.0.0.1:8080;"
	if !bytes.Contains(conf, []byte(listenInFile)) || !bytes.Contains(conf, []byte(upstreamInFile)) {
		t.Fatalf("%s: want %q and %q in it to substitute", example, listenInFile, upstreamInFile)
	}
	n := &nginx{Addr: freeAddr(t), dir: t.TempDir(), done: make(chan struct{})}
	conf = bytes.ReplaceAll(conf, []byte(listenInFile), []byte("listen "+n.Addr+";"))
	conf = bytes.ReplaceAll(conf, []byte(upstreamInFile), []byte(upstream))
	os.MkdirAll(filepath.Join(n.dir, "logs"), 0o755)
	confPath := filepath.Join(n.dir, "nginx.conf")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(bin, "-p", n.dir, "-c", confPath, "-e", filepath.Join(n.dir, "logs", "error.log"),
		"-g", "daemon off; master_process off; pid "+filepath.Join(n.dir, "nginx.pid")+";")
	n.cmd.Stdout, n.cmd.Stderr = &n.output, &n.output
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		n.cmd.Wait()
		close(n.done)
	}()
	t.Cleanup(func() {
		select {
		case <-n.done:
		default:
			syscall.Kill(n.cmd.Process.Pid, syscall.SIGQUIT) // nginx's graceful stop
			select {
			case <-n.done:
			case <-time.After(5 * time.Second):
				syscall.Kill(n.cmd.Process.Pid, syscall.SIGKILL)
				<-n.done
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(n.dir, "logs", "error.log"))
			t.Logf("nginx output:\n%s\nnginx error.log:\n%s", n.output.String(), b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", n.Addr, time.Second)
		if err == nil {
			c.Close()
			return n
		}
		select {
		case <-n.done:
			t.Fatalf("nginx exited: %s", n.output.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s: %v", n.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// echoVia does one request through addr and decodes /echo's answer.
func echoVia(t *testing.T, client *http.Client, method, url string, body []byte, header http.Header) demo.Echo {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("%s %s: status %d, %v: %.300s", method, url, res.StatusCode, err, b)
	}
	var e demo.Echo
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("%s %s: %v: %.300s", method, url, err, b)
	}
	return e
}

func echoHeader(e demo.Echo, name string) string {
	for _, h := range e.Headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// checkThroughNginx sends a GET and a 1 MiB POST through nginx to /echo and
// checks what the app saw, then reloads corral every 300 ms for 3 s under
// load from 8 clients through nginx: no request may fail.
func checkThroughNginx(t *testing.T, s *server, n *nginx) {
	client := &http.Client{Timeout: 20 * time.Second}
	base := "http://" + n.Addr

	e := echoVia(t, client, "GET", base+"/echo?a=1&b=two%20words", nil, http.Header{"X-Custom-Thing": {"hello there"}})
	if e.Method != "GET" || e.Path != "/echo" || e.Query != "a=1&b=two%20words" {
		t.Errorf("GET: method %q path %q query %q", e.Method, e.Path, e.Query)
	}
	if got := echoHeader(e, "X-Custom-Thing"); got != "hello there" {
		t.Errorf("GET: X-Custom-Thing = %q; headers %q", got, e.Headers)
	}
	if hostOf(e.RemoteAddr) != "127.0.0.1" {
		t.Errorf("GET: remote_addr %q, want the client 127.0.0.1", e.RemoteAddr)
	}
	if e.BodyLength != 0 {
		t.Errorf("GET: body_length %d", e.BodyLength)
	}

	raw := make([]byte, 1<<19)
	rand.Read(raw)
	body := []byte(hex.EncodeToString(raw)) // 1 MiB that JSON carries as it is
	e = echoVia(t, client, "POST", base+"/echo?x=%2F", body, http.Header{"X-Custom-Thing": {"post"}, "Content-Type": {"application/octet-stream"}})
	if e.Method != "POST" || e.Path != "/echo" || e.Query != "x=%2F" {
		t.Errorf("POST: method %q path %q query %q", e.Method, e.Path, e.Query)
	}
	if e.BodyLength != len(body) || sha256.Sum256([]byte(e.Body)) != sha256.Sum256(body) {
		t.Errorf("POST: body_length %d (want %d), same content: %v", e.BodyLength, len(body), e.Body == string(body))
	}
	if got := echoHeader(e, "X-Custom-Thing"); got != "post" {
		t.Errorf("POST: X-Custom-Thing = %q", got)
	}
	if got := echoHeader(e, "Content-Type"); got != "application/octet-stream" {
		t.Errorf("POST: Content-Type = %q", got)
	}
	if hostOf(e.RemoteAddr) != "127.0.0.1" {
		t.Errorf("POST: remote_addr %q, want the client 127.0.0.1", e.RemoteAddr)
	}

	// HUP under load through nginx.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var mu sync.Mutex
	ok, bad, errs := 0, 0, 0
	var examples []string
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer c.CloseIdleConnections()
			for i := 0; ctx.Err() == nil; i++ {
				res, err := c.Get(fmt.Sprintf("%s/echo?i=%d", base, i))
				var code int
				if err == nil {
					_, err = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					code = res.StatusCode
				}
				mu.Lock()
				switch {
				case err != nil:
					errs++
					if len(examples) < 5 {
						examples = append(examples, err.Error())
					}
				case code < 200 || code > 299:
					bad++
					if len(examples) < 5 {
						examples = append(examples, fmt.Sprintf("status %d", code))
					}
				default:
					ok++
				}
				mu.Unlock()
			}
		}()
	}
	hups := s.hupStorm(ctx, 300*time.Millisecond)
	wg.Wait()
	t.Logf("%d HUPs under load through nginx: %d ok, %d non-2xx, %d errors %q", hups, ok, bad, errs, examples)
	if bad != 0 || errs != 0 {
		t.Errorf("requests lost during reloads: %d non-2xx, %d errors, e.g. %q", bad, errs, examples)
	}
	if ok < 100 || hups < 8 {
		t.Errorf("too little to mean anything: %d requests, %d HUPs", ok, hups)
	}
	s.waitReloaded("", 15*time.Second)
	// Old workers logged their own requests' lines; the new ones still serve.
	if e := echoVia(t, client, "GET", base+"/echo", nil, nil); e.Pid == 0 {
		t.Error("no pid after the reloads")
	}
}

func TestNginxProxyPass(t *testing.T) {
	s := start(t, corralBin, []string{"-w", "2", "-b", "127.0.0.1:0", "demo"})
	s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
	n := startNginx(t, "proxy_pass.conf", "server 127.0.0.1:8000;", "server "+s.Addr+";")
	checkThroughNginx(t, s, n)
}

func TestNginxUwsgiPass(t *testing.T) {
	for _, k := range []string{"goroutine", "event"} {
		t.Run(k, func(t *testing.T) { testNginxUwsgiPass(t, k) })
	}
}

func testNginxUwsgiPass(t *testing.T, class string) {
	s := start(t, corralBin, []string{"-w", "2", "-k", class, "-b", "uwsgi://127.0.0.1:0", "demo"})
	if !strings.HasPrefix(s.Addr, "uwsgi://127.0.0.1:") {
		t.Fatalf("Listening at: %s, want uwsgi://127.0.0.1:PORT", s.Addr)
	}
	s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
	n := startNginx(t, "uwsgi_pass.conf", "server 127.0.0.1:3031;", "server "+bareAddr(s.Addr)+";")
	checkThroughNginx(t, s, n)
}

func TestNginxFastCGIPass(t *testing.T) {
	for _, k := range []string{"goroutine", "event"} {
		t.Run(k, func(t *testing.T) { testNginxFastCGIPass(t, k) })
	}
}

func testNginxFastCGIPass(t *testing.T, class string) {
	sock := filepath.Join(t.TempDir(), "fcgi.sock")
	// --protocol names the protocol of binds that do not.
	s := start(t, corralBin, []string{"-w", "2", "-k", class, "--protocol", "fastcgi", "-b", "unix:" + sock, "demo"})
	if s.Addr != "fastcgi://unix:"+sock {
		t.Fatalf("Listening at: %s, want fastcgi://unix:%s", s.Addr, sock)
	}
	s.waitLog(`Ready: 2 workers serving`, 10*time.Second)
	n := startNginx(t, "fastcgi_pass.conf", "server unix:/run/corral/fcgi.sock;", "server unix:"+sock+";")
	checkThroughNginx(t, s, n)
}

// TestNginxPaths: behind nginx over uwsgi and FastCGI, the handler's path
// is the one nginx passes after its rewrites and with its prefix mount
// (examples/nginx: location /app/ rewrites, location /mount/ mounts), and
// r.RequestURI the client's; on every worker type.
func TestNginxPaths(t *testing.T) {
	for _, proto := range []string{"uwsgi", "fastcgi"} {
		for _, class := range workerClasses {
			t.Run(proto+"/"+class, func(t *testing.T) {
				var n *nginx
				if proto == "uwsgi" {
					s := start(t, corralBin, []string{"-w", "1", "-k", class, "-b", "uwsgi://127.0.0.1:0", "demo"})
					s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
					n = startNginx(t, "uwsgi_pass.conf", "server 127.0.0.1:3031;", "server "+bareAddr(s.Addr)+";")
				} else {
					sock := filepath.Join(t.TempDir(), "fcgi.sock")
					s := start(t, corralBin, []string{"-w", "1", "-k", class, "-b", "fastcgi://unix:" + sock, "demo"})
					s.waitLog(`Ready: 1 workers serving`, 10*time.Second)
					n = startNginx(t, "fastcgi_pass.conf", "server unix:/run/corral/fcgi.sock;", "server unix:"+sock+";")
				}
				client := &http.Client{Timeout: 10 * time.Second}
				for _, tc := range []struct{ target, path, query string }{
					{"/echo?q=0", "/echo", "q=0"},
					{"/app/echo?q=1", "/echo", "q=1"},         // rewrite ^/app(/.*)$ $1
					{"/app/a%20b/echo", "/a b/echo", ""},      // decoded, as nginx passes it
					{"/mount/echo?q=2", "/mount/echo", "q=2"}, // SCRIPT_NAME /mount + PATH_INFO /echo
					{"/mount/x/echo", "/mount/x/echo", ""},
				} {
					e := echoVia(t, client, "GET", "http://"+n.Addr+tc.target, nil, nil)
					if e.Path != tc.path || e.Query != tc.query || e.Target != tc.target {
						t.Errorf("GET %s: path %q query %q target %q; want %q %q %q", tc.target, e.Path, e.Query, e.Target, tc.path, tc.query, tc.target)
					}
				}
			})
		}
	}
}
