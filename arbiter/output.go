package arbiter

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// maxOutputLine is the longest line of a worker's output logged as one
// record; a longer line is logged in pieces of this size.
const maxOutputLine = 16 << 10

// logOutput copies an exec worker's stdout and stderr (one pipe, so their
// order is kept) to the error log, one record per line:
//
//	[2026-11-23 19:17:04 +0000] [ARBITER PID] [INFO] [worker 1234] the line
//
// whatever --log-level is: it is the program's own output. It runs in its
// own goroutine, owns fd, and touches no arbiter state; it ends when the
// last process holding the pipe's write end (the worker, and any child it
// left behind) is gone.
func logOutput(fd, pid int, log *slog.Logger, tail *outputTail) {
	defer close(tail.done)
	unix.SetNonblock(fd, true) // a pollable *os.File: no thread blocks in read
	f := os.NewFile(uintptr(fd), fmt.Sprintf("worker-%d-output", pid))
	defer f.Close()
	h := log.Handler()
	prefix := fmt.Sprintf("[worker %d] ", pid)
	r := bufio.NewReaderSize(f, maxOutputLine)
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			line = bytes.TrimRight(line, "\r\n")
			tail.add(string(line))
			rec := slog.NewRecord(time.Now(), slog.LevelInfo, prefix+string(line), 0)
			h.Handle(context.Background(), rec)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// Lines of output a boot failure's error ends with, each cut to a length.
const (
	tailLines   = 4
	tailLineLen = 300
)

// outputTail keeps the last lines of an exec worker's output: a program
// that fails to boot says why there (a Python traceback), and the error
// corral exits with at start-up should say it too.
type outputTail struct {
	mu    sync.Mutex
	lines []string
	done  chan struct{} // closed when the output ended
}

func newOutputTail() *outputTail { return &outputTail{done: make(chan struct{})} }

func (t *outputTail) add(line string) {
	if strings.TrimSpace(line) == "" {
		return
	}
	if len(line) > tailLineLen {
		line = line[:tailLineLen] + "..."
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == tailLines {
		t.lines = t.lines[1:]
	}
	t.lines = append(t.lines, line)
}

// last is the last lines, once the output ended or wait passed: the
// worker's exit may be reaped before its last lines are read.
func (t *outputTail) last(wait time.Duration) []string {
	select {
	case <-t.done:
	case <-time.After(wait):
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.lines...)
}
