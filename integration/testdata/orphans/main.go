// Command orphans is an exec-mode worker (corral -- /orphans) that leaves
// orphans behind, for the container tests: GET /orphan starts a child that
// starts a grandchild and exits at once, so the grandchild is re-parented
// to PID 1 (corral, in a container), which must reap it when it exits a
// second later. It serves on the socket corral passes at fd 3.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

func main() {
	self, _ := os.Executable()
	switch {
	case len(os.Args) > 1 && os.Args[1] == "child":
		// Start the grandchild, print its pid, exit before it does.
		gc := exec.Command(self, "grandchild")
		if err := gc.Start(); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(gc.Process.Pid)
		os.Exit(0)
	case len(os.Args) > 1 && os.Args[1] == "grandchild":
		time.Sleep(time.Second)
		os.Exit(0)
	}
	l, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fd 3:", err)
		os.Exit(1)
	}
	http.HandleFunc("/orphan", func(w http.ResponseWriter, r *http.Request) {
		out, err := exec.Command(self, "child").Output()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintln(w, strings.TrimSpace(string(out)))
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok", os.Getpid()) })
	http.Serve(l, nil)
}
