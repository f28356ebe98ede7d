package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/sender"
	"github.com/webhookd/webhookd/worker"
)

// runProfile drains a backlog with a worker running inside the bench process under a CPU
// profile, then prints the top of the profile for the worker's goroutines and for the whole
// process, the group-commit batch sizes, the cache hit rate and the CPU each process used.
// The receiver's goroutines are labelled role=receiver and the worker's role=worker.
func runProfile(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	n := fs.Int("n", 50_000, "events in the backlog")
	hooks := fs.Int("hooks", 1, "webhooks each event fans out to")
	slowHooks := fs.Int("slow", 0, "webhooks answering after 5 s beside them (the drain waits for the others only)")
	out := fs.String("o", "webhookd-cpu.pprof", "where to write the CPU profile")
	concurrency := fs.Int("concurrency", 128, "worker concurrency")
	prefetch := fs.Int("prefetch", 1024, "worker prefetch")
	queueType := fs.String("queue-type", "quorum", "quorum or classic")
	nodes := fs.Int("top", 30, "lines of the profile to print")
	flushers := fs.Int("flushers", 0, "group-commit flushers per kind (0: the repository's default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := newBench(ctx, *concurrency, *prefetch)
	if err != nil {
		return err
	}
	defer func() { b.cleanups.run(); os.RemoveAll(b.tmp) }()
	e, err := b.newEnv(ctx, "profile", *queueType, true)
	if err != nil {
		return err
	}
	ep, url := b.rc.endpoint("/profile", *n**hooks, 0, false)
	if err := e.addWebhooks(ctx, 1, *hooks, url); err != nil {
		return err
	}
	if *slowHooks > 0 {
		_, slowURL := b.rc.endpoint("/profile-slow", *n**slowHooks, 5*time.Second, false)
		if err := e.addWebhooks(ctx, 1, *slowHooks, slowURL); err != nil {
			return err
		}
	}
	if err := e.declare(); err != nil {
		return err
	}
	pub, err := publishBacklog(ctx, e.exchange, *n, func(i int) []byte {
		return eventBody(e.name+"-"+strconv.Itoa(i), 1, i, time.Now().UnixNano())
	})
	if err != nil {
		return err
	}
	fmt.Printf("published %d events in %v (%.0f/s)\n", *n, pub.Round(time.Millisecond), float64(*n)/pub.Seconds())

	var (
		batchMu sync.Mutex
		batches = map[string][]int{}
		hits    atomic.Int64
		misses  atomic.Int64
	)
	wctx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorker()
	done := make(chan error, 1)
	var store *repository.Store
	var snd *sender.Sender
	pprof.Do(ctx, pprof.Labels("role", "worker"), func(lctx context.Context) {
		store, err = repository.Open(lctx, e.dsn, repository.Options{
			MaxOpenConns: 16,
			Flushers:     *flushers,
			ObserveBatch: func(kind string, size int) {
				batchMu.Lock()
				batches[kind] = append(batches[kind], size)
				batchMu.Unlock()
			},
		})
		if err != nil {
			return
		}
		cache := repository.NewCache(store, 5*time.Second, nil)
		cache.Hit = func() { hits.Add(1) }
		cache.Miss = func() { misses.Add(1) }
		snd = sender.New(sender.Options{Timeout: 10 * time.Second, AllowPrivateNetworks: true, UserAgent: "webhookd/bench", MaxIdleConnsPerHost: *concurrency})
		logFile, lerr := os.Create(filepath.Join(b.tmp, "profile-worker.log"))
		if lerr != nil {
			err = lerr
			return
		}
		log := slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))
		w, werr := worker.New(worker.Config{
			AMQPURL:         amqpURL,
			Topology:        broker.Topology{Exchange: e.exchange, Queue: e.queue, QueueType: *queueType, Ladder: ladder},
			Concurrency:     *concurrency,
			Prefetch:        *prefetch,
			MaxEventBytes:   1 << 20,
			DisableAfter:    5,
			ShutdownTimeout: 5 * time.Second,
			Version:         "bench",
			Name:            e.name,
		}, store, cache, snd, log, nil)
		if werr != nil {
			err = werr
			return
		}
		f, perr := os.Create(*out)
		if perr != nil {
			err = perr
			return
		}
		if err = pprof.StartCPUProfile(f); err != nil {
			return
		}
		go func() { done <- w.Run(wctx) }()
	})
	if err != nil {
		return err
	}
	before := cpuSnapshot("", 0)
	start := time.Now()
	reached := ep.wait(ctx, drainTimeout(*n))
	span := time.Since(start)
	cpu := cpuSnapshot("", 0).since(before)
	pprof.StopCPUProfile()
	stopWorker()
	<-done
	snd.Close()
	store.Close()
	if !reached {
		return fmt.Errorf("profile: %d of %d deliveries arrived", ep.n.Load(), *n**hooks)
	}
	fmt.Printf("drained %d deliveries at %.0f/s (first to last arrival)\n", *n**hooks, ep.rate())
	fmt.Printf("CPU during the drain (%.1f s): %s\n", span.Seconds(), cpu.format(span))
	fmt.Printf("webhook cache: %d hits, %d misses\n", hits.Load(), misses.Load())
	for _, kind := range []string{"claim", "record"} {
		fmt.Printf("group commits of %s: %s\n", kind, describeBatches(batches[kind]))
	}
	for _, focus := range []string{"role=worker", ""} {
		argv := []string{"tool", "pprof", "-top", "-nodecount=" + strconv.Itoa(*nodes)}
		title := "whole process (worker, receiver, runtime)"
		if focus != "" {
			argv = append(argv, "-tagfocus="+focus)
			title = "worker goroutines only (" + focus + ")"
		}
		argv = append(argv, *out)
		fmt.Printf("\n--- CPU profile, %s: go %s\n", title, joinArgs(argv))
		cmd := exec.CommandContext(ctx, "go", argv...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Run()
	}
	return nil
}

func joinArgs(a []string) string {
	s := ""
	for i, x := range a {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s
}

// describeBatches summarises group-commit sizes: count, mean, median, p90, max, and the share
// of rows that went in batches of at least 32.
func describeBatches(sizes []int) string {
	if len(sizes) == 0 {
		return "none"
	}
	s := slices.Clone(sizes)
	sort.Ints(s)
	total, big := 0, 0
	for _, x := range s {
		total += x
		if x >= 32 {
			big += x
		}
	}
	return fmt.Sprintf("%d commits, %d rows, mean %.1f, median %d, p90 %d, max %d; %.0f%% of rows in batches ≥ 32",
		len(s), total, float64(total)/float64(len(s)), s[len(s)/2], s[len(s)*9/10], s[len(s)-1], 100*float64(big)/float64(total))
}
