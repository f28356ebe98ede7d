package repository

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingSource is a WebhookSource that counts its queries.
type countingSource struct {
	calls atomic.Int64
	hooks []Webhook
}

func (s *countingSource) Webhooks(context.Context, uint64, string) ([]Webhook, error) {
	s.calls.Add(1)
	return s.hooks, nil
}

func TestCacheExpires(t *testing.T) {
	now := time.Unix(1000, 0)
	src := &countingSource{hooks: []Webhook{{ID: 1}}}
	c := NewCache(src, 5*time.Second, func() time.Time { return now })
	for i := 0; i < 3; i++ {
		if _, err := c.Webhooks(context.Background(), 1, "A.B"); err != nil {
			t.Fatal(err)
		}
	}
	if got := src.calls.Load(); got != 1 {
		t.Fatalf("queries after 3 lookups = %d, want 1", got)
	}
	c.Webhooks(context.Background(), 2, "A.B")
	if got := src.calls.Load(); got != 2 {
		t.Fatalf("another account must be its own entry: queries = %d, want 2", got)
	}
	now = now.Add(5 * time.Second)
	c.Webhooks(context.Background(), 1, "A.B")
	if got := src.calls.Load(); got != 3 {
		t.Fatalf("after the TTL the entry must be reloaded: queries = %d, want 3", got)
	}
	c.Invalidate(1, "A.B")
	c.Webhooks(context.Background(), 1, "A.B")
	if got := src.calls.Load(); got != 4 {
		t.Fatalf("after Invalidate: queries = %d, want 4", got)
	}
}

func TestCacheConcurrentMissesShareAQuery(t *testing.T) {
	release := make(chan struct{})
	src := &blockingSource{release: release, started: make(chan struct{}, 100)}
	c := NewCache(src, time.Second, nil)
	var misses atomic.Int64
	c.Miss = func() { misses.Add(1) }
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Webhooks(context.Background(), 1, "A.B")
		}()
	}
	<-src.started
	// Every lookup has missed before the query answers: a lookup that looked only after
	// the answer was cached would prove nothing about sharing.
	deadline := time.Now().Add(10 * time.Second)
	for misses.Load() < 20 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	// A lookup that missed but reaches the shared call only after the query finished starts
	// another; most share it.
	if got := src.calls.Load(); got > 10 {
		t.Errorf("20 concurrent misses made %d queries, want them to share", got)
	}
}

type blockingSource struct {
	calls   atomic.Int64
	started chan struct{}
	release chan struct{}
}

func (s *blockingSource) Webhooks(context.Context, uint64, string) ([]Webhook, error) {
	s.calls.Add(1)
	s.started <- struct{}{}
	<-s.release
	return nil, nil
}

func TestWebhookMatches(t *testing.T) {
	p := func(n uint64) *uint64 { return &n }
	tests := []struct {
		hook    Webhook
		project *uint64
		want    bool
	}{
		{Webhook{Enabled: true}, nil, true},
		{Webhook{Enabled: true}, p(3), true},
		{Webhook{Enabled: true, ProjectID: nullInt(3)}, p(3), true},
		{Webhook{Enabled: true, ProjectID: nullInt(3)}, p(4), false},
		{Webhook{Enabled: true, ProjectID: nullInt(3)}, nil, false},
		{Webhook{Enabled: false}, nil, false},
	}
	for _, tt := range tests {
		if got := tt.hook.Matches(tt.project); got != tt.want {
			t.Errorf("%+v.Matches(%v) = %v, want %v", tt.hook, tt.project, got, tt.want)
		}
	}
}

func TestDeliveryID(t *testing.T) {
	a, b := DeliveryID("e", 1), DeliveryID("e", 2)
	if a == b || a != DeliveryID("e", 1) || len(a) != 32 {
		t.Fatalf("DeliveryID not stable and distinct: %s %s", a, b)
	}
	for _, r := range a {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			t.Fatalf("DeliveryID %q has %q", a, r)
		}
	}
}
