package worker

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"

	"github.com/corral-server/corral/socket"
	"github.com/corral-server/corral/worker/frontend"
)

// frontConfig is the Process's parsed protocol settings: one FrontEnd per
// listener, and the peers trusted to send forwarding headers.
type frontConfig struct {
	once      sync.Once
	err       error
	ends      []*frontend.FrontEnd // by listener; def for one the Config does not list
	def       *frontend.FrontEnd
	forwarded frontend.AllowList
}

// initFront parses the Config's protocol settings once; run calls it at
// boot so a bad value fails the boot.
func (p *Process) initFront() error {
	f := &p.front
	f.once.Do(func() {
		cfg := p.Config
		if cfg == nil {
			cfg = &Config{}
		}
		f.err = f.parse(cfg, p)
	})
	return f.err
}

func (f *frontConfig) parse(cfg *Config, p *Process) error {
	var errs []error
	def := &frontend.FrontEnd{Protocol: cfg.Protocol, Proxy: cfg.ProxyProtocol, Log: p.Log,
		ReadTimeout: HeaderReadTimeout, IdleTimeout: cfg.KeepAlive, Draining: p.Draining}
	if cfg.Metrics {
		def.Count, def.ParseError = p.countConn, p.ParseError
	}
	if def.Protocol == "" {
		def.Protocol = frontend.ProtocolHTTP
	}
	if !slices.Contains(frontend.Protocols, def.Protocol) {
		errs = append(errs, fmt.Errorf("unknown protocol %q", def.Protocol))
	}
	for _, in := range cfg.Listeners {
		if in.Protocol != "" && in.Protocol != socket.ProtocolHTTPS && !slices.Contains(frontend.Protocols, in.Protocol) {
			errs = append(errs, fmt.Errorf("listener %s: unknown protocol %q", in.Bind, in.Protocol))
		}
	}
	if def.Proxy == "" {
		def.Proxy = frontend.ProxyOff
	}
	if !slices.Contains(frontend.ProxyModes, def.Proxy) {
		errs = append(errs, fmt.Errorf("unknown PROXY protocol mode %q", def.Proxy))
	}
	var err error
	if def.UwsgiAllow, err = frontend.ParseAllowList(cfg.UwsgiAllowFrom); err != nil {
		errs = append(errs, fmt.Errorf("uwsgi allow list: %w", err))
	}
	if def.ProxyAllow, err = frontend.ParseAllowList(cfg.ProxyAllowFrom); err != nil {
		errs = append(errs, fmt.Errorf("proxy allow list: %w", err))
	}
	if f.forwarded, err = frontend.ParseAllowList(cfg.ForwardedAllowIPs); err != nil {
		errs = append(errs, fmt.Errorf("forwarded allow list: %w", err))
	}
	f.def = def
	for _, in := range cfg.Listeners {
		fe := def
		if in.Protocol != "" {
			own := *def
			own.Protocol = in.Protocol
			if in.Protocol == socket.ProtocolHTTPS {
				own.Protocol = frontend.ProtocolHTTP // over TLS: tls.go
			}
			fe = &own
		}
		f.ends = append(f.ends, fe)
	}
	return errors.Join(errs...)
}

// FrontEnd describes how to serve p.Listeners[i]. Every connection of the
// listener shares it.
func (p *Process) FrontEnd(i int) *frontend.FrontEnd {
	p.initFront()
	if i < len(p.front.ends) {
		return p.front.ends[i]
	}
	return p.front.def
}

// trustForwarded applies the forwarding headers of trusted peers to r.
func (p *Process) trustForwarded(r *http.Request) {
	p.initFront()
	frontend.TrustForwarded(r, p.front.forwarded)
}
