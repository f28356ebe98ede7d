//go:build faults

package faults

import (
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/retry"
)

// brokerPort is the port of the test broker.
func brokerPort(t *testing.T) int {
	t.Helper()
	u, err := url.Parse(testbed.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Port() == "" {
		return 5672
	}
	n, _ := strconv.Atoi(u.Port())
	return n
}

// readyWatch polls a worker process's /readyz every few milliseconds and keeps every answer,
// so that a short 503 between a lost connection and its replacement is seen.
type readyWatch struct {
	mu      sync.Mutex
	answers []readyAnswer
	stop    chan struct{}
	done    chan struct{}
}

type readyAnswer struct {
	at     time.Time
	status int
}

func watchReady(t *testing.T, p *Proc) *readyWatch {
	w := &readyWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			s := p.Ready()
			w.mu.Lock()
			w.answers = append(w.answers, readyAnswer{time.Now(), s})
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { close(w.stop); <-w.done })
	return w
}

// since returns the answers after t.
func (w *readyWatch) since(t time.Time) []readyAnswer {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []readyAnswer
	for _, a := range w.answers {
		if a.at.After(t) {
			out = append(out, a)
		}
	}
	return out
}

// outage returns how long /readyz answered 503 after t before answering 200 again, and
// whether both happened.
func (w *readyWatch) outage(t time.Time) (time.Duration, bool) {
	var down time.Time
	for _, a := range w.since(t) {
		switch {
		case a.status == http.StatusServiceUnavailable && down.IsZero():
			down = a.at
		case a.status == http.StatusOK && !down.IsZero():
			return a.at.Sub(down), true
		}
	}
	return 0, false
}

// TestCloseConnections has the broker close the worker's connections (rabbitmqctl
// close_connection) again and again while events flow. /readyz must say 503 while the
// worker is disconnected and 200 once it is back, and no delivery may be lost.
func TestCloseConnections(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 3)
	// Slow enough that attempts are in flight when the connections go.
	l.Respond(func(h Hit, r *http.Request) int { return hold(r, 15*time.Millisecond) })
	p := StartProc(t, bed, ProcOptions{})
	guardServers(t)
	ready := watchReady(t, p)
	// Events flow until the rounds are over.
	flow := l.Flow(1_000_000, 8*time.Millisecond)

	const rounds = 5
	port := brokerPort(t)
	for round := range rounds {
		before := l.Delivered()
		testbed.Eventually(t, 30*time.Second, "deliveries to go on", func() bool { return l.Delivered() > before+20 })
		conns, err := connsOfProcess(p.PID(), port)
		if err != nil {
			t.Fatal(err)
		}
		if len(conns) != workerConns {
			t.Fatalf("round %d: the worker has %d connections to the broker, want %d: %+v", round, len(conns), workerConns, conns)
		}
		mark := time.Now()
		closeConns(t, conns)
		testbed.Eventually(t, 30*time.Second, "/readyz to go 503 and back to 200", func() bool {
			_, ok := ready.outage(mark)
			return ok
		})
		d, _ := ready.outage(mark)
		t.Logf("round %d: closed %d connections; /readyz 503 for %v", round, len(conns), d.Round(time.Millisecond))
		testbed.Eventually(t, 30*time.Second, "the worker to reconnect every connection", func() bool {
			c, err := connsOfProcess(p.PID(), port)
			return err == nil && len(c) == workerConns
		})
	}
	flow.Stop()
	l.Check(t, "close_connection", 90*time.Second, Expect{DuplicatePercent: 1})
	if p.Ready() != http.StatusOK {
		t.Errorf("/readyz = %d after the faults, want 200", p.Ready())
	}
}

// TestRabbitMQRestart restarts RabbitMQ's application while deliveries are parked in the
// TTL queues of the retry ladder (the receiver fails every first attempt), and events keep
// coming. The parked deliveries must come back and succeed.
func TestRabbitMQRestart(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 2)
	ladder := retry.Ladder{4 * time.Second, 8 * time.Second}
	l.Respond(func(h Hit, r *http.Request) int {
		if h.Attempt == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	bed.StartWorker(testbed.WorkerOptions{Ladder: ladder})

	const first = 40
	for range first {
		if err := l.Publish(l.NextID()); err != nil {
			t.Fatal(err)
		}
	}
	pairs := first * len(l.Hooks)
	testbed.Eventually(t, 30*time.Second, "every first attempt failed and recorded", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE status='pending' AND attempts=1") == pairs
	})
	parked := retry.QueueName(bed.Queue, ladder[0])
	if n := bed.QueueDepth(parked); n != pairs {
		t.Fatalf("%s holds %d messages, want %d parked deliveries", parked, n, pairs)
	}

	guardServers(t)
	flow := l.Flow(100, 40*time.Millisecond)
	stopRabbitMQ(t)
	stopped := time.Now()
	// The fault lasts past the parked deliveries' TTL: they expire while the broker is down.
	<-time.After(ladder[0] + 2*time.Second)
	startRabbitMQ(t)
	t.Logf("RabbitMQ was down for %v", time.Since(stopped).Round(100*time.Millisecond))
	flow.Wait(t)
	l.Check(t, "rabbitmq restart", 2*time.Minute, Expect{DuplicatePercent: 1})
	for _, h := range l.Hits() {
		if h.Attempt > 2 {
			t.Errorf("delivery %s reached attempt %d; every delivery should succeed at attempt 2", h.DeliveryID, h.Attempt)
			break
		}
	}
}
