package repository

import (
	"context"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// WebhookSource loads the enabled webhooks of an account for an event.
type WebhookSource interface {
	Webhooks(ctx context.Context, accountID uint64, event string) ([]Webhook, error)
}

// Cache remembers webhook lookups for a TTL, so that a burst of events for one account costs
// one query; a changed row is seen once its entry expires. Concurrent misses for the same key
// share one query.
type Cache struct {
	src   WebhookSource
	ttl   time.Duration
	now   func() time.Time
	group singleflight.Group

	mu      sync.Mutex
	entries map[string]cacheEntry
	// Hit and Miss, if set, count lookups.
	Hit, Miss func()
}

type cacheEntry struct {
	hooks   []Webhook
	expires time.Time
}

// NewCache caches src for ttl, with clock now (time.Now if nil).
func NewCache(src WebhookSource, ttl time.Duration, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{src: src, ttl: ttl, now: now, entries: map[string]cacheEntry{}}
}

// Webhooks returns the enabled webhooks of accountID subscribed to event, at most ttl old.
// The returned slice is shared: callers must not modify it.
func (c *Cache) Webhooks(ctx context.Context, accountID uint64, event string) ([]Webhook, error) {
	key := strconv.FormatUint(accountID, 10) + "/" + event
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		if c.Hit != nil {
			c.Hit()
		}
		return e.hooks, nil
	}
	if c.Miss != nil {
		c.Miss()
	}
	v, err, _ := c.group.Do(key, func() (any, error) {
		hooks, err := c.src.Webhooks(ctx, accountID, event)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		if len(c.entries) > 100_000 {
			c.sweep(now)
		}
		c.entries[key] = cacheEntry{hooks: hooks, expires: now.Add(c.ttl)}
		c.mu.Unlock()
		return hooks, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]Webhook), nil
}

// Invalidate forgets the cached webhooks of accountID for event, so that a webhook the worker
// itself has just disabled gets nothing more from this process.
func (c *Cache) Invalidate(accountID uint64, event string) {
	key := strconv.FormatUint(accountID, 10) + "/" + event
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
}

// sweep drops expired entries so that a stream of one-off accounts cannot grow the map forever.
func (c *Cache) sweep(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
}
