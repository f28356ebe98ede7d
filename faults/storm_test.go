//go:build faults

package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/retry"
)

// TestReconnectStorm has the broker close every connection of two worker processes, five
// rounds over, while a backlog drains through a slow receiver and one webhook's first attempts
// fail. Each worker holds 512 unacknowledged messages, most of them with deliveries still
// waiting for a slot: a round gives them all back to the queue while the old sessions'
// handlers go on with them, and the copies come back to the new sessions of either worker.
// Each worker must be back on fresh connections within 30 s of a round (a worker once lost
// its publisher's for good: the publisher spun on the closed returns channel of the channel it
// had lost), nothing may be lost, and duplicates stay within stormPlainDuplicates for
// deliveries never postponed, and within stormDuplicates in all.
func TestReconnectStorm(t *testing.T) {
	bed := testbed.New(t)
	l := NewLedger(t, bed, 4)
	// Slow enough that every slot is taken and the prefetch holds a queue behind them. One
	// webhook fails its first attempts, so that retries are being parked, and confirmed, as the
	// connections go.
	failing := l.Hooks[3]
	l.Respond(func(h Hit, r *http.Request) int {
		status := hold(r, 200*time.Millisecond)
		if h.Webhook == failing && h.Attempt == 1 {
			return http.StatusInternalServerError
		}
		return status
	})

	const events = 500
	for range events {
		if err := l.Publish(l.NextID()); err != nil {
			t.Fatal(err)
		}
	}
	// 200 ms is close enough to the limiter's 250 ms that, under the race detector, some
	// attempts take longer and their webhooks turn slow: most of the backlog is postponed to
	// the first retry queue, some of it more than once. Its first delay is seconds, not the
	// 300 ms of ProcOptions' ladder, so that a postponed delivery comes back after its
	// postponement has left delivery/inflight.go: one back before is taken there for a
	// duplicate of its own postponement and acked, and stays pending until the repair sweep.
	opts := ProcOptions{Concurrency: 16, Prefetch: 512, Ladder: retry.Ladder{3 * time.Second, 6 * time.Second}}
	procs := []*Proc{StartProc(t, bed, opts), StartProc(t, bed, opts)}
	port := brokerPort(t)
	// Every connection a worker keeps (consumers of its queues, the publisher), counted at
	// the first round: each round closes them all, and a worker is back once it has as many.
	keeps := map[int]int{}

	const rounds = 5
	for round := range rounds {
		before := l.Delivered()
		// Polled gently: every look counts all the hits, on the cores the workers need.
		if !poll(30*time.Second, 100*time.Millisecond, func() bool { return l.Delivered() >= before+50 }) {
			t.Fatalf("round %d: deliveries did not go on", round)
		}
		if d := l.Delivered(); d >= events*len(l.Hooks) {
			t.Fatalf("round %d: the backlog has drained (%d pairs delivered): the round would not hit it", round, d)
		}
		all, err := brokerConns()
		if err != nil {
			t.Fatal(err)
		}
		var conns []brokerConn
		closed := map[int]bool{} // the closed connections' ports on the workers' side
		for _, p := range procs {
			ports, err := localPorts(p.PID(), port)
			if err != nil {
				t.Fatal(err)
			}
			var mine []brokerConn
			for _, c := range all {
				if ports[c.PeerPort] {
					mine = append(mine, c)
					closed[c.PeerPort] = true
				}
			}
			if round == 0 {
				keeps[p.PID()] = len(mine)
			}
			if n := keeps[p.PID()]; len(mine) != n || n < 2 {
				t.Fatalf("round %d: worker %d has %d connections to the broker, want %d and at least a consumer's and the publisher's: %+v", round, p.PID(), len(mine), n, mine)
			}
			conns = append(conns, mine...)
		}
		mark := time.Now()
		closeAll(t, conns)
		took := time.Since(mark)
		// Back: a socket to the broker for each connection, none of them one that was
		// closed, and /readyz 200 (consuming, and the publisher has a channel). Read from
		// /proc, so that polling runs no rabbitmqctl.
		back := func(p *Proc) bool {
			ports, err := localPorts(p.PID(), port)
			if err != nil || len(ports) != keeps[p.PID()] {
				return false
			}
			for pt := range ports {
				if closed[pt] {
					return false
				}
			}
			return p.Ready() == http.StatusOK
		}
		var lag []time.Duration
		for _, p := range procs {
			if !poll(30*time.Second, 20*time.Millisecond, func() bool { return back(p) }) {
				ports, _ := localPorts(p.PID(), port)
				c, _ := connsOfProcess(p.PID(), port)
				t.Fatalf("round %d: worker %d not back 30s after the closes: its sockets to the broker from ports %v (closed: %v), the broker's connections %+v, /readyz %d",
					round, p.PID(), ports, closed, c, p.Ready())
			}
			lag = append(lag, time.Since(mark)-took)
		}
		t.Logf("round %d: closed %d connections in %v; workers back %v and %v after the last close; %d pairs delivered",
			round, len(conns), took.Round(time.Millisecond), lag[0].Round(time.Millisecond), lag[1].Round(time.Millisecond), l.Delivered())
	}
	for _, p := range procs {
		t.Logf("worker %d: %v deliveries postponed, %v attempts left to the same attempt in flight", p.PID(),
			p.Metric("webhookd_deliveries_postponed_total"), p.Metric("webhookd_duplicate_attempts_avoided_total"))
	}
	tally := l.Check(t, "reconnect storm", 90*time.Second, Expect{DuplicatePercent: stormDuplicates})
	// The deliveries never postponed are those the contract's promise is about: after a lost
	// channel the old session's handlers and the copies of their messages do not both
	// attempt them (delivery/inflight.go, within a worker).
	postponed := map[string]bool{}
	for _, p := range procs {
		for id := range postponedIDs(t, p) {
			postponed[id] = true
		}
	}
	ok := map[string]int{}
	for _, h := range l.Hits() {
		if h.OK() {
			ok[h.DeliveryID]++
		}
	}
	plain := 0
	for id, n := range ok {
		if n > 1 && !postponed[id] {
			plain += n - 1
		}
	}
	t.Logf("%d of %d pairs postponed at least once; duplicates %d, of deliveries never postponed %d", len(postponed), tally.Pairs, tally.Duplicates, plain)
	if bound := max(2, tally.Pairs*stormPlainDuplicates/100); plain > bound {
		t.Errorf("duplicates of deliveries never postponed = %d, want at most %d (%d%% of %d pairs)", plain, bound, stormPlainDuplicates, tally.Pairs)
	}
	for _, p := range procs {
		if p.Ready() != http.StatusOK {
			t.Errorf("worker %d: /readyz = %d after the storm, want 200", p.PID(), p.Ready())
		}
	}
}

// TestReconnectStorm's bounds on duplicates, in percent of its pairs, with the race detector
// on a 2-core VM (2,000 to 2,400 pairs each). Deliveries never postponed had 0 to 83
// duplicates, 2 in the median: an attempt made by the old session while the copy of its
// message, given to the other worker, makes it too (inflight.go sees one process only), or a
// copy that read the log before the first attempt was recorded and waited for a slot long
// after. Postponed deliveries make the rest, 9 to 45 % of the pairs in all: a copy of an event
// message back after a lost channel finds a postponed delivery pending without an attempt and
// attempts it, and so does the postponed message when it comes back.
const (
	stormDuplicates      = 60
	stormPlainDuplicates = 8
)

// postponedIDs returns the deliveries p has logged as postponed (it logs at debug level).
func postponedIDs(t *testing.T, p *Proc) map[string]bool {
	t.Helper()
	f, err := os.Open(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg string `json:"msg"`
			ID  string `json:"delivery_id"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && strings.HasPrefix(line.Msg, "delivery postponed") {
			ids[line.ID] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", p.log, err)
	}
	return ids
}

// closeAll closes conns at once: rabbitmqctl takes one to two seconds for each, and a round
// closed one by one would let the first worker reconnect before the last is hit.
func closeAll(t *testing.T, conns []brokerConn) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]string, len(conns))
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A connection that went away meanwhile is not an error.
			if out, err := rabbitmqctl("close_connection", c.PID, "webhookd fault test"); err != nil && !strings.Contains(out, "not found") {
				errs[i] = fmt.Sprintf("close_connection %s: %v", c.PID, err)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Log(e)
		}
	}
}
