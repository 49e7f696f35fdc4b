package socket

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Queue is a listener's accept queue: the connections the kernel has
// established that no process has accepted yet, and how many it holds
// before it drops new ones (the listen backlog, capped by somaxconn).
type Queue struct {
	Depth int
	Limit int
}

// Queue reads the listener's accept queue. For TCP it is getsockopt
// TCP_INFO on the listening socket, where the kernel reports the queue in
// tcpi_unacked and its limit in tcpi_sacked; for a unix socket, a
// sock_diag query (UNIX_DIAG_RQLEN) for the socket's inode.
func (l *Listener) Queue() (Queue, error) {
	var q Queue
	var err error
	switch l.Network() {
	case "tcp":
		q, err = tcpQueue(l.fd)
	case "unix":
		q, err = unixQueue(l.fd)
	default:
		err = errors.New("not a TCP or unix socket")
	}
	if err != nil {
		return Queue{}, fmt.Errorf("accept queue of %s: %w", l.URL(), err)
	}
	return q, nil
}

func tcpQueue(fd int) (Queue, error) {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return Queue{}, fmt.Errorf("getsockopt TCP_INFO: %w", err)
	}
	if info.State != tcpListen {
		return Queue{}, errors.New("socket is not listening")
	}
	return Queue{Depth: int(info.Unacked), Limit: int(info.Sacked)}, nil
}

// The sock_diag request and answer for unix sockets, from
// linux/unix_diag.h, which x/sys/unix does not define.
const (
	unixDiagShowRQLen = 0x10 // UDIAG_SHOW_RQLEN
	unixDiagRQLen     = 4    // UNIX_DIAG_RQLEN
	tcpListen         = 10   // TCP_LISTEN, the state of a listening unix stream socket too
)

// unixDiagReq is struct unix_diag_req.
type unixDiagReq struct {
	Family   uint8
	Protocol uint8
	Pad      uint16
	States   uint32
	Ino      uint32
	Show     uint32
	Cookie   [2]uint32
}

// unixDiagMsg is struct unix_diag_msg, which precedes the attributes.
type unixDiagMsg struct {
	Family uint8
	Type   uint8
	State  uint8
	Pad    uint8
	Ino    uint32
	Cookie [2]uint32
}

// unixQueue asks the kernel (NETLINK_SOCK_DIAG) about the one unix socket
// with fd's inode; for a listening socket, UNIX_DIAG_RQLEN holds the queue
// length and the backlog limit.
func unixQueue(fd int) (Queue, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Queue{}, fmt.Errorf("fstat: %w", err)
	}
	nl, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return Queue{}, fmt.Errorf("sock_diag socket: %w", err)
	}
	defer unix.Close(nl)
	// Bound, in case the kernel never answers.
	unix.SetsockoptTimeval(nl, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1})

	req := unixDiagReq{Family: unix.AF_UNIX, States: 1 << tcpListen, Ino: uint32(st.Ino),
		Show: unixDiagShowRQLen, Cookie: [2]uint32{^uint32(0), ^uint32(0)}} // no cookie: match by inode
	hdr := unix.NlMsghdr{
		Len:   uint32(unix.SizeofNlMsghdr + unsafe.Sizeof(req)),
		Type:  unix.SOCK_DIAG_BY_FAMILY,
		Flags: unix.NLM_F_REQUEST,
		Seq:   1,
	}
	msg := make([]byte, 0, hdr.Len)
	msg = append(msg, unsafe.Slice((*byte)(unsafe.Pointer(&hdr)), unix.SizeofNlMsghdr)...)
	msg = append(msg, unsafe.Slice((*byte)(unsafe.Pointer(&req)), unsafe.Sizeof(req))...)
	if err := unix.Sendto(nl, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return Queue{}, fmt.Errorf("sock_diag send: %w", err)
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(nl, buf, 0)
	if err != nil {
		return Queue{}, fmt.Errorf("sock_diag receive: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return Queue{}, fmt.Errorf("sock_diag answer: %w", err)
	}
	for _, m := range msgs {
		switch m.Header.Type {
		case unix.NLMSG_ERROR:
			if len(m.Data) >= 4 {
				if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
					return Queue{}, fmt.Errorf("sock_diag: %w", unix.Errno(-errno))
				}
			}
		case unix.SOCK_DIAG_BY_FAMILY:
			return parseUnixDiag(m.Data, uint32(st.Ino))
		}
	}
	return Queue{}, errors.New("sock_diag: no answer for the socket")
}

// parseUnixDiag reads the queue from a unix_diag_msg and its attributes.
func parseUnixDiag(b []byte, ino uint32) (Queue, error) {
	var m unixDiagMsg
	if len(b) < int(unsafe.Sizeof(m)) {
		return Queue{}, errors.New("sock_diag: short answer")
	}
	m = *(*unixDiagMsg)(unsafe.Pointer(&b[0]))
	if m.Ino != ino {
		return Queue{}, fmt.Errorf("sock_diag: answer for inode %d, asked for %d", m.Ino, ino)
	}
	attrs := b[unsafe.Sizeof(m):]
	for len(attrs) >= unix.SizeofRtAttr {
		alen := int(binary.NativeEndian.Uint16(attrs[0:2]))
		atype := binary.NativeEndian.Uint16(attrs[2:4])
		if alen < unix.SizeofRtAttr || alen > len(attrs) {
			break
		}
		if atype == unixDiagRQLen && alen >= unix.SizeofRtAttr+8 {
			v := attrs[unix.SizeofRtAttr:]
			return Queue{Depth: int(binary.NativeEndian.Uint32(v[0:4])), Limit: int(binary.NativeEndian.Uint32(v[4:8]))}, nil
		}
		attrs = attrs[min((alen+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1), len(attrs)):]
	}
	return Queue{}, errors.New("sock_diag: no UNIX_DIAG_RQLEN in the answer")
}
