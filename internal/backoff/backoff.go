// Package backoff is capped exponential backoff with full jitter, and a wait that honours a
// context: what every reconnect and every retry against a server of the worker's uses.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff yields waits that double from 100 ms up to 10 s, each drawn at random from the upper
// half of its bound so that workers reconnecting together spread out.
type Backoff struct {
	base, max time.Duration
	n         int
}

// New returns a Backoff at its first step.
func New() *Backoff { return &Backoff{base: 100 * time.Millisecond, max: 10 * time.Second} }

// Next returns the next wait and moves one step up.
func (b *Backoff) Next() time.Duration {
	d := b.base << min(b.n, 16)
	if d > b.max || d <= 0 {
		d = b.max
	}
	b.n++
	return d/2 + rand.N(d/2+1)
}

// Reset goes back to the first step, after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Sleep waits d or until ctx ends, and reports whether the full wait happened.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
