package repository

import (
	"context"
	"sync"
	"time"
)

// batcher group-commits work from many goroutines: items that arrive while a flush runs wait
// and go together in the next one, so one commit (one fsync) serves a whole batch. Several
// flushers run at once, each on its own connection.
type batcher[T any] struct {
	in    chan batchItem[T]
	flush func(ctx context.Context, batch []*T) error
	max   int
	// weight, if set, is an item's size in bytes: a batch stops growing at maxWeight, so that
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

func newBatcher[T any](flushers, max int, flush func(context.Context, []*T) error, weight func(*T) int, observe func(int)) *batcher[T] {
	b := &batcher[T]{
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

// do hands v to the next batch and waits until it is committed. When the caller gives up
// (ctx done), the item may still be committed: callers treat that as "unknown" and redo.
func (b *batcher[T]) do(ctx context.Context, v *T) error {
	it := batchItem[T]{v: v, done: make(chan error, 1)}
	select {
	case b.in <- it:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.stop:
		return errClosed
	}
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-b.stop:
		return errClosed
	}
}

func (b *batcher[T]) run() {
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
				if w := b.weigh(it); weight+w > maxBatchWeight {
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

// maxBatchWeight keeps a batch's statements well under MySQL's default 16 MiB
// max_allowed_packet (64 MiB on MySQL 8).
const maxBatchWeight = 8 << 20

// flushTimeout bounds one group commit, so that a database that stops answering without
// closing its connections fails the batch instead of holding every caller forever.
const flushTimeout = 30 * time.Second

func (b *batcher[T]) flushWithin(vals []*T) error {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	return b.flush(ctx, vals)
}

func (b *batcher[T]) weigh(it batchItem[T]) int {
	if b.weight == nil {
		return 0
	}
	return b.weight(it.v)
}

func (b *batcher[T]) close() {
	close(b.stop)
	b.wg.Wait()
}
