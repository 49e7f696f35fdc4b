// Package demo is corral's built-in app ("corral demo"): a hello world,
// an echo of the request as the worker parsed it, and a slow endpoint, for
// trying corral out and for its tests and benchmarks.
package demo

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Greeting is what GET / answers. It is a variable so a build can change it
// (go build -ldflags "-X github.com/corral-server/corral/internal/demo.Greeting=Hi"),
// which the reload tests use to tell two binaries apart.
var Greeting = "Hello, World!"

// Echo is the JSON that /echo answers.
type Echo struct {
	Method     string      `json:"method"`
	Target     string      `json:"target"`
	Path       string      `json:"path"`
	Query      string      `json:"query"`
	Version    string      `json:"version"`
	Host       string      `json:"host"`
	RemoteAddr string      `json:"remote_addr"`
	Headers    [][2]string `json:"headers"`
	Body       string      `json:"body"`
	BodyLength int         `json:"body_length"`
	Pid        int         `json:"pid"`
	TLS        *EchoTLS    `json:"tls,omitempty"`
}

// HeaderOrder, when a worker type knows the order in which the headers
// arrived, lists them in that order. net/http's map keeps none, so without
// it /echo lists headers sorted by name.
type HeaderOrder interface{ HeaderOrder() [][2]string }

// Handler returns the demo app.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, Greeting)
	})
	mux.HandleFunc("/echo", echo)
	// /echo under any prefix too (/app/echo), for an app that a front end
	// mounts under one and passes the whole path (see
	// frontend.RequestFromVars).
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/echo") {
			http.NotFound(w, r)
			return
		}
		echo(w, r)
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		s, err := strconv.ParseFloat(r.URL.Query().Get("seconds"), 64)
		if err != nil || s < 0 || s > 3600 {
			http.Error(w, "seconds must be a number from 0 to 3600", http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(time.Duration(s * float64(time.Second))):
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "slept "+strconv.FormatFloat(s, 'f', -1, 64)+"s\n")
	})
	mux.HandleFunc("/pid", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strconv.Itoa(os.Getpid()))
	})
	return mux
}

func echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	e := Echo{
		Method: r.Method, Target: r.RequestURI, Path: r.URL.Path, Query: r.URL.RawQuery,
		Version: r.Proto, Host: r.Host, RemoteAddr: r.RemoteAddr,
		Body: string(body), BodyLength: len(body), Pid: os.Getpid(), TLS: echoTLS(r),
	}
	if o, ok := r.Body.(HeaderOrder); ok {
		e.Headers = o.HeaderOrder()
	} else {
		keys := make([]string, 0, len(r.Header))
		for k := range r.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			for _, v := range r.Header[k] {
				e.Headers = append(e.Headers, [2]string{k, v})
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(e)
}
