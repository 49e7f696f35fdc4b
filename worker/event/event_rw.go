package event

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// A connection's reads and writes, raw (RawSyscall) for the reason
// event_sys.go gives: the loop's sockets are non-blocking, so these
// return at once, and through Syscall each would tell the scheduler, and
// wake sysmon, for nothing. They return what unix.Read and unix.Write do.

var zeroByte byte // the address a zero-length read or write is given

func bufPtr(b []byte) uintptr {
	if len(b) == 0 {
		return uintptr(unsafe.Pointer(&zeroByte))
	}
	return uintptr(unsafe.Pointer(&b[0]))
}

// readFD is read(2) on a non-blocking fd.
func readFD(fd int, b []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), bufPtr(b), uintptr(len(b)))
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}

// writeFD is write(2) on a non-blocking fd.
func writeFD(fd int, b []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), bufPtr(b), uintptr(len(b)))
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}

// writeLastFD is writeFD for a connection's last bytes, its close to
// follow: MSG_MORE holds a partial segment back, so that the FIN the
// close (or shutdown) sends rides on it. The peer then gets the response
// and the end of the connection in one segment, and acknowledges both at
// once: two segments fewer over a connection per request (nginx's
// uwsgi_pass, Connection: close), each a softirq on both ends. On a unix
// socket the flag does nothing.
func writeLastFD(fd int, b []byte) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), bufPtr(b), uintptr(len(b)),
		unix.MSG_MORE|unix.MSG_NOSIGNAL, 0, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}
