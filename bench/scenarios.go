package main

import (
	"cmp"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"time"
)

// benchToken signs every bench webhook (and the floor's POSTs).
const benchToken = "bench-token-7f3a9c1e5b"

// drainResult is webhookd draining a backlog.
type drainResult struct {
	n         int
	rate      float64       // deliveries a second, first to last arrival
	publish   time.Duration // time to publish the backlog
	peakMB    float64       // the worker's VmHWM
	logged    int           // succeeded deliveries in the log afterwards
	claimMean float64       // mean rows per group commit of claims
	recMean   float64       // mean rows per group commit of outcomes
	cacheHit  float64       // share of webhook lookups the cache answered
	cpu       string        // CPU each process used during the drain
	cpuT      cpuTimes      // the same, per process
	rates     []float64     // every run's rate, slowest first, where the median of several is reported
}

// median runs drain rounds times and returns the run of median rate, with every run's rate:
// one drain of a few seconds on shared cores varies by a third from run to run.
func median(rounds int, drain func() (drainResult, error)) (drainResult, error) {
	var runs []drainResult
	for range max(1, rounds) {
		r, err := drain()
		if err != nil {
			return drainResult{}, err
		}
		runs = append(runs, r)
	}
	slices.SortFunc(runs, func(a, b drainResult) int { return cmp.Compare(a.rate, b.rate) })
	m := runs[len(runs)/2]
	for _, r := range runs {
		m.rates = append(m.rates, r.rate)
	}
	return m, nil
}

// floorDrain drains n events with the bare floor.
func (b *bench) floorDrain(ctx context.Context, n int) (drainResult, error) {
	e, err := b.newEnv(ctx, "floor", "quorum", false)
	if err != nil {
		return drainResult{}, err
	}
	defer e.close()
	ep, url := b.rc.endpoint("/floor", n, 0, false)
	if err := e.declare(); err != nil {
		return drainResult{}, err
	}
	pub, err := publishBacklog(ctx, e.exchange, n, func(i int) []byte {
		return eventBody(e.name+"-"+strconv.Itoa(i), 1, i, time.Now().UnixNano())
	})
	if err != nil {
		return drainResult{}, err
	}
	before, start := cpuSnapshot("", 0), time.Now()
	p, err := e.startFloor(ctx, url)
	if err != nil {
		return drainResult{}, err
	}
	defer p.stop()
	if !ep.wait(ctx, drainTimeout(n)) {
		return drainResult{}, fmt.Errorf("floor: %d of %d POSTs arrived; see %s", ep.n.Load(), n, p.log)
	}
	cpuT := cpuSnapshot("floor", p.cmd.Process.Pid).since(before)
	return drainResult{n: n, rate: ep.rate(), publish: pub, peakMB: p.peakMB(), cpu: cpuT.format(time.Since(start)), cpuT: cpuT}, nil
}

func drainTimeout(n int) time.Duration { return time.Duration(n/400+30) * time.Second }

// drain publishes a backlog of n events of one account with one webhook, then starts webhookd
// and measures how fast the deliveries arrive. policyV2 makes the classic work queue a
// version 2 classic queue through a policy (the worker's own declaration has no
// x-queue-version).
func (b *bench) drain(ctx context.Context, tag, queueType string, n int, policyV2 bool) (drainResult, error) {
	e, err := b.newEnv(ctx, tag, queueType, true)
	if err != nil {
		return drainResult{}, err
	}
	defer e.close()
	ep, url := b.rc.endpoint("/"+tag, n, 0, false)
	if err := e.addWebhooks(ctx, 1, 1, url); err != nil {
		return drainResult{}, err
	}
	if policyV2 {
		if err := e.setQueueVersionPolicy(ctx); err != nil {
			return drainResult{}, err
		}
	}
	if err := e.declare(); err != nil {
		return drainResult{}, err
	}
	pub, err := publishBacklog(ctx, e.exchange, n, func(i int) []byte {
		return eventBody(e.name+"-"+strconv.Itoa(i), 1, i, time.Now().UnixNano())
	})
	if err != nil {
		return drainResult{}, err
	}
	before, start := cpuSnapshot("", 0), time.Now()
	w, err := e.startWorker(ctx, nil)
	if err != nil {
		return drainResult{}, err
	}
	defer w.stop()
	if !ep.wait(ctx, drainTimeout(n)) {
		return drainResult{}, fmt.Errorf("%s: %d of %d deliveries arrived; see %s", tag, ep.n.Load(), n, w.log)
	}
	cpuT := cpuSnapshot("webhookd", w.cmd.Process.Pid).since(before)
	if err := w.trouble(); err != nil {
		return drainResult{}, err
	}
	r := drainResult{n: n, rate: ep.rate(), publish: pub, peakMB: w.peakMB(), cpu: cpuT.format(time.Since(start)), cpuT: cpuT}
	r.logged, err = e.waitCount(ctx, n, 30*time.Second, "SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'")
	if err != nil {
		return r, err
	}
	if m, err := w.metrics(); err == nil {
		r.claimMean = m[`webhookd_log_batch_size_sum{kind="claim"}`] / m[`webhookd_log_batch_size_count{kind="claim"}`]
		r.recMean = m[`webhookd_log_batch_size_sum{kind="record"}`] / m[`webhookd_log_batch_size_count{kind="record"}`]
		hit, miss := m[`webhookd_cache_lookups_total{result="hit"}`], m[`webhookd_cache_lookups_total{result="miss"}`]
		r.cacheHit = hit / (hit + miss)
	}
	return r, nil
}

// setQueueVersionPolicy applies queue-version 2 to the scenario's work queue alone, and
// registers the policy's removal.
func (e *env) setQueueVersionPolicy(ctx context.Context) error {
	name := e.name + "-cqv2"
	out, err := exec.CommandContext(ctx, "rabbitmqctl", "set_policy", "--apply-to", "queues", name,
		"^"+e.queue+"$", `{"queue-version":2}`).CombinedOutput()
	if err != nil {
		return fmt.Errorf("rabbitmqctl set_policy: %v: %s", err, out)
	}
	e.b.cleanups.add(func() {
		exec.Command("rabbitmqctl", "clear_policy", name).Run()
	})
	return nil
}

// steadyResult is publish-to-receipt latency at a steady rate.
type steadyResult struct {
	rate           int
	published      int
	received       int
	p50, p99, p999 time.Duration
	max            time.Duration
}

// steady publishes rate events a second for d to a running worker and measures the time from
// publish to receipt.
func (b *bench) steady(ctx context.Context, rate int, d time.Duration) (steadyResult, error) {
	e, err := b.newEnv(ctx, "steady", "quorum", true)
	if err != nil {
		return steadyResult{}, err
	}
	defer e.close()
	total := int(float64(rate) * d.Seconds())
	ep, url := b.rc.endpoint("/steady", total, 0, true)
	if err := e.addWebhooks(ctx, 1, 1, url); err != nil {
		return steadyResult{}, err
	}
	w, err := e.startWorker(ctx, nil)
	if err != nil {
		return steadyResult{}, err
	}
	defer w.stop()
	sent, err := publishSteady(ctx, e.exchange, rate, d, func(i int, sentAt int64) []byte {
		return eventBody(e.name+"-"+strconv.Itoa(i), 1, i, sentAt)
	})
	if err != nil {
		return steadyResult{}, err
	}
	ep.wait(ctx, 20*time.Second)
	if err := w.trouble(); err != nil {
		return steadyResult{}, err
	}
	p := ep.percentiles(0.5, 0.99, 0.999, 1)
	return steadyResult{rate: rate, published: sent, received: int(ep.n.Load()), p50: p[0], p99: p[1], p999: p[2], max: p[3]}, nil
}

// floorSteady is steady for the bare floor: what the broker and the receiver alone add to
// publish-to-receipt latency.
func (b *bench) floorSteady(ctx context.Context, rate int, d time.Duration) (steadyResult, error) {
	e, err := b.newEnv(ctx, "floorsteady", "quorum", false)
	if err != nil {
		return steadyResult{}, err
	}
	defer e.close()
	total := int(float64(rate) * d.Seconds())
	ep, url := b.rc.endpoint("/floor-steady", total, 0, true)
	if err := e.declare(); err != nil {
		return steadyResult{}, err
	}
	p, err := e.startFloor(ctx, url)
	if err != nil {
		return steadyResult{}, err
	}
	defer p.stop()
	sent, err := publishSteady(ctx, e.exchange, rate, d, func(i int, sentAt int64) []byte {
		return eventBody(e.name+"-"+strconv.Itoa(i), 1, i, sentAt)
	})
	if err != nil {
		return steadyResult{}, err
	}
	ep.wait(ctx, 20*time.Second)
	pc := ep.percentiles(0.5, 0.99, 0.999, 1)
	return steadyResult{rate: rate, published: sent, received: int(ep.n.Load()), p50: pc[0], p99: pc[1], p999: pc[2], max: pc[3]}, nil
}

// fanoutResult is single events fanned out to many webhooks.
type fanoutResult struct {
	events, hooks int
	rate          float64       // deliveries a second over all events
	perEvent      time.Duration // mean publish to last delivery of one event
	firstAfter    time.Duration // mean publish to first delivery of one event (claim included)
}

// fanout publishes events one at a time, each to hooks webhooks, waiting for every delivery
// of one before publishing the next.
func (b *bench) fanout(ctx context.Context, events, hooks int) (fanoutResult, error) {
	e, err := b.newEnv(ctx, "fanout", "quorum", true)
	if err != nil {
		return fanoutResult{}, err
	}
	defer e.close()
	ep, url := b.rc.endpoint("/fanout", events*hooks, 0, false)
	if err := e.addWebhooks(ctx, 2, hooks, url); err != nil {
		return fanoutResult{}, err
	}
	w, err := e.startWorker(ctx, nil)
	if err != nil {
		return fanoutResult{}, err
	}
	defer w.stop()
	var total, first time.Duration
	for i := range events {
		start := time.Now()
		_, err := publishBacklog(ctx, e.exchange, 1, func(int) []byte {
			return eventBody(e.name+"-"+strconv.Itoa(i), 2, i, time.Now().UnixNano())
		})
		if err != nil {
			return fanoutResult{}, err
		}
		deadline := time.Now().Add(30 * time.Second)
		for _, want := range []int64{int64(i*hooks + 1), int64((i + 1) * hooks)} {
			for ep.n.Load() < want {
				if time.Now().After(deadline) {
					return fanoutResult{}, fmt.Errorf("fanout: event %d: %d of %d deliveries arrived; see %s", i, ep.n.Load()-int64(i*hooks), hooks, w.log)
				}
				time.Sleep(100 * time.Microsecond)
			}
			if want == int64(i*hooks+1) {
				first += time.Since(start)
			}
		}
		total += time.Since(start)
	}
	if err := w.trouble(); err != nil {
		return fanoutResult{}, err
	}
	return fanoutResult{events: events, hooks: hooks, rate: float64(events*hooks) / total.Seconds(),
		perEvent: total / time.Duration(events), firstAfter: first / time.Duration(events)}, nil
}

// slowResult is a fast endpoint's throughput beside a slow one on the same events.
type slowResult struct {
	n             int
	slowHooks     int     // webhooks that answer slowly beside the fast one
	alone, beside float64 // the fast endpoint's deliveries a second
	// aloneMid and besideMid are the same between the quarter and three quarters of the
	// deliveries: the steady rates, without start-up and tail.
	aloneMid, besideMid float64
	besideGot           int // fast deliveries that arrived in the window beside the slow one
	window              time.Duration
	slowGot             int
	cpuAlone            string
	cpuBeside           string
}

// share is the fast endpoint's throughput beside the slow ones as a fraction of alone.
func (s slowResult) share() float64 {
	if s.alone == 0 {
		return 0
	}
	return s.beside / s.alone
}

// slow drains n events to a fast webhook alone, then n more to the fast webhook and slowHooks
// webhooks of the same account that answer after slowDelay, and compares the fast one's
// throughput.
func (b *bench) slow(ctx context.Context, name string, n, slowHooks int, slowDelay, window time.Duration) (slowResult, error) {
	e, err := b.newEnv(ctx, name, "quorum", true)
	if err != nil {
		return slowResult{}, err
	}
	defer e.close()
	if err := e.declare(); err != nil {
		return slowResult{}, err
	}
	r := slowResult{n: n, slowHooks: slowHooks, window: window}

	alone, url := b.rc.endpoint("/"+name+"-fast-alone", n, 0, false)
	if err := e.addWebhooks(ctx, 3, 1, url); err != nil {
		return r, err
	}
	body := func(phase string) func(int) []byte {
		return func(i int) []byte { return eventBody(e.name+phase+strconv.Itoa(i), 3, i, time.Now().UnixNano()) }
	}
	if _, err := publishBacklog(ctx, e.exchange, n, body("-a-")); err != nil {
		return r, err
	}
	before, start := cpuSnapshot("", 0), time.Now()
	w, err := e.startWorker(ctx, nil)
	if err != nil {
		return r, err
	}
	if !alone.wait(ctx, drainTimeout(n)) {
		w.stop()
		return r, fmt.Errorf("slow: fast endpoint alone got %d of %d; see %s", alone.n.Load(), n, w.log)
	}
	r.cpuAlone = cpuSnapshot("webhookd", w.cmd.Process.Pid).since(before).format(time.Since(start))
	if err := w.trouble(); err != nil {
		w.stop()
		return r, err
	}
	w.stop()
	r.alone, r.aloneMid = alone.rate(), alone.midRate()

	beside, url := b.rc.endpoint("/"+name+"-fast-beside", n, 0, false)
	if _, err := e.db.ExecContext(ctx, "UPDATE webhooks SET url = ? WHERE account_id = 3", url); err != nil {
		return r, err
	}
	slowEp, slowURL := b.rc.endpoint("/"+name, n*slowHooks, slowDelay, false)
	if err := e.addWebhooks(ctx, 3, slowHooks, slowURL); err != nil {
		return r, err
	}
	if _, err := publishBacklog(ctx, e.exchange, n, body("-b-")); err != nil {
		return r, err
	}
	before, start = cpuSnapshot("", 0), time.Now()
	w, err = e.startWorker(ctx, nil)
	if err != nil {
		return r, err
	}
	defer w.stop()
	reached := beside.wait(ctx, window)
	r.cpuBeside = cpuSnapshot("webhookd", w.cmd.Process.Pid).since(before).format(time.Since(start))
	if err := w.trouble(); err != nil {
		return r, err
	}
	r.besideGot = int(beside.n.Load())
	r.slowGot = int(slowEp.n.Load())
	switch {
	case reached:
		r.beside, r.besideMid = beside.rate(), beside.midRate()
	case r.besideGot > 0:
		// Not all arrived in the window: the rate from the first arrival to the window's end.
		r.beside = float64(r.besideGot) / time.Since(time.Unix(0, beside.first.Load())).Seconds()
	}
	return r, nil
}
