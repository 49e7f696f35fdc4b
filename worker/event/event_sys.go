package event

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop's system calls that cannot block, made without telling the Go
// scheduler (RawSyscall): every socket a loop holds is non-blocking, and
// an epoll_wait with a zero timeout returns at once. A call through
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
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
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
