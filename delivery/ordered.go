package delivery

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/backoff"
	"github.com/webhookd/webhookd/repository"
)

// Ordering is the part of the log per-object ordering keeps (contract §9).
type Ordering interface {
	// Sequence places the ordered deliveries of events, in their order, and returns those
	// that may go at once.
	Sequence(ctx context.Context, events []repository.Sequenced, due time.Time) ([]string, error)
	// PlaceOf returns a delivery's place, and false when it has none.
	PlaceOf(ctx context.Context, deliveryID string) (repository.Place, bool, error)
	// Advance notes that a delivery settled and returns the one now first in line, if any.
	Advance(ctx context.Context, deliveryID string) (string, error)
}

// Sequencer handles the ordering queue: a copy of every event, consumed by one worker at a
// time (single active consumer), so that it sees an object's events in the order they were
// published. It gives each ordered webhook's delivery of an event its sequence number and
// starts those whose turn it is; the work queue's copy of the event delivers to every other
// webhook. Messages are handled concurrently, as the consumer hands them out, and placed in
// the order the broker delivered them (their delivery tags), a batch per transaction.
type Sequencer struct {
	hd *Handler

	mu       sync.Mutex
	sessions map[amqp.Acknowledger]*sequence
}

// sequence is one channel's messages, put back in delivery-tag order.
type sequence struct {
	next     uint64 // the tag placed next
	waiting  map[uint64]*placing
	flushing bool
	seen     time.Time
}

// placing is one message waiting for its turn to be placed.
type placing struct {
	ev   *repository.Sequenced // nil: nothing to place
	done chan error
}

// Sequencer returns the handler of the ordering queue.
func (hd *Handler) Sequencer() *Sequencer {
	return &Sequencer{hd: hd, sessions: map[amqp.Acknowledger]*sequence{}}
}

// Handle places d's event. It returns once every message delivered before d on its channel,
// and d, are placed. An event the work queue would dead-letter is acked here: its copy there
// carries the reason.
func (s *Sequencer) Handle(ctx context.Context, d amqp.Delivery) error {
	p := &placing{done: make(chan error, 1)}
	ev, err := s.ordered(ctx, d)
	if err != nil {
		return err
	}
	p.ev = ev
	s.mu.Lock()
	seq := s.session(d.Acknowledger)
	seq.waiting[d.DeliveryTag] = p
	start := !seq.flushing
	seq.flushing = true
	s.mu.Unlock()
	if start {
		s.flush(ctx, seq)
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ordered reads d's event and the ordered webhooks it goes to; nil when there are none.
func (s *Sequencer) ordered(ctx context.Context, d amqp.Delivery) (*repository.Sequenced, error) {
	hd := s.hd
	ev, err := parseEvent(d.Body, broker.RoutingKey(d), hd.cfg.MaxEventBytes, hd.now())
	if err != nil || !ev.ObjectID.Valid {
		return nil, nil
	}
	var hooks []repository.Webhook
	for bo := backoff.New(); ; {
		hooks, err = hd.webhooks.Webhooks(ctx, ev.AccountID, ev.Name)
		if err == nil {
			break
		}
		// The later events wait for this one: wait out the database rather than requeue
		// the message out of its place.
		hd.cfg.DBFailed(err)
		if !backoff.Sleep(ctx, bo.Next()) {
			return nil, repository.Unavailable(fmt.Errorf("look up webhooks: %w", err))
		}
	}
	var project *uint64
	if ev.ProjectID.Valid {
		p := uint64(ev.ProjectID.Int64)
		project = &p
	}
	sq := repository.Sequenced{Event: ev}
	for _, h := range hooks {
		if h.Ordered && h.Matches(project) {
			sq.Webhooks = append(sq.Webhooks, h.ID)
		}
	}
	if len(sq.Webhooks) == 0 {
		return nil, nil
	}
	return &sq, nil
}

// session is the sequence of a channel, made on its first message; s.mu is held. Channels
// gone quiet for long are forgotten: a channel lives as long as its connection.
func (s *Sequencer) session(ch amqp.Acknowledger) *sequence {
	now := time.Now()
	seq := s.sessions[ch]
	if seq == nil {
		for k, old := range s.sessions {
			if len(old.waiting) == 0 && !old.flushing && now.Sub(old.seen) > 10*time.Minute {
				delete(s.sessions, k)
			}
		}
		seq = &sequence{next: 1, waiting: map[uint64]*placing{}}
		s.sessions[ch] = seq
	}
	seq.seen = now
	return seq
}

// flush places the messages of seq that are next in line, a batch at a time, until the next
// one has not arrived yet. One flush runs per sequence.
func (s *Sequencer) flush(ctx context.Context, seq *sequence) {
	for {
		s.mu.Lock()
		var batch []*placing
		for p := seq.waiting[seq.next]; p != nil && len(batch) < 256; p = seq.waiting[seq.next] {
			delete(seq.waiting, seq.next)
			seq.next++
			batch = append(batch, p)
		}
		if len(batch) == 0 {
			seq.flushing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		err := s.place(ctx, batch)
		for _, p := range batch {
			p.done <- err
		}
	}
}

// place sequences a batch in one transaction, waiting out a database that is away (the
// batch's order must hold), then starts the deliveries whose turn it is.
func (s *Sequencer) place(ctx context.Context, batch []*placing) error {
	hd := s.hd
	var events []repository.Sequenced
	for _, p := range batch {
		if p.ev != nil {
			events = append(events, *p.ev)
		}
	}
	if len(events) == 0 {
		return nil
	}
	var ready []string
	for bo := backoff.New(); ; {
		var err error
		ready, err = hd.store.Sequence(ctx, events, hd.now().Add(hd.cfg.RepairAfter))
		if err == nil {
			break
		}
		hd.cfg.DBFailed(err)
		d := bo.Next()
		hd.log.Warn("sequencing ordered deliveries failed, retrying", "events", len(events), "err", err, "in", d)
		if !backoff.Sleep(ctx, d) {
			return repository.Unavailable(fmt.Errorf("sequence ordered deliveries: %w", err))
		}
	}
	metricSequenced.Add(float64(len(events)))
	for _, id := range ready {
		hd.startOrdered(ctx, id)
	}
	return nil
}

// startOrdered sends the delivery now first in line for its object to the work queue, as a
// first attempt, trying again while the broker is away. Should the worker stop first, the
// delivery is due in the log, and the repair sweep starts it.
func (hd *Handler) startOrdered(ctx context.Context, id string) {
	r := broker.Retry{DeliveryID: id, Attempt: 1}
	for bo := backoff.New(); ; {
		pctx, cancel := context.WithTimeout(ctx, broker.PublishTimeout)
		err := hd.pub.Publish(pctx, broker.Publishing{Key: hd.cfg.Topology.Queue, Mandatory: true, Msg: r.Publishing(hd.now())})
		cancel()
		if err == nil {
			return
		}
		d := bo.Next()
		hd.log.Warn("ordered delivery not started, trying again", "delivery_id", id, "err", err, "in", d)
		if !backoff.Sleep(ctx, d) {
			hd.log.Warn("ordered delivery not started; the repair sweep will", "delivery_id", id)
			return
		}
	}
}

// leaveToSequencer writes the pending row of an ordered delivery the work queue's copy of its
// event does not attempt. A row the sequencer wrote first keeps its place and outcome.
func (hd *Handler) leaveToSequencer(ctx context.Context, j job) error {
	_, err := hd.record(ctx, repository.Outcome{
		DeliveryID: j.deliveryID, EventID: j.event.ID, WebhookID: j.webhook.ID,
		Status: repository.StatusPending, Due: hd.now().Add(hd.cfg.RepairAfter), NoAttempt: true,
	})
	return err
}

// inTurn says whether j may be attempted now: a delivery of an ordered webhook waits until
// every earlier one of its object has settled (its predecessor starts it then). It sets j's
// sequence number. A redelivery goes at once: it is an explicit request.
func (hd *Handler) inTurn(ctx context.Context, j *job) (bool, error) {
	if !j.webhook.Ordered || !j.event.ObjectID.Valid {
		return true, nil
	}
	place, ok, err := hd.store.PlaceOf(ctx, j.deliveryID)
	if err != nil {
		return false, repository.Unavailable(err)
	}
	if !ok {
		return true, nil // sequenced by nobody: the webhook was not ordered yet
	}
	j.sequence = place.Sequence
	if !place.Head && !j.redelivery {
		metricOutOfTurn.Inc()
		hd.log.Debug("ordered delivery waits for an earlier one", "delivery_id", j.deliveryID, "sequence", place.Sequence)
		return false, nil
	}
	return true, nil
}

// settledInTurn starts the next delivery of j's object once j has settled. A job whose place
// is not known has sequence -1.
func (hd *Handler) settledInTurn(ctx context.Context, j job) {
	if j.sequence == 0 {
		return
	}
	// Advance tries again itself when a deadlock with the sequencer rolls it back.
	next, err := hd.store.Advance(ctx, j.deliveryID)
	if err != nil {
		// The next delivery is started by the repair sweep: PlaceOf sees this one settled.
		hd.log.Warn("next ordered delivery not started; the repair sweep will", "delivery_id", j.deliveryID, "err", err)
		return
	}
	if next != "" {
		hd.startOrdered(ctx, next)
	}
}

// The ordering metrics.
var (
	metricSequenced = promauto.NewCounter(prometheus.CounterOpts{
		Name: "webhookd_ordered_events_sequenced_total",
		Help: "Events with ordered deliveries given their places by the sequencer.",
	})
	metricOutOfTurn = promauto.NewCounter(prometheus.CounterOpts{
		Name: "webhookd_ordered_deliveries_out_of_turn_total",
		Help: "Ordered deliveries that came up while an earlier one of their object was still under way, and wait for it to settle.",
	})
)
