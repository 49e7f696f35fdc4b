package demo

import (
	"crypto/tls"
	"net/http"
)

// EchoTLS is /echo's view of the connection's TLS, when it has one.
type EchoTLS struct {
	Version    string   `json:"version"` // "TLS 1.3"
	Cipher     string   `json:"cipher"`  // Go's name of the suite
	ALPN       string   `json:"alpn"`    // "h2", "http/1.1" or ""
	Resumed    bool     `json:"resumed"` // a resumed session (a ticket)
	ServerName string   `json:"server_name"`
	Client     []string `json:"client"` // the client certificate chain's subjects, leaf first
}

// echoTLS describes r.TLS; nil for a plain connection (or one whose TLS a
// front end ended and reported with an empty state).
func echoTLS(r *http.Request) *EchoTLS {
	if r.TLS == nil || r.TLS.Version == 0 {
		return nil
	}
	e := &EchoTLS{Version: tls.VersionName(r.TLS.Version), Cipher: tls.CipherSuiteName(r.TLS.CipherSuite),
		ALPN: r.TLS.NegotiatedProtocol, Resumed: r.TLS.DidResume, ServerName: r.TLS.ServerName}
	for _, c := range r.TLS.PeerCertificates {
		e.Client = append(e.Client, c.Subject.String())
	}
	return e
}
