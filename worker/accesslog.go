package worker

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/corral-server/corral/internal/logging"
)

// DefaultAccessLogFormat is Gunicorn's default access log format.
const DefaultAccessLogFormat = `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`

// AccessLog writes one line per request in a Gunicorn access log format.
// A nil *AccessLog logs nothing.
type AccessLog struct {
	out   *logging.File
	atoms []atom

	// ErrorLog is where a failed write is reported (a full disk): the
	// first, then at most a line a minute with the count. Nil: counted
	// only. Requests are served whether their line is written or not.
	ErrorLog    *slog.Logger
	writeErrors atomic.Int64
	errorLines  rateLog
}

// entry is what one access log line is made from.
type entry struct {
	r       *http.Request
	status  int
	size    int64
	header  http.Header
	start   time.Time
	elapsed time.Duration
}

type atom func(b *bytes.Buffer, e *entry)

// OpenAccessLog opens the access log at path ("-" is stdout, "" none),
// with format in Gunicorn's %(name)s notation.
func OpenAccessLog(path, format string) (*AccessLog, error) {
	if path == "" {
		return nil, nil
	}
	atoms, err := ParseAccessLogFormat(format)
	if err != nil {
		return nil, err
	}
	out, err := logging.OpenFile(path, os.Stdout)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return &AccessLog{out: out, atoms: atoms}, nil
}

// Reopen reopens the access log file after rotation.
func (a *AccessLog) Reopen() error {
	if a == nil {
		return nil
	}
	return a.out.Reopen()
}

// Log writes the line for one request.
func (a *AccessLog) Log(r *http.Request, status int, size int64, respHeader http.Header, start time.Time, elapsed time.Duration) {
	if a == nil {
		return
	}
	e := entry{r: r, status: status, size: size, header: respHeader, start: start, elapsed: elapsed}
	var b bytes.Buffer
	for _, at := range a.atoms {
		at(&b, &e)
	}
	b.WriteByte('\n')
	if _, err := a.out.Write(b.Bytes()); err != nil {
		n := a.writeErrors.Add(1)
		a.errorLines.print(a.ErrorLog, slog.LevelError, fmt.Sprintf("access log: %v; %d lines lost so far", err, n))
	}
}

// WriteErrors is the number of lines lost to failed writes so far.
func (a *AccessLog) WriteErrors() int64 {
	if a == nil {
		return 0
	}
	return a.writeErrors.Load()
}

// ParseAccessLogFormat compiles a format such as DefaultAccessLogFormat,
// or AccessLogJSON.
// It knows Gunicorn's atoms: h l u t r m U q H s B b f a T M D L p, and
// {header}i, {header}o, {variable}e.
func ParseAccessLogFormat(format string) ([]atom, error) {
	if format == "" {
		format = DefaultAccessLogFormat
	}
	if format == AccessLogJSON {
		return []atom{jsonAccessLine}, nil
	}
	var atoms []atom
	rest := format
	for {
		i := strings.Index(rest, "%(")
		if i < 0 {
			atoms = append(atoms, literal(rest))
			return atoms, nil
		}
		atoms = append(atoms, literal(rest[:i]))
		end := strings.Index(rest[i:], ")s")
		if end < 0 {
			return nil, fmt.Errorf("access log format: unterminated %q", rest[i:])
		}
		name := rest[i+2 : i+end]
		at, err := lookupAtom(name)
		if err != nil {
			return nil, err
		}
		atoms = append(atoms, at)
		rest = rest[i+end+2:]
	}
}

func literal(s string) atom {
	return func(b *bytes.Buffer, _ *entry) { b.WriteString(s) }
}

func dash(b *bytes.Buffer, s string) {
	if s == "" {
		s = "-"
	}
	b.WriteString(s)
}

func lookupAtom(name string) (atom, error) {
	if len(name) > 3 && name[0] == '{' && strings.HasSuffix(name[:len(name)-1], "}") {
		key := name[1 : len(name)-2]
		switch name[len(name)-1] {
		case 'i':
			return func(b *bytes.Buffer, e *entry) { dash(b, e.r.Header.Get(key)) }, nil
		case 'o':
			return func(b *bytes.Buffer, e *entry) { dash(b, e.header.Get(key)) }, nil
		case 'e':
			return func(b *bytes.Buffer, _ *entry) { dash(b, os.Getenv(key)) }, nil
		}
	}
	switch name {
	case "h":
		return func(b *bytes.Buffer, e *entry) {
			host, _, err := net.SplitHostPort(e.r.RemoteAddr)
			if err != nil {
				host = e.r.RemoteAddr
			}
			dash(b, host)
		}, nil
	case "l":
		return literal("-"), nil
	case "u":
		return func(b *bytes.Buffer, e *entry) {
			u, _, _ := e.r.BasicAuth()
			dash(b, u)
		}, nil
	case "t":
		return func(b *bytes.Buffer, e *entry) { b.WriteString(e.start.Format("[02/Jan/2006:15:04:05 -0700]")) }, nil
	case "r":
		return func(b *bytes.Buffer, e *entry) {
			fmt.Fprintf(b, "%s %s %s", e.r.Method, e.r.RequestURI, e.r.Proto)
		}, nil
	case "m":
		return func(b *bytes.Buffer, e *entry) { b.WriteString(e.r.Method) }, nil
	case "U":
		return func(b *bytes.Buffer, e *entry) { b.WriteString(e.r.URL.Path) }, nil
	case "q":
		return func(b *bytes.Buffer, e *entry) { b.WriteString(e.r.URL.RawQuery) }, nil
	case "H":
		return func(b *bytes.Buffer, e *entry) { b.WriteString(e.r.Proto) }, nil
	case "s":
		return func(b *bytes.Buffer, e *entry) { b.WriteString(strconv.Itoa(e.status)) }, nil
	case "B":
		return func(b *bytes.Buffer, e *entry) { b.WriteString(strconv.FormatInt(e.size, 10)) }, nil
	case "b":
		return func(b *bytes.Buffer, e *entry) {
			if e.size == 0 {
				b.WriteByte('-')
				return
			}
			b.WriteString(strconv.FormatInt(e.size, 10))
		}, nil
	case "f":
		return func(b *bytes.Buffer, e *entry) { dash(b, e.r.Referer()) }, nil
	case "a":
		return func(b *bytes.Buffer, e *entry) { dash(b, e.r.UserAgent()) }, nil
	case "T":
		return func(b *bytes.Buffer, e *entry) { b.WriteString(strconv.Itoa(int(e.elapsed.Seconds()))) }, nil
	case "M":
		return func(b *bytes.Buffer, e *entry) { b.WriteString(strconv.FormatInt(e.elapsed.Milliseconds(), 10)) }, nil
	case "D":
		return func(b *bytes.Buffer, e *entry) { b.WriteString(strconv.FormatInt(e.elapsed.Microseconds(), 10)) }, nil
	case "L":
		return func(b *bytes.Buffer, e *entry) { fmt.Fprintf(b, "%.6f", e.elapsed.Seconds()) }, nil
	case "p":
		return func(b *bytes.Buffer, _ *entry) { fmt.Fprintf(b, "<%d>", os.Getpid()) }, nil
	}
	return nil, fmt.Errorf("access log format: unknown atom %%(%s)s", name)
}
