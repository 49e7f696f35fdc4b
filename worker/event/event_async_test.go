package event

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-server/corral/worker"
	"github.com/corral-server/corral/worker/internal/workertest"
)

// pipeHandler is an AsyncHandler that answers as the wsgi worker does,
// from the loop: /now at once, /later once a byte comes on a pipe the
// loop watches (written at the end of the turn), /posted from a Post by
// another goroutine, /hold after 400 ms, holding new connections off
// (Loop.Hold) until then, /stream in two parts with a flush between, /file by
// io.Copy of a file (sendfile), /panic by panicking.
type pipeHandler struct {
	rfd, wfd int
	lp       *Loop
	waiting  []*Answer // the loop's
	file     string
}

// newPipeHandler returns a pipeHandler with its pipe, closed when t ends.
func newPipeHandler(t *testing.T) *pipeHandler {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return &pipeHandler{rfd: p[0], wfd: p[1]}
}

func (h *pipeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "not on the loop", http.StatusTeapot)
}

func (h *pipeHandler) AttachLoop(lp *Loop) error {
	h.lp = lp
	return lp.Watch(h.rfd, func(uint32) {
		var b [64]byte
		for {
			n, _ := unix.Read(h.rfd, b[:])
			if n <= 0 {
				return
			}
			for range n {
				a := h.waiting[0]
				h.waiting = h.waiting[1:]
				a.Writer().Write([]byte("later"))
				a.Finish(true)
			}
		}
	})
}

func (h *pipeHandler) ServeAsync(a *Answer, r *http.Request) {
	w := a.Writer()
	switch r.URL.Path {
	case "/now":
		w.Write([]byte("now"))
		a.Finish(true)
	case "/later":
		h.waiting = append(h.waiting, a)
		h.lp.AtTurnEnd(func() { unix.Write(h.wfd, []byte{1}) })
	case "/posted":
		go func() {
			time.Sleep(10 * time.Millisecond)
			h.lp.Post(func() {
				w.Write([]byte("posted"))
				a.Finish(true)
			})
		}()
	case "/stream":
		w.Header().Set("Content-Length", "8")
		w.Write([]byte("part"))
		w.(http.Flusher).Flush()
		h.lp.Post(func() {
			w.Write([]byte("part"))
			a.Finish(true)
		})
	case "/file":
		f, err := os.Open(h.file)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		st, _ := f.Stat()
		w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
		io.Copy(w, io.LimitReader(f, st.Size()))
		a.Finish(true)
	case "/panic":
		panic("handler broke")
	case "/hold": // new connections wait until the answer
		h.lp.Hold(true)
		go func() {
			time.Sleep(400 * time.Millisecond)
			h.lp.Post(func() {
				h.lp.Hold(false)
				w.Write([]byte("held"))
				a.Finish(true)
			})
		}()
	}
}

func TestAsyncHandler(t *testing.T) {
	data := strings.Repeat("0123456789", 300_000)
	file := filepath.Join(t.TempDir(), "data")
	os.WriteFile(file, []byte(data), 0o644)
	h := newPipeHandler(t)
	h.file = file
	tp := newTestProcess(t, h, &worker.Config{KeepAlive: 5 * time.Second})
	addr, stop := serveTest(t, tp, New())
	defer stop(true)
	// Keep-alive and pipelined: the answers come in request order, each
	// whichever way it was finished.
	req := ""
	want := map[string]string{"/now": "now", "/later": "later", "/posted": "posted", "/stream": "partpart", "/file": data}
	order := []string{"/later", "/now", "/posted", "/stream", "/later", "/file", "/now"}
	for _, path := range order {
		req += "GET " + path + " HTTP/1.1\r\nHost: t\r\n\r\n"
	}
	res, body, br, _ := workertest.RawDo(t, addr, req)
	for i, path := range order {
		if i > 0 {
			res, body = workertest.ReadResponse(t, br)
		}
		if res.StatusCode != 200 || body != want[path] {
			t.Errorf("%s: %d, %d bytes %.20q, want 200 and %d bytes", path, res.StatusCode, len(body), body, len(want[path]))
		}
	}
	// A panic is a 500 and a closed connection; the worker serves on.
	res, _, br, c := workertest.RawDo(t, addr, "GET /panic HTTP/1.1\r\nHost: t\r\n\r\n")
	if res.StatusCode != 500 {
		t.Errorf("/panic: %d, want 500", res.StatusCode)
	}
	if closed, _ := workertest.ClosedAfter(br, c, 2*time.Second); !closed {
		t.Errorf("/panic: the connection stayed open")
	}
	if res, body, _, _ := workertest.RawDo(t, addr, "GET /now HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"); res.StatusCode != 200 || body != "now" {
		t.Errorf("/now after a panic: %d %q", res.StatusCode, body)
	}
	if n := tp.Requests(); n != int64(len(order)+2) {
		t.Errorf("Requests() = %d, want %d (every answer counted)", n, len(order)+2)
	}
}

// TestAsyncHandlerHold: while the handler holds new connections off, they
// wait in the backlog, unaccepted, while the connections the loop has are
// served; once it lets them in, they are.
func TestAsyncHandlerHold(t *testing.T) {
	h := newPipeHandler(t)
	tp := newTestProcess(t, h, &worker.Config{KeepAlive: 5 * time.Second})
	addr, stop := serveTest(t, tp, New())
	defer stop(true)
	kept, err := net.Dial("tcp", addr) // accepted before the hold
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	keptR := bufio.NewReader(kept)
	kept.Write([]byte("GET /now HTTP/1.1\r\nHost: t\r\n\r\n"))
	if res, body := workertest.ReadResponse(t, keptR); res.StatusCode != 200 || body != "now" {
		t.Fatalf("/now: %d %q", res.StatusCode, body)
	}
	held := make(chan string, 1)
	go func() {
		res, body, _, _ := workertest.RawDo(t, addr, "GET /hold HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
		held <- strconv.Itoa(res.StatusCode) + " " + body
	}()
	time.Sleep(100 * time.Millisecond) // /hold has begun
	began := time.Now()
	kept.Write([]byte("GET /now HTTP/1.1\r\nHost: t\r\n\r\n"))
	if res, body := workertest.ReadResponse(t, keptR); res.StatusCode != 200 || body != "now" || time.Since(began) > 200*time.Millisecond {
		t.Errorf("/now on a kept connection during the hold: %d %q after %s, want it at once", res.StatusCode, body, time.Since(began))
	}
	res, body, _, _ := workertest.RawDo(t, addr, "GET /now HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
	if took := time.Since(began); res.StatusCode != 200 || body != "now" || took < 250*time.Millisecond {
		t.Errorf("/now on a new connection: %d %q after %s, want 200 once the hold ends, 300 ms on", res.StatusCode, body, took)
	}
	if got := <-held; got != "200 held" {
		t.Errorf("/hold: %q", got)
	}
}
