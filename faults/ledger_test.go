//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
)

// Ledger is the fault tests' bookkeeper. It publishes events with publisher confirms and
// notes each one the broker confirmed; it runs the receiver every webhook points at and
// notes each request; and Check compares the two with the delivery log.
type Ledger struct {
	t       *testing.T
	bed     *testbed.Bed
	account uint64
	event   string
	url     string // the receiver's
	// Hooks are the webhook ids, all subscribed to every event the ledger publishes.
	Hooks []uint64
	// elsewhere are the webhooks of Hooks whose URL is not the receiver's.
	elsewhere map[uint64]bool

	pub *ledgerPublisher

	mu        sync.Mutex
	seq       int
	events    []string
	confirmed map[string]bool
	hits      []*Hit
	respond   func(h Hit, r *http.Request) int
	extra     map[string]int
	flows     []*Flow
}

// Hit is one request the receiver got.
type Hit struct {
	DeliveryID string
	EventID    string
	Webhook    uint64
	Attempt    int
	At         time.Time
	// Status is what the receiver answered: 0 while the request is being handled, or when
	// the worker gave up on it (closed the connection) before the answer.
	Status int
	Done   bool
}

// OK reports whether the worker got a 2xx answer to the request.
func (h Hit) OK() bool { return h.Status >= 200 && h.Status < 300 }

// NewLedger starts the receiver, adds webhooks webhooks for one account and event, declares
// the exchange and work queue so that events published before a worker starts are kept, and
// connects the ledger's publisher.
func NewLedger(t *testing.T, bed *testbed.Bed, webhooks int) *Ledger {
	t.Helper()
	l := &Ledger{
		t:         t,
		bed:       bed,
		account:   7,
		event:     "TASK.CREATED",
		confirmed: map[string]bool{},
		extra:     map[string]int{},
		elsewhere: map[uint64]bool{},
	}
	srv := httptest.NewServer(http.HandlerFunc(l.serve))
	t.Cleanup(srv.Close)
	l.url = srv.URL
	for i := range webhooks {
		l.Hooks = append(l.Hooks, bed.AddWebhook(testbed.Webhook{
			Account: l.account, Event: l.event, URL: l.HookURL(i),
		}))
	}
	bed.DeclareTopology("quorum")
	l.pub = &ledgerPublisher{name: bed.Name + " ledger"}
	t.Cleanup(func() {
		l.mu.Lock()
		flows := l.flows
		l.mu.Unlock()
		for _, f := range flows {
			f.Stop()
		}
		l.pub.close()
	})
	return l
}

// HookURL is the receiver's URL for the webhook that is, or will be, Hooks[i].
func (l *Ledger) HookURL(i int) string { return l.url + "/hook/" + strconv.Itoa(i) }

// AddWebhook inserts one more webhook row for the ledger's account and event, with url and
// token exactly as given (empty ones included), and adds it to Hooks: Check counts its pairs
// like the others'. HookURL(len(l.Hooks)) points it at the receiver; attempts to any other URL
// are not expected to reach it, so Check does not hold their logged attempts against the
// requests the receiver got. Add webhooks before publishing events.
func (l *Ledger) AddWebhook(url, token string) uint64 {
	l.t.Helper()
	res, err := l.bed.Store.DB().Exec("INSERT INTO webhooks (account_id, event, url, token) VALUES (?,?,?,?)",
		l.account, l.event, url, token)
	if err != nil {
		l.t.Fatalf("insert webhook: %v", err)
	}
	id, _ := res.LastInsertId()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !strings.HasPrefix(url, l.HookURL(len(l.Hooks))) {
		l.elsewhere[uint64(id)] = true
	}
	l.Hooks = append(l.Hooks, uint64(id))
	return uint64(id)
}

func (l *Ledger) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var payload struct {
		EventID string `json:"eventId"`
	}
	json.Unmarshal(body, &payload)
	h := &Hit{
		DeliveryID: r.Header.Get("X-Webhook-Delivery"),
		EventID:    payload.EventID,
		At:         time.Now(),
	}
	h.Attempt, _ = strconv.Atoi(r.Header.Get("X-Webhook-Attempt"))
	if i, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/hook/")); err == nil && i >= 0 && i < len(l.Hooks) {
		h.Webhook = l.Hooks[i]
	}
	l.mu.Lock()
	l.hits = append(l.hits, h)
	respond := l.respond
	l.mu.Unlock()
	status := http.StatusOK
	if respond != nil {
		status = respond(*h, r)
	}
	// The server cancels the request's context when the client closes the connection: the
	// worker gave up (shutdown, timeout) and will never see this answer.
	gone := r.Context().Err() != nil
	l.mu.Lock()
	if !gone {
		h.Status = status
	}
	h.Done = true
	l.mu.Unlock()
	if !gone {
		w.WriteHeader(status)
	}
}

// Respond sets how the receiver answers each request (200 when fn is nil). fn may block, to
// hold a request; it should return early when r's context ends.
func (l *Ledger) Respond(fn func(h Hit, r *http.Request) int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.respond = fn
}

// Hits returns a copy of every request received so far.
func (l *Ledger) Hits() []Hit {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Hit, len(l.hits))
	for i, h := range l.hits {
		out[i] = *h
	}
	return out
}

// Delivered is the number of deliveries (event, webhook) that got a 2xx answer.
func (l *Ledger) Delivered() int {
	seen := map[string]bool{}
	for _, h := range l.Hits() {
		if h.OK() {
			seen[h.DeliveryID] = true
		}
	}
	return len(seen)
}

// WaitHits waits until cond holds for the requests received so far.
func (l *Ledger) WaitHits(t *testing.T, timeout time.Duration, what string, cond func(hits []Hit) bool) {
	t.Helper()
	testbed.Eventually(t, timeout, what, func() bool { return cond(l.Hits()) })
}

// Events returns the ids of the events the broker confirmed, in order.
func (l *Ledger) Events() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

// ExpectExtra notes that delivery id was asked to be delivered n more times (redeliveries),
// so that Check does not count those requests as duplicates.
func (l *Ledger) ExpectExtra(id string, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.extra[id] += n
}

// NextID returns a new event id.
func (l *Ledger) NextID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	return fmt.Sprintf("ev-%05d", l.seq)
}

// EventBody is the body of the ledger's event id.
func (l *Ledger) EventBody(id string) []byte {
	return []byte(testbed.Event(id, l.event, int(l.account), fmt.Sprintf(`"objectId":%q,"data":{"id":%q}`, id, id)))
}

// Publish publishes event id to the bed's exchange, retrying through broker outages until
// the broker confirms it, and notes it.
func (l *Ledger) Publish(id string) error {
	return l.PublishEvent(id, amqp.Publishing{})
}

// PublishEvent is Publish with the message's properties and headers taken from msg.
func (l *Ledger) PublishEvent(id string, msg amqp.Publishing) error {
	msg.ContentType = "application/json"
	msg.Body = l.EventBody(id)
	if err := l.publish(l.bed.Exchange, l.event, msg); err != nil {
		return fmt.Errorf("publish event %s: %w", id, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.confirmed[id] {
		l.confirmed[id] = true
		l.events = append(l.events, id)
	}
	return nil
}

// PublishRaw publishes msg, retrying until the broker confirms it, without noting an event.
func (l *Ledger) PublishRaw(exchange, key string, msg amqp.Publishing) error {
	return l.publish(exchange, key, msg)
}

func (l *Ledger) publish(exchange, key string, msg amqp.Publishing) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var last error
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		err := l.pub.publish(actx, exchange, key, msg)
		acancel()
		if err == nil {
			return nil
		}
		last = err
		// A pause between attempts while the broker is away, not a synchronisation.
		select {
		case <-ctx.Done():
			return fmt.Errorf("not confirmed within 3m: %w", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Flow publishes events in the background, one every interval.
type Flow struct {
	l     *Ledger
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	err   error
	count int
}

// Flow starts publishing n events, one every interval.
func (l *Ledger) Flow(n int, every time.Duration) *Flow {
	f := &Flow{l: l, stop: make(chan struct{}), done: make(chan struct{})}
	l.mu.Lock()
	l.flows = append(l.flows, f)
	l.mu.Unlock()
	go func() {
		defer close(f.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for range n {
			select {
			case <-f.stop:
				return
			case <-tick.C:
			}
			if err := l.Publish(l.NextID()); err != nil {
				f.mu.Lock()
				f.err = err
				f.mu.Unlock()
				return
			}
			f.mu.Lock()
			f.count++
			f.mu.Unlock()
		}
	}()
	return f
}

// Published is how many events the flow has had confirmed so far.
func (f *Flow) Published() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}

// Stop ends the flow early and waits for it.
func (f *Flow) Stop() {
	f.once.Do(func() { close(f.stop) })
	<-f.done
}

// Wait waits for the flow to publish all its events.
func (f *Flow) Wait(t *testing.T) {
	t.Helper()
	select {
	case <-f.done:
	case <-time.After(4 * time.Minute):
		t.Fatalf("event flow did not finish within 4m (%d published)", f.Published())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		t.Fatalf("event flow: %v", f.err)
	}
}

// Tally is what Check found.
type Tally struct {
	Events, Pairs, Delivered, Failed, Duplicates int
	Requests, Abandoned, Refused                 int
}

// Check waits until every (event, webhook) pair of the confirmed events has settled — it got
// a 2xx and is recorded as succeeded, or it is recorded as failed — and the bed's work and
// retry queues are empty, then logs the figures in a fixed format:
//
//	FAULT <name>: events=N delivered=N failed=N duplicates=N
//
// Duplicates (2xx answers beyond the first per pair, less redeliveries asked for) are
// allowed: delivery is at least once. A pair that never settles is a lost delivery and fails
// the test, as does a delivery recorded as succeeded that the receiver never answered with a
// 2xx, an attempt logged that the receiver never got, or anything in the dead queue.
func (l *Ledger) Check(t *testing.T, name string, timeout time.Duration, want Expect) Tally {
	t.Helper()
	tally, problems := l.Verify(t, name, timeout, want)
	for _, p := range problems {
		t.Errorf("FAULT %s: %s", name, p)
	}
	return tally
}

// Expect is what a fault's ledger must show once settled.
type Expect struct {
	// Failed is the number of pairs recorded as failed without a 2xx.
	Failed int
	// DuplicatePercent bounds duplicates, as a percentage of the pairs (at least 2 allowed).
	DuplicatePercent float64
}

// Verify is Check that returns what is wrong instead of failing the test.
func (l *Ledger) Verify(t *testing.T, name string, timeout time.Duration, want Expect) (Tally, []string) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	var problems []string
	var tally Tally
	settled := false
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for ; time.Now().Before(deadline); <-tick.C {
		tally, problems = l.tally()
		if len(problems) == 0 {
			if quiet, why := l.quiet(t); quiet {
				settled = true
				break
			} else {
				problems = []string{why}
			}
		}
	}
	settledIn := time.Since(start)
	var wrong []string
	if !settled {
		sort.Strings(problems)
		if len(problems) > 20 {
			problems = append(problems[:20], fmt.Sprintf("… and %d more", len(problems)-20))
		}
		wrong = append(wrong, fmt.Sprintf("not settled within %v:\n  %s", timeout, strings.Join(problems, "\n  ")))
	}
	if settled {
		if n := l.unacked(10 * time.Second); n > 0 {
			wrong = append(wrong, fmt.Sprintf("%d messages still unacknowledged 10s after every delivery settled", n))
		}
		if tally.Failed != want.Failed {
			wrong = append(wrong, fmt.Sprintf("failed = %d, want %d", tally.Failed, want.Failed))
		}
		if bound := max(2, int(float64(tally.Pairs)*want.DuplicatePercent/100)); tally.Duplicates > bound {
			wrong = append(wrong, fmt.Sprintf("duplicates = %d, want at most %d (%.1f%% of %d pairs)", tally.Duplicates, bound, want.DuplicatePercent, tally.Pairs))
		}
	}
	if n := l.bed.QueueDepth(l.bed.Queue + ".dead"); n > 0 {
		wrong = append(wrong, fmt.Sprintf("%d messages in the dead queue", n))
	}
	t.Logf("FAULT %s: events=%d delivered=%d failed=%d duplicates=%d", name, tally.Events, tally.Delivered, tally.Failed, tally.Duplicates)
	t.Logf("FAULT %s detail: webhooks=%d pairs=%d requests=%d abandoned=%d non2xx=%d settled_in=%v",
		name, len(l.Hooks), tally.Pairs, tally.Requests, tally.Abandoned, tally.Refused, settledIn.Round(10*time.Millisecond))
	return tally, wrong
}

// tally compares the ledger with the delivery log once.
func (l *Ledger) tally() (Tally, []string) {
	type row struct {
		ID       string `db:"id"`
		Status   string `db:"status"`
		Attempts int    `db:"attempts"`
	}
	var rows []row
	if err := l.bed.Store.DB().Select(&rows, "SELECT id, status, attempts FROM deliveries"); err != nil {
		return Tally{}, []string{"read deliveries: " + err.Error()}
	}
	status := make(map[string]row, len(rows))
	for _, r := range rows {
		status[r.ID] = r
	}
	var logged []struct {
		ID string `db:"delivery_id"`
		N  int    `db:"n"`
	}
	if err := l.bed.Store.DB().Select(&logged, "SELECT delivery_id, COUNT(*) AS n FROM attempts GROUP BY delivery_id"); err != nil {
		return Tally{}, []string{"read attempts: " + err.Error()}
	}
	hits := l.Hits()
	ok := map[string]int{}
	made := map[string]int{}
	var tally Tally
	tally.Requests = len(hits)
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
	l.mu.Lock()
	extra := make(map[string]int, len(l.extra))
	for k, v := range l.extra {
		extra[k] = v
	}
	l.mu.Unlock()
	events := l.Events()
	tally.Events = len(events)
	away := map[string]bool{}
	for w := range l.elsewhere {
		for _, ev := range events {
			away[repository.DeliveryID(ev, w)] = true
		}
	}
	var problems []string
	// Every attempt in the log is a request the receiver got (a request may have no row:
	// its worker died or gave up before recording it).
	for _, a := range logged {
		if a.N > made[a.ID] && !away[a.ID] {
			problems = append(problems, fmt.Sprintf("delivery %s: %d attempts logged for %d requests made", a.ID, a.N, made[a.ID]))
		}
	}
	for _, ev := range events {
		for _, w := range l.Hooks {
			tally.Pairs++
			id := repository.DeliveryID(ev, w)
			r, recorded := status[id]
			n := ok[id]
			switch {
			case n > 0 && r.Status == repository.StatusSucceeded:
				tally.Delivered++
			case r.Status == repository.StatusFailed:
				// A 2xx the worker never saw (it timed out first) may precede a failure.
				if n > 0 {
					tally.Delivered++
				} else {
					tally.Failed++
				}
			case n > 0:
				problems = append(problems, fmt.Sprintf("event %s webhook %d: got a 2xx but recorded %q (row %v, attempts %d)", ev, w, r.Status, recorded, r.Attempts))
			case r.Status == repository.StatusSucceeded:
				problems = append(problems, fmt.Sprintf("event %s webhook %d: recorded succeeded without a 2xx", ev, w))
			default:
				problems = append(problems, fmt.Sprintf("event %s webhook %d: not delivered, recorded %q (row %v, attempts %d)", ev, w, r.Status, recorded, r.Attempts))
			}
			if n > 1+extra[id] {
				tally.Duplicates += n - 1 - extra[id]
			}
		}
	}
	return tally, problems
}

// quiet reports whether the bed's work and retry queues have no message ready, as the
// broker says right now (rabbitmqctl's counts of quorum queues lag by seconds).
func (l *Ledger) quiet(t *testing.T) (bool, string) {
	qs, err := queues(l.bed.Queue)
	if err != nil {
		return false, err.Error()
	}
	var busy []string
	for name := range qs {
		if name == l.bed.Queue+".dead" {
			continue
		}
		if n := l.bed.QueueDepth(name); n > 0 {
			busy = append(busy, fmt.Sprintf("%s: %d ready", name, n))
		}
	}
	if len(busy) > 0 {
		return false, "queues not empty: " + strings.Join(busy, ", ")
	}
	return true, ""
}

// unacked waits up to timeout for the broker's (lagging) counts to show no message of the
// work and retry queues in flight, and returns what is left.
func (l *Ledger) unacked(timeout time.Duration) int {
	left := 0
	poll(timeout, 500*time.Millisecond, func() bool {
		qs, err := queues(l.bed.Queue)
		if err != nil {
			return false
		}
		left = 0
		for name, q := range qs {
			if name != l.bed.Queue+".dead" {
				left += q.Messages
			}
		}
		return left == 0
	})
	return left
}

// ledgerPublisher publishes on its own connection, in confirm mode, reconnecting on demand.
type ledgerPublisher struct {
	name    string
	mu      sync.Mutex
	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return
}

func (p *ledgerPublisher) publish(ctx context.Context, exchange, key string, msg amqp.Publishing) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ch == nil || p.ch.IsClosed() {
		p.closeLocked()
		props := amqp.NewConnectionProperties()
		props.SetClientConnectionName(p.name)
		conn, err := amqp.DialConfig(testbed.AMQPURL, amqp.Config{Properties: props, Dial: amqp.DefaultDial(2 * time.Second)})
		if err != nil {
			return err
		}
		ch, err := conn.Channel()
		if err == nil {
			err = ch.Confirm(false)
		}
		if err != nil {
			conn.Close()
			return err
		}
		p.conn, p.ch = conn, ch
		p.returns = ch.NotifyReturn(make(chan amqp.Return, 16))
	}
	msg.DeliveryMode = amqp.Persistent
	if msg.Timestamp.IsZero() {
		msg.Timestamp = time.Now()
	}
	conf, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, msg)
	if err != nil {
		p.closeLocked()
		return err
	}
	acked, err := conf.WaitContext(ctx)
	if err != nil {
		// The broker may be gone without the library knowing yet: start afresh.
		p.closeLocked()
		return err
	}
	if !acked {
		return errors.New("nacked by the broker")
	}
	// The library hands a return to its channel before the confirm of the same message.
	select {
	case r := <-p.returns:
		return fmt.Errorf("returned unroutable: %s", r.ReplyText)
	default:
	}
	return nil
}

func (p *ledgerPublisher) closeLocked() {
	if p.conn != nil {
		p.conn.Close()
	}
	p.conn, p.ch = nil, nil
}

func (p *ledgerPublisher) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked()
}
