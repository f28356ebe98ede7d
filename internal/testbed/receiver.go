package testbed

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Request is one webhook a Receiver got.
type Request struct {
	Path   string
	Header http.Header
	Body   []byte
	At     time.Time
}

// Receiver is a real HTTP server on loopback that records every request and answers with
// what Respond says (200 by default).
type Receiver struct {
	URL string

	mu      sync.Mutex
	reqs    []Request
	respond func(r *http.Request, n int) (status int, header http.Header)
}

// NewReceiver starts a receiver, closed when the test ends.
func NewReceiver(t testing.TB) *Receiver {
	rc := &Receiver{}
	srv := httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(srv.Close)
	rc.URL = srv.URL
	return rc
}

// Respond sets how the receiver answers; n counts earlier requests to the same path.
func (rc *Receiver) Respond(fn func(r *http.Request, n int) (int, http.Header)) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.respond = fn
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	n := 0
	for _, q := range rc.reqs {
		if q.Path == r.URL.Path {
			n++
		}
	}
	rc.reqs = append(rc.reqs, Request{Path: r.URL.Path, Header: r.Header.Clone(), Body: body, At: time.Now()})
	respond := rc.respond
	rc.mu.Unlock()
	status := http.StatusOK
	if respond != nil {
		var h http.Header
		status, h = respond(r, n)
		for k, v := range h {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(status)
}

// Requests returns what was received so far, optionally only on path.
func (rc *Receiver) Requests(path string) []Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []Request
	for _, r := range rc.reqs {
		if path == "" || r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// Wait waits until at least n requests arrived on path and returns them.
func (rc *Receiver) Wait(t testing.TB, path string, n int, timeout time.Duration) []Request {
	t.Helper()
	var got []Request
	Eventually(t, timeout, "webhooks on "+path, func() bool {
		got = rc.Requests(path)
		return len(got) >= n
	})
	return got
}
