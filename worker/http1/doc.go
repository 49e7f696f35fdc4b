// Package http1 parses HTTP/1.x requests from a connection's byte stream.
//
// It owns the wire format only: request-line, header and trailer fields,
// message framing (Content-Length and chunked), the optional PROXY protocol
// preamble, and the decision whether a connection may carry another request.
// It does not read from sockets, write responses, or dispatch to handlers;
// the epoll event loop, the blocking sync worker and the uwsgi/FastCGI
// front ends drive the same [Parser] by handing it whatever bytes they have,
// and the goroutine worker puts a [Screen] in front of net/http's parser, so
// that net/http reads only the requests the Parser accepts.
//
// The parser follows RFC 9112 strictly, because the parts of HTTP/1.1 that
// are commonly parsed leniently (duplicate or malformed Content-Length,
// Transfer-Encoding lists, obs-fold, bare CR or LF, whitespace before the
// colon) are exactly the parts that let a front proxy and this server
// disagree about where a request ends. Where Gunicorn's behaviour is
// observable, the parser matches it: testdata/gunicorn-requests holds
// Gunicorn's conformance corpus and corpus_test.go runs every case. Its
// configuration switches ([Config]) carry Gunicorn's names and defaults.
// Where RFC 9112 requires otherwise, the RFC wins, and corpus_test.go says
// where: an HTTP/1.1 request needs exactly one valid Host (section 3.2), the
// only transfer coding is chunked, once and last (sections 6.1 and 6.3), and
// up to two empty lines before a request-line are skipped (section 2.2). differential_test.go
// compares the parser with net/http's and lists every request net/http
// accepts and this package refuses, with the reason.
//
// Parsing is incremental and allocation-conscious: [Parser.Parse] accepts
// arbitrary slices of the stream, copies what it keeps into storage it
// reuses from request to request, and consumes partial lines only once they
// are complete. [Parser.Release] hands that storage back to a shared pool so
// that an idle keep-alive connection holds no buffer.
package http1
