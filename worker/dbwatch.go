package worker

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// Pinger checks that the database answers.
type Pinger interface {
	Ping(ctx context.Context) error
}

// dbWatch knows whether the database is away. Handlers tell it of errors of the database
// itself; it pings every second so that it also sees the database come back, and go, while no
// message arrives. While it says down, the consumer takes no message and /readyz says 503.
type dbWatch struct {
	db     Pinger
	log    *slog.Logger
	isDown atomic.Bool
}

func newDBWatch(db Pinger, log *slog.Logger) *dbWatch { return &dbWatch{db: db, log: log} }

// down reports whether the database was last seen away.
func (w *dbWatch) down() bool { return w.isDown.Load() }

// failed marks the database as away after an error of the database itself.
func (w *dbWatch) failed(err error) {
	if !w.isDown.Swap(true) {
		w.log.Error("database unavailable: pausing consumption", "err", err)
	}
}

// run pings the database every second until ctx ends.
func (w *dbWatch) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := w.db.Ping(pctx)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			w.failed(err)
		case err == nil && w.isDown.Swap(false):
			w.log.Info("database back: resuming consumption")
		}
	}
}
