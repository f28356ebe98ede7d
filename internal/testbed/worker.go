package testbed

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
	"github.com/webhookd/webhookd/sender"
	"github.com/webhookd/webhookd/worker"
)

// Clock is a settable clock for the webhook cache.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts a clock at the current time.
func NewClock() *Clock { return &Clock{t: time.Now()} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// WorkerOptions tunes a test worker; zero fields take test-friendly defaults.
type WorkerOptions struct {
	Ladder          retry.Ladder  // default 200ms,400ms,600ms
	QueueType       string        // default quorum
	Concurrency     int           // default 16
	Prefetch        int           // default 2×Concurrency
	DisableAfter    int           // default 0 (never)
	HTTPTimeout     time.Duration // default 5s
	ShutdownTimeout time.Duration // default 10s
	CacheTTL        time.Duration // default 5s
	CacheClock      *Clock        // default the real clock
	MaxEventBytes   int           // default 1 MiB
	RepairAfter     time.Duration // default 15m
	Guard           bool          // keep the destination guard on
	Name            string        // connection name; default the bed's name
	// TracerProvider makes the worker's spans; default none (tracing off).
	TracerProvider trace.TracerProvider
	// WatchEvery is how often queue depths and open breakers are read; default the worker's.
	WatchEvery time.Duration
	// The receivers' protection (contract §8); default off, as in delivery.Config.
	BreakerAfter int
	BreakerProbe time.Duration
	BreakerHold  time.Duration
	OutageHosts  int
	OutageWindow time.Duration
}

// Running is a worker running in the test process.
type Running struct {
	Worker *worker.Worker
	Cache  *repository.Cache
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// DefaultLadder is the ladder of a test worker whose options name none.
var DefaultLadder = retry.Ladder{200 * time.Millisecond, 400 * time.Millisecond, 600 * time.Millisecond}

// RetryDelaysEnv is the WEBHOOKD_RETRY_DELAYS setting of a webhookd process or command on the
// bed with ladder. Each declares the retry queues of its ladder, so they are tracked for
// cleanup here.
func (b *Bed) RetryDelaysEnv(ladder retry.Ladder) string {
	b.TrackLadder(ladder)
	delays := make([]string, len(ladder))
	for i, d := range ladder {
		delays[i] = d.String()
	}
	return "WEBHOOKD_RETRY_DELAYS=" + strings.Join(delays, ",")
}

// StartWorker runs a worker on the bed's queues and waits until it consumes. It stops
// when the test ends, if not before.
func (b *Bed) StartWorker(o WorkerOptions) *Running {
	b.T.Helper()
	if o.Ladder == nil {
		o.Ladder = DefaultLadder
	}
	if o.QueueType == "" {
		o.QueueType = "quorum"
	}
	if o.Concurrency == 0 {
		o.Concurrency = 16
	}
	if o.Prefetch == 0 {
		o.Prefetch = 2 * o.Concurrency
	}
	if o.HTTPTimeout == 0 {
		o.HTTPTimeout = 5 * time.Second
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = 5 * time.Second
	}
	if o.MaxEventBytes == 0 {
		o.MaxEventBytes = 1 << 20
	}
	if o.Name == "" {
		o.Name = b.Name
	}
	b.TrackLadder(o.Ladder)
	var now func() time.Time
	if o.CacheClock != nil {
		now = o.CacheClock.Now
	}
	cache := repository.NewCache(b.Store, o.CacheTTL, now)
	snd := sender.New(sender.Options{Timeout: o.HTTPTimeout, AllowPrivateNetworks: !o.Guard, UserAgent: "webhookd/test"})
	var out io.Writer = io.Discard
	if os.Getenv("WEBHOOKD_TEST_LOG") != "" {
		out = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", b.Name)
	w, err := worker.New(worker.Config{
		AMQPURL: AMQPURL,
		Topology: broker.Topology{
			Exchange:  b.Exchange,
			Queue:     b.Queue,
			QueueType: o.QueueType,
			Ladder:    o.Ladder,
		},
		Concurrency:     o.Concurrency,
		Prefetch:        o.Prefetch,
		MaxEventBytes:   o.MaxEventBytes,
		DisableAfter:    o.DisableAfter,
		RepairAfter:     o.RepairAfter,
		ShutdownTimeout: o.ShutdownTimeout,
		Version:         "test",
		Name:            o.Name,
		TracerProvider:  o.TracerProvider,
		WatchEvery:      o.WatchEvery,
		BreakerAfter:    o.BreakerAfter,
		BreakerProbe:    o.BreakerProbe,
		BreakerHold:     o.BreakerHold,
		OutageHosts:     o.OutageHosts,
		OutageWindow:    o.OutageWindow,
	}, b.Store, cache, snd, log, nil)
	if err != nil {
		b.T.Fatalf("worker.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{Worker: w, Cache: cache, cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- w.Run(ctx)
		snd.Close()
	}()
	b.T.Cleanup(func() { r.Stop() })
	Eventually(b.T, 30*time.Second, "the worker to be ready", w.Ready)
	return r
}

// Stop shuts the worker down as SIGTERM would and returns what Run returned.
func (r *Running) Stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	return r.err
}
