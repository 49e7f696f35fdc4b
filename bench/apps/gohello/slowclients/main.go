// Command slowclients is a crowd of slow clients: N connections, each sending a GET one byte
// every interval (a request takes about 30 intervals), reading the answer, and starting over,
// until -d is up. bench/wsgi.sh runs it beside wrk's normal load: a server whose workers wait
// for a whole request (Gunicorn's sync worker) is held up by it, one that buffers requests is not.
//
//	slowclients -addr 127.0.0.1:8000 -n 200 -interval 100ms -d 10s
//
// At the end it prints one line: "slow_requests=R slow_errors=E" (answers read, and connections
// that failed: refused, reset, or no answer within -timeout).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "server address (keep it on loopback)")
	n := flag.Int("n", 200, "slow connections")
	interval := flag.Duration("interval", 100*time.Millisecond, "time between two bytes")
	d := flag.Duration("d", 10*time.Second, "how long to run")
	timeout := flag.Duration("timeout", 10*time.Second, "the longest wait for an answer once the request is sent")
	flag.Parse()

	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: slow\r\n\r\n")
	end := time.Now().Add(*d)
	var done, failed atomic.Int64
	var wg sync.WaitGroup
	for i := range *n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the starts over one interval, so the bytes do not all come at once.
			time.Sleep(*interval * time.Duration(i) / time.Duration(*n))
			for time.Now().Before(end) {
				ok, err := slowRequest(*addr, req, *interval, *timeout, end)
				switch {
				case ok:
					done.Add(1)
				case err != nil && time.Now().Before(end):
					failed.Add(1)
					time.Sleep(*interval)
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("slow_requests=%d slow_errors=%d\n", done.Load(), failed.Load())
}

// slowRequest sends req one byte per interval on a new connection and reads the answer: ok
// once it has it. It gives up, with neither, when end comes first.
func slowRequest(addr string, req []byte, interval, timeout time.Duration, end time.Time) (ok bool, err error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false, err
	}
	defer c.Close()
	for i := range req {
		if time.Now().After(end) {
			return false, nil
		}
		if _, err := c.Write(req[i : i+1]); err != nil {
			return false, err
		}
		time.Sleep(interval)
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return false, err
	}
	defer res.Body.Close()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		return false, err
	}
	if res.StatusCode != 200 {
		return false, fmt.Errorf("status %d", res.StatusCode)
	}
	return true, nil
}
