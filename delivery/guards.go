package delivery

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/repository"
)

// guardsEvery is how often every worker reads the open breakers and the pauses: what another
// worker found is seen here within about that long.
const guardsEvery = time.Second

// releaseBatch is how many held deliveries one message carries when a closed breaker lets
// them go.
const releaseBatch = 100

// Guards reads what protects the receivers, shared by every worker.
type Guards interface {
	// Protection returns the open breakers and the pauses lasting beyond now.
	Protection(ctx context.Context, now time.Time) ([]repository.Breaker, []repository.Pause, error)
}

// guards is what this worker knows of the webhooks' pauses and open breakers: the database's
// rows, read every guardsEvery by RunGuards, with this worker's own findings applied at once.
// A delivery reads it with one atomic load and a lookup in maps that are empty while nothing
// is paused or open, which is all a webhook without protection pays.
type guards struct {
	cur atomic.Pointer[guardState]
	mu  sync.Mutex // writers
	// recent are this worker's findings of the last recentFor, applied again on top of each
	// read of the database: a read that began before one was committed must not undo it.
	recent []finding
}

// recentFor is how long a finding of this worker's own outweighs the database's rows.
const recentFor = 2 * guardsEvery

type finding struct {
	at    time.Time
	apply func(s *guardState)
}

type guardState struct {
	breakers map[uint64]breakerState
	pauses   map[uint64]time.Time
}

// breakerState is an open breaker as this worker knows it.
type breakerState struct {
	openedAt, probeAt time.Time
}

func (g *guards) load() *guardState {
	if s := g.cur.Load(); s != nil {
		return s
	}
	return &guardState{}
}

// replace installs what the database held at now, with this worker's recent findings.
func (g *guards) replace(bs []repository.Breaker, ps []repository.Pause, now time.Time) {
	s := &guardState{}
	if len(bs) > 0 {
		s.breakers = make(map[uint64]breakerState, len(bs))
		for _, b := range bs {
			s.breakers[b.WebhookID] = breakerState{openedAt: b.OpenedAt, probeAt: b.ProbeAt}
		}
	}
	if len(ps) > 0 {
		s.pauses = make(map[uint64]time.Time, len(ps))
		for _, p := range ps {
			s.pauses[p.WebhookID] = p.Until
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	keep := g.recent[:0]
	for _, f := range g.recent {
		if now.Sub(f.at) < recentFor {
			keep = append(keep, f)
		}
	}
	g.recent = keep
	if len(g.recent) > 0 {
		s = s.clone()
		for _, f := range g.recent {
			f.apply(s)
		}
	}
	g.cur.Store(s)
	metricPaused.Set(float64(len(ps)))
}

func (s *guardState) clone() *guardState {
	c := &guardState{breakers: make(map[uint64]breakerState, len(s.breakers)+1), pauses: make(map[uint64]time.Time, len(s.pauses)+1)}
	for k, v := range s.breakers {
		c.breakers[k] = v
	}
	for k, v := range s.pauses {
		c.pauses[k] = v
	}
	return c
}

// update applies a finding of this worker's own at now to a copy of the state and installs
// it: writes are rare (a breaker opens or closes, a webhook is paused), reads are every
// delivery's.
func (g *guards) update(now time.Time, fn func(s *guardState)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.load().clone()
	fn(s)
	g.recent = append(g.recent, finding{at: now, apply: fn})
	g.cur.Store(s)
}

func (g *guards) pause(id uint64, until, now time.Time) {
	g.update(now, func(s *guardState) {
		if until.After(s.pauses[id]) {
			s.pauses[id] = until
		}
	})
}

func (g *guards) open(id uint64, b breakerState, now time.Time) {
	g.update(now, func(s *guardState) {
		if _, ok := s.breakers[id]; !ok {
			s.breakers[id] = b
		}
	})
}

func (g *guards) close(id uint64, now time.Time) {
	g.update(now, func(s *guardState) { delete(s.breakers, id) })
}

// LoadGuards reads the open breakers and the pauses once, so that a worker starting to
// consume knows them from its first delivery. A database that does not answer within 5 s is
// left to RunGuards.
func (hd *Handler) LoadGuards(ctx context.Context) {
	now := hd.now()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if bs, ps, err := hd.store.Protection(rctx, now); err == nil {
		hd.guards.replace(bs, ps, now)
	}
}

// RunGuards reads the open breakers and the pauses every guardsEvery until ctx ends; it
// probes the open breakers whose probe is due, and lets the held deliveries of the breakers
// this worker closed go.
func (hd *Handler) RunGuards(ctx context.Context) {
	// Releases run beside the reads: a long one must not leave the guards stale.
	released := make(chan struct{})
	go func() {
		defer close(released)
		for {
			select {
			case <-ctx.Done():
				return
			case id := <-hd.releases:
				hd.release(ctx, id)
			}
		}
	}()
	defer func() { <-released }()
	t := time.NewTicker(guardsEvery)
	defer t.Stop()
	failing := false
	for {
		now := hd.now()
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		bs, ps, err := hd.store.Protection(rctx, now)
		cancel()
		switch {
		case err == nil:
			hd.guards.replace(bs, ps, now)
			failing = false
			hd.probeDue(ctx, bs, now)
		case ctx.Err() == nil && !failing:
			failing = true
			hd.log.Warn("open breakers and pauses not read; the last known apply", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeDue sends a probe through each open breaker whose probe is due: the oldest delivery
// held behind it, the probe claimed for it. A breaker nothing waits behind has its probe
// moved on all the same, and is probed by a delivery that comes due after that.
func (hd *Handler) probeDue(ctx context.Context, bs []repository.Breaker, now time.Time) {
	for _, b := range bs {
		if b.ProbeAt.After(now) || ctx.Err() != nil {
			continue
		}
		claimed, err := hd.store.ClaimProbe(ctx, b.WebhookID, hd.cfg.BreakerProbe)
		if err != nil || !claimed {
			continue
		}
		n, err := hd.releaseHeld(ctx, b.WebhookID, 1, true)
		if err != nil {
			hd.log.Warn("probe of an open breaker not sent", "webhook_id", b.WebhookID, "err", err)
		} else if n > 0 {
			hd.log.Info("probe sent through an open breaker", "webhook_id", b.WebhookID)
		}
	}
}

// release lets every delivery held behind webhook id's breaker, which this worker closed, go
// at once, the oldest first: each comes back through admission, so within the rate limit.
func (hd *Handler) release(ctx context.Context, id uint64) {
	total := 0
	for ctx.Err() == nil {
		n, err := hd.releaseHeld(ctx, id, releaseBatch, false)
		total += n
		if err != nil {
			hd.log.Warn("held deliveries not all released; they come back on their own", "webhook_id", id, "released", total, "err", err)
			return
		}
		if n < releaseBatch {
			break
		}
	}
	if total > 0 {
		hd.log.Info("breaker closed: held deliveries released", "webhook_id", id, "deliveries", total)
	}
}

// releaseHeld makes up to limit of webhook id's held deliveries due now and puts them, in one
// message, on the due queue; probe marks the one a probe was claimed for.
func (hd *Handler) releaseHeld(ctx context.Context, id uint64, limit int, probe bool) (int, error) {
	ds, err := hd.store.ReleaseHeld(ctx, id, hd.now(), limit)
	if err != nil || len(ds) == 0 {
		return 0, err
	}
	steps := len(hd.cfg.Topology.Ladder)
	ps := make([]*broker.Postponed, len(ds))
	for i, d := range ds {
		ps[i] = &broker.Postponed{
			Delivery: d.ID, Event: d.EventID, Webhook: d.WebhookID,
			Attempt: d.Attempts + 1, Step: min(d.Attempts, steps),
			Due: d.DueAt.Time.UnixMicro(), Probe: probe,
		}
	}
	msg, err := broker.PostponedMessage(ps, hd.now())
	if err != nil {
		return 0, err
	}
	pctx, cancel := context.WithTimeout(ctx, broker.PublishTimeout)
	defer cancel()
	if err := hd.pub.Publish(pctx, broker.Publishing{Key: hd.cfg.Topology.DueQueue(), Mandatory: true, Msg: msg}); err != nil {
		return 0, err
	}
	return len(ds), nil
}
