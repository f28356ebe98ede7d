package delivery

import (
	"context"
	"testing"
	"time"
)

func TestInflightWaitsForTheSameAttempt(t *testing.T) {
	t.Parallel()
	var f inflight
	ctx := context.Background()
	leave, settled, err := f.enter(ctx, "d", 1)
	if err != nil || settled {
		t.Fatalf("first enter = %v, %v", settled, err)
	}
	// Another attempt of the same delivery is not held up.
	other, settled, err := f.enter(ctx, "d", 2)
	if err != nil || settled {
		t.Fatalf("enter of attempt 2 = %v, %v", settled, err)
	}
	other(true)

	got := make(chan bool, 1)
	go func() {
		_, settled, _ := f.enter(ctx, "d", 1)
		got <- settled
	}()
	select {
	case <-got:
		t.Fatal("the same attempt went ahead while the first was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	leave(true)
	if !<-got {
		t.Error("the same attempt, after a durable first one, was not reported settled")
	}

	// After a first attempt whose outcome was lost, the second one is made.
	leave, _, _ = f.enter(ctx, "e", 1)
	done := make(chan func(bool), 1)
	go func() {
		l, settled, _ := f.enter(ctx, "e", 1)
		if settled {
			t.Error("reported settled after a lost outcome")
		}
		done <- l
	}()
	leave(false)
	(<-done)(true)

	cctx, cancel := context.WithCancel(ctx)
	leave, _, _ = f.enter(ctx, "c", 1)
	cancel()
	if _, _, err := f.enter(cctx, "c", 1); err == nil {
		t.Error("a cancelled wait returned no error")
	}
	leave(true)
}
