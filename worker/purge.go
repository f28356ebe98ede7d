package worker

import (
	"context"
	"log/slog"
	"time"
)

// purgeEvery is how often the log is purged.
const purgeEvery = time.Hour

// purgeBatch is how many rows one purge statement deletes, so that no statement holds locks
// for long.
const purgeBatch = 1000

// Purger deletes log rows older than a time.
type Purger interface {
	Purge(ctx context.Context, before time.Time, batch int) (int64, error)
}

// Purge deletes log rows older than the retention, at start and hourly after.
type Purge struct {
	store     Purger
	retention time.Duration
	log       *slog.Logger
}

// NewPurge makes the purge of rows older than retention.
func NewPurge(store Purger, retention time.Duration, log *slog.Logger) *Purge {
	return &Purge{store: store, retention: retention, log: log}
}

// Run purges until ctx ends.
func (p *Purge) Run(ctx context.Context) {
	t := time.NewTicker(purgeEvery)
	defer t.Stop()
	for {
		n, err := p.store.Purge(ctx, time.Now().Add(-p.retention), purgeBatch)
		if err != nil && ctx.Err() == nil {
			p.log.Warn("purge failed", "err", err)
		} else if n > 0 {
			p.log.Info("purged old log rows", "rows", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
