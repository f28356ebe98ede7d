package sender

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Receivers that misbehave on purpose. Each attempt must end, with an error where no complete
// answer came, inside the timeout plus some slack. Elapsed times are logged (go test -v); they
// are asserted only loosely, at three times the timeout, as a guard against hangs, because
// shared CI machines make tight timing flaky.

const hostileTimeout = time.Second

func sendTimed(t *testing.T, s *Sender, url string) (Response, error, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := s.Send(context.Background(), Request{URL: url, Body: []byte(`{"event":"TASK.CREATED"}`)})
	elapsed := time.Since(start)
	t.Logf("elapsed %v (timeout %v); status %d, %d body bytes; err: %v", elapsed, hostileTimeout, resp.StatusCode, len(resp.Body), err)
	if elapsed > 3*hostileTimeout {
		t.Errorf("attempt took %v, more than 3x the %v timeout", elapsed, hostileTimeout)
	}
	return resp, err, elapsed
}

func hostileSender(t *testing.T) *Sender {
	return newSender(t, Options{AllowPrivateNetworks: true, Timeout: hostileTimeout})
}

func TestHostileHangsBeforeHeaders(t *testing.T) {
	t.Parallel()
	srv := newServer(t, hang)
	resp, err, _ := sendTimed(t, hostileSender(t), srv.URL)
	if err == nil || resp.StatusCode != 0 {
		t.Errorf("Send = %d, %v; want status 0 and a timeout error", resp.StatusCode, err)
	}
}

func TestHostileHangsAfterHeaders(t *testing.T) {
	t.Parallel()
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		drain(r)
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	resp, err, _ := sendTimed(t, hostileSender(t), srv.URL)
	if err == nil || !strings.Contains(err.Error(), "read response body") {
		t.Errorf("Send = %d, %v; want a body read error", resp.StatusCode, err)
	}
}

func TestHostileTricklesBody(t *testing.T) {
	t.Parallel()
	var sent atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		drain(r)
		w.WriteHeader(http.StatusOK)
		tick := time.NewTicker(100 * time.Millisecond) // pacing the receiver, not synchronising
		defer tick.Stop()
		for {
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			sent.Add(1)
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	})
	resp, err, _ := sendTimed(t, hostileSender(t), srv.URL)
	if err == nil {
		t.Errorf("Send = %d with %d body bytes and no error; want a timeout while reading the body", resp.StatusCode, len(resp.Body))
	}
	t.Logf("receiver trickled %d bytes before the attempt ended", sent.Load())
}

func TestHostileHugeBody(t *testing.T) {
	t.Parallel()
	const size = 100 << 20
	var written atomic.Int64
	finished := make(chan struct{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		defer close(finished)
		drain(r)
		w.Header().Set("Content-Length", strconv.Itoa(size))
		chunk := bytes.Repeat([]byte("A"), 32<<10)
		for written.Load() < size {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	s := newSender(t, Options{AllowPrivateNetworks: true}) // default 10s: the cut-off, not the timeout, must end it
	start := time.Now()
	resp, err := s.Send(context.Background(), Request{URL: srv.URL})
	elapsed := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("Send = %d, %v; want 200", resp.StatusCode, err)
	}
	if len(resp.Body) > maxKeptBytes {
		t.Errorf("kept %d body bytes, want at most %d", len(resp.Body), maxKeptBytes)
	}
	// The receiver stops once its writes fail, which happens when we close instead of draining.
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatalf("receiver still writing 10s after Send returned: %d bytes so far", written.Load())
	}
	t.Logf("Send returned after %v; receiver managed to write %d bytes (%.1f%% of %d) before the connection was closed",
		elapsed, written.Load(), 100*float64(written.Load())/size, size)
	// Kernel socket buffers absorb some megabytes whatever we read; the point is that nobody
	// read the other 90-odd.
	if w := written.Load(); w > size/4 {
		t.Errorf("receiver wrote %d of %d bytes: the body was drained, not cut off", w, size)
	}
}

// TestHostileRedirectToLoopback runs with the guard off, so only the no-redirect rule stands
// between the receiver and the canary.
func TestHostileRedirectToLoopback(t *testing.T) {
	t.Parallel()
	c := newCanary(t, "tcp4", "127.0.0.1:0")
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		drain(r)
		http.Redirect(w, r, c.srv.URL+"/admin", http.StatusFound)
	})
	resp, err, _ := sendTimed(t, hostileSender(t), srv.URL)
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Errorf("Send = %d, %v; want 302 and no error", resp.StatusCode, err)
	}
	if n := c.hits.Load(); n != 0 {
		t.Errorf("canary got %d requests, want 0: the redirect was followed", n)
	}
}

func TestHostileSelfSignedTLS(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // "remote error: bad certificate" is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	resp, err, _ := sendTimed(t, hostileSender(t), srv.URL)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Send = %d, %v; want a certificate error", resp.StatusCode, err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("server with an untrusted certificate got %d requests, want 0", n)
	}
}
