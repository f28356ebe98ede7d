package worker

import (
	"context"
	"log/slog"
	"time"
)

// BreakerCounter counts the webhooks whose circuit breaker is open.
type BreakerCounter interface {
	OpenBreakers(ctx context.Context) (int, error)
}

// breakerWatch exports webhookd_breakers_open, read from the database every interval: the
// breakers are shared by every worker, so each reports the same count.
type breakerWatch struct {
	store BreakerCounter
	every time.Duration
	log   *slog.Logger
	// failing is whether the last read failed, so that an error is logged once.
	failing bool
}

func newBreakerWatch(store BreakerCounter, every time.Duration, log *slog.Logger) *breakerWatch {
	return &breakerWatch{store: store, every: every, log: log}
}

// run reads the count at once and every interval until ctx ends.
func (w *breakerWatch) run(ctx context.Context) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		n, err := w.store.OpenBreakers(qctx)
		cancel()
		switch {
		case err == nil:
			metricBreakersOpen.Set(float64(n))
			if w.failing {
				w.failing = false
				w.log.Info("open breakers counted again")
			}
		case ctx.Err() == nil && !w.failing:
			w.failing = true
			w.log.Warn("open breakers not counted", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
