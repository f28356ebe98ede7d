package batch

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestBatcherGroupsAndIsolatesFailures(t *testing.T) {
	t.Parallel()
	bad := errors.New("bad item")
	var mu sync.Mutex
	var sizes []int
	flushed := map[int]int{}
	release := make(chan struct{})
	first := true
	failedWith := map[int]bool{} // items that shared a batch with the bad one
	flushedAgain := map[int]bool{}
	b := New(func(ctx context.Context, items []*int) error {
		mu.Lock()
		wait := first
		first = false
		sizes = append(sizes, len(items))
		mu.Unlock()
		if wait {
			<-release // hold the first flush so that the others queue up behind it
		}
		for _, v := range items {
			if *v == 13 {
				mu.Lock()
				for _, w := range items {
					failedWith[*w] = len(items) > 1
				}
				mu.Unlock()
				return bad
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, v := range items {
			flushed[*v]++
			flushedAgain[*v] = Again(ctx)
		}
		return nil
	}, Options[int]{Max: 8})
	defer b.Close()

	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	started := make(chan struct{}, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := i
			started <- struct{}{}
			errs[i] = b.Do(context.Background(), &v)
		}()
	}
	for range n {
		<-started
	}
	close(release)
	wg.Wait()

	for i, err := range errs {
		switch {
		case i == 13 && !errors.Is(err, bad):
			t.Errorf("item 13: err %v, want the flush's error", err)
		case i != 13 && err != nil:
			t.Errorf("item %d: err %v, want nil: a bad neighbour must not fail it", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		want := 1
		if i == 13 {
			want = 0
		}
		if flushed[i] != want {
			t.Errorf("item %d flushed %d times, want %d", i, flushed[i], want)
		}
	}
	for i := range n {
		if i != 13 && flushedAgain[i] != failedWith[i] {
			t.Errorf("item %d flushed with Again %v; want %v (it shared a failed batch: %v)", i, flushedAgain[i], failedWith[i], failedWith[i])
		}
	}
	for _, size := range sizes {
		if size > 8 {
			t.Errorf("a batch of %d items, want at most 8", size)
		}
	}
	if len(sizes) >= n {
		t.Errorf("%d flushes for %d items: nothing was grouped", len(sizes), n)
	}
}

func TestBatcherClosed(t *testing.T) {
	t.Parallel()
	b := New(func(context.Context, []*int) error { return nil }, Options[int]{})
	b.Close()
	v := 1
	if err := b.Do(context.Background(), &v); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Close: %v, want ErrClosed", err)
	}
}

func TestBatcherLingersWhileLight(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var sizes []int
	b := New(func(_ context.Context, items []*int) error {
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(items))
		return nil
	}, Options[int]{Linger: time.Hour, Max: 2})
	defer b.Close()
	first := make(chan error, 1)
	one, two := 1, 2
	go func() { first <- b.Do(context.Background(), &one) }()
	// The first item waits for company (for an hour, or until the batch is full), so the
	// second joins its batch.
	if err := b.Do(context.Background(), &two); err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 1 || sizes[0] != 2 {
		t.Errorf("batches %v, want one of 2", sizes)
	}
}

// A batch never weighs more than MaxWeight: items queued behind a held flush go in batches
// that fit, and one heavier than the bound alone goes in a batch of its own.
func TestBatcherKeepsUnderMaxWeight(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var weights []int
	release := make(chan struct{})
	first := true
	b := New(func(ctx context.Context, items []*int) error {
		mu.Lock()
		wait := first
		first = false
		w := 0
		for _, v := range items {
			w += *v
		}
		weights = append(weights, w)
		mu.Unlock()
		if wait {
			<-release
		}
		return nil
	}, Options[int]{Max: 100, MaxWeight: 10, Weight: func(v *int) int { return *v }})
	defer b.Close()

	items := []int{1, 4, 4, 4, 4, 4, 12, 3, 3, 3}
	var wg sync.WaitGroup
	held := make(chan error, 1)
	go func() { v := 1; held <- b.Do(context.Background(), &v) }()
	for {
		mu.Lock()
		n := len(weights)
		mu.Unlock()
		if n == 1 {
			break
		}
		runtime.Gosched()
	}
	for _, it := range items[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := it
			if err := b.Do(context.Background(), &v); err != nil {
				t.Error(err)
			}
		}()
	}
	close(release)
	wg.Wait()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, w := range weights {
		total += w
		if w > 10 && w != 12 {
			t.Errorf("a batch weighed %d, over MaxWeight 10 (batches %v)", w, weights)
		}
	}
	if total != 42 {
		t.Errorf("batches weighed %d in all, want 42 (batches %v)", total, weights)
	}
}
