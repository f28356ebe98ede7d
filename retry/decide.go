package retry

import (
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Verdict is what happens to a delivery after an attempt.
type Verdict int

const (
	// Succeeded: the receiver answered 2xx; the delivery is done.
	Succeeded Verdict = iota
	// Retry: the delivery waits Decision.Delay in the ladder, its next attempt on Decision.Step.
	Retry
	// Failed: the delivery has failed for good.
	Failed
	// Disable: the delivery has failed for good and its webhook is disabled at once.
	Disable
)

// String is the verdict's name: succeeded, retry, failed or disable.
func (v Verdict) String() string {
	switch v {
	case Succeeded:
		return "succeeded"
	case Retry:
		return "retry"
	case Failed:
		return "failed"
	case Disable:
		return "disable"
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// Outcome is what one attempt produced.
type Outcome struct {
	// Status is the HTTP status, 0 when no answer arrived.
	Status int
	// Err is the attempt's error: a transport error, or one marked with Permanent.
	Err error
	// RetryAfter is the receiver's Retry-After as an instant, zero when it sent none.
	RetryAfter time.Time
	// Step is the ladder step the attempt was made on: 0 for a first attempt and a redelivery.
	Step int
}

// Decision is what to do after an attempt. Delay and Step are set only with Retry; Reason is
// set with every verdict but Succeeded.
type Decision struct {
	// Verdict is what happens to the delivery.
	Verdict Verdict
	// Delay is the wait before the next attempt, with Retry: always one of the ladder's delays.
	Delay time.Duration
	// Step is the ladder step the next attempt will be on, with Retry: the attempt's step + 1.
	Step int
	// Reason says why the attempt failed: "410 Gone: webhook disabled", the error's text when
	// there is an error, else "HTTP <status>". It is set with Retry too, for the log; empty
	// when the attempt succeeded.
	Reason string
	// Pause, when not zero, is when every delivery to the webhook may be attempted again: the
	// receiver answered 429 or 503 with a Retry-After ahead of now (contract §8). It is at
	// most the longest ladder delay from now, and set whatever the verdict.
	Pause time.Time
}

// Decide says what happens after an attempt with outcome o, on ladder l, at time now
// (contract §4). It is a pure function of its arguments: no clock, no I/O. The rules, first
// match wins:
//   - a 2xx without error succeeds; a 2xx with an error is a failure like any other;
//   - 410 Gone fails the delivery and disables the webhook, on any step;
//   - an error marked Permanent (an invalid URL, a refused destination) fails at once;
//   - anything else (another status, a 3xx since redirects are not followed, a transport
//     error) is retried after l[step] on step step+1, a negative step counting as 0, and
//     fails once the ladder is used up (step >= len(l));
//   - after a 429 or 503 whose Retry-After is still ahead of now, the wait is instead the
//     shortest ladder delay not shorter than RetryAfter-now, or the longest one, as
//     Ladder.Next does. Retry-After never extends the ladder: once it is used up a 429 or
//     503 fails like any other failure. A Retry-After not after now, or on another status,
//     is ignored;
//   - that same Retry-After pauses the whole webhook (Decision.Pause) until RetryAfter, or
//     for the longest ladder delay if that is sooner, whether the delivery is retried or
//     has failed.
func Decide(o Outcome, l Ladder, now time.Time) Decision {
	switch {
	case o.Err == nil && o.Status >= 200 && o.Status < 300:
		return Decision{Verdict: Succeeded}
	case o.Status == http.StatusGone:
		return Decision{Verdict: Disable, Reason: "410 Gone: webhook disabled"}
	case IsPermanent(o.Err):
		return Decision{Verdict: Failed, Reason: o.Err.Error()}
	}
	reason := "HTTP " + strconv.Itoa(o.Status)
	if o.Err != nil {
		reason = o.Err.Error()
	}
	var after time.Duration
	if (o.Status == http.StatusTooManyRequests || o.Status == http.StatusServiceUnavailable) && o.RetryAfter.After(now) {
		after = o.RetryAfter.Sub(now)
	}
	var pause time.Time
	if after > 0 && len(l) > 0 {
		pause = now.Add(min(after, slices.Max(l)))
	}
	plan := l.Next(o.Step, after)
	if plan.Final {
		return Decision{Verdict: Failed, Reason: reason, Pause: pause}
	}
	return Decision{Verdict: Retry, Delay: plan.Delay, Step: plan.Step, Reason: reason, Pause: pause}
}
