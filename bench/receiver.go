package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// receiver is the webhook endpoint of every scenario: one keep-alive HTTP server on loopback
// with an endpoint per path. It counts what arrives, notes the first and last arrival, and,
// where asked, the latency from the publish timestamp the event carries (data.sentAt, Unix
// nanoseconds) to the arrival.
type receiver struct {
	url string
	srv *http.Server

	mu  sync.RWMutex
	eps map[string]*endpoint
}

// endpoint is one path of the receiver.
type endpoint struct {
	// delay is how long the endpoint takes to answer (the slow endpoint).
	delay time.Duration
	// status, if set, is what the endpoint answers instead of 200 (the failing endpoint).
	status atomic.Int32

	n           atomic.Int64
	first, last atomic.Int64 // Unix nanoseconds of the first and last arrival

	target  int64
	reached chan struct{}
	// q1 and q3 are when the target/4-th and 3·target/4-th arrivals came (Unix nanoseconds).
	q1, q3 atomic.Int64
	once   sync.Once

	latMu sync.Mutex
	lat   []time.Duration // nil: latencies are not recorded
}

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("receiver: listen: %w", err)
	}
	rc := &receiver{url: "http://" + ln.Addr().String(), eps: map[string]*endpoint{}}
	rc.srv = &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	go func() {
		// Connection goroutines inherit the label, which tells the receiver's CPU from the
		// worker's in the profile mode's CPU profile.
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("role", "receiver")))
		if err := rc.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			fmt.Printf("receiver: %v\n", err)
		}
	}()
	return rc, nil
}

func (rc *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rc.srv.Shutdown(ctx)
	rc.srv.Close()
}

// endpoint makes a new endpoint on path that closes its reached channel on the target-th
// arrival, and returns its URL.
func (rc *receiver) endpoint(path string, target int, delay time.Duration, latencies bool) (*endpoint, string) {
	ep := &endpoint{delay: delay, target: int64(target), reached: make(chan struct{})}
	if latencies {
		ep.lat = make([]time.Duration, 0, target)
	}
	rc.mu.Lock()
	rc.eps[path] = ep
	rc.mu.Unlock()
	return ep, rc.url + path
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	rc.mu.RLock()
	ep := rc.eps[r.URL.Path]
	rc.mu.RUnlock()
	buf := bodyPool.Get().(*bytes.Buffer)
	buf.Reset()
	_, err := buf.ReadFrom(io.LimitReader(r.Body, 4<<20))
	if ep == nil || err != nil {
		bodyPool.Put(buf)
		w.WriteHeader(http.StatusNotFound)
		return
	}
	ep.note(at, buf.Bytes())
	bodyPool.Put(buf)
	if s := ep.status.Load(); s != 0 {
		w.WriteHeader(int(s))
		return
	}
	if ep.delay > 0 {
		t := time.NewTimer(ep.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

var sentAtKey = []byte(`"sentAt":`)

func (ep *endpoint) note(at time.Time, body []byte) {
	ns := at.UnixNano()
	ep.first.CompareAndSwap(0, ns)
	for {
		last := ep.last.Load()
		if ns <= last || ep.last.CompareAndSwap(last, ns) {
			break
		}
	}
	if ep.lat != nil {
		if i := bytes.Index(body, sentAtKey); i >= 0 {
			rest := body[i+len(sentAtKey):]
			j := 0
			for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
				j++
			}
			if sent, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil {
				ep.latMu.Lock()
				ep.lat = append(ep.lat, time.Duration(ns-sent))
				ep.latMu.Unlock()
			}
		}
	}
	switch ep.n.Add(1) {
	case ep.target / 4:
		ep.q1.Store(ns)
	case 3 * ep.target / 4:
		ep.q3.Store(ns)
	}
	if ep.n.Load() == ep.target {
		ep.once.Do(func() { close(ep.reached) })
	}
}

// wait waits until the endpoint has its target arrivals, ctx ends or timeout passes, and
// reports whether the target was reached.
func (ep *endpoint) wait(ctx context.Context, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ep.reached:
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

// rate is arrivals per second between the first and the last arrival.
func (ep *endpoint) rate() float64 {
	n := ep.n.Load()
	span := time.Duration(ep.last.Load() - ep.first.Load())
	if n < 2 || span <= 0 {
		return 0
	}
	return float64(n-1) / span.Seconds()
}

// midRate is arrivals per second between the quarter and three quarters of the target: the
// steady rate, without the start and the tail.
func (ep *endpoint) midRate() float64 {
	q1, q3 := ep.q1.Load(), ep.q3.Load()
	if q1 == 0 || q3 <= q1 {
		return 0
	}
	return float64(3*ep.target/4-ep.target/4) / time.Duration(q3-q1).Seconds()
}

// span is the time from the first to the last arrival.
func (ep *endpoint) span() time.Duration { return time.Duration(ep.last.Load() - ep.first.Load()) }

// percentiles returns the latencies at the given quantiles (0..1).
func (ep *endpoint) percentiles(qs ...float64) []time.Duration {
	ep.latMu.Lock()
	lat := slices.Clone(ep.lat)
	ep.latMu.Unlock()
	slices.Sort(lat)
	out := make([]time.Duration, len(qs))
	if len(lat) == 0 {
		return out
	}
	for i, q := range qs {
		k := int(q*float64(len(lat))+0.5) - 1
		out[i] = lat[max(0, min(k, len(lat)-1))]
	}
	return out
}
