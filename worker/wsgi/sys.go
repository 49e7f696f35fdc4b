package wsgi

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event loop's calls on the non-blocking socket to Python, made raw
// (RawSyscall), as the loop's own on its connections are: they never
// block, and a Syscall would hand the loop's P to the runtime's sysmon
// and back on each of them (see worker/event's event_sys.go).

// writeRaw is write(2).
func writeRaw(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// recvmsgRaw is unix.Recvmsg into p (not empty) and oob, without the
// source address.
func recvmsgRaw(fd int, p, oob []byte, flags int) (n, oobn int, err error) {
	if len(p) == 0 {
		n, oobn, _, _, err = unix.Recvmsg(fd, p, oob, flags)
		return n, oobn, err
	}
	var msg unix.Msghdr
	var iov unix.Iovec
	iov.Base = &p[0]
	iov.SetLen(len(p))
	msg.Iov = &iov
	msg.SetIovlen(1)
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	r, _, errno := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), uintptr(flags))
	if errno != 0 {
		return 0, 0, errno
	}
	return int(r), int(msg.Controllen), nil
}
