package http1

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
)

// errClasses orders the sentinels for errClass. Errors that wrap two
// sentinels are named after the first one listed.
var errClasses = []error{
	ErrChunkMissingTerminator, ErrNoMoreData, ErrInvalidRequestLine, ErrInvalidRequestMethod,
	ErrInvalidHTTPVersion, ErrInvalidHeader, ErrInvalidHeaderName, ErrLimitRequestLine,
	ErrLimitRequestHeaders, ErrInvalidChunkSize, ErrInvalidChunkExtension, ErrObsoleteFolding,
	ErrInvalidProxyLine, ErrInvalidSchemeHeaders, ErrUnsupportedTransferCoding, ErrBodyTooLarge,
	ErrExpectationFailed,
}

// errClass names the sentinel err wraps: "" for nil, "unknown" for an error
// that wraps none, which the Parser must never return.
func errClass(err error) string {
	if err == nil {
		return ""
	}
	for _, s := range errClasses {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "unknown: " + err.Error()
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

// fuzzConfig turns the fuzzer's option byte into settings, so that every
// switch, and small limits, get exercised.
func fuzzConfig(opts uint8) *Config {
	c := DefaultConfig()
	if opts&0x02 != 0 {
		c.ProxyProtocol = ProxyAuto
	}
	if opts&0x04 != 0 {
		c.PermitObsoleteFolding = true
	}
	if opts&0x08 != 0 {
		c.Limits = Limits{RequestLine: 64, Fields: 4, FieldSize: 64, MaxBody: 32}
	}
	switch opts & 0x30 {
	case 0x10:
		c.HeaderMap = HeaderMapDangerous
	case 0x20:
		c.HeaderMap = HeaderMapRefuse
	}
	if opts&0x40 != 0 {
		c.StripHeaderSpaces = true
		c.PermitUnconventionalMethod = true
		c.CasefoldMethod = true
	}
	if opts&0x80 != 0 {
		c.PermitUnconventionalVersion = true
	}
	return c
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), uint8(0))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX: y\r\n\r\n"), uint8(1))
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc"), uint8(2))
	f.Add([]byte("GET / HTTP/1.1\r\nX: a\r\n b\r\nY_Z: 1\r\n\r\n"), uint8(0x1c))
	f.Add([]byte("\r\n\nGET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n"), uint8(0))
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"), uint8(2))

	f.Fuzz(func(t *testing.T, data []byte, opts uint8) {
		if len(data) > 2048 {
			// Small limits (opts&0x08) reach every limit well below this,
			// and longer inputs only make minimisation crawl.
			t.Skip()
		}
		cfg := fuzzConfig(opts)
		trusted := opts&0x01 != 0
		run := func(chunks [][]byte) (outcome, ProxyInfo) {
			p := &Parser{Config: cfg, TrustedPeer: trusted}
			out := drive(t, p, chunks)
			info, _ := p.Proxy()
			return out, info
		}
		whole, wholeProxy := run([][]byte{data})
		if c := errClass(whole.err); len(c) > 7 && c[:7] == "unknown" {
			t.Fatalf("error wraps no sentinel: %v", whole.err)
		}
		checkLimits(t, cfg, whole.reqs)

		splits := [][][]byte{randomSplit(newRand(uint64(len(data))<<8|uint64(opts)), data, 1+int(opts%11))}
		if len(data) <= 512 {
			one := make([][]byte, len(data))
			for i := range data {
				one[i] = data[i : i+1]
			}
			splits = append(splits, one)
		}
		for _, chunks := range splits {
			split, splitProxy := run(chunks)
			if errClass(whole.err) != errClass(split.err) {
				t.Fatalf("whole input fails with %v, sliced with %v", whole.err, split.err)
			}
			if !reflect.DeepEqual(strip(whole.reqs), strip(split.reqs)) {
				t.Fatalf("whole and sliced input differ:\n%+v\n%+v", whole.reqs, split.reqs)
			}
			if wholeProxy != splitProxy {
				t.Fatalf("PROXY info differs: %+v vs %+v", wholeProxy, splitProxy)
			}
		}
	})
}

// checkLimits asserts that nothing returned exceeds the configured limits.
func checkLimits(t *testing.T, cfg *Config, reqs []snap) {
	t.Helper()
	l := cfg.Limits.normalize()
	for _, r := range reqs {
		if l.requestLine > 0 && len(r.Method)+len(r.Target)+len(" ")*2+len("HTTP/1.1") > l.requestLine {
			t.Fatalf("request line longer than %d: %s %s", l.requestLine, r.Method, r.Target)
		}
		for _, fs := range [][][2]string{r.Headers, r.Trailers} {
			if len(fs) > l.fields {
				t.Fatalf("%d fields, limit %d", len(fs), l.fields)
			}
			for _, f := range fs {
				if len(f[0])+len(":")+len(f[1])+len("\r\n") > l.fieldSize {
					t.Fatalf("field %q larger than %d", f, l.fieldSize)
				}
			}
		}
		if l.maxBody > 0 && int64(len(r.Body)) > l.maxBody {
			t.Fatalf("body of %d bytes, limit %d", len(r.Body), l.maxBody)
		}
		if !r.Chunked && r.ContentLength >= 0 && int64(len(r.Body)) != r.ContentLength {
			t.Fatalf("body of %d bytes, Content-Length %d", len(r.Body), r.ContentLength)
		}
		if r.Chunked && r.ContentLength != -1 {
			t.Fatalf("chunked with Content-Length %d", r.ContentLength)
		}
	}
}
