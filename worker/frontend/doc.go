// Package frontend owns the protocols a worker speaks with what stands in
// front of it: the wire protocols of its listeners other than plain HTTP
// (uwsgi, as nginx's uwsgi_pass sends it; FastCGI's responder role, as
// fastcgi_pass does), the CGI variables both carry and the request built
// from them, the PROXY protocol header before a connection's first byte,
// the X-Forwarded-* and Forwarded headers of trusted proxies, and the
// allow lists that say which peers are trusted for each.
//
// It serves connections, not processes: ConnServer is the counterpart of
// http.Server for uwsgi and FastCGI, and FrontEnd tells a worker type how
// to serve one listener. The worker runtime (package worker) builds a
// FrontEnd per listener from its Config; the worker types accept the
// connections and hand them here. The wire formats themselves (the uwsgi
// packet, the PROXY header) are parsed by package http1, which the event
// loop drives directly; this package imports only http1 and the standard
// library.
package frontend
