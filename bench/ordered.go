package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"
)

// The per-object ordering scenario (contract §9): the same backlog drained to two webhooks,
// first both unordered, then one of them ordered, its events spread over many objects.

// orderedResult is what ordering costs the webhooks beside it, and its own pace.
type orderedResult struct {
	n, objects int
	// plainAlone is the unordered webhook's rate beside another unordered one; plainBeside
	// its rate beside the ordered one; ordered the ordered one's rate.
	plainAlone, plainBeside, ordered float64
	cpuAlone, cpuBeside              cpuTimes
}

// orderedDrain publishes n events over objects objects to two webhooks, the second ordered
// or not, and returns each webhook's rate, first to last arrival, and the CPU of the drain.
func (b *bench) orderedDrain(ctx context.Context, tag string, n, objects int, ordered bool) (plain, second float64, cpu cpuTimes, err error) {
	e, err := b.newEnv(ctx, tag, "quorum", true)
	if err != nil {
		return 0, 0, nil, err
	}
	defer e.close()
	plainEp, plainURL := b.rc.endpoint("/"+tag+"-plain", n, 0, false)
	secondEp, secondURL := b.rc.endpoint("/"+tag+"-second", n, 0, false)
	if err := e.addWebhooks(ctx, 1, 1, plainURL); err != nil {
		return 0, 0, nil, err
	}
	if err := e.addWebhooks(ctx, 1, 1, secondURL); err != nil {
		return 0, 0, nil, err
	}
	if ordered {
		if _, err := e.db.ExecContext(ctx, "UPDATE webhooks SET ordered = 1 WHERE url = ?", secondURL); err != nil {
			return 0, 0, nil, fmt.Errorf("order webhook: %w", err)
		}
	}
	if err := e.declare(); err != nil {
		return 0, 0, nil, err
	}
	// The worker binds the ordering queue as it starts: start it before the backlog, idle.
	before := cpuSnapshot("", 0)
	w, err := e.startWorker(ctx, nil)
	if err != nil {
		return 0, 0, nil, err
	}
	defer w.stop()
	if _, err := publishBacklog(ctx, e.exchange, n, func(i int) []byte {
		return eventBody(e.name+"-"+strconv.Itoa(i), 1, i%objects, time.Now().UnixNano())
	}); err != nil {
		return 0, 0, nil, err
	}
	for _, ep := range []*endpoint{plainEp, secondEp} {
		if !ep.wait(ctx, drainTimeout(2*n)) {
			return 0, 0, nil, fmt.Errorf("%s: %d of %d deliveries arrived; see %s", tag, ep.n.Load(), n, w.log)
		}
	}
	cpu = cpuSnapshot("webhookd", w.cmd.Process.Pid).since(before)
	if err := w.trouble(); err != nil {
		return 0, 0, nil, err
	}
	return plainEp.rate(), secondEp.rate(), cpu, nil
}

// ordering runs both drains.
func (b *bench) ordering(ctx context.Context, n, objects int) (orderedResult, error) {
	r := orderedResult{n: n, objects: objects}
	var err error
	if r.plainAlone, _, r.cpuAlone, err = b.orderedDrain(ctx, "unordered", n, objects, false); err != nil {
		return r, err
	}
	r.plainBeside, r.ordered, r.cpuBeside, err = b.orderedDrain(ctx, "ordered", n, objects, true)
	return r, err
}

// printOrdered writes the ordering rows.
func (r report) printOrdered(w io.Writer) {
	o := r.ordered
	if o.n == 0 {
		return
	}
	fmt.Fprintf(w, "| webhookd: unordered webhook beside an ordered one on the same %s events (vs beside an unordered one) | **%.2f ×** (%s/s vs %s/s) | — | — |\n",
		num(float64(o.n)), o.plainBeside/o.plainAlone, num(o.plainBeside), num(o.plainAlone))
	fmt.Fprintf(w, "| webhookd: ordered webhook, %s events over %s objects (vs the unordered one beside an unordered one) | **%.2f ×** (%s/s vs %s/s) | ≥ 0.5 × | %s |\n",
		num(float64(o.n)), num(float64(o.objects)), o.ordered/o.plainAlone, num(o.ordered), num(o.plainAlone), yesNo(o.ordered >= 0.5*o.plainAlone))
}

// printOrderedDetail writes what ordering costs in CPU.
func (r report) printOrderedDetail(w io.Writer) {
	if o := r.ordered; o.n > 0 {
		fmt.Fprintf(w, "Ordering: CPU per event, two webhooks each, both unordered %s, one ordered %s.\n",
			us(o.cpuAlone.total(), o.n), us(o.cpuBeside.total(), o.n))
	}
}
