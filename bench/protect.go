package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The scenarios of the receivers' protection (contract §8): a fan-out under rate limits, and
// a healthy endpoint beside one behind an open breaker.

// limitsResult is events fanned out to many webhooks, each rate-limited.
type limitsResult struct {
	hooks, events, limit int
	rate                 float64 // deliveries a second, every webhook's, first to last arrival
	ceiling              float64 // what the limits allow together
	fastestHook          float64 // the fastest webhook's own rate, first to last arrival
	cpu                  string
	cpuT                 cpuTimes
}

// limits publishes a backlog of events, each to hooks webhooks limited to limit a second,
// then starts webhookd and measures how fast the deliveries arrive against what the limits
// allow: the slots are spaced 1.2 s / (limit + limit/10) apart (delivery.rateInterval).
func (b *bench) limits(ctx context.Context, hooks, events, limit int) (limitsResult, error) {
	r := limitsResult{hooks: hooks, events: events, limit: limit}
	e, err := b.newEnv(ctx, "limits", "quorum", true)
	if err != nil {
		return r, err
	}
	defer e.close()
	eps := make([]*endpoint, hooks)
	urls := make([]string, hooks)
	for i := range hooks {
		eps[i], urls[i] = b.rc.endpoint(fmt.Sprintf("/limits-%s-%d", e.name, i), events, 0, false)
	}
	if err := e.addLimitedWebhooks(ctx, 4, urls, limit); err != nil {
		return r, err
	}
	if err := e.declare(); err != nil {
		return r, err
	}
	if _, err := publishBacklog(ctx, e.exchange, events, func(i int) []byte {
		return eventBody(e.name+"-"+strconv.Itoa(i), 4, i, time.Now().UnixNano())
	}); err != nil {
		return r, err
	}
	before, start := cpuSnapshot("", 0), time.Now()
	w, err := e.startWorker(ctx, nil)
	if err != nil {
		return r, err
	}
	defer w.stop()
	deadline := time.Now().Add(time.Duration(events/limit)*3*time.Second + time.Minute)
	var first, last int64
	for i, ep := range eps {
		if !ep.wait(ctx, time.Until(deadline)) {
			return r, fmt.Errorf("limits: webhook %d got %d of %d deliveries; see %s", i, ep.n.Load(), events, w.log)
		}
		if f := ep.first.Load(); first == 0 || f < first {
			first = f
		}
		last = max(last, ep.last.Load())
		r.fastestHook = max(r.fastestHook, ep.rate())
	}
	r.cpuT = cpuSnapshot("webhookd", w.cmd.Process.Pid).since(before)
	r.cpu = r.cpuT.format(time.Since(start))
	if err := w.trouble(); err != nil {
		return r, err
	}
	r.rate = float64(hooks*events-1) / time.Duration(last-first).Seconds()
	allowed := limit + limit/10
	r.ceiling = float64(hooks) / (1.2 / float64(allowed))
	return r, nil
}

// addLimitedWebhooks inserts a webhook of account for TASK.CREATED per url, each limited.
func (e *env) addLimitedWebhooks(ctx context.Context, account int, urls []string, limit int) error {
	for done := 0; done < len(urls); {
		batch := min(len(urls)-done, 500)
		q := "INSERT INTO webhooks (account_id, event, url, format, token, rate_limit) VALUES " +
			strings.TrimSuffix(strings.Repeat("(?,'TASK.CREATED',?,'json',?,?),", batch), ",")
		args := make([]any, 0, 4*batch)
		for _, u := range urls[done : done+batch] {
			args = append(args, account, u, benchToken, limit)
		}
		if _, err := e.db.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("insert webhooks: %w", err)
		}
		done += batch
	}
	return nil
}

// breakerRun is one drain beside a failing endpoint, with the breaker on or off.
type breakerRun struct {
	rate     float64 // the healthy endpoint's deliveries a second
	failing  int64   // requests the failing endpoint got during the drain
	took     time.Duration
	cpu      string
	cpuTotal time.Duration
}

// breakerResult compares a healthy endpoint's drain beside one that answers 503 to
// everything, with the breaker off (each failure parks a retry) and on (defaults: it opens
// after 10 failed attempts, and holds the rest).
type breakerResult struct {
	n       int
	off, on breakerRun
}

func (b *bench) breaker(ctx context.Context, n int) (breakerResult, error) {
	r := breakerResult{n: n}
	for _, on := range []bool{false, true} {
		run, err := b.breakerDrain(ctx, n, on)
		if err != nil {
			return r, err
		}
		if on {
			r.on = run
		} else {
			r.off = run
		}
	}
	return r, nil
}

func (b *bench) breakerDrain(ctx context.Context, n int, on bool) (breakerRun, error) {
	var run breakerRun
	tag := "breakeroff"
	extra := map[string]string{"BREAKER_AFTER": "0"}
	if on {
		tag, extra = "breakeron", nil
	}
	e, err := b.newEnv(ctx, tag, "quorum", true)
	if err != nil {
		return run, err
	}
	defer e.close()
	healthy, url := b.rc.endpoint("/"+e.name+"-healthy", n, 0, false)
	failing, failURL := b.rc.endpoint("/"+e.name+"-failing", n, 0, false)
	failing.status.Store(http.StatusServiceUnavailable)
	if err := e.addWebhooks(ctx, 5, 1, url); err != nil {
		return run, err
	}
	if err := e.addWebhooks(ctx, 5, 1, failURL); err != nil {
		return run, err
	}
	if err := e.declare(); err != nil {
		return run, err
	}
	if _, err := publishBacklog(ctx, e.exchange, n, func(i int) []byte {
		return eventBody(e.name+"-"+strconv.Itoa(i), 5, i, time.Now().UnixNano())
	}); err != nil {
		return run, err
	}
	before, start := cpuSnapshot("", 0), time.Now()
	w, err := e.startWorker(ctx, extra)
	if err != nil {
		return run, err
	}
	defer w.stop()
	if !healthy.wait(ctx, drainTimeout(2*n)) {
		return run, fmt.Errorf("%s: healthy endpoint got %d of %d; see %s", tag, healthy.n.Load(), n, w.log)
	}
	// Every event's two deliveries have an outcome: the failing one's retried or held.
	if _, err := e.waitCount(ctx, 2*n, time.Minute, "SELECT COUNT(*) FROM deliveries"); err != nil {
		return run, err
	}
	run.took = time.Since(start)
	cpuT := cpuSnapshot("webhookd", w.cmd.Process.Pid).since(before)
	run.cpu, run.cpuTotal = cpuT.format(run.took), cpuT.total()
	run.rate, run.failing = healthy.rate(), failing.n.Load()
	return run, w.troubleBut(`"msg":"breaker opened`)
}

// troubleBut is trouble, except for lines that contain one of expected: what the scenario
// itself makes the worker warn of.
func (p *proc) troubleBut(expected ...string) error {
	f, err := os.Open(p.log)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `"level":"WARN"`) && !strings.Contains(line, `"level":"ERROR"`) {
			continue
		}
		if slices.ContainsFunc(expected, func(e string) bool { return strings.Contains(line, e) }) {
			continue
		}
		return fmt.Errorf("webhookd logged trouble: %.300s", line)
	}
	return nil
}

// printProtect writes the rows of the protection scenarios.
func (r report) printProtect(w io.Writer) {
	if l := r.limits; l.hooks > 0 {
		fmt.Fprintf(w, "| webhookd: %s webhooks each limited to %d/s, a backlog of %d events each (fan-out under limits) | **%s deliveries/s** (the limits allow %s/s; fastest webhook %.2f/s) | — | — |\n",
			num(float64(l.hooks)), l.limit, l.events, num(l.rate), num(l.ceiling), l.fastestHook)
	}
	if b := r.breaker; b.n > 0 {
		fmt.Fprintf(w, "| webhookd: healthy endpoint beside one answering 503, %s events (breaker on / off) | **%s/s** / %s/s; the failing one got **%s** / %s requests | — | — |\n",
			num(float64(b.n)), num(b.on.rate), num(b.off.rate), num(float64(b.on.failing)), num(float64(b.off.failing)))
	}
}

// printProtectDetail writes what the protection scenarios cost.
func (r report) printProtectDetail(w io.Writer) {
	if l := r.limits; l.hooks > 0 {
		fmt.Fprintf(w, "Fan-out under limits: CPU %s; %s per delivery in all (a reservation per delivery).\n",
			l.cpu, us(l.cpuT.total(), l.hooks*l.events))
	}
	if b := r.breaker; b.n > 0 {
		fmt.Fprintf(w, "Beside a failing endpoint, %s events to each: breaker on, drained in %v, CPU %s (%s per event); breaker off, drained in %v, CPU %s (%s per event).\n",
			num(float64(b.n)), b.on.took.Round(10*time.Millisecond), b.on.cpu, us(b.on.cpuTotal, b.n),
			b.off.took.Round(10*time.Millisecond), b.off.cpu, us(b.off.cpuTotal, b.n))
	}
}
