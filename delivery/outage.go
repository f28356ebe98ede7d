package delivery

import (
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/webhookd/webhookd/retry"
)

// outageTrialEvery is how often a worker in an outage takes one message, to find out whether
// destinations answer again.
const outageTrialEvery = time.Second

// outage tells the worker's own network outage from its receivers' failures (contract §8).
// It is fed every attempt's outcome: an HTTP answer of any status from any destination, or a
// failure at the connection level (no answer: refused, reset, timed out, DNS). When attempts
// to at least hosts distinct hosts have failed so, and no destination has answered for a
// whole window, the worker is in an outage: it takes no messages but one a second (Paused),
// /readyz says 503, and failed attempts are set aside, held without using an attempt and
// counted nowhere. The first answer ends it.
//
// Until the window has passed, failures of two hosts or more with no answer since might be
// the beginning of an outage: they are set aside too, but consumption goes on. After it, if
// fewer than hosts failed, they are the receivers' failures and count as before; so is, at
// once, a single host failing alone, or beside destinations that answer.
type outage struct {
	hosts  int
	window time.Duration
	now    func() time.Time

	mu sync.Mutex
	// failed is the last connection-level failure of each host since the last answer.
	failed map[string]time.Time
	// streak is the first connection-level failure since the last answer; zero if none.
	streak time.Time
	// answered is the last answer, or when the detector started.
	answered  time.Time
	nextTrial time.Time
	in        atomic.Bool
	// quiet is set while no failure has been seen since the last answer, so that an answer
	// costs an atomic load and nothing else.
	quiet atomic.Bool
}

func newOutage(hosts int, window time.Duration, now func() time.Time) *outage {
	o := &outage{hosts: hosts, window: window, now: now, failed: map[string]time.Time{}, answered: now()}
	o.quiet.Store(true)
	return o
}

// answer notes an HTTP answer: whatever its status, the network works. It ends an outage.
func (o *outage) answer() {
	if o.quiet.Load() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.answered = o.now()
	clear(o.failed)
	o.streak = time.Time{}
	o.quiet.Store(true)
	if o.in.Swap(false) {
		metricOutage.Set(0)
	}
}

// fail notes a connection-level failure of host and reports whether the attempt is to be set
// aside, and whether this failure began the outage.
func (o *outage) fail(host string) (aside, began bool) {
	if o.hosts <= 0 {
		return false, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	o.quiet.Store(false)
	o.failed[host] = now
	for h, at := range o.failed {
		if now.Sub(at) > o.window {
			delete(o.failed, h)
		}
	}
	if o.streak.IsZero() {
		o.streak = now
	}
	switch {
	case o.in.Load():
		return true, false
	case len(o.failed) >= o.hosts && now.Sub(o.answered) >= o.window:
		o.in.Store(true)
		o.nextTrial = now.Add(outageTrialEvery)
		metricOutage.Set(1)
		return true, true
	}
	return len(o.failed) >= 2 && now.Sub(o.streak) < o.window, false
}

// In reports whether the worker is in an outage.
func (o *outage) In() bool { return o.in.Load() }

// Paused is the consumer's pause: true while in an outage, but for one message a second.
func (o *outage) Paused() bool {
	if !o.in.Load() {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if now := o.now(); !now.Before(o.nextTrial) {
		o.nextTrial = now.Add(outageTrialEvery)
		return false
	}
	return true
}

// hostOf is the host an attempt to rawURL connects to, for the outage's count of hosts.
func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	return u.Hostname()
}

// connectionFailure reports whether an attempt failed without any HTTP answer, for a reason
// the network may be behind: not a refused destination or an invalid URL, which are
// permanent. (An attempt cut short by the worker's own shutdown is never judged.)
func connectionFailure(status int, err error) bool {
	return status == 0 && err != nil && !retry.IsPermanent(err)
}
