package cmd

import (
	"fmt"
	"slices"
	"strings"

	"github.com/corral-server/corral/socket"
	"github.com/corral-server/corral/worker/frontend"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// The front-end flags: which wire protocol the listeners speak (behind
// nginx's proxy_pass, uwsgi_pass or fastcgi_pass), the PROXY protocol, and
// which peers are trusted to tell who the client is.
func init() {
	extensions = append(extensions, flagGroup{flags: protocolFlags, apply: applyProtocol})
}

const catFrontEnd = "Front End (nginx, PROXY protocol)"

var loopback = []string{"127.0.0.1", "::1"}

func protocolFlags() []cli.Flag {
	return []cli.Flag{
		altsrc.NewStringFlag(&cli.StringFlag{Name: "protocol", Value: frontend.ProtocolHTTP, Category: catFrontEnd, EnvVars: env("protocol"),
			Usage: "what the listeners speak: http, uwsgi (nginx uwsgi_pass) or fastcgi (nginx fastcgi_pass); a bind's own prefix wins (-b uwsgi://127.0.0.1:3031)"}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "uwsgi-allow-from", Value: cli.NewStringSlice(loopback...), Category: catFrontEnd, EnvVars: env("uwsgi-allow-from"),
			Usage: "peers allowed to speak uwsgi or FastCGI: IPs or networks, comma-separated, * for all; unix socket peers always are"}),
		altsrc.NewStringFlag(&cli.StringFlag{Name: "proxy-protocol", Value: frontend.ProxyOff, Category: catFrontEnd, EnvVars: env("proxy-protocol"),
			Usage: "PROXY protocol header before each connection's first request: off, v1, v2 or auto (either, or none)"}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "proxy-allow-from", Value: cli.NewStringSlice(loopback...), Category: catFrontEnd, EnvVars: env("proxy-allow-from"),
			Usage: "peers allowed to send a PROXY header: IPs or networks, comma-separated, * for all"}),
		altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "forwarded-allow-ips", Value: cli.NewStringSlice(loopback...), Category: catFrontEnd, EnvVars: env("forwarded-allow-ips"),
			Usage: "peers whose X-Forwarded-For, X-Forwarded-Proto and Forwarded headers are trusted: IPs or networks, comma-separated, * for all"}),
	}
}

// applyProtocol validates the front-end flags into the worker's Config.
// With --protocol other than http, binds that name no protocol get it as
// their prefix, so the log says "Listening at: uwsgi://...".
func applyProtocol(c *cli.Context, s *settings) error {
	wc := &s.arbiter.Worker
	var errs problems
	proto := c.String("protocol")
	if !slices.Contains(socket.Protocols, proto) {
		errs.add(fmt.Errorf("--protocol must be one of %s, got %q", strings.Join(socket.Protocols, ", "), proto))
	}
	mode := c.String("proxy-protocol")
	if !slices.Contains(frontend.ProxyModes, mode) {
		errs.add(fmt.Errorf("--proxy-protocol must be one of %s, got %q", strings.Join(frontend.ProxyModes, ", "), mode))
	}
	lists := map[string]*[]string{
		"uwsgi-allow-from":    &wc.UwsgiAllowFrom,
		"proxy-allow-from":    &wc.ProxyAllowFrom,
		"forwarded-allow-ips": &wc.ForwardedAllowIPs,
	}
	for _, name := range []string{"uwsgi-allow-from", "proxy-allow-from", "forwarded-allow-ips"} {
		items := splitList(c.StringSlice(name))
		if _, err := frontend.ParseAllowList(items); err != nil {
			errs.add(fmt.Errorf("--%s: %v", name, err))
		}
		*lists[name] = items
	}
	if err := errs.err(); err != nil {
		return err
	}
	wc.Protocol, wc.ProxyProtocol = proto, mode
	if proto != frontend.ProtocolHTTP {
		s.arbiter.Binds = slices.Clone(s.arbiter.Binds)
		for i, b := range s.arbiter.Binds {
			if a, err := socket.ParseAddr(b); err == nil && a.Protocol == "" {
				s.arbiter.Binds[i] = proto + "://" + b
			}
		}
	}
	return nil
}

// splitList flattens comma-separated items: a TOML string "a,b" and the
// environment's "a,b" mean the same as a list.
func splitList(items []string) []string {
	var out []string
	for _, it := range items {
		for _, s := range strings.Split(it, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
