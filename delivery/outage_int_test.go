package delivery_test

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/retry"
)

// hostReceiver is a receiver on a loopback address of its own (127.0.0.x), answering 200,
// that can stop, refusing connections, and start again on the same address.
type hostReceiver struct {
	t    *testing.T
	addr string
	got  atomic.Int64
	mu   sync.Mutex
	srv  *http.Server
}

func newHostReceiver(t *testing.T, ip string) *hostReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	r := &hostReceiver{t: t, addr: ln.Addr().String()}
	r.serve(ln)
	t.Cleanup(r.stop)
	return r
}

func (r *hostReceiver) URL() string { return "http://" + r.addr + "/hook" }

func (r *hostReceiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { r.got.Add(1) })}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go srv.Serve(ln)
}

// stop closes the listener and every connection: connections are refused from now on.
func (r *hostReceiver) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		r.srv.Close()
		r.srv = nil
	}
}

// start listens on the same address again.
func (r *hostReceiver) start() {
	r.t.Helper()
	var ln net.Listener
	testbed.Eventually(r.t, 10*time.Second, "listening on "+r.addr+" again", func() bool {
		var err error
		ln, err = net.Listen("tcp", r.addr)
		return err == nil
	})
	r.serve(ln)
}

// TestOwnOutageSetAside: six receivers on their own loopback addresses take a stream of
// events; all of them refuse connections for a while, as when the worker's own network goes.
// The worker takes it for its outage: /readyz drops, and the attempts of that time are set
// aside, so that nothing fails, no breaker opens and nothing is disabled, although each
// webhook would have been disabled twice over by DISABLE_AFTER and its breaker opened by
// BREAKER_AFTER. When the receivers are back, everything is delivered.
func TestOwnOutageSetAside(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	var rs []*hostReceiver
	for i := range 6 {
		r := newHostReceiver(t, fmt.Sprintf("127.0.0.%d", 2+i))
		rs = append(rs, r)
		bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: r.URL()})
	}
	w := bed.StartWorker(testbed.WorkerOptions{Ladder: retry.Ladder{200 * time.Millisecond, 400 * time.Millisecond},
		DisableAfter: 2, BreakerAfter: 3, BreakerProbe: time.Second, OutageHosts: 5, OutageWindow: 2 * time.Second})
	var readyDropped atomic.Bool
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopWatch:
				return
			case <-tick.C:
				if !w.Worker.Ready() {
					readyDropped.Store(true)
				}
			}
		}
	}()
	const events = 100
	pace := time.NewTicker(100 * time.Millisecond) // the stream's pace
	defer pace.Stop()
	outage := time.Time{}
	for i := range events {
		switch i {
		case 20:
			for _, r := range rs {
				r.stop()
			}
			outage = time.Now()
		case 80:
			testbed.Eventually(t, wait, "the worker to see its outage", func() bool { return !w.Worker.Ready() })
			for _, r := range rs {
				r.start()
			}
			t.Logf("receivers refused connections for %v", time.Since(outage).Round(time.Millisecond))
		}
		bed.PublishEvent("TASK.CREATED", testbed.Event(fmt.Sprintf("o-%03d", i), "TASK.CREATED", 1, ""))
		<-pace.C
	}
	testbed.Eventually(t, time.Minute, "every delivery to succeed", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'") == events*len(rs)
	})
	testbed.Eventually(t, wait, "the worker ready again", w.Worker.Ready)
	close(stopWatch)
	<-watched
	if !readyDropped.Load() {
		t.Error("/readyz never dropped during the outage")
	}
	if n := bed.Count("SELECT COUNT(*) FROM deliveries WHERE status = 'failed'"); n != 0 {
		t.Errorf("%d deliveries failed, want none", n)
	}
	if n := bed.Count("SELECT COUNT(*) FROM webhooks WHERE enabled = 0 OR consecutive_failures > 0"); n != 0 {
		t.Errorf("%d webhooks disabled or with failures in a row, want none", n)
	}
	if n := bed.Count("SELECT COUNT(*) FROM breakers"); n != 0 {
		t.Errorf("%d breakers open, want none", n)
	}
	counted := bed.Count("SELECT COUNT(*) FROM attempts WHERE status_code IS NULL")
	t.Logf("%d deliveries to %d hosts; attempts logged as failed at the connection level (before the outage was known): %d",
		events*len(rs), len(rs), counted)
}

// TestOneHostDownIsItsOwn: a receiver that refuses connections while others answer, or alone
// with nothing else to deliver, is that webhook's failure, as before: its deliveries fail
// through the ladder and DISABLE_AFTER disables it.
func TestOneHostDownIsItsOwn(t *testing.T) {
	t.Parallel()
	for _, beside := range []bool{true, false} {
		t.Run(fmt.Sprintf("beside others %v", beside), func(t *testing.T) {
			t.Parallel()
			bed := testbed.New(t)
			down := newHostReceiver(t, "127.0.0.9")
			down.stop()
			hook := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: down.URL()})
			if beside {
				for i := range 5 {
					r := newHostReceiver(t, fmt.Sprintf("127.0.0.%d", 10+i))
					bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: r.URL()})
				}
			}
			bed.StartWorker(testbed.WorkerOptions{Ladder: retry.Ladder{100 * time.Millisecond, 100 * time.Millisecond},
				DisableAfter: 2, OutageHosts: 5, OutageWindow: 2 * time.Second})
			ns := watchNotices(t, bed, "http://"+down.addr)
			for i := range 3 {
				bed.PublishEvent("TASK.CREATED", testbed.Event(fmt.Sprintf("d-%d", i), "TASK.CREATED", 1, ""))
			}
			testbed.Eventually(t, 30*time.Second, "the webhook disabled", func() bool {
				return bed.Count("SELECT COUNT(*) FROM webhooks WHERE id = ? AND enabled = 0", hook) == 1
			})
			ns.wait(wait, broker.NotificationDisabled)
			if n := bed.Count("SELECT COUNT(*) FROM deliveries WHERE webhook_id = ? AND status = 'failed' AND attempts = 3", hook); n < 2 {
				t.Errorf("%d deliveries failed after the whole ladder, want at least DISABLE_AFTER 2", n)
			}
		})
	}
}
