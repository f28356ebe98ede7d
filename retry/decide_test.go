package retry

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestDecide has a row for each rule of contract §4, on the ladder 1m, 5m, 10m: steps 0 to 2
// retry and step 3 is past the last one.
func TestDecide(t *testing.T) {
	t.Parallel()
	l := Ladder{time.Minute, 5 * time.Minute, 10 * time.Minute}
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	in := func(d time.Duration) time.Time { return now.Add(d) }
	refused := Permanent(fmt.Errorf("destination refused: 10.0.0.1"))
	invalidURL := Permanent(errors.New(`invalid URL "http//x"`))
	timeout := errors.New("post: timed out after 10s")
	retried := func(d time.Duration, step int, reason string) Decision {
		return Decision{Verdict: Retry, Delay: d, Step: step, Reason: reason}
	}
	failed := func(reason string) Decision { return Decision{Verdict: Failed, Reason: reason} }
	gone := Decision{Verdict: Disable, Reason: "410 Gone: webhook disabled"}
	// A Retry-After that picks the delay also pauses the whole webhook (contract §8), until
	// then or for the longest ladder delay at most, whether the delivery retries or fails.
	pausing := func(d Decision, until time.Time) Decision { d.Pause = until; return d }
	tests := []struct {
		name string
		o    Outcome
		want Decision
	}{
		// 2xx without error.
		{"200 succeeds", Outcome{Status: 200}, Decision{Verdict: Succeeded}},
		{"204 succeeds", Outcome{Status: 204}, Decision{Verdict: Succeeded}},
		{"299 succeeds", Outcome{Status: 299}, Decision{Verdict: Succeeded}},
		{"200 succeeds past the last step", Outcome{Status: 200, Step: 3}, Decision{Verdict: Succeeded}},
		{"2xx with an error is a failure", Outcome{Status: 200, Err: timeout}, retried(time.Minute, 1, timeout.Error())},

		// 3xx: redirects are not followed.
		{"300 retried", Outcome{Status: 300}, retried(time.Minute, 1, "HTTP 300")},
		{"301 retried", Outcome{Status: 301}, retried(time.Minute, 1, "HTTP 301")},

		// Other failures follow the ladder, then fail.
		{"400 step 0 retried", Outcome{Status: 400}, retried(time.Minute, 1, "HTTP 400")},
		{"400 step 1 retried", Outcome{Status: 400, Step: 1}, retried(5*time.Minute, 2, "HTTP 400")},
		{"400 step 2 retried", Outcome{Status: 400, Step: 2}, retried(10*time.Minute, 3, "HTTP 400")},
		{"400 step 3 fails", Outcome{Status: 400, Step: 3}, failed("HTTP 400")},
		{"404 step 0 retried", Outcome{Status: 404}, retried(time.Minute, 1, "HTTP 404")},
		{"404 step 1 retried", Outcome{Status: 404, Step: 1}, retried(5*time.Minute, 2, "HTTP 404")},
		{"404 step 2 retried", Outcome{Status: 404, Step: 2}, retried(10*time.Minute, 3, "HTTP 404")},
		{"404 step 3 fails", Outcome{Status: 404, Step: 3}, failed("HTTP 404")},
		{"500 step 0 retried", Outcome{Status: 500}, retried(time.Minute, 1, "HTTP 500")},
		{"500 step 1 retried", Outcome{Status: 500, Step: 1}, retried(5*time.Minute, 2, "HTTP 500")},
		{"500 step 2 retried", Outcome{Status: 500, Step: 2}, retried(10*time.Minute, 3, "HTTP 500")},
		{"500 step 3 fails", Outcome{Status: 500, Step: 3}, failed("HTTP 500")},
		{"500 past the ladder fails", Outcome{Status: 500, Step: 9}, failed("HTTP 500")},
		{"negative step counts as 0", Outcome{Status: 500, Step: -2}, retried(time.Minute, 1, "HTTP 500")},

		// 410 disables, whatever the step.
		{"410 disables", Outcome{Status: 410}, gone},
		{"410 disables past the last step", Outcome{Status: 410, Step: 3}, gone},

		// Permanent errors fail at once, whatever the step.
		{"refused destination fails at once", Outcome{Err: refused}, failed(refused.Error())},
		{"invalid URL fails at once", Outcome{Err: invalidURL, Step: 1}, failed(invalidURL.Error())},
		{"wrapped permanent error fails at once", Outcome{Err: fmt.Errorf("post: %w", refused)}, failed("post: " + refused.Error())},

		// Transport errors (no answer) follow the ladder with the error as reason.
		{"transport error retried", Outcome{Err: timeout}, retried(time.Minute, 1, timeout.Error())},
		{"transport error step 2 retried", Outcome{Err: timeout, Step: 2}, retried(10*time.Minute, 3, timeout.Error())},
		{"transport error step 3 fails", Outcome{Err: timeout, Step: 3}, failed(timeout.Error())},

		// Retry-After on 429 and 503 picks the delay.
		{"429 Retry-After 30s takes 1m", Outcome{Status: 429, RetryAfter: in(30 * time.Second)}, pausing(retried(time.Minute, 1, "HTTP 429"), in(30*time.Second))},
		{"429 Retry-After 30s on step 2 takes 1m", Outcome{Status: 429, RetryAfter: in(30 * time.Second), Step: 2}, pausing(retried(time.Minute, 3, "HTTP 429"), in(30*time.Second))},
		{"429 Retry-After 3m takes 5m", Outcome{Status: 429, RetryAfter: in(3 * time.Minute)}, pausing(retried(5*time.Minute, 1, "HTTP 429"), in(3*time.Minute))},
		{"429 Retry-After 5m takes 5m", Outcome{Status: 429, RetryAfter: in(5 * time.Minute)}, pausing(retried(5*time.Minute, 1, "HTTP 429"), in(5*time.Minute))},
		{"503 Retry-After 20m takes the longest", Outcome{Status: 503, RetryAfter: in(20 * time.Minute)}, pausing(retried(10*time.Minute, 1, "HTTP 503"), in(10*time.Minute))},
		{"429 without Retry-After follows the ladder", Outcome{Status: 429, Step: 1}, retried(5*time.Minute, 2, "HTTP 429")},
		{"503 without Retry-After follows the ladder", Outcome{Status: 503, Step: 2}, retried(10*time.Minute, 3, "HTTP 503")},
		{"Retry-After on a 500 is ignored", Outcome{Status: 500, RetryAfter: in(8 * time.Minute)}, retried(time.Minute, 1, "HTTP 500")},
		{"a 429's Retry-After of 1s pauses 1s", Outcome{Status: 429, RetryAfter: in(time.Second)}, pausing(retried(time.Minute, 1, "HTTP 429"), in(time.Second))},
		{"Retry-After on a 404 is ignored", Outcome{Status: 404, RetryAfter: in(8 * time.Minute), Step: 1}, retried(5*time.Minute, 2, "HTTP 404")},
		{"Retry-After in the past is ignored", Outcome{Status: 503, RetryAfter: in(-time.Minute), Step: 1}, retried(5*time.Minute, 2, "HTTP 503")},
		{"Retry-After equal to now is ignored", Outcome{Status: 429, RetryAfter: now, Step: 1}, retried(5*time.Minute, 2, "HTTP 429")},
		// Decided: Retry-After never extends the ladder; past the last step it fails like any
		// failure, and still pauses the webhook.
		{"429 Retry-After past the last step fails", Outcome{Status: 429, RetryAfter: in(time.Minute), Step: 3}, pausing(failed("HTTP 429"), in(time.Minute))},
		{"503 Retry-After past the last step fails", Outcome{Status: 503, RetryAfter: in(20 * time.Minute), Step: 3}, pausing(failed("HTTP 503"), in(10*time.Minute))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Decide(tt.o, l, now); got != tt.want {
				t.Errorf("Decide(%+v)\n got %+v\nwant %+v", tt.o, got, tt.want)
			}
		})
	}
}

// TestDecideEmptyLadder: with no ladder every failure is final, Retry-After or not.
func TestDecideEmptyLadder(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, o := range []Outcome{{Status: 500}, {Status: 429, RetryAfter: now.Add(time.Minute)}} {
		want := Decision{Verdict: Failed, Reason: fmt.Sprintf("HTTP %d", o.Status)}
		if got := Decide(o, nil, now); got != want {
			t.Errorf("Decide(%+v, nil)\n got %+v\nwant %+v", o, got, want)
		}
	}
}

func TestVerdictString(t *testing.T) {
	t.Parallel()
	for v, want := range map[Verdict]string{Succeeded: "succeeded", Retry: "retry", Failed: "failed", Disable: "disable", 9: "verdict(9)"} {
		if got := v.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(v), got, want)
		}
	}
}
