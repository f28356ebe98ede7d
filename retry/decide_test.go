package retry

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestDecide has a row for each rule of contract §4.
func TestDecide(t *testing.T) {
	t.Parallel()
	l := Ladder{time.Minute, 5 * time.Minute, 10 * time.Minute}
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	in := func(d time.Duration) time.Time { return now.Add(d) }
	refused := Permanent(fmt.Errorf("destination refused: 10.0.0.1"))
	timeout := errors.New("post: timed out after 10s")
	tests := []struct {
		name string
		o    Outcome
		want Decision
	}{
		{"200 succeeds", Outcome{Status: 200}, Decision{Verdict: Succeeded}},
		{"204 succeeds", Outcome{Status: 204}, Decision{Verdict: Succeeded}},
		{"299 succeeds", Outcome{Status: 299, Step: 3}, Decision{Verdict: Succeeded}},
		{"2xx with a body read error is a failure", Outcome{Status: 200, Err: timeout}, Decision{Verdict: Retry, Delay: time.Minute, Step: 1, Reason: timeout.Error()}},
		{"301 is not followed: retried", Outcome{Status: 301}, Decision{Verdict: Retry, Delay: time.Minute, Step: 1, Reason: "HTTP 301"}},
		{"400 retried at step 0", Outcome{Status: 400}, Decision{Verdict: Retry, Delay: time.Minute, Step: 1, Reason: "HTTP 400"}},
		{"404 retried at step 1", Outcome{Status: 404, Step: 1}, Decision{Verdict: Retry, Delay: 5 * time.Minute, Step: 2, Reason: "HTTP 404"}},
		{"500 retried at step 2", Outcome{Status: 500, Step: 2}, Decision{Verdict: Retry, Delay: 10 * time.Minute, Step: 3, Reason: "HTTP 500"}},
		{"500 on the last step fails", Outcome{Status: 500, Step: 3}, Decision{Verdict: Failed, Reason: "HTTP 500"}},
		{"negative step counts as 0", Outcome{Status: 500, Step: -2}, Decision{Verdict: Retry, Delay: time.Minute, Step: 1, Reason: "HTTP 500"}},
		{"410 disables", Outcome{Status: 410}, Decision{Verdict: Disable, Reason: "410 Gone: webhook disabled"}},
		{"410 disables on any step", Outcome{Status: 410, Step: 3}, Decision{Verdict: Disable, Reason: "410 Gone: webhook disabled"}},
		{"permanent error fails at once", Outcome{Err: refused}, Decision{Verdict: Failed, Reason: refused.Error()}},
		{"transport error retried", Outcome{Err: timeout}, Decision{Verdict: Retry, Delay: time.Minute, Step: 1, Reason: timeout.Error()}},
		{"transport error on the last step fails", Outcome{Err: timeout, Step: 3}, Decision{Verdict: Failed, Reason: timeout.Error()}},
		{"429 Retry-After 30s takes 1m", Outcome{Status: 429, RetryAfter: in(30 * time.Second), Step: 2}, Decision{Verdict: Retry, Delay: time.Minute, Step: 3, Reason: "HTTP 429"}},
		{"429 Retry-After 3m takes 5m", Outcome{Status: 429, RetryAfter: in(3 * time.Minute)}, Decision{Verdict: Retry, Delay: 5 * time.Minute, Step: 1, Reason: "HTTP 429"}},
		{"503 Retry-After 20m takes the longest", Outcome{Status: 503, RetryAfter: in(20 * time.Minute)}, Decision{Verdict: Retry, Delay: 10 * time.Minute, Step: 1, Reason: "HTTP 503"}},
		{"429 without Retry-After follows the ladder", Outcome{Status: 429, Step: 1}, Decision{Verdict: Retry, Delay: 5 * time.Minute, Step: 2, Reason: "HTTP 429"}},
		{"Retry-After on a 500 is ignored", Outcome{Status: 500, RetryAfter: in(8 * time.Minute)}, Decision{Verdict: Retry, Delay: time.Minute, Step: 1, Reason: "HTTP 500"}},
		{"Retry-After in the past is ignored", Outcome{Status: 503, RetryAfter: in(-time.Minute), Step: 1}, Decision{Verdict: Retry, Delay: 5 * time.Minute, Step: 2, Reason: "HTTP 503"}},
		{"429 with Retry-After on the last step fails", Outcome{Status: 429, RetryAfter: in(time.Minute), Step: 3}, Decision{Verdict: Failed, Reason: "HTTP 429"}},
	}
	for _, tt := range tests {
		if got := Decide(tt.o, l, now); got != tt.want {
			t.Errorf("%s: Decide(%+v) = %+v, want %+v", tt.name, tt.o, got, tt.want)
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
