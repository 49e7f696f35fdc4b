// Command docker is the Go handler examples/docker/Dockerfile puts in a
// FROM scratch image: an app of your own, served by corral.Main, with
// corral's whole command line (and `probe` for the image's health check).
package main

import (
	"fmt"
	"net/http"
	"os"

	"github.com/corral-server/corral"
)

func main() {
	corral.Main(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from pid %d\n", os.Getpid())
	}))
}
