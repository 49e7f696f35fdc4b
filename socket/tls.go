package socket

import "strings"

// ProtocolHTTPS is the protocol of an "https://" bind: HTTP over TLS
// ("https://HOST:PORT", "https://unix:PATH", "https://fd://N"). It is not
// one of Protocols, which --protocol may name: TLS needs a certificate,
// and --certfile turns it on for every TCP HTTP bind instead.
const ProtocolHTTPS = "https"

// HTTPS is a listener's URL (Listener.URL) as it reads when the listener
// serves TLS: "https://127.0.0.1:8443", "https://unix:/run/app.sock".
func HTTPS(url string) string {
	if strings.HasPrefix(url, ProtocolHTTPS+"://") {
		return url
	}
	return ProtocolHTTPS + "://" + strings.TrimPrefix(url, "http://")
}
