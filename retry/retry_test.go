package retry_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/webhookd/webhookd/retry"
)

func TestNext(t *testing.T) {
	l := retry.Ladder{time.Minute, 5 * time.Minute, 10 * time.Minute}
	tests := []struct {
		step       int
		retryAfter time.Duration
		want       retry.Plan
	}{
		{0, 0, retry.Plan{Delay: time.Minute, Step: 1}},
		{1, 0, retry.Plan{Delay: 5 * time.Minute, Step: 2}},
		{2, 0, retry.Plan{Delay: 10 * time.Minute, Step: 3}},
		{3, 0, retry.Plan{Final: true}},
		{9, 0, retry.Plan{Final: true}},
		{0, 30 * time.Second, retry.Plan{Delay: time.Minute, Step: 1}},
		{0, 2 * time.Minute, retry.Plan{Delay: 5 * time.Minute, Step: 1}},
		{0, 5 * time.Minute, retry.Plan{Delay: 5 * time.Minute, Step: 1}},
		{0, time.Hour, retry.Plan{Delay: 10 * time.Minute, Step: 1}},
		{2, time.Second, retry.Plan{Delay: time.Minute, Step: 3}},
		{1, 6 * time.Minute, retry.Plan{Delay: 10 * time.Minute, Step: 2}},
		{3, time.Second, retry.Plan{Final: true}},
	}
	for _, tt := range tests {
		if got := l.Next(tt.step, tt.retryAfter); got != tt.want {
			t.Errorf("Next(%d, %v) = %+v, want %+v", tt.step, tt.retryAfter, got, tt.want)
		}
	}
}

func TestQueueName(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{time.Minute, "q.retry.1m"},
		{10 * time.Minute, "q.retry.10m"},
		{time.Hour, "q.retry.1h"},
		{90 * time.Minute, "q.retry.1h30m"},
		{500 * time.Millisecond, "q.retry.500ms"},
		{1500 * time.Millisecond, "q.retry.1.5s"},
		{61 * time.Second, "q.retry.1m1s"},
	}
	for _, tt := range tests {
		if got := retry.QueueName("q", tt.d); got != tt.want {
			t.Errorf("QueueName(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("gone")
	err := fmt.Errorf("attempt: %w", retry.Permanent(base))
	if !retry.IsPermanent(err) || !errors.Is(err, base) {
		t.Fatalf("IsPermanent = %v, Is(base) = %v, want both true", retry.IsPermanent(err), errors.Is(err, base))
	}
	if retry.IsPermanent(base) || retry.Permanent(nil) != nil {
		t.Fatal("plain error counted as permanent, or Permanent(nil) not nil")
	}
}

func TestDelays(t *testing.T) {
	got := retry.Ladder{5 * time.Second, time.Second, 5 * time.Second}.Delays()
	if len(got) != 2 || got[0] != time.Second || got[1] != 5*time.Second {
		t.Fatalf("Delays = %v, want [1s 5s]", got)
	}
}
