package http1

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors, one per class of malformed input. Errors returned by the
// Parser wrap one of them (sometimes two, see ErrHTTPVersionNotSupported)
// together with a description of the offending bytes; match them with
// errors.Is. The names follow gunicorn.http.errors so that the corpus maps
// one to one.
var (
	ErrInvalidRequestLine        = errors.New("http1: invalid request line")
	ErrInvalidRequestMethod      = errors.New("http1: invalid request method")
	ErrInvalidHTTPVersion        = errors.New("http1: invalid HTTP version")
	ErrInvalidHeader             = errors.New("http1: invalid header field")
	ErrInvalidHeaderName         = errors.New("http1: invalid header field name")
	ErrLimitRequestLine          = errors.New("http1: request line too long")
	ErrLimitRequestHeaders       = errors.New("http1: request header fields too large")
	ErrInvalidChunkSize          = errors.New("http1: invalid chunk size")
	ErrInvalidChunkExtension     = errors.New("http1: invalid chunk extension")
	ErrChunkMissingTerminator    = errors.New("http1: chunk missing terminator")
	ErrObsoleteFolding           = errors.New("http1: obsolete line folding")
	ErrNoMoreData                = errors.New("http1: connection closed mid-request")
	ErrInvalidSchemeHeaders      = errors.New("http1: conflicting secure scheme headers")
	ErrUnsupportedTransferCoding = errors.New("http1: unsupported transfer coding")
	ErrBodyTooLarge              = errors.New("http1: request body too large")
	ErrExpectationFailed         = errors.New("http1: unsupported expectation")
	// ErrRequestTimeout is not the Parser's: it is what a server reports
	// when a request it began to read did not arrive in time (its head,
	// or its body too slowly), answered with 408.
	ErrRequestTimeout = errors.New("http1: request not received in time")

	// ErrHTTPVersionNotSupported accompanies ErrInvalidHTTPVersion when the
	// version is well formed (HTTP/d.d) but its major version is not 1.
	// Both sentinels match such an error: the corpus, like Gunicorn, calls it
	// InvalidHTTPVersion, while Status answers 505.
	ErrHTTPVersionNotSupported = errors.New("http1: HTTP version not supported")

	// ErrInvalidProxyLine (ParseProxy, and Parser with ProxyAuto) and
	// ErrUwsgi (UwsgiParser) are also what package worker's goroutine and
	// sync workers wrap, as they parse with this package too; their text is
	// what those workers have always logged, and operators match on it.
	ErrInvalidProxyLine = errors.New("malformed PROXY protocol header")
	ErrUwsgi            = errors.New("malformed uwsgi packet")
)

// Status returns the status code of the response to send before closing a
// connection whose parse failed with err:
//
//   - 0 for nil and for ErrNoMoreData: the client went away, nothing to answer.
//   - 408 ErrRequestTimeout, 413 ErrBodyTooLarge, 414 ErrLimitRequestLine, 417 ErrExpectationFailed,
//     431 ErrLimitRequestHeaders, 501 ErrUnsupportedTransferCoding.
//   - 505 for a well-formed version other than HTTP/1.x. Gunicorn answers
//     400 for every InvalidHTTPVersion; RFC 9110 section 15.6.6 defines 505
//     for exactly this case ("HTTP/2.0" in an HTTP/1 request line), and a
//     client that can fall back needs to tell it apart from garbage, which
//     still gets 400. HTTP/1.2 and later minors are not errors at all: RFC
//     9112 section 2.3 says to process them as HTTP/1.1.
//   - 400 for everything else.
//
// UwsgiParser's errors follow suit: they wrap ErrUwsgi, and ErrBodyTooLarge,
// ErrLimitRequestHeaders or ErrNoMoreData where one of those applies.
func Status(err error) int {
	switch {
	case err == nil, errors.Is(err, ErrNoMoreData):
		return 0
	case errors.Is(err, ErrRequestTimeout):
		return http.StatusRequestTimeout
	case errors.Is(err, ErrBodyTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrLimitRequestLine):
		return http.StatusRequestURITooLong
	case errors.Is(err, ErrExpectationFailed):
		return http.StatusExpectationFailed
	case errors.Is(err, ErrLimitRequestHeaders):
		return http.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, ErrUnsupportedTransferCoding):
		return http.StatusNotImplemented
	case errors.Is(err, ErrHTTPVersionNotSupported):
		return http.StatusHTTPVersionNotSupported
	}
	return http.StatusBadRequest
}

// maxQuote bounds how much of an offending line an error message repeats, so
// that a hostile 8 KiB line does not end up in every log line verbatim.
const maxQuote = 64

func quote(b []byte) string {
	if len(b) > maxQuote {
		return fmt.Sprintf("%q...", b[:maxQuote])
	}
	return fmt.Sprintf("%q", b)
}

func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}
