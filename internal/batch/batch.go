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
	opts  Options[T]
	stop  chan struct{}
	wg    sync.WaitGroup
}

// Options tunes a Batcher.
type Options[T any] struct {
	// Flushers is the number of batches flushed at once. Defaults to 1.
	Flushers int
	// Max bounds a batch's items. Defaults to 256.
	Max int
	// Weight, if set, is an item's size in bytes: a batch stops growing at MaxWeight, so that
	// a few large events cannot make a statement bigger than the server's max_allowed_packet.
	Weight func(*T) int
	// MaxWeight bounds a batch's total Weight; an item heavier than that alone goes in a
	// batch of its own. Defaults to DefaultMaxWeight.
	MaxWeight int
	// Observe, if set, is told the size of every batch.
	Observe func(size int)
	// Linger is how long a batch waits for more items while traffic is light: the previous
	// batch had fewer than lingerBelow items. Under load batches fill while a flush runs and
	// nothing waits. Defaults to 0, flushing whatever is there at once.
	Linger time.Duration
}

type batchItem[T any] struct {
	v    *T
	done chan error
}

// New starts the flushers, which call flush with batches of the items handed to Do. Close
// stops them.
func New[T any](flush func(context.Context, []*T) error, opts Options[T]) *Batcher[T] {
	if opts.Flushers == 0 {
		opts.Flushers = 1
	}
	if opts.Max == 0 {
		opts.Max = 256
	}
	if opts.MaxWeight == 0 {
		opts.MaxWeight = DefaultMaxWeight
	}
	b := &Batcher[T]{
		in:    make(chan batchItem[T]),
		flush: flush,
		opts:  opts,
		stop:  make(chan struct{}),
	}
	for range opts.Flushers {
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
	items := make([]batchItem[T], 0, b.opts.Max)
	vals := make([]*T, 0, b.opts.Max)
	var next *batchItem[T]
	prev := 0
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
		var lingerC <-chan time.Time
		if b.opts.Linger > 0 && prev < lingerBelow {
			lingerC = time.After(b.opts.Linger)
		}
	fill:
		for len(items) < b.opts.Max {
			select {
			case <-lingerC:
				lingerC = nil
				continue
			case it := <-b.in:
				if w := b.weigh(it); weight+w > b.opts.MaxWeight {
					next = &it
					break fill
				} else {
					weight += w
				}
				items = append(items, it)
			default:
				if lingerC == nil || len(items) >= lingerBelow {
					break fill
				}
				select {
				case <-lingerC:
					lingerC = nil
				case it := <-b.in:
					weight += b.weigh(it)
					items = append(items, it)
				}
			}
		}
		prev = len(items)
		for _, it := range items {
			vals = append(vals, it.v)
		}
		if b.opts.Observe != nil {
			b.opts.Observe(len(vals))
		}
		// The flush runs to completion even when a caller has given up: a half-written batch
		// would be rolled back anyway, and a finished one is simply redone by the caller.
		err := b.flushWithin(vals, false)
		if err != nil && len(items) > 1 {
			// One bad item must not fail its neighbours: retry each on its own.
			for _, it := range items {
				it.done <- b.flushWithin([]*T{it.v}, true)
			}
			continue
		}
		for _, it := range items {
			it.done <- err
		}
	}
}

// lingerBelow is the batch size under which traffic counts as light (see Options.Linger).
const lingerBelow = 16

// DefaultMaxWeight is Options.MaxWeight's default: well under MariaDB's default 16 MiB
// max_allowed_packet (64 MiB on MySQL 8).
const DefaultMaxWeight = 8 << 20

// flushTimeout bounds one flush, so that a server that stops answering without closing its
// connections fails the batch instead of holding every caller forever.
const flushTimeout = 30 * time.Second

func (b *Batcher[T]) flushWithin(vals []*T, again bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if again {
		ctx = context.WithValue(ctx, againKey{}, true)
	}
	return b.flush(ctx, vals)
}

type againKey struct{}

// Again reports whether a flush carries items of a batch whose flush failed: that flush may
// have been applied all the same, if only its answer was lost.
func Again(ctx context.Context) bool {
	again, _ := ctx.Value(againKey{}).(bool)
	return again
}

func (b *Batcher[T]) weigh(it batchItem[T]) int {
	if b.opts.Weight == nil {
		return 0
	}
	return b.opts.Weight(it.v)
}

// Close stops the flushers after the batches in progress; callers still waiting get
// ErrClosed.
func (b *Batcher[T]) Close() {
	close(b.stop)
	b.wg.Wait()
}
