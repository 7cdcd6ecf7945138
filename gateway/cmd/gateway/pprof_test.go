package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// The profiling endpoint serves CPU profiles, execution traces and the
// named profiles.
func TestPprofMuxServesProfilesAndTraces(t *testing.T) {
	srv := httptest.NewServer(pprofMux())
	defer srv.Close()
	for _, path := range []string{"/debug/pprof/trace?seconds=0.05", "/debug/pprof/profile?seconds=1", "/debug/pprof/goroutine", "/debug/pprof/"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, _ := resp.Body.Read(buf)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n == 0 {
			t.Errorf("GET %s = %d with %d bytes", path, resp.StatusCode, n)
		}
	}
}
