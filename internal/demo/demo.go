// Package demo is corral's built-in app ("corral demo"): a hello world,
// an echo of the request as the worker parsed it, and endpoints that make
// load, memory and errors on demand (/sleep, /work, /grow, /fail), for
// trying corral out and for its tests and benchmarks.
package demo

import (
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
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

// textPlain is hello's Content-Type, one slice for every response: no
// handler after hello changes the values of the header it set.
var textPlain = []string{"text/plain"}

// hello answers GET /: the Greeting.
func hello(w http.ResponseWriter, r *http.Request) {
	w.Header()["Content-Type"] = textPlain
	io.WriteString(w, Greeting)
}

// Handler returns the demo app.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", hello)
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
	mux.HandleFunc("/work", work)
	mux.HandleFunc("/grow", grow)
	mux.HandleFunc("/fail", fail)
	mux.HandleFunc("/pid", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strconv.Itoa(os.Getpid()))
	})
	// The hello world is what the benchmarks measure against servers
	// whose handler answers at once (bench/apps/gohello): it skips the
	// mux's routing, which "/{$}" would give it the same.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			hello(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
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

// Limits of the load endpoints, so one request cannot take a worker over.
const (
	maxWorkMs = 60_000
	maxGrowMB = 4096
)

// work answers /work?ms=N: it keeps a CPU busy for N milliseconds (of
// wall-clock time), as a request that computes would.
func work(w http.ResponseWriter, r *http.Request) {
	ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
	if err != nil || ms < 0 || ms > maxWorkMs {
		http.Error(w, "ms must be a whole number from 0 to "+strconv.Itoa(maxWorkMs), http.StatusBadRequest)
		return
	}
	end := time.Now().Add(time.Duration(ms) * time.Millisecond)
	x := uint64(1)
	for time.Now().Before(end) {
		for range 1000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	io.WriteString(w, "worked "+strconv.Itoa(ms)+"ms "+strconv.FormatUint(x%10, 10)+"\n")
}

// grown is the memory /grow keeps for the life of the process.
var grown struct {
	sync.Mutex
	chunks [][]byte
}

// grow answers /grow?mb=N: the process keeps N MiB more, every page
// written, so that it counts in its RSS and PSS; the answer is the total
// kept.
func grow(w http.ResponseWriter, r *http.Request) {
	mb, err := strconv.Atoi(r.URL.Query().Get("mb"))
	if err != nil || mb < 0 || mb > maxGrowMB {
		http.Error(w, "mb must be a whole number from 0 to "+strconv.Itoa(maxGrowMB), http.StatusBadRequest)
		return
	}
	b := make([]byte, mb<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	grown.Lock()
	grown.chunks = append(grown.chunks, b)
	total := 0
	for _, c := range grown.chunks {
		total += len(c)
	}
	grown.Unlock()
	io.WriteString(w, "keeping "+strconv.Itoa(total>>20)+" MiB\n")
}

// FailGenerationEnv names the environment variable that makes /fail
// always fail in one generation: with CORRAL_DEMO_FAIL_GENERATION=2, a
// worker of generation 2 (the first reload's, CORRAL_WORKER_GENERATION)
// answers every /fail with 500, whatever the rate.
const FailGenerationEnv = "CORRAL_DEMO_FAIL_GENERATION"

// fail answers /fail?rate=R: 500 with probability R (0 to 1, default 0),
// or always in the generation FailGenerationEnv names; otherwise 200.
func fail(w http.ResponseWriter, r *http.Request) {
	rate := 0.0
	if v := r.URL.Query().Get("rate"); v != "" {
		var err error
		if rate, err = strconv.ParseFloat(v, 64); err != nil || rate < 0 || rate > 1 {
			http.Error(w, "rate must be a number from 0 to 1", http.StatusBadRequest)
			return
		}
	}
	gen := os.Getenv(FailGenerationEnv)
	if (gen != "" && gen == os.Getenv("CORRAL_WORKER_GENERATION")) || rand.Float64() < rate {
		http.Error(w, "failing on purpose", http.StatusInternalServerError)
		return
	}
	io.WriteString(w, "ok\n")
}
