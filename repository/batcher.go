package repository

import (
	"context"
	"sync"
)

// batcher group-commits work from many goroutines: items that arrive while a flush runs wait
// and go together in the next one, so one commit (one fsync) serves a whole batch. Several
// flushers run at once, each on its own connection.
type batcher[T any] struct {
	in      chan batchItem[T]
	flush   func(ctx context.Context, batch []*T) error
	max     int
	observe func(size int)
	stop    chan struct{}
	wg      sync.WaitGroup
}

type batchItem[T any] struct {
	v    *T
	done chan error
}

func newBatcher[T any](flushers, max int, flush func(context.Context, []*T) error, observe func(int)) *batcher[T] {
	b := &batcher[T]{
		in:      make(chan batchItem[T]),
		flush:   flush,
		max:     max,
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
	}
}

func (b *batcher[T]) run() {
	defer b.wg.Done()
	items := make([]batchItem[T], 0, b.max)
	vals := make([]*T, 0, b.max)
	for {
		items, vals = items[:0], vals[:0]
		select {
		case it := <-b.in:
			items = append(items, it)
		case <-b.stop:
			return
		}
	fill:
		for len(items) < b.max {
			select {
			case it := <-b.in:
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
		err := b.flush(context.Background(), vals)
		if err != nil && len(items) > 1 {
			// One bad item must not fail its neighbours: retry each on its own.
			for _, it := range items {
				it.done <- b.flush(context.Background(), []*T{it.v})
			}
			continue
		}
		for _, it := range items {
			it.done <- err
		}
	}
}

func (b *batcher[T]) close() {
	close(b.stop)
	b.wg.Wait()
}
