// Package batch group-commits work from many goroutines: items that arrive while a flush runs
// wait and go together in the next one, so that one commit (one fsync, one publisher confirm)
// serves a whole batch.
package batch

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrClosed is returned to callers waiting when the batcher is closed.
var ErrClosed = errors.New("batcher closed")

// Batcher hands items from many goroutines to a flush function in batches. Several flushers
// may run at once, each with a batch of its own.
type Batcher[T any] struct {
	in    chan batchItem[T]
	flush func(ctx context.Context, batch []*T) error
	max   int
	// weight, if set, is an item's size in bytes: a batch stops growing at MaxWeight, so that
	// a few large events cannot make a statement bigger than the server's max_allowed_packet.
	weight  func(*T) int
	observe func(size int)
	stop    chan struct{}
	wg      sync.WaitGroup
}

type batchItem[T any] struct {
	v    *T
	done chan error
}

// New starts flushers goroutines that each take up to max waiting items (and at most
// MaxWeight bytes of them by weight, if weight is set) and call flush with them. observe, if
// set, is told the size of every batch. Close stops them.
func New[T any](flushers, max int, flush func(context.Context, []*T) error, weight func(*T) int, observe func(int)) *Batcher[T] {
	b := &Batcher[T]{
		in:      make(chan batchItem[T]),
		flush:   flush,
		max:     max,
		weight:  weight,
		observe: observe,
		stop:    make(chan struct{}),
	}
	for range flushers {
		b.wg.Add(1)
		go b.run()
	}
	return b
}

// Do hands v to the next batch and waits until it is flushed. When the caller gives up (ctx
// done), the item may still be flushed: callers treat that as "unknown" and redo.
func (b *Batcher[T]) Do(ctx context.Context, v *T) error {
	it := batchItem[T]{v: v, done: make(chan error, 1)}
	select {
	case b.in <- it:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.stop:
		return ErrClosed
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-b.stop:
		return ErrClosed
	}
}

func (b *Batcher[T]) run() {
	defer b.wg.Done()
	items := make([]batchItem[T], 0, b.max)
	vals := make([]*T, 0, b.max)
	var next *batchItem[T]
	for {
		items, vals = items[:0], vals[:0]
		if next != nil {
			items = append(items, *next)
			next = nil
		} else {
			select {
			case it := <-b.in:
				items = append(items, it)
			case <-b.stop:
				return
			}
		}
		weight := b.weigh(items[0])
	fill:
		for len(items) < b.max {
			select {
			case it := <-b.in:
				if w := b.weigh(it); weight+w > MaxWeight {
					next = &it
					break fill
				} else {
					weight += w
				}
				items = append(items, it)
			default:
				break fill
			}
		}
		for _, it := range items {
			vals = append(vals, it.v)
		}
		if b.observe != nil {
			b.observe(len(vals))
		}
		// The flush runs to completion even when a caller has given up: a half-written batch
		// would be rolled back anyway, and a finished one is simply redone by the caller.
		err := b.flushWithin(vals)
		if err != nil && len(items) > 1 {
			// One bad item must not fail its neighbours: retry each on its own.
			for _, it := range items {
				it.done <- b.flushWithin([]*T{it.v})
			}
			continue
		}
		for _, it := range items {
			it.done <- err
		}
	}
}

// MaxWeight bounds a batch's weight. It keeps a batch's statements well under MySQL's
// default 16 MiB max_allowed_packet (64 MiB on MySQL 8).
const MaxWeight = 8 << 20

// flushTimeout bounds one flush, so that a server that stops answering without closing its
// connections fails the batch instead of holding every caller forever.
const flushTimeout = 30 * time.Second

func (b *Batcher[T]) flushWithin(vals []*T) error {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	return b.flush(ctx, vals)
}

func (b *Batcher[T]) weigh(it batchItem[T]) int {
	if b.weight == nil {
		return 0
	}
	return b.weight(it.v)
}

// Close stops the flushers after the batches in progress; callers still waiting get
// ErrClosed.
func (b *Batcher[T]) Close() {
	close(b.stop)
	b.wg.Wait()
}
