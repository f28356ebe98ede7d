//go:build faults

package faults

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
	"github.com/webhookd/webhookd/retry"
)

// The three-node cluster of scripts/cluster.sh: node n is wcl<n>@localhost, AMQP on 5680+n.
var (
	clusterScript = filepath.Join("..", "scripts", "cluster.sh")
	clusterURLs   = clusterURLsFrom(1)
)

// clusterURLsFrom lists the three nodes' URLs comma-separated, starting with node first.
func clusterURLsFrom(first int) string {
	var urls []string
	for i := range 3 {
		urls = append(urls, fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", 5680+(first-1+i)%3+1))
	}
	return strings.Join(urls, ",")
}

// connsToNode counts the connections of the worker processes to node n.
func connsToNode(procs []*Proc, n int) int {
	total := 0
	for _, p := range procs {
		ports, _ := localPorts(p.PID(), 5680+n)
		total += len(ports)
	}
	return total
}

// clusterCmd runs scripts/cluster.sh with args.
func clusterCmd(timeout time.Duration, args ...string) (string, error) {
	return command(timeout, "bash", append([]string{clusterScript}, args...)...)
}

// startCluster brings up the cluster and stops it (every node killed, its data removed) when
// t ends, however it ends.
func startCluster(t *testing.T) {
	t.Helper()
	lockCluster(t)
	t.Cleanup(func() {
		if out, err := clusterCmd(time.Minute, "stop"); err != nil {
			t.Errorf("stop the cluster: %v\n%s", err, out)
		}
	})
	start := time.Now()
	// A run killed before its cleanup (go test -timeout) may have left nodes and queues: start
	// afresh.
	if out, err := clusterCmd(time.Minute, "stop"); err != nil {
		t.Fatalf("stop a leftover cluster: %v\n%s", err, out)
	}
	if out, err := clusterCmd(3*time.Minute, "start"); err != nil {
		t.Fatalf("start the cluster: %v\n%s", err, out)
	}
	t.Logf("cluster of 3 nodes up in %v", time.Since(start).Round(100*time.Millisecond))
}

// lockCluster takes the machine-wide lock of the cluster's fixed ports and directory, so that
// a run of the fault tests in another checkout waits for this one rather than kills its nodes;
// the lock goes when t ends, after the nodes.
func lockCluster(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "webhookd-cluster.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("cluster lock: %v", err)
	}
	locked := poll(5*time.Minute, 250*time.Millisecond, func() bool {
		return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
	})
	if !locked {
		f.Close()
		t.Fatalf("another run holds %s: its cluster did not stop within 5m", f.Name())
	}
	t.Cleanup(func() { f.Close() })
}

// clusterLeader returns the number of the node that leads queue.
func clusterLeader(queue string) (int, error) {
	out, err := clusterCmd(time.Minute, "leader", queue)
	if err != nil {
		return 0, fmt.Errorf("leader of %s: %w", queue, err)
	}
	node := strings.TrimSpace(out)
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(node, "wcl"), "@localhost"))
	if err != nil || n < 1 || n > 3 {
		return 0, fmt.Errorf("leader of %s: unexpected answer %q", queue, out)
	}
	return n, nil
}

// clusterCtl runs rabbitmqctl on the first node of the cluster that answers.
func clusterCtl(args ...string) (string, error) {
	var errs []error
	for n := 1; n <= 3; n++ {
		out, err := command(time.Minute, "rabbitmqctl", append([]string{"-n", fmt.Sprintf("wcl%d@localhost", n), "-q"}, args...)...)
		if err == nil {
			return out, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// clusterQueue is a queue as the cluster's rabbitmqctl lists it.
type clusterQueue struct {
	Leader            string
	Members, Online   int
	Messages, Unacked int
}

// clusterQueues lists the cluster's queues whose names start with prefix.
func clusterQueues(prefix string) (map[string]clusterQueue, error) {
	out, err := clusterCtl("list_queues", "--no-table-headers", "name", "leader", "members", "online", "messages", "messages_unacknowledged")
	if err != nil {
		return nil, err
	}
	count := func(list string) int { return len(strings.Fields(strings.Trim(list, "[]"))) }
	qs := map[string]clusterQueue{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(line), "\t")
		if len(f) != 6 || !strings.HasPrefix(f[0], prefix) {
			continue
		}
		q := clusterQueue{Leader: f[1], Members: count(strings.ReplaceAll(f[2], ",", " ")), Online: count(strings.ReplaceAll(f[3], ",", " "))}
		fmt.Sscan(f[4], &q.Messages)
		fmt.Sscan(f[5], &q.Unacked)
		qs[f[0]] = q
	}
	return qs, nil
}

// awaitMembersOnline waits until every member of the queues named is online again: a node
// restarted after a kill has rejoined each queue's Raft group.
func awaitMembersOnline(t *testing.T, prefix string, names []string) {
	t.Helper()
	var last map[string]clusterQueue
	ok := poll(time.Minute, 500*time.Millisecond, func() bool {
		qs, err := clusterQueues(prefix)
		if err != nil {
			return false
		}
		last = qs
		for _, name := range names {
			if q, ok := qs[name]; !ok || q.Online != 3 || q.Members != 3 {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("quorum queue members not all online within 1m: %+v", last)
	}
}

// clusterPublisher publishes to the cluster on its own connection, in confirm mode, and
// redials (to the next node of the list) whenever its channel is gone.
type clusterPublisher struct {
	mu      sync.Mutex
	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return
}

func (p *clusterPublisher) channel() (*amqp.Channel, error) {
	if p.ch != nil && !p.ch.IsClosed() {
		return p.ch, nil
	}
	p.closeLocked()
	conn, err := broker.Dial(clusterURLs, "cluster test publisher")
	if err != nil {
		return nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	p.conn, p.ch = conn, ch
	p.returns = ch.NotifyReturn(make(chan amqp.Return, 16))
	return ch, nil
}

// publishOnce publishes msg and waits for its confirm.
func (p *clusterPublisher) publishOnce(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch, err := p.channel()
	if err != nil {
		return err
	}
	msg.DeliveryMode = amqp.Persistent
	msg.Timestamp = time.Now()
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	if err != nil {
		p.closeLocked()
		return err
	}
	acked, err := conf.WaitContext(ctx)
	if err != nil {
		// The node may be dead without the library knowing yet: start afresh.
		p.closeLocked()
		return err
	}
	// A nack or a return may come from a channel whose queue client lost track of the
	// queue's leader: a fresh connection starts afresh.
	if !acked {
		p.closeLocked()
		return errors.New("nacked by the broker")
	}
	select {
	case r := <-p.returns:
		p.closeLocked()
		return fmt.Errorf("returned unroutable: %s", r.ReplyText)
	default:
	}
	return nil
}

// publish retries publishOnce through node failures until the cluster confirms msg.
func (p *clusterPublisher) publish(exchange, key string, msg amqp.Publishing) error {
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := p.publishOnce(ctx, exchange, key, msg)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not confirmed within 1m: %w", err)
		}
		// A pause between attempts while a node is away, not a synchronisation.
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *clusterPublisher) closeLocked() {
	if p.conn != nil {
		// Not Close, which waits for the broker's close-ok however long: a node whose
		// channel is stuck on a quorum queue without a leader answers only after a minute.
		p.conn.CloseDeadline(time.Now().Add(time.Second))
	}
	p.conn, p.ch = nil, nil
}

func (p *clusterPublisher) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked()
}

// clusterFlow publishes the ledger's events to the cluster, one every interval, and keeps
// the ids the cluster confirmed. (The Ledger's own publisher talks to testbed.AMQPURL only.)
type clusterFlow struct {
	l    *Ledger
	bed  *testbed.Bed
	pub  *clusterPublisher
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu     sync.Mutex
	events []string
	err    error
}

func startClusterFlow(t *testing.T, l *Ledger, bed *testbed.Bed, max int, every time.Duration) *clusterFlow {
	f := &clusterFlow{l: l, bed: bed, pub: &clusterPublisher{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for range max {
			select {
			case <-f.stop:
				return
			case <-tick.C:
			}
			id := l.NextID()
			msg := amqp.Publishing{ContentType: "application/json", Body: l.EventBody(id)}
			if err := f.pub.publish(bed.Exchange, "TASK.CREATED", msg); err != nil {
				f.mu.Lock()
				f.err = fmt.Errorf("publish event %s: %w", id, err)
				f.mu.Unlock()
				return
			}
			f.mu.Lock()
			f.events = append(f.events, id)
			f.mu.Unlock()
		}
	}()
	t.Cleanup(func() { f.Stop(); f.pub.close() })
	return f
}

// Stop ends the flow and waits for it.
func (f *clusterFlow) Stop() {
	f.once.Do(func() { close(f.stop) })
	<-f.done
}

// Events returns the confirmed event ids, and the error that ended the flow, if any.
func (f *clusterFlow) Events() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...), f.err
}

// clusterTally compares the confirmed events with the delivery log and the receiver once, as
// the Ledger's tally does: every (event, webhook) pair must have got a 2xx and be recorded
// as succeeded, and every attempt logged must be a request the receiver got.
func clusterTally(l *Ledger, bed *testbed.Bed, events []string) (Tally, []string) {
	var rows []struct {
		ID     string `db:"id"`
		Status string `db:"status"`
	}
	if err := bed.Store.DB().Select(&rows, "SELECT id, status FROM deliveries"); err != nil {
		return Tally{}, []string{"read deliveries: " + err.Error()}
	}
	status := make(map[string]string, len(rows))
	for _, r := range rows {
		status[r.ID] = r.Status
	}
	var logged []struct {
		ID string `db:"delivery_id"`
		N  int    `db:"n"`
	}
	if err := bed.Store.DB().Select(&logged, "SELECT delivery_id, COUNT(*) AS n FROM attempts GROUP BY delivery_id"); err != nil {
		return Tally{}, []string{"read attempts: " + err.Error()}
	}
	hits := l.Hits()
	ok, made := map[string]int{}, map[string]int{}
	tally := Tally{Events: len(events), Requests: len(hits)}
	for _, h := range hits {
		made[h.DeliveryID]++
		switch {
		case h.OK():
			ok[h.DeliveryID]++
		case h.Done && h.Status == 0:
			tally.Abandoned++
		case h.Done:
			tally.Refused++
		}
	}
	var problems []string
	for _, a := range logged {
		if a.N > made[a.ID] {
			problems = append(problems, fmt.Sprintf("delivery %s: %d attempts logged for %d requests made", a.ID, a.N, made[a.ID]))
		}
	}
	for _, ev := range events {
		for _, w := range l.Hooks {
			tally.Pairs++
			id := repository.DeliveryID(ev, w)
			n, st := ok[id], status[id]
			switch {
			case n > 0 && st == repository.StatusSucceeded:
				tally.Delivered++
			case st == repository.StatusFailed:
				// Settled, but wrong here: the check after settling fails the test.
				tally.Failed++
			case n > 0:
				problems = append(problems, fmt.Sprintf("event %s webhook %d: got a 2xx but recorded %q", ev, w, st))
			case st == repository.StatusSucceeded:
				problems = append(problems, fmt.Sprintf("event %s webhook %d: recorded succeeded without a 2xx", ev, w))
			default:
				problems = append(problems, fmt.Sprintf("event %s webhook %d: not delivered, recorded %q", ev, w, st))
			}
			if n > 1 {
				tally.Duplicates += n - 1
			}
		}
	}
	return tally, problems
}

// clusterQuiet reports whether the work and retry queues have no message ready, as a passive
// declare on the cluster says right now.
func clusterQuiet(pub *clusterPublisher, topo broker.Topology) (bool, string) {
	names := []string{topo.Queue}
	for _, d := range topo.Ladder.Delays() {
		names = append(names, retry.QueueName(topo.Queue, d))
	}
	var busy []string
	for _, name := range names {
		n, err := pub.depth(name)
		if err != nil {
			return false, err.Error()
		}
		if n > 0 {
			busy = append(busy, fmt.Sprintf("%s: %d ready", name, n))
		}
	}
	if len(busy) > 0 {
		return false, "queues not empty: " + strings.Join(busy, ", ")
	}
	return true, ""
}

// depth is the number of ready messages in queue.
func (p *clusterPublisher) depth(queue string) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch, err := p.channel()
	if err != nil {
		return 0, err
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		p.closeLocked()
		return 0, fmt.Errorf("inspect queue %s: %w", queue, err)
	}
	return q.Messages, nil
}

// TestClusterNodeKills runs two workers on a three-node cluster whose quorum queues are
// spread over the nodes, and while events flow kills with SIGKILL the node that leads the
// work queue, then the node that leads the first retry queue, restarting each after a
// while. Every (event, webhook) pair must end delivered, nothing dead-lettered.
func TestClusterNodeKills(t *testing.T) {
	bed := testbed.New(t)
	startCluster(t)
	l := NewLedger(t, bed, 2)
	ladder := retry.Ladder{300 * time.Millisecond, 600 * time.Millisecond}
	topo := broker.Topology{Exchange: bed.Exchange, Queue: bed.Queue, QueueType: "quorum", Ladder: ladder}
	firstRetry := retry.QueueName(bed.Queue, ladder[0])
	queueNames := []string{bed.Queue, bed.Queue + ".dead"}
	for _, d := range ladder.Delays() {
		queueNames = append(queueNames, retry.QueueName(bed.Queue, d))
	}

	// The topology, declared on the cluster before anything is published to it.
	conn, err := broker.Dial(clusterURLs, bed.Name+" topology")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err == nil {
		err = topo.Declare(ch)
	}
	conn.Close()
	if err != nil {
		t.Fatalf("declare the topology on the cluster: %v", err)
	}
	qs, err := clusterQueues(bed.Queue)
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[string]bool{}
	var placement []string
	for _, name := range queueNames {
		q := qs[name]
		leaders[q.Leader] = true
		label := "work"
		if name != bed.Queue {
			label = strings.TrimPrefix(name, bed.Queue+".")
		}
		placement = append(placement, fmt.Sprintf("%s on %s (%d members)", label, q.Leader, q.Members))
		if q.Members != 3 {
			t.Fatalf("queue %s has %d members, want 3: %+v", name, q.Members, q)
		}
	}
	sort.Strings(placement)
	t.Logf("quorum queue leaders: %s", strings.Join(placement, ", "))
	if len(leaders) < 2 {
		t.Errorf("every queue is led by the same node: the leaders are not spread")
	}

	// A quarter of the events fail their first attempt, one in twelve their first two: their
	// deliveries go through one or both retry queues and succeed at most at attempt 3, the
	// last the ladder allows.
	l.Respond(func(h Hit, r *http.Request) int {
		seq, _ := strconv.Atoi(strings.TrimPrefix(h.EventID, "ev-"))
		switch {
		case seq%12 == 0 && h.Attempt <= 2, seq%4 == 0 && h.Attempt <= 1:
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	// Each worker lists the nodes in another order, and each of its dials starts one node
	// further along its list: between them their connections are on every node.
	var procs []*Proc
	for first := 1; first <= 2; first++ {
		procs = append(procs, StartProc(t, bed, ProcOptions{AMQPURL: clusterURLsFrom(first), Ladder: ladder}))
	}
	retried := func() int {
		n := 0
		for _, h := range l.Hits() {
			if h.OK() && h.Attempt >= 2 {
				n++
			}
		}
		return n
	}

	// Events flow until the faults are over.
	flow := startClusterFlow(t, l, bed, 1_000_000, 20*time.Millisecond)
	mark := func() (int, int) { return l.Delivered(), retried() }
	testbed.Eventually(t, time.Minute, "deliveries and retries before the first kill", func() bool {
		d, r := mark()
		return d >= 100 && r >= 10
	})

	for _, fault := range []struct{ what, queue string }{
		{"work queue", bed.Queue},
		{"first retry queue", firstRetry},
	} {
		node, err := clusterLeader(fault.queue)
		if err != nil {
			t.Fatal(err)
		}
		conns := connsToNode(procs, node)
		if out, err := clusterCmd(time.Minute, "kill", strconv.Itoa(node)); err != nil {
			t.Fatalf("kill node %d: %v\n%s", node, err, out)
		}
		killed := time.Now()
		d0, r0 := mark()
		events, _ := flow.Events()
		t.Logf("killed wcl%d@localhost, leader of the %s and host of %d of the workers' connections, after %d deliveries (%d retried), %d events published",
			node, fault.what, conns, d0, r0, len(events))
		// The two nodes left go on: a new leader, and new events delivered through them.
		// (Retries may wait for the node: RabbitMQ 3.10's dead-letter worker sends to the
		// first member of the work queue while it knows no leader, and is refused while that
		// member is down; see scripts/cluster.sh.)
		testbed.Eventually(t, time.Minute, "deliveries with a node down", func() bool {
			d, _ := mark()
			return d >= d0+200
		})
		d1, r1 := mark()
		now := "unknown"
		if n, err := clusterLeader(fault.queue); err == nil {
			now = fmt.Sprintf("wcl%d", n)
		}
		t.Logf("with wcl%d down: leader of the %s now %s; %d deliveries (%d retried) in %v",
			node, fault.what, now, d1-d0, r1-r0, time.Since(killed).Round(100*time.Millisecond))
		if out, err := clusterCmd(3*time.Minute, "restart", strconv.Itoa(node)); err != nil {
			t.Fatalf("restart node %d: %v\n%s", node, err, out)
		}
		awaitMembersOnline(t, bed.Queue, queueNames)
		t.Logf("wcl%d@localhost back after %v", node, time.Since(killed).Round(100*time.Millisecond))
		// Retries go on with the cluster whole again.
		testbed.Eventually(t, time.Minute, "retried deliveries after the restart", func() bool {
			_, r := mark()
			return r >= r1+20
		})
	}

	// Some more events once the cluster is whole again, then the flow ends.
	d0 := l.Delivered()
	testbed.Eventually(t, time.Minute, "deliveries after the restarts", func() bool { return l.Delivered() >= d0+100 })
	flow.Stop()
	events, err := flow.Events()
	if err != nil {
		t.Fatalf("event flow: %v", err)
	}

	// Settle: every pair delivered and recorded, the work and retry queues empty.
	const timeout = 90 * time.Second
	start := time.Now()
	var tally Tally
	var problems []string
	settled := poll(timeout, 250*time.Millisecond, func() bool {
		tally, problems = clusterTally(l, bed, events)
		if len(problems) > 0 {
			return false
		}
		quiet, why := clusterQuiet(flow.pub, topo)
		if !quiet {
			problems = []string{why}
		}
		return quiet
	})
	settledIn := time.Since(start)
	if !settled {
		sort.Strings(problems)
		if len(problems) > 20 {
			problems = append(problems[:20], fmt.Sprintf("… and %d more", len(problems)-20))
		}
		t.Errorf("FAULT cluster node kills: not settled within %v:\n  %s", timeout, strings.Join(problems, "\n  "))
		if qs, err := clusterQueues(bed.Queue); err == nil {
			t.Logf("the cluster's queues: %+v", qs)
		}
	} else {
		// rabbitmqctl's counts of quorum queues lag: give them a while to show nothing in flight.
		left := map[string]clusterQueue{}
		if !poll(15*time.Second, 500*time.Millisecond, func() bool {
			qs, err := clusterQueues(bed.Queue)
			if err != nil {
				return false
			}
			clear(left)
			for name, q := range qs {
				if name != topo.DeadQueue() && q.Messages > 0 {
					left[name] = q
				}
			}
			return len(left) == 0
		}) {
			t.Errorf("FAULT cluster node kills: messages still in the queues 15s after every delivery settled: %+v", left)
		}
	}
	if n, err := flow.pub.depth(topo.DeadQueue()); err != nil || n > 0 {
		t.Errorf("FAULT cluster node kills: dead queue holds %d messages (err %v), want none", n, err)
	}
	if tally.Failed > 0 {
		t.Errorf("FAULT cluster node kills: %d pairs recorded as failed, want none", tally.Failed)
	}
	if bound := max(2, tally.Pairs*5/100); tally.Duplicates > bound {
		t.Errorf("FAULT cluster node kills: duplicates = %d, want at most %d (5%% of %d pairs)", tally.Duplicates, bound, tally.Pairs)
	}
	t.Logf("FAULT cluster node kills: events=%d delivered=%d failed=%d duplicates=%d", tally.Events, tally.Delivered, tally.Failed, tally.Duplicates)
	t.Logf("FAULT cluster node kills detail: webhooks=%d pairs=%d requests=%d retried=%d abandoned=%d non2xx=%d settled_in=%v",
		len(l.Hooks), tally.Pairs, tally.Requests, retried(), tally.Abandoned, tally.Refused, settledIn.Round(10*time.Millisecond))
}
