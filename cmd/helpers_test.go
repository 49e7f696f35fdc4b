package cmd

import "net/http"

// testProgram is a Program whose every app is a 404 handler, "demo" by
// default, for the tests that load command lines.
func testProgram() *Program {
	return &Program{
		Name:       "corral",
		Apps:       func(string) (http.Handler, error) { return http.NotFoundHandler(), nil },
		DefaultApp: "demo",
	}
}
