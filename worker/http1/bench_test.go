package http1

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// browserGET is what a desktop browser sends for a page: 8 fields.
const browserGET = "GET /articles/2024/parsing-http.html?ref=home HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=7f3a9c2e1b4d5f6a; theme=dark; _ga=GA1.2.123456789.1700000000\r\n" +
	"Upgrade-Insecure-Requests: 1\r\n" +
	"\r\n"

// pipeline returns n browser GETs for distinct targets, as a browser
// pipelining the assets of a page would send them.
func pipeline(n int) []byte {
	var b strings.Builder
	for i := range n {
		b.WriteString(strings.Replace(browserGET, "parsing-http.html", "asset-"+strconv.Itoa(i)+".css", 1))
	}
	return []byte(b.String())
}

func BenchmarkParse(b *testing.B) {
	b.Run("browserGET", func(b *testing.B) {
		wire := []byte(browserGET)
		p := &Parser{}
		b.SetBytes(int64(len(wire)))
		b.ReportAllocs()
		for b.Loop() {
			if n, r, err := p.Parse(wire); r == nil || err != nil || n != len(wire) {
				b.Fatal(n, r, err)
			}
		}
	})
	b.Run("pipeline16", func(b *testing.B) { benchPipelined(b, pipeline(16), 16) })
	// bench/pipeline.lua's batch: wrk's request 16 times.
	b.Run("wrk16", func(b *testing.B) {
		benchPipelined(b, bytes.Repeat([]byte("GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"), 16), 16)
	})
	b.Run("bytewise", func(b *testing.B) {
		// The slow-loris path: one byte per read must stay linear.
		wire := []byte(browserGET)
		p := &Parser{}
		b.SetBytes(int64(len(wire)))
		b.ReportAllocs()
		for b.Loop() {
			start := 0
			for end := 1; end <= len(wire); end++ {
				n, r, err := p.Parse(wire[start:end])
				if err != nil {
					b.Fatal(err)
				}
				start += n
				if r != nil {
					break
				}
			}
		}
	})
}

// BenchmarkScreen is what a Screen adds to each request of a keep-alive
// connection that reads one whole request at a time, as the goroutine
// worker's net/http does: wrk's request, and a browser's.
func BenchmarkScreen(b *testing.B) {
	for _, tc := range []struct{ name, wire string }{
		{"wrk", "GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"},
		{"browserGET", browserGET},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var s Screen
			wire := []byte(tc.wire)
			src := bytes.NewReader(wire)
			buf := make([]byte, 4096)
			b.SetBytes(int64(len(wire)))
			b.ReportAllocs()
			for b.Loop() {
				src.Reset(wire)
				if n, err := s.Read(src, buf); err != nil || n != len(wire) {
					b.Fatal(n, err)
				}
			}
		})
	}
}

// BenchmarkParseWrk is wrk's request, the one the benchmarks pipeline.
func BenchmarkParseWrk(b *testing.B) {
	wire := []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n")
	p := &Parser{}
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		if n, r, err := p.Parse(wire); r == nil || err != nil || n != len(wire) {
			b.Fatal(n, r, err)
		}
	}
}

// benchPipelined parses wire, n requests back to back, per iteration.
func benchPipelined(b *testing.B, wire []byte, n int) {
	p := &Parser{}
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		buf := wire
		for range n {
			m, r, err := p.Parse(buf)
			if r == nil || err != nil {
				b.Fatal(r, err)
			}
			buf = buf[m:]
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/req")
}
