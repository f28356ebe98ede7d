// Package retry decides what happens to a delivery after an attempt: it succeeded, it waits in
// one of the ladder's TTL queues for another attempt, it failed for good, or it failed and its
// webhook is disabled (Decide). It knows nothing of payloads or brokers; the consumer asks it
// where a delivery goes next and the queue names to declare.
package retry

import (
	"errors"
	"slices"
	"strings"
	"time"
)

// Ladder is the list of waits after failed attempts: after the k-th failed step a delivery
// waits Ladder[k-1]; once every step is used the delivery has failed.
type Ladder []time.Duration

// Plan is where a delivery goes after a failed attempt.
type Plan struct {
	// Final is true when the delivery has failed for good.
	Final bool
	// Delay is the wait before the next attempt when not Final.
	Delay time.Duration
	// Step is the ladder step the next attempt will be on.
	Step int
}

// Next plans the delivery after a failed attempt made on ladder step step (0 for the first
// attempt and for a redelivery). retryAfter is the receiver's Retry-After, or 0; when set, the
// delivery takes the shortest delay of the whole ladder not shorter than it, or the longest
// delay there is, whatever the step.
func (l Ladder) Next(step int, retryAfter time.Duration) Plan {
	if step < 0 {
		step = 0
	}
	if step >= len(l) {
		return Plan{Final: true}
	}
	delay := l[step]
	if retryAfter > 0 {
		// The receiver said when to come back: that, not the step, picks the delay.
		delay = l.atLeast(retryAfter)
	}
	return Plan{Delay: delay, Step: step + 1}
}

// atLeast is the shortest delay of the ladder not shorter than d, or the longest one.
func (l Ladder) atLeast(d time.Duration) time.Duration {
	best := slices.Max(l)
	for _, x := range l {
		if x >= d && x < best {
			best = x
		}
	}
	return best
}

// Delays is the ladder's distinct delays, each of which has a queue.
func (l Ladder) Delays() []time.Duration {
	d := slices.Clone(l)
	slices.Sort(d)
	return slices.Compact(d)
}

// QueueName is the TTL queue that holds deliveries waiting delay d: "<queue>.retry.<d>", with
// the delay written as a Go duration without zero units ("1m", "1h30m", "500ms"). Naming queues
// after their delay means a changed ladder never redeclares a queue with another TTL.
func QueueName(queue string, d time.Duration) string {
	return queue + ".retry." + shortDuration(d)
}

func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// permanent marks an error that no retry can fix.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent marks err as one that retrying cannot fix: the delivery fails at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}
