package delivery

import (
	"context"
	"sync"
)

// inflight knows the attempts this process is making, by delivery and attempt number. When a channel is lost, the
// handlers of its messages go on and the broker gives the same messages to the next session:
// without this, both would attempt the deliveries that had no outcome yet, and the receiver
// would get each twice.
type inflight struct {
	mu sync.Mutex
	m  map[attemptKey]*attemptRun
}

type attemptKey struct {
	delivery string
	attempt  int
}

// attemptRun is one attempt in flight: done closes once it ends, durable says whether its
// outcome was made durable.
type attemptRun struct {
	done    chan struct{}
	durable bool
}

// enter registers attempt number attempt of delivery id. If the same attempt is in flight, it waits for that one to end
// and reports whether its outcome is durable: then there is nothing left to do. Otherwise
// the caller attempts, and calls leave with whether its own outcome became durable.
func (f *inflight) enter(ctx context.Context, id string, attempt int) (leave func(durable bool), settled bool, err error) {
	key := attemptKey{id, attempt}
	for {
		f.mu.Lock()
		if f.m == nil {
			f.m = map[attemptKey]*attemptRun{}
		}
		run, busy := f.m[key]
		if !busy {
			run = &attemptRun{done: make(chan struct{})}
			f.m[key] = run
			f.mu.Unlock()
			return func(durable bool) {
				f.mu.Lock()
				delete(f.m, key)
				f.mu.Unlock()
				run.durable = durable
				close(run.done)
			}, false, nil
		}
		f.mu.Unlock()
		select {
		case <-run.done:
			if run.durable {
				return nil, true, nil
			}
			// Its outcome was lost: this attempt is still owed.
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}
