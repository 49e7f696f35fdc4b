package cmd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// probeTimeout bounds a probe: Docker's HEALTHCHECK runs it every interval
// and counts a hung one as a failure anyway.
const probeTimeout = 3 * time.Second

// probe is `corral probe [URL]`: a health check for an image that has no
// curl (FROM scratch). It GETs the URL (http, loopback in practice), by
// default /readyz at $CORRAL_METRICS_BIND, which a container's health
// check shares with the server it checks, and exits 0 on a 2xx answer, 1
// on any other answer or none, with a line that says why, and 2 on bad
// usage.
func (p *Program) probe(args []string) int {
	if len(args) == 0 {
		if bind := os.Getenv(envName("metrics-bind")); bind != "" {
			args = []string{readyzURL(bind)}
		}
	}
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		return p.fail(ExitUsage, errors.New("usage: "+p.Name+" probe [URL] (e.g. http://127.0.0.1:9100/readyz; default: /readyz at $"+envName("metrics-bind")+")"))
	}
	u, err := url.Parse(args[0])
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return p.fail(ExitUsage, fmt.Errorf("probe: want an http:// URL, got %q", args[0]))
	}
	c := &http.Client{Timeout: probeTimeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := c.Get(u.String())
	if err != nil {
		return p.fail(ExitError, fmt.Errorf("probe %s: %v", u, err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	line := strings.TrimSpace(string(body))
	if resp.StatusCode/100 != 2 {
		return p.fail(ExitError, fmt.Errorf("probe %s: %s: %s", u, resp.Status, line))
	}
	fmt.Fprintf(os.Stdout, "%s: %s\n", resp.Status, line)
	return ExitOK
}

// readyzURL is /readyz at a --metrics-bind address, a wildcard host
// reached on loopback.
func readyzURL(bind string) string {
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return "http://" + bind + "/readyz"
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/readyz"
}
