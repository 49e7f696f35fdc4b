// Command go-worker is a plain net/http server that corral runs as its
// worker; it does not import corral. It takes its listeners as systemd
// passes them (LISTEN_FDS, LISTEN_PID, fds 3...), tells the arbiter it is
// ready and alive over NOTIFY_SOCKET (READY=1, WATCHDOG=1), and stops
// gracefully on SIGTERM, losing no request:
//
//	go build -o /tmp/go-worker ./examples/go
//	corral -w 4 -b 127.0.0.1:8000 -- /tmp/go-worker
//
// GET / answers with the worker's pid.
package main

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	log.SetPrefix(fmt.Sprintf("go-worker (pid %d) ", os.Getpid()))
	// Catch TERM before serving: a worker stopped while it boots (a
	// reload superseded it) must still finish what it accepted.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	signal.Ignore(syscall.SIGUSR1) // corral forwards USR1 (reopen logs): no logs here
	ls, err := listeners()
	if err != nil {
		log.Fatal(err)
	}
	var draining atomic.Bool
	conns := &connTracker{m: map[net.Conn]time.Time{}}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if draining.Load() {
				w.Header().Set("Connection", "close")
			}
			fmt.Fprint(w, os.Getpid())
		}),
		IdleTimeout: 5 * time.Second,
		ConnState:   conns.track,
	}
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(l); !errors.Is(err, net.ErrClosed) {
				log.Fatal(err)
			}
		}()
	}
	notify("READY=1\nSTATUS=serving")
	go watchdog()
	log.Printf("serving on %d socket(s)", len(ls))
	<-stop

	// Graceful stop, without Server.Shutdown: it drops, unanswered, a
	// request it reads after it began, such as one on a connection
	// accepted just before the listener closed. Instead: stop accepting,
	// answer every further request with "Connection: close", close the
	// connections idle for a second, and exit when none is left.
	draining.Store(true)
	notify("STOPPING=1")
	for _, l := range ls {
		l.Close() // this process's copy; the other workers keep accepting
	}
	wg.Wait()
	conns.drain(time.Second, 30*time.Second)
	log.Print("stopped")
}

// connTracker knows each connection's state, and since when it is idle.
type connTracker struct {
	mu sync.Mutex
	m  map[net.Conn]time.Time // idle since; zero while a request is served
}

func (t *connTracker) track(c net.Conn, st http.ConnState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch st {
	case http.StateNew, http.StateIdle:
		t.m[c] = time.Now()
	case http.StateActive:
		t.m[c] = time.Time{}
	default: // closed, hijacked
		delete(t.m, c)
	}
}

// drain closes connections idle for idle, and all of them after limit;
// it returns when none is left.
func (t *connTracker) drain(idle, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		t.mu.Lock()
		n := len(t.m)
		for c, since := range t.m {
			if (!since.IsZero() && time.Since(since) >= idle) || time.Now().After(deadline) {
				c.Close()
			}
		}
		t.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listeners returns the sockets passed as systemd does (sd_listen_fds).
func listeners() ([]net.Listener, error) {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return nil, fmt.Errorf("no sockets passed: LISTEN_PID is not this process (run me under corral -- ...)")
	}
	n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	var ls []net.Listener
	for fd := 3; fd < 3+n; fd++ {
		f := os.NewFile(uintptr(fd), "listener")
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("fd %d: %w", fd, err)
		}
		ls = append(ls, l)
	}
	if len(ls) == 0 {
		return nil, fmt.Errorf("no sockets passed (LISTEN_FDS=%d)", n)
	}
	return ls, nil
}

// notify sends one sd_notify message; "@name" is the abstract namespace,
// which Go's net package understands as it is.
func notify(msg string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		log.Printf("notify: %v", err)
		return
	}
	defer c.Close()
	c.Write([]byte(msg))
}

// watchdog sends WATCHDOG=1 every half of WATCHDOG_USEC, as systemd advises.
func watchdog() {
	usec, _ := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if pid := os.Getenv("WATCHDOG_PID"); usec <= 0 || (pid != "" && pid != strconv.Itoa(os.Getpid())) {
		return
	}
	for range time.Tick(time.Duration(usec) * time.Microsecond / 2) {
		notify("WATCHDOG=1")
	}
}
