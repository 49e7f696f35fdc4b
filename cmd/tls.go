package cmd

import (
	"crypto/tls"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/corral-server/corral/socket"
	"github.com/corral-server/corral/worker"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// TLS and HTTP/2 on the workers, with Gunicorn's flags (--certfile,
// --keyfile, --ca-certs, --cert-reqs, --ciphers, --ssl-version), and the
// session-ticket keys the arbiter shares with the workers. This group
// runs after the reload group (files sort so), whose watcher it adds the
// certificate files to.
func init() {
	extensions = append(extensions, flagGroup{flags: tlsFlags, apply: applyTLS})
}

const catTLS = secSSL // Gunicorn's docs' section

func tlsFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewStringFlag(&cli.StringFlag{Name: "certfile", Category: catTLS, EnvVars: env("certfile"),
			Usage: "PEM certificate chain: every TCP bind without a prefix serves TLS (as Gunicorn's), and https:// binds (unix ones too); http:// binds stay plain"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "keyfile", Category: catTLS, EnvVars: env("keyfile"),
			Usage: "PEM private key of --certfile (default: in --certfile)"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "ca-certs", Category: catTLS, EnvVars: env("ca-certs"),
			Usage: "PEM CA certificates a client certificate must chain to (--cert-reqs 1 or 2)"}),
		altsrc.NewIntFlag(&cli.IntFlag{Name: "cert-reqs", Category: catTLS, EnvVars: env("cert-reqs"),
			Usage: "client certificates: 0 none, 1 optional (verified if given), 2 required (mutual TLS); the chain is in r.TLS"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "ciphers", Category: catTLS, EnvVars: env("ciphers"),
			Usage: "TLS 1.2 cipher suites in order, by OpenSSL or Go name, ':' or ',' between (default: Go's); TLS 1.3 suites are not configurable in Go"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "tls-min-version", Value: "1.2", Category: catTLS, EnvVars: env("tls-min-version"),
			Usage: "the oldest TLS version served: 1.0, 1.1, 1.2 or 1.3"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "ssl-version", Category: catTLS, EnvVars: env("ssl-version"),
			Usage: "Gunicorn's spelling: TLS, TLS_SERVER, SSLv23 (any version from --tls-min-version), TLSv1, TLSv1_1, TLSv1_2 (that version only), or Python's numbers"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "http2", Value: worker.HTTP2On, Category: catTLS, EnvVars: env("http2"),
			Usage: "off; on: HTTP/2 by ALPN (h2, then http/1.1) on TLS binds (-k goroutine); h2c: also cleartext HTTP/2 with prior knowledge on plain binds"}),
		altsrc.NewFloat64Flag(&cli.Float64Flag{Name: "session-ticket-rotation", Value: DefaultTicketRotationSeconds, Category: catTLS, EnvVars: env("session-ticket-rotation"),
			Usage: "seconds between new TLS session-ticket keys, which the arbiter shares with every worker; the previous key still decrypts"}),
	}
}

// DefaultTicketRotationSeconds is --session-ticket-rotation's default: an hour.
const DefaultTicketRotationSeconds = 3600

// tlsVersions are the --tls-min-version values.
var tlsVersions = map[string]uint16{"1.0": tls.VersionTLS10, "1.1": tls.VersionTLS11, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// sslVersions maps Gunicorn's --ssl-version (Python's ssl.PROTOCOL_*, by
// name or number) onto the one version it pins; 0 pins none.
var sslVersions = map[string]uint16{
	"TLS": 0, "SSLv23": 0, "TLS_SERVER": 0, "2": 0, "17": 0,
	"TLSv1": tls.VersionTLS10, "3": tls.VersionTLS10,
	"TLSv1_1": tls.VersionTLS11, "4": tls.VersionTLS11,
	"TLSv1_2": tls.VersionTLS12, "5": tls.VersionTLS12,
}

func applyTLS(c *cli.Context, s *settings) error {
	var errs problems
	wc := &s.arbiter.Worker
	certFile, keyFile, caCerts := c.String("certfile"), c.String("keyfile"), c.String("ca-certs")
	reqs := c.Int("cert-reqs")
	http2 := c.String("http2")
	if !slices.Contains(worker.HTTP2Modes, http2) {
		errs.add(fmt.Errorf("--http2 must be one of %s, got %q", strings.Join(worker.HTTP2Modes, ", "), http2))
	}
	rotation, err := seconds(c, "session-ticket-rotation")
	errs.add(err)
	if err == nil && rotation < time.Second {
		errs.add(fmt.Errorf("--session-ticket-rotation must be 1 second or more, got %v", c.Float64("session-ticket-rotation")))
	}
	if reqs < worker.CertNone || reqs > worker.CertRequired {
		errs.add(fmt.Errorf("--cert-reqs must be 0 (none), 1 (optional) or 2 (required), got %d", reqs))
	}
	t := &worker.TLSConfig{CertFile: certFile, KeyFile: keyFile, CACerts: caCerts, CertReqs: reqs, AllTCP: certFile != ""}
	if t.KeyFile == "" {
		t.KeyFile = certFile
	}
	// The workers read the files after --chdir: they get the paths as
	// they are from the directory corral was started in.
	if wd, err := os.Getwd(); err == nil {
		for _, f := range []*string{&t.CertFile, &t.KeyFile, &t.CACerts} {
			if *f != "" {
				*f = absIn(wd, *f)
			}
		}
	}
	t.MinVersion, t.MaxVersion, err = tlsVersionRange(c)
	errs.add(err)
	t.Ciphers, err = parseCiphers(c.String("ciphers"))
	errs.add(err)
	https := httpsBinds(s.arbiter.Binds)
	switch {
	case certFile == "" && len(https) > 0:
		errs.add(fmt.Errorf("-b %s serves TLS: it needs --certfile", https[0]))
	case certFile == "":
		for _, f := range []string{"keyfile", "ca-certs", "ciphers"} {
			if c.String(f) != "" {
				errs.add(fmt.Errorf("--%s needs --certfile", f))
			}
		}
		if reqs == worker.CertOptional || reqs == worker.CertRequired {
			errs.add(fmt.Errorf("--cert-reqs needs --certfile"))
		}
	case s.arbiter.Command != nil:
		errs.add(fmt.Errorf("--certfile does not apply in exec mode: the command serves its own sockets, TLS included"))
	default:
		errs.add(checkTLSFiles(c, t))
	}
	if err := errs.err(); err != nil {
		return err
	}
	wc.HTTP2 = http2
	s.arbiter.TicketRotation = rotation
	if s.arbiter.Command != nil || !knownClass(wc.Class) {
		return nil
	}
	if certFile != "" {
		wc.TLS = t
		s.watchTLS(t)
	}
	anyTLS := certFile != "" && (len(https) > 0 || tcpHTTPBind(s.arbiter.Binds))
	if err := worker.CanServe(wc.Class, anyTLS, http2); err != nil {
		return fmt.Errorf("-k %s: %v", wc.Class, err)
	}
	return nil
}

// checkTLSFiles loads the certificate, its key and the CAs as a worker
// will, so a bad file is one line at start (and at --check-config, and a
// reload that keeps the serving workers) rather than failing workers. An
// expired certificate is served, with a warning.
func checkTLSFiles(c *cli.Context, t *worker.TLSConfig) error {
	var errs problems
	if t.CertReqs != worker.CertNone && t.CACerts == "" {
		errs.add(fmt.Errorf("--cert-reqs %d needs --ca-certs, the CAs that client certificates chain to", t.CertReqs))
	}
	cert, err := worker.LoadKeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		errs.add(fmt.Errorf("--certfile/--keyfile: %v", err))
	} else if p := worker.CertificateProblem(cert, time.Now()); p != "" {
		fmt.Fprintf(c.App.ErrWriter, "%s: warning: --certfile %s: %s\n", c.App.Name, t.CertFile, p)
	}
	if t.CACerts != "" {
		if _, err := worker.LoadCAs(t.CACerts); err != nil {
			errs.add(fmt.Errorf("--ca-certs: %v", err))
		}
	}
	return errs.err()
}

// watchTLS adds the certificate, key and CA files to --reload's watch: a
// renewal rolls the workers, and one caught half-way (a key that does not
// match the certificate yet) fails the reload's check and keeps the
// serving workers until the other file lands.
func (s *settings) watchTLS(t *worker.TLSConfig) {
	if s.reload == nil {
		return
	}
	for _, f := range []string{t.CertFile, t.KeyFile, t.CACerts} {
		if f != "" && !slices.Contains(s.reload.opts.Paths, f) {
			s.reload.opts.Paths = append(s.reload.opts.Paths, f)
		}
	}
}

// tlsVersionRange is --tls-min-version, or the version --ssl-version pins.
func tlsVersionRange(c *cli.Context) (lo, hi uint16, err error) {
	lo, ok := tlsVersions[strings.TrimPrefix(c.String("tls-min-version"), "TLSv")]
	if !ok {
		return 0, 0, fmt.Errorf("--tls-min-version must be 1.0, 1.1, 1.2 or 1.3, got %q", c.String("tls-min-version"))
	}
	sv := c.String("ssl-version")
	if sv == "" {
		return lo, 0, nil
	}
	pin, ok := sslVersions[strings.TrimPrefix(sv, "PROTOCOL_")]
	switch {
	case !ok && (strings.HasPrefix(sv, "SSLv") || sv == "0" || sv == "1"):
		return 0, 0, fmt.Errorf("--ssl-version %s: SSL 2 and 3 are not served (Go's crypto/tls has neither); use --tls-min-version", sv)
	case !ok:
		return 0, 0, fmt.Errorf("--ssl-version must be TLS, TLS_SERVER, SSLv23, TLSv1, TLSv1_1 or TLSv1_2 (or Python's number), got %q; prefer --tls-min-version", sv)
	case pin != 0 && c.IsSet("tls-min-version"):
		return 0, 0, fmt.Errorf("--ssl-version %s and --tls-min-version both choose the version; keep --tls-min-version", sv)
	case pin != 0:
		return pin, pin, nil
	}
	return lo, 0, nil
}

// tls13Suites are the TLS 1.3 suites' names, which --ciphers refuses.
var tls13Suites = []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}

// opensslSuites maps OpenSSL's names of the TLS 1.2 suites Go has onto Go's.
var opensslSuites = map[string]string{
	"ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"ECDHE-RSA-AES128-GCM-SHA256":   "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"ECDHE-RSA-AES256-GCM-SHA384":   "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"ECDHE-RSA-CHACHA20-POLY1305":   "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
	"ECDHE-ECDSA-AES128-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
	"ECDHE-RSA-AES128-SHA":          "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
	"ECDHE-ECDSA-AES256-SHA":        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
	"ECDHE-RSA-AES256-SHA":          "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
	"ECDHE-ECDSA-AES128-SHA256":     "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
	"ECDHE-RSA-AES128-SHA256":       "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
	"AES128-GCM-SHA256":             "TLS_RSA_WITH_AES_128_GCM_SHA256",
	"AES256-GCM-SHA384":             "TLS_RSA_WITH_AES_256_GCM_SHA384",
	"AES128-SHA":                    "TLS_RSA_WITH_AES_128_CBC_SHA",
	"AES256-SHA":                    "TLS_RSA_WITH_AES_256_CBC_SHA",
	"AES128-SHA256":                 "TLS_RSA_WITH_AES_128_CBC_SHA256",
	"ECDHE-RSA-DES-CBC3-SHA":        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
	"DES-CBC3-SHA":                  "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
}

// parseCiphers reads --ciphers: suite names, OpenSSL's or Go's, in order.
func parseCiphers(list string) ([]uint16, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	byName := map[string]uint16{}
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		byName[cs.Name] = cs.ID
	}
	var ids []uint16
	for _, name := range strings.FieldsFunc(list, func(r rune) bool { return r == ':' || r == ',' || r == ' ' }) {
		if g, ok := opensslSuites[name]; ok {
			name = g
		}
		id, ok := byName[name]
		switch {
		case slices.Contains(tls13Suites, name):
			return nil, fmt.Errorf("--ciphers: %s is a TLS 1.3 suite; Go does not let TLS 1.3 suites be chosen (all are always on), so list TLS 1.2 suites only", name)
		case strings.ContainsAny(name, "!+@") || strings.ToUpper(name) == name && !strings.Contains(name, "-") && !strings.Contains(name, "_"):
			return nil, fmt.Errorf("--ciphers: %q is an OpenSSL cipher rule; list the suites by name (ECDHE-RSA-AES128-GCM-SHA256 or TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)", name)
		case !ok:
			return nil, fmt.Errorf("--ciphers: unknown TLS 1.2 suite %q", name)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// httpsBinds are the binds with an https:// prefix.
func httpsBinds(binds []string) []string {
	var out []string
	for _, b := range binds {
		if a, err := socket.ParseAddr(b); err == nil && a.Protocol == socket.ProtocolHTTPS {
			out = append(out, b)
		}
	}
	return out
}

// tcpHTTPBind reports whether a bind may be a TCP listener that --certfile
// makes serve TLS: one that names no protocol (an fd:// bind may be TCP).
func tcpHTTPBind(binds []string) bool {
	for _, b := range binds {
		a, err := socket.ParseAddr(b)
		if err == nil && a.Network != "unix" && a.Protocol == "" {
			return true
		}
	}
	return false
}
