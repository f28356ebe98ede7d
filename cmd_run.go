package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/webhookd/webhookd/admin"
	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/config"
	"github.com/webhookd/webhookd/delivery"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
	"github.com/webhookd/webhookd/sender"
	"github.com/webhookd/webhookd/worker"
)

func runMigrate(ctx context.Context, cfg config.Config, _ []string, out io.Writer) error {
	if err := repository.Migrate(ctx, cfg.MySQLDSN); err != nil {
		return err
	}
	fmt.Fprintln(out, "database migrated")
	return nil
}

func topology(cfg config.Config) broker.Topology {
	return broker.Topology{
		Exchange:  cfg.Exchange,
		Queue:     cfg.Queue,
		QueueType: cfg.QueueType,
		Ladder:    retry.Ladder(cfg.RetryDelays),
	}
}

// openStore connects to MySQL, waiting with backoff while it is away: the worker may start
// before the database.
func openStore(ctx context.Context, cfg config.Config, log interface{ Warn(string, ...any) }) (*repository.Store, error) {
	opts := repository.Options{
		MaxOpenConns: 16,
		ObserveBatch: func(kind string, n int) { delivery.MetricBatchSize.WithLabelValues(kind).Observe(float64(n)) },
	}
	wait := 200 * time.Millisecond
	for {
		store, err := repository.Open(ctx, cfg.MySQLDSN, opts)
		if err == nil {
			return store, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		log.Warn("database unavailable, retrying", "err", err, "in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		wait = min(wait*2, 10*time.Second)
	}
}

// workerGCPercent is the worker's GOGC unless the environment sets one. Its live heap is small
// (tens of MB) and its garbage plentiful (a request, a response and a rendered body per
// delivery): at Go's default of 100 the collector took about an eighth of the CPU of a drain.
const workerGCPercent = 400

func runWorker(ctx context.Context, cfg config.Config, _ []string, _ io.Writer) error {
	log := newLogger(cfg)
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(workerGCPercent)
	}
	tp, stopTracing, err := startTracing(ctx, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	// The admin server comes first: /healthz answers while the worker waits for its
	// database, and a taken port stops the worker at once.
	var ready atomic.Pointer[worker.Worker]
	isReady := func() bool {
		w := ready.Load()
		return w != nil && w.Ready()
	}
	registerReady(isReady)
	var adminLn net.Listener
	if cfg.AdminAddr != "" {
		ln, err := admin.Listen(cfg.AdminAddr)
		if err != nil {
			return fmt.Errorf("WEBHOOKD_ADMIN_ADDR: %w", err)
		}
		adminLn = ln
	}
	adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAdmin()
	adminDone := make(chan error, 1)
	if adminLn != nil {
		go func() {
			adminDone <- admin.Serve(adminCtx, adminLn, admin.Handler(isReady))
		}()
	} else {
		adminDone <- nil
	}
	defer func() { stopAdmin(); <-adminDone }()

	store, err := openStore(ctx, cfg, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the database
		}
		return err
	}
	defer store.Close()
	cache := repository.NewCache(store, cfg.CacheTTL, nil)
	cache.Hit = delivery.MetricCacheLookups.WithLabelValues("hit").Inc
	cache.Miss = delivery.MetricCacheLookups.WithLabelValues("miss").Inc
	snd := sender.New(sender.Options{
		Timeout:              cfg.HTTPTimeout,
		AllowPrivateNetworks: cfg.AllowPrivateNetworks,
		UserAgent:            "webhookd/" + version,
		MaxIdleConnsPerHost:  cfg.Concurrency,
	})
	defer snd.Close()
	w, err := worker.New(worker.Config{
		AMQPURL:         cfg.AMQPURL,
		Topology:        topology(cfg),
		Concurrency:     cfg.Concurrency,
		Prefetch:        cfg.PrefetchCount(),
		MaxEventBytes:   cfg.MaxEventBytes,
		DisableAfter:    cfg.DisableAfter,
		RepairAfter:     cfg.RepairAfter,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Version:         version,
		TracerProvider:  tp,
		BreakerAfter:    cfg.BreakerAfter,
		BreakerProbe:    cfg.BreakerProbe,
		BreakerHold:     cfg.BreakerHold,
		OutageHosts:     cfg.OutageHosts,
		OutageWindow:    cfg.OutageWindow,
	}, store, cache, snd, log, nil)
	if err != nil {
		return err
	}

	log.Info("webhookd starting", "version", version, "queue", cfg.Queue, "exchange", cfg.Exchange,
		"ladder", fmt.Sprint(cfg.RetryDelays), "concurrency", cfg.Concurrency, "admin", cfg.AdminAddr)
	ready.Store(w)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.Run(ctx) })
	g.Go(func() error { worker.NewPurge(store, cfg.Retention, log).Run(gctx); return nil })
	err = g.Wait()
	log.Info("webhookd stopped")
	return err
}
