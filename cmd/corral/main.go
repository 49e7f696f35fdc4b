// Command corral is the prefork server: it serves the built-in demo app,
// and its arbiter runs the workers of every type.
package main

import (
	"fmt"
	"net/http"

	"github.com/corral-server/corral/cmd"
	"github.com/corral-server/corral/internal/demo"
)

// version is set by the build: -ldflags "-X main.version=..."
var version = "dev"

func main() {
	p := &cmd.Program{
		Name:     "corral",
		Usage:    "a prefork server arbiter: one process owns the sockets, a herd of workers serves them",
		Version:  version,
		AppNames: []string{"demo"},
		Apps: func(name string) (http.Handler, error) {
			if name == "demo" {
				return demo.Handler(), nil
			}
			return nil, fmt.Errorf("unknown app %q", name)
		},
	}
	p.Main()
}
