package event

import (
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop's system calls that cannot block (epoll_wait with a zero
// timeout, epoll_ctl, read, write, close), made without telling the Go
// scheduler (RawSyscall): every socket a loop holds is non-blocking. A call through
// Syscall marks the thread's P as in a system call, which the runtime's
// sysmon thread watches: it takes the P away from a call that lasts past
// its 20us tick, goes to sleep once no P runs, and is woken from that
// sleep by the next Syscall, a futex wake-up and a thread switch each.
// On a server pinned to one CPU, a worker's sysmon then cost more CPU
// than its parser (profiled behind nginx's uwsgi_pass). Only the wait
// that may block goes through Syscall, so that the P is handed to the
// pool's handlers while the loop sleeps.

// epollWait is epoll_wait(2): raw when it does not block (ms == 0).
func epollWait(epfd int, events []unix.EpollEvent, ms int) (int, error) {
	if ms != 0 {
		return unix.EpollWait(epfd, events, ms)
	}
	return epollWaitRaw(epfd, events, 0)
}

func epollWaitRaw(epfd int, events []unix.EpollEvent, ms int) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(ms), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// eventBusyWaitMs bounds a busy loop's sleep that keeps its P.
const eventBusyWaitMs = 2

// wait waits up to ms for the loop's events. A loop whose last wait found
// some (one under load) sleeps in a raw epoll_wait of at most
// eventBusyWaitMs, keeping its P, when nothing else needs that P: nothing
// on the pool or on FastCGI goroutines, or the loop serves an AsyncHandler
// with another P for the rest (Loop.raw), whose answers come from another
// process once or more per request. Sleeping in a Syscall lets sysmon take
// the P, park itself, and be woken again by the loop's next system call, a
// futex wake-up and a thread switch per sleep: that was 15% of a worker's
// CPU pinned behind nginx's uwsgi_pass, 40% unpinned, and a tenth of the
// wsgi worker's. A loop that finds nothing yields the P to what waited for
// it and sleeps the usual way until a wait finds events again. The raw
// sleep is that short because sysmon preempts a goroutine that has not
// been through the scheduler for 10 ms with a signal, and again every
// 10-20 ms for as long as it lasts: a wsgi loop that always waited raw woke
// 50 times a second while idle, and its timer scans, whose turn that EINTR
// skipped, never ran.
func (l *eventLoop) wait(ms int) (int, error) {
	l.yield()
	keepP := l.async != nil && l.async.raw || l.jobs == 0 && l.e.gos.count() == 0
	if ms != 0 && l.busy && keepP {
		n, err := epollWaitRaw(l.epfd, l.events[:], min(ms, eventBusyWaitMs))
		if n == 0 && err == nil {
			l.busy = false
			runtime.Gosched()
		}
		return n, err
	}
	n, err := epollWait(l.epfd, l.events[:], ms)
	l.busy = n > 0
	return n, err
}

// eventYield is how often a loop under load passes through the scheduler.
const eventYield = 2 * time.Millisecond

// yield calls the scheduler once every eventYield. A loop that keeps its
// P, making only raw system calls, never does otherwise; once its
// goroutine has run 10 ms without, sysmon preempts it with a signal
// (tgkill, the handler, rt_sigreturn) and, having found work, goes back to
// waking every 20 us (a nanosleep each) instead of backing off to 10 ms:
// behind nginx that was a nanosleep every other request.
func (l *eventLoop) yield() {
	if l.now-l.yielded >= int64(eventYield) {
		l.yielded = l.now
		runtime.Gosched()
	}
}

// epollAdd registers fd for ev's events.
func epollAdd(epfd, fd int, ev *unix.EpollEvent) error {
	_, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), unix.EPOLL_CTL_ADD, uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// closeSocket closes a connection's socket, which has no SO_LINGER: the
// close does not wait for the peer.
func closeSocket(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}
