package worker

import (
	"bytes"
	"net"
	"os"
	"strconv"
	"unicode/utf8"
)

// AccessLogJSON is the --access-logformat that writes each request as one
// JSON object, keyed by Gunicorn's atoms:
//
//	{"h":"10.1.2.3","u":"bob","t":"2026-01-02T03:04:05.000+00:00","r":"GET /p?x=1 HTTP/1.1",
//	 "m":"GET","U":"/p","q":"x=1","H":"HTTP/1.1","s":200,"B":5,"f":"ref","a":"curl/8",
//	 "T":0,"M":1,"D":1500,"L":0.0015,"p":1234}
//
// Strings are escaped as JSON requires (a '"' in a user agent, a control
// byte, invalid UTF-8), unlike a JSON-looking template of atoms, and the
// numbers are numbers. Absent values are "" rather than Gunicorn's "-".
const AccessLogJSON = "json"

// jsonAccessLine appends the JSON object for e, without the newline.
func jsonAccessLine(b *bytes.Buffer, e *entry) {
	host, _, err := net.SplitHostPort(e.r.RemoteAddr)
	if err != nil {
		host = e.r.RemoteAddr
	}
	user, _, _ := e.r.BasicAuth()
	var num [32]byte
	str := func(key, v string) {
		b.WriteString(`"` + key + `":`)
		appendJSONString(b, v)
		b.WriteByte(',')
	}
	integer := func(key string, v int64) {
		b.WriteString(`"` + key + `":`)
		b.Write(strconv.AppendInt(num[:0], v, 10))
		b.WriteByte(',')
	}
	b.WriteByte('{')
	str("h", host)
	str("u", user)
	str("t", e.start.Format("2006-01-02T15:04:05.000-07:00"))
	str("r", e.r.Method+" "+e.r.RequestURI+" "+e.r.Proto)
	str("m", e.r.Method)
	str("U", e.r.URL.Path)
	str("q", e.r.URL.RawQuery)
	str("H", e.r.Proto)
	integer("s", int64(e.status))
	integer("B", e.size)
	str("f", e.r.Referer())
	str("a", e.r.UserAgent())
	integer("T", int64(e.elapsed.Seconds()))
	integer("M", e.elapsed.Milliseconds())
	integer("D", e.elapsed.Microseconds())
	b.WriteString(`"L":`)
	b.Write(strconv.AppendFloat(num[:0], e.elapsed.Seconds(), 'f', -1, 64))
	b.WriteByte(',')
	integer("p", int64(os.Getpid()))
	b.Truncate(b.Len() - 1) // the last comma
	b.WriteByte('}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control bytes escaped, invalid UTF-8 replaced by U+FFFD, and U+2028 and
// U+2029 escaped for readers that parse JSON as JavaScript.
func appendJSONString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b.WriteString(s[start:i])
			switch c {
			case '"', '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				b.WriteString(`\u00`)
				b.WriteByte(hexDigits[c>>4])
				b.WriteByte(hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteString(s[start:i])
			b.WriteString(`\ufffd`)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b.WriteString(s[start:i])
			b.WriteString(`\u202`)
			b.WriteByte(hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}
