package event

import (
	"fmt"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Which loops of the herd accept: one, the lead, while it keeps up alone;
// all of them, sharing out the connections, while it asks for help.
//
// Every loop that waits on the listeners in its epoll set is one that a
// new connection may wake (EPOLLEXCLUSIVE wakes the first that waits). A
// loop busy with one connection does not wait, so the next one wakes
// another, in another worker process: with a connection per request
// (nginx's uwsgi_pass) at a rate one loop serves, that is a sleep, a
// wake-up and a switch of CPU a connection, for nothing. Measured behind
// nginx's uwsgi_pass, two workers unpinned on two CPUs: 23-26 us of the
// workers' CPU a request when both loops waited on the listener, 17 when
// one did, and 9-15% more requests a second (bench/results/CHANGES.md).
// And kept connections piled up on the loop that woke first: wrk's 64
// all on one of two workers. So, as with nginx's accept_mutex, one loop
// leads and waits on the listeners; the others, the reserves, do not,
// until it asks them to.
//
// The lead is the loop that holds an abstract unix socket named after the
// listener (its inode: a reload's and an upgrade's workers, who share it,
// share the lead). Each reserve connects to it, and the two talk in single
// bytes:
//   - the lead asks for help (helpByte) when its process used leadBusy of
//     its CPUs (GOMAXPROCS) over a scan or it holds leadConns connections, at
//     most once every leadHold/2: the reserve then waits on the listeners
//     for leadHold, and steps back once that is over (its scan);
//   - a reserve says how many connections it holds, in leadConns, when
//     that changes; while they help, the loops that hold the fewest
//     accept and the others hold off (holdByte, and the lead itself), so
//     that a burst of clients that stay connected is shared out;
//   - a hang-up from the lead (its process exited, or it resigned at a
//     graceful stop) has every reserve help, and one of them lead.
//
// What fails here fails open: a reserve that cannot reach a lead helps,
// and so does one that finds leadBacklog connections waiting at a scan (a
// lead that does not accept). Every loop takes at most leadBatch
// connections an accept call, so that those that accept share a burst.
// The wsgi worker's loops (an AsyncHandler, one Python process each) take
// no part: what a process can carry is what its one interpreter can, so
// they all accept, as before.
type acceptLead struct {
	on        bool
	addr      unix.SockaddrUnix
	lockfd    int     // the lead's bound, listening socket; -1 unless leading
	watchfd   int     // a reserve's connection to the lead; -1 if none
	reserves  []int   // the lead's side of its reserves' connections
	levels    []uint8 // what each of reserves last said it holds, in leadConns
	told      []byte  // what the lead last told each of reserves: helpByte, holdByte, or 0
	level     int     // a reserve: what it last said; -1 to say it again
	helpUntil int64   // the loop clock until which a reserve waits on the listeners
	rang      int64   // when the lead last asked for help
	scanned   int64   // when leadScan last ran
	cpu       int64   // the process's CPU time then
}

const (
	leadHold    = time.Second // how long a reserve helps once asked
	leadBatch   = 16          // most connections a loop takes in one accept call
	leadConns   = 16          // connections held by the lead that ask for help, and the unit of a level
	leadBusy    = 0.8         // the share of its CPUs that a lead's process uses when it asks for help
	leadBacklog = 128         // a backlog a reserve helps with unasked

	helpByte = 1 // lead to reserve: wait on the listeners for leadHold
	holdByte = 2 // lead to reserve: do not, until asked again
)

// joinHerd makes the loop the lead or one of its reserves. A loop left
// off (no listener, or one whose inode cannot be read) accepts always.
func (l *eventLoop) joinHerd() {
	if len(l.e.lfds) == 0 || l.async != nil {
		return
	}
	var st unix.Stat_t
	if err := unix.Fstat(l.e.lfds[0], &st); err != nil {
		return
	}
	l.lead = acceptLead{on: true, lockfd: -1, watchfd: -1, scanned: l.now, cpu: processCPU(),
		addr: unix.SockaddrUnix{Name: fmt.Sprintf("@corral-accept/%d/%d", st.Dev, st.Ino)}}
	l.seekLead()
	l.reconcileLead()
}

// wantListeners reports whether the loop should wait on the listeners
// (see acceptLead).
func (l *eventLoop) wantListeners() bool {
	ld := &l.lead
	switch {
	case !ld.on:
		return true
	case ld.lockfd < 0:
		return l.now < ld.helpUntil
	case l.now-ld.rang >= int64(leadHold/2) || len(ld.levels) == 0:
		return true // the reserves help a half longer: no gap
	default:
		return l.holds()/leadConns <= int(slices.Min(ld.levels))
	}
}

// shareOut, while the reserves help, tells each to accept or hold off:
// those holding the fewest connections accept, the lead among them.
func (l *eventLoop) shareOut() {
	ld := &l.lead
	if ld.lockfd < 0 || l.now-ld.rang >= int64(leadHold) || len(ld.levels) == 0 {
		return
	}
	floor := min(int(slices.Min(ld.levels)), l.holds()/leadConns)
	for i, fd := range ld.reserves {
		msg := byte(holdByte)
		if int(ld.levels[i]) <= floor {
			msg = helpByte
		}
		if ld.told[i] != msg {
			if n, _ := writeFD(fd, []byte{msg}); n == 1 {
				ld.told[i] = msg
			}
		}
	}
}

// reconcileLead puts the listeners in the epoll set or takes them out, as
// wantListeners says: in unless the loop is held (Loop.Hold), draining or
// at the --worker-connections cap.
func (l *eventLoop) reconcileLead() {
	switch want := l.wantListeners(); {
	case want && !l.lreg && !l.held && !l.e.draining.Load() && !l.atCap():
		if err := l.register(); err != nil {
			l.p.Log.Error(err.Error()) // again at the next scan
		}
	case !want && l.lreg:
		l.unregister()
	}
}

// seekLead leads, if no loop does, or connects to the lead. One that can
// do neither helps until it tries again, at a scan.
func (l *eventLoop) seekLead() {
	ld := &l.lead
	if ld.lockfd >= 0 || ld.watchfd >= 0 {
		return
	}
	if fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0); err == nil {
		if unix.Bind(fd, &ld.addr) == nil && unix.Listen(fd, 1024) == nil && l.addLeadFD(fd) {
			ld.lockfd = fd
			return
		}
		unix.Close(fd)
	}
	if fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0); err == nil {
		if unix.Connect(fd, &ld.addr) == nil && l.addLeadFD(fd) {
			ld.watchfd, ld.level = fd, -1
			l.report()
			return
		}
		unix.Close(fd)
	}
	l.help()
}

// addLeadFD puts one of the lead's sockets in the epoll set, level-triggered.
func (l *eventLoop) addLeadFD(fd int) bool {
	return epollAdd(l.epfd, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}) == nil
}

// help has a reserve wait on the listeners from now until leadHold from now.
func (l *eventLoop) help() {
	l.lead.helpUntil = l.now + int64(leadHold)
	l.reconcileLead()
}

// report tells the lead how many connections the reserve holds, in
// leadConns, if that changed since it last did.
func (l *eventLoop) report() {
	ld := &l.lead
	if ld.watchfd < 0 {
		return
	}
	if lvl := min(l.holds()/leadConns, 255); lvl != ld.level {
		if n, _ := writeFD(ld.watchfd, []byte{byte(lvl)}); n == 1 {
			ld.level = lvl
		}
	}
}

// leadReady handles epoll's report on fd if it is one of the lead's
// sockets, and reports whether it was.
func (l *eventLoop) leadReady(fd int32) bool {
	ld := &l.lead
	var b [64]byte
	switch {
	case !ld.on:
		return false
	case int(fd) == ld.watchfd:
		switch n, err := readFD(ld.watchfd, b[:]); {
		case n > 0 && b[n-1] == holdByte:
			ld.helpUntil = 0
			l.reconcileLead()
			return true
		case n > 0:
			l.help() // the lead asks
			return true
		case err == unix.EAGAIN:
			return true
		}
		closeSocket(ld.watchfd) // the lead is gone
		ld.watchfd = -1
		l.help()
		l.seekLead()
	case int(fd) == ld.lockfd: // reserves connect
		for {
			nfd, _, err := unix.Accept4(ld.lockfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if err != nil {
				break
			}
			if !l.addLeadFD(nfd) {
				unix.Close(nfd)
				continue
			}
			ld.reserves = append(ld.reserves, nfd)
			ld.levels = append(ld.levels, 0)
			ld.told = append(ld.told, 0)
		}
	default:
		i := slices.Index(ld.reserves, int(fd))
		if i < 0 {
			return false
		}
		if n, err := readFD(int(fd), b[:]); n > 0 {
			ld.levels[i] = b[n-1]
		} else if err != unix.EAGAIN {
			closeSocket(int(fd)) // the reserve is gone
			ld.reserves = slices.Delete(ld.reserves, i, i+1)
			ld.levels = slices.Delete(ld.levels, i, i+1)
			ld.told = slices.Delete(ld.told, i, i+1)
		}
		l.shareOut()
		l.reconcileLead()
	}
	return true
}

// holds is how many connections the loop holds, for the lead's rules: its
// own and its worker's FastCGI ones (on goroutines, which nginx keeps).
func (l *eventLoop) holds() int { return l.conns.len() + l.e.gos.count() }

// accepting is told that an accept call begins: a lead that holds
// leadConns connections from earlier turns (kept ones: with a connection
// per request, those of a turn are closed by its end) asks for help.
func (l *eventLoop) accepting() {
	if l.lead.on && l.holds() >= leadConns {
		l.ring()
	}
}

// accepted is told that an accept call took n connections so far, and
// reports whether the call should stop there (see acceptLead).
func (l *eventLoop) accepted(n int) bool {
	if !l.lead.on {
		return false
	}
	l.report()
	if ld := &l.lead; ld.lockfd >= 0 && l.now-ld.rang < int64(leadHold) && l.holds()%leadConns == 0 {
		l.shareOut() // while the reserves help: the lead's own level changed
	}
	if !l.wantListeners() {
		l.unregister()
		return true
	}
	return n >= leadBatch
}

// ring asks the reserves for help, if the lead has any and did not in the
// last leadHold/2.
func (l *eventLoop) ring() {
	ld := &l.lead
	if ld.lockfd < 0 || len(ld.reserves) == 0 || l.now-ld.rang < int64(leadHold/2) {
		return
	}
	ld.rang = l.now
	clear(ld.told)
	l.shareOut()
}

// leadScan, at a scan: a lead whose process used leadBusy of its CPUs
// since the last asks for help (its own CPU time, not the time its loop
// did not sleep: a loop kept off its CPU by other processes is not one
// that another loop would relieve); a reserve tries again to reach a
// lead, tells it what it holds, and steps back once its help is over,
// unless leadBacklog connections wait.
func (l *eventLoop) leadScan(now int64) {
	ld := &l.lead
	if !ld.on {
		return
	}
	switch {
	case ld.lockfd >= 0:
		cpu, since := processCPU(), now-ld.scanned
		if float64(cpu-ld.cpu) >= leadBusy*float64(since)*float64(runtime.GOMAXPROCS(0)) {
			l.ring()
		}
		ld.scanned, ld.cpu = now, cpu
	case l.now >= ld.helpUntil:
		for _, fd := range l.e.lfds {
			if ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO); err == nil && ti.Unacked >= leadBacklog {
				l.help() // a listening socket's tcpi_unacked is its backlog
				break
			}
		}
	}
	l.seekLead()
	l.report()
}

// processCPU is the CPU time the process used so far, in nanoseconds.
func processCPU() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// resign, at a graceful stop or the loop's end, gives the lead up: every
// reserve helps, and one leads.
func (l *eventLoop) resign() {
	ld := &l.lead
	for _, fd := range ld.reserves {
		closeSocket(fd)
	}
	ld.reserves, ld.levels, ld.told = nil, nil, nil
	for _, fd := range []*int{&ld.lockfd, &ld.watchfd} {
		if *fd >= 0 {
			closeSocket(*fd)
			*fd = -1
		}
	}
	ld.on = false
}
