package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/sender"
	"github.com/webhookd/webhookd/worker"
)

// runLatency runs a worker inside the bench process at a steady rate and splits the
// publish-to-receipt latency into stages, timing the worker's calls to the store and the
// sender (each identified by the publish timestamp in the event's data):
// publish → claim starts (broker, parsing, webhook lookup), the claim's group commit, claim
// done → POST starts (rendering, signing, waiting for a slot), the POST itself. Before the
// worker starts it times claims made alone at the same rate: the database's own commit latency.
func runLatency(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("latency", flag.ContinueOnError)
	rate := fs.Int("rate", 1000, "events a second")
	dur := fs.Duration("d", 10*time.Second, "how long to publish")
	concurrency := fs.Int("concurrency", 128, "worker concurrency")
	prefetch := fs.Int("prefetch", 1024, "worker prefetch")
	flushers := fs.Int("flushers", 0, "group-commit flushers per kind (0: the repository's default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := newBench(ctx, *concurrency, *prefetch)
	if err != nil {
		return err
	}
	defer func() { b.cleanups.run(); os.RemoveAll(b.tmp) }()
	e, err := b.newEnv(ctx, "latency", "quorum", true)
	if err != nil {
		return err
	}
	total := int(float64(*rate) * dur.Seconds())
	ep, url := b.rc.endpoint("/latency", total, 0, true)
	if err := e.addWebhooks(ctx, 1, 1, url); err != nil {
		return err
	}
	store, err := repository.Open(ctx, e.dsn, repository.Options{MaxOpenConns: 16, Flushers: *flushers})
	if err != nil {
		return err
	}
	defer store.Close()
	st := &stages{m: map[string][]time.Duration{}}
	// The database's own share: claims alone, one at a time at the same rate, before the
	// worker starts. Each is a group commit of one event, as at light load.
	if err := claimsAlone(ctx, store, st, *rate, 5*time.Second); err != nil {
		return err
	}
	snd := sender.New(sender.Options{Timeout: 10 * time.Second, AllowPrivateNetworks: true, MaxIdleConnsPerHost: *concurrency})
	logFile, err := os.Create(filepath.Join(b.tmp, "latency-worker.log"))
	if err != nil {
		return err
	}
	w, err := worker.New(worker.Config{
		AMQPURL:         amqpURL,
		Topology:        broker.Topology{Exchange: e.exchange, Queue: e.queue, QueueType: "quorum", Ladder: ladder},
		Concurrency:     *concurrency,
		Prefetch:        *prefetch,
		MaxEventBytes:   1 << 20,
		ShutdownTimeout: 5 * time.Second,
		Version:         "bench",
		Name:            e.name,
	}, timedStore{store, st}, repository.NewCache(store, 5*time.Second, nil), timedSender{snd, st},
		slog.New(slog.NewJSONHandler(logFile, nil)), nil)
	if err != nil {
		return err
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { stop(); <-done }()
	for !w.Ready() {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := publishSteady(ctx, e.exchange, *rate, *dur, func(i int, sentAt int64) []byte {
		return eventBody(e.name+"-"+strconv.Itoa(i), 1, i, sentAt)
	}); err != nil {
		return err
	}
	ep.wait(ctx, 20*time.Second)
	p := ep.percentiles(0.5, 0.9, 0.99, 0.999)
	fmt.Printf("%-34s p50 %8s  p90 %8s  p99 %8s  p99.9 %8s\n", "publish → receipt", p[0], p[1], p[2], p[3])
	st.print()
	return nil
}

type stages struct {
	mu sync.Mutex
	m  map[string][]time.Duration
}

func (s *stages) add(name string, d time.Duration) {
	s.mu.Lock()
	s.m[name] = append(s.m[name], d)
	s.mu.Unlock()
}

func (s *stages) print() {
	for _, name := range []string{"claim alone, nothing else running", "publish → claim starts", "claim (group commit)", "publish → POST starts", "POST", "record (group commit)"} {
		d := slices.Clone(s.m[name])
		slices.Sort(d)
		if len(d) == 0 {
			continue
		}
		q := func(f float64) time.Duration { return d[min(len(d)-1, int(f*float64(len(d))))] }
		fmt.Printf("%-34s p50 %8s  p90 %8s  p99 %8s  p99.9 %8s\n", name, q(0.5).Round(time.Microsecond), q(0.9).Round(time.Microsecond), q(0.99).Round(time.Microsecond), q(0.999).Round(time.Microsecond))
	}
}

// claimsAlone claims rate events a second for d, one at a time, and times each claim.
func claimsAlone(ctx context.Context, store *repository.Store, st *stages, rate int, d time.Duration) error {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	data := eventBody("alone", 1, 0, 0)
	for i := range int(float64(rate) * d.Seconds()) {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		start := time.Now()
		_, err := store.Claim(ctx, repository.Event{ID: "alone-" + strconv.Itoa(i), Name: "TASK.CREATED", AccountID: 1,
			OccurredAt: start.UTC().Format(time.RFC3339Nano), Data: data, ReceivedAt: start})
		if err != nil {
			return err
		}
		st.add("claim alone, nothing else running", time.Since(start))
	}
	return nil
}

func sentAtOf(body []byte) (time.Time, bool) {
	i := bytes.Index(body, sentAtKey)
	if i < 0 {
		return time.Time{}, false
	}
	rest := body[i+len(sentAtKey):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	ns, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return time.Unix(0, ns), err == nil
}

type timedStore struct {
	*repository.Store
	s *stages
}

func (t timedStore) Claim(ctx context.Context, ev repository.Event) (bool, error) {
	start := time.Now()
	if sent, ok := sentAtOf(ev.Data); ok {
		t.s.add("publish → claim starts", start.Sub(sent))
	}
	ok, err := t.Store.Claim(ctx, ev)
	t.s.add("claim (group commit)", time.Since(start))
	return ok, err
}

func (t timedStore) Record(ctx context.Context, o repository.Outcome) (repository.Recorded, error) {
	start := time.Now()
	rec, err := t.Store.Record(ctx, o)
	t.s.add("record (group commit)", time.Since(start))
	return rec, err
}

type timedSender struct {
	*sender.Sender
	s *stages
}

func (t timedSender) Send(ctx context.Context, req sender.Request) (sender.Response, error) {
	start := time.Now()
	if sent, ok := sentAtOf(req.Body); ok {
		t.s.add("publish → POST starts", start.Sub(sent))
	}
	res, err := t.Sender.Send(ctx, req)
	t.s.add("POST", time.Since(start))
	return res, err
}
