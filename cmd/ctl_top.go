package cmd

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/corral-server/corral/internal/control"
	"golang.org/x/sys/unix"
)

// `corral ctl top`: the status table, redrawn every second with each
// worker's requests per second, until q or Ctrl-C. The terminal is in raw
// mode meanwhile (no echo, a key at a time, Ctrl-C a key), and restored
// at the end.

const topEvery = time.Second

func (p *Program) top(cl *ctlClient, stdout, stderr io.Writer) int {
	restore := rawTerminal(int(os.Stdin.Fd()))
	defer restore()
	keys := make(chan byte, 8)
	go readKeys(os.Stdin, keys)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	fmt.Fprint(stdout, "\x1b[?1049h\x1b[?25l") // the alternate screen, no cursor
	defer fmt.Fprint(stdout, "\x1b[?25h\x1b[?1049l")
	rt := &rateTracker{last: map[int]sample{}}
	tick := time.NewTicker(topEvery)
	defer tick.Stop()
	for {
		var screen bytes.Buffer
		screen.WriteString("\x1b[H\x1b[2J")
		resp, _, err := cl.do(control.Request{V: control.Version, Cmd: control.CmdStatus})
		switch {
		case err != nil:
			fmt.Fprintf(&screen, "%s: %v; trying again\n", cl.path, err)
			cl.close()
		case !resp.OK:
			fmt.Fprintf(&screen, "%s: %s\n", cl.path, resp.Error)
		default:
			rates := rt.rates(resp.Status, time.Now())
			printStatus(&screen, resp.Status, rates)
			if len(rates) > 0 {
				total := 0.0
				for _, r := range rates {
					total += r
				}
				fmt.Fprintf(&screen, "\nthe herd: %.1f requests a second\n", total)
			}
		}
		fmt.Fprintf(&screen, "\n%s  q or Ctrl-C to quit\n", time.Now().Format("15:04:05"))
		stdout.Write(screen.Bytes())
		select {
		case <-tick.C:
		case k := <-keys:
			if k == 'q' || k == 'Q' || k == 3 || k == 0 { // 3: Ctrl-C in raw mode; 0: stdin closed
				return ctlDone
			}
		case <-sigs:
			return ctlDone
		}
	}
}

// readKeys sends each byte typed; 0 once stdin ends.
func readKeys(r io.Reader, keys chan<- byte) {
	var b [16]byte
	for {
		n, err := r.Read(b[:])
		for _, k := range b[:n] {
			keys <- k
		}
		if err != nil {
			keys <- 0
			return
		}
	}
}

// rawTerminal puts the terminal at fd in raw mode, if it is one, and
// returns what restores it.
func rawTerminal(fd int) (restore func()) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return func() {} // not a terminal: q and a newline, or a signal, end top
	}
	raw := *old
	raw.Lflag &^= unix.ICANON | unix.ECHO | unix.ISIG | unix.IEXTEN
	raw.Iflag &^= unix.IXON | unix.ICRNL
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if unix.IoctlSetTermios(fd, unix.TCSETS, &raw) != nil {
		return func() {}
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }
}

// sample is a worker's request count at a time.
type sample struct {
	requests uint64
	at       time.Time
}

// rateTracker turns successive request counts into requests per second.
type rateTracker struct{ last map[int]sample }

// rates is each worker's requests per second since the last status; a
// worker seen for the first time has none yet.
func (rt *rateTracker) rates(s *control.Status, now time.Time) map[int]float64 {
	out := map[int]float64{}
	seen := map[int]sample{}
	for _, w := range s.Workers {
		if prev, ok := rt.last[w.Pid]; ok && now.After(prev.at) && w.Requests >= prev.requests {
			out[w.Pid] = float64(w.Requests-prev.requests) / now.Sub(prev.at).Seconds()
		}
		seen[w.Pid] = sample{w.Requests, now}
	}
	rt.last = seen
	return out
}
