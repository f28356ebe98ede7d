package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/repository"
)

// Message types and headers of the worker's own messages.
const (
	// TypeRetry marks a delivery coming back from a retry queue.
	TypeRetry = "retry"
	// TypeRedeliver marks a redelivery request: body {"redeliver":"<delivery id>"}.
	TypeRedeliver = "redeliver"
	// HeaderDelivery carries the delivery id of a retry.
	HeaderDelivery = "x-webhookd-delivery"
	// HeaderAttempt carries the number of the attempt a retry will make.
	HeaderAttempt = "x-webhookd-attempt"
	// HeaderStep carries the ladder step a retry is on.
	HeaderStep = "x-webhookd-step"
	// HeaderError carries the reason a message was dead-lettered.
	HeaderError = "x-webhookd-error"
)

// publishTimeout bounds the wait for a publisher confirm.
const publishTimeout = 10 * time.Second

// handle processes one message and says how to settle it. It never panics: a panic is
// turned into a requeue, logged with its stack.
func (w *Worker) handle(ctx context.Context, d amqp.Delivery) (v verdict) {
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("handler panic", "panic", p, "stack", string(debug.Stack()))
			sleepCtx(ctx, 500*time.Millisecond)
			v = requeue
		}
	}()
	var err error
	switch d.Type {
	case TypeRetry:
		err = w.handleRetry(ctx, d)
	case TypeRedeliver:
		err = w.handleRedeliver(ctx, d)
	case TypePostponed:
		err = w.handlePostponed(ctx, d)
	default:
		err = w.handleEvent(ctx, d)
	}
	var p poison
	if errors.As(err, &p) {
		err = w.deadLetter(ctx, d, p.reason)
	}
	if err == nil {
		return ack
	}
	w.dbFailed(errDB(err))
	w.log.Warn("message requeued", "type", d.Type, "routing_key", d.RoutingKey, "err", err)
	// A short pause keeps a message that fails at once from spinning through the queue.
	sleepCtx(ctx, 500*time.Millisecond)
	return requeue
}

// dbError marks an error that came from the database.
type dbError struct{ err error }

func (e dbError) Error() string { return e.err.Error() }
func (e dbError) Unwrap() error { return e.err }

func errDB(err error) error {
	var de dbError
	if errors.As(err, &de) {
		return de.err
	}
	return nil
}

func db(err error) error {
	if err == nil {
		return nil
	}
	return dbError{err}
}

// job is one attempt of one delivery.
type job struct {
	deliveryID string
	event      repository.Event
	webhook    repository.Webhook
	attempt    int
	step       int
	// redelivery marks an attempt asked for whatever the delivery's status.
	redelivery bool
}

func (w *Worker) handleEvent(ctx context.Context, d amqp.Delivery) error {
	ev, err := parseEvent(d.Body, d.RoutingKey, w.cfg.MaxEventBytes, w.now())
	if err != nil {
		return err
	}
	isNew, err := w.store.Claim(ctx, ev)
	if err != nil {
		return db(fmt.Errorf("claim event: %w", err))
	}
	if !isNew {
		if !d.Redelivered {
			w.log.Info("duplicate event ignored", "event_id", ev.ID, "event", ev.Name)
			return nil
		}
		// The broker gave this message back after a lost channel or a crash: finish the
		// deliveries that were never attempted, of the event as first stored. Those attempted
		// already have an outcome, and a failed one a retry message parked before its
		// outcome was recorded.
		return w.finishEvent(ctx, ev.ID)
	}
	jobs, err := w.jobs(ctx, ev, nil)
	if err != nil {
		return err
	}
	return w.runAll(ctx, jobs)
}

// jobs makes the first attempts of ev's deliveries to the webhooks subscribed to it, leaving
// out those in done.
func (w *Worker) jobs(ctx context.Context, ev repository.Event, done map[uint64]bool) ([]job, error) {
	hooks, err := w.webhooks.Webhooks(ctx, ev.AccountID, ev.Name)
	if err != nil {
		return nil, db(fmt.Errorf("look up webhooks: %w", err))
	}
	var project *uint64
	if ev.ProjectID.Valid {
		p := uint64(ev.ProjectID.Int64)
		project = &p
	}
	var jobs []job
	for _, h := range hooks {
		if h.Matches(project) && !done[h.ID] {
			jobs = append(jobs, job{deliveryID: repository.DeliveryID(ev.ID, h.ID), event: ev, webhook: h, attempt: 1})
		}
	}
	return jobs, nil
}

// finishEvent makes the first attempts of a stored event's deliveries that have none yet.
func (w *Worker) finishEvent(ctx context.Context, eventID string) error {
	ev, err := w.store.GetEvent(ctx, eventID)
	if err != nil {
		return db(err)
	}
	ds, err := w.store.EventDeliveries(ctx, eventID)
	if err != nil {
		return db(err)
	}
	done := map[uint64]bool{}
	for _, del := range ds {
		if del.Status != repository.StatusPending || del.Attempts > 0 {
			done[del.WebhookID] = true
		}
	}
	jobs, err := w.jobs(ctx, ev, done)
	if err != nil {
		return err
	}
	return w.runAll(ctx, jobs)
}

// runAll attempts every job at once (each takes a slot of the pool) and returns the first
// error of a job whose outcome is not durable: the message must then not be acked.
func (w *Worker) runAll(ctx context.Context, jobs []job) error {
	if len(jobs) == 1 {
		return w.deliver(ctx, jobs[0])
	}
	var wg sync.WaitGroup
	errs := make([]error, len(jobs))
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.deliver(ctx, j)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (w *Worker) handleRetry(ctx context.Context, d amqp.Delivery) error {
	id, _ := d.Headers[HeaderDelivery].(string)
	attempt, okA := headerInt(d.Headers[HeaderAttempt])
	step, okS := headerInt(d.Headers[HeaderStep])
	// A failed attempt's retry carries 2 or more; 1 is a first attempt postponed (see
	// postpone) by a worker from before postponements shared messages.
	if id == "" || !okA || !okS || attempt < 1 || step < 0 {
		return poisonf("retry message without valid %s, %s and %s headers", HeaderDelivery, HeaderAttempt, HeaderStep)
	}
	j, ok, err := w.loadJob(ctx, id)
	if err != nil || !ok {
		return err
	}
	if j.attempt > attempt {
		// A redelivery or a duplicate got there first.
		w.log.Debug("stale retry dropped", "delivery_id", id, "attempt", attempt)
		return nil
	}
	j.attempt, j.step = attempt, step
	return w.deliver(ctx, j)
}

func (w *Worker) handleRedeliver(ctx context.Context, d amqp.Delivery) error {
	var req struct {
		Redeliver string `json:"redeliver"`
	}
	if err := json.Unmarshal(d.Body, &req); err != nil || req.Redeliver == "" {
		return poisonf(`redelivery message: want {"redeliver":"<delivery id>"}`)
	}
	del, err := w.store.GetDelivery(ctx, req.Redeliver)
	if errors.Is(err, repository.ErrNotFound) {
		return poisonf("unknown delivery id %q", req.Redeliver)
	}
	if err != nil {
		return db(err)
	}
	h, err := w.store.Webhook(ctx, del.WebhookID)
	if errors.Is(err, repository.ErrNotFound) {
		return poisonf("delivery %q: webhook %d was deleted", del.ID, del.WebhookID)
	}
	if err != nil {
		return db(err)
	}
	if !h.Enabled {
		// A disabled webhook gets no deliveries. A delivery still pending settles as failed;
		// one that has settled keeps its outcome.
		w.log.Info("redelivery to a disabled webhook not attempted", "delivery_id", del.ID, "webhook_id", del.WebhookID)
		if del.Status == repository.StatusPending {
			return w.settleWithout(ctx, del, "webhook disabled")
		}
		return nil
	}
	ev, err := w.store.GetEvent(ctx, del.EventID)
	if errors.Is(err, repository.ErrNotFound) {
		return poisonf("delivery %q: event %q is no longer stored", del.ID, del.EventID)
	}
	if err != nil {
		return db(err)
	}
	// A redelivery continues the attempt count and starts the ladder again.
	return w.deliver(ctx, job{deliveryID: del.ID, event: ev, webhook: h, attempt: del.Attempts + 1, redelivery: true})
}

// loadJob loads a pending delivery for a retry. ok is false when there is nothing to do: the
// delivery has settled, or its webhook is gone or disabled (the delivery is then failed).
func (w *Worker) loadJob(ctx context.Context, id string) (job, bool, error) {
	del, err := w.store.GetDelivery(ctx, id)
	if errors.Is(err, repository.ErrNotFound) {
		return job{}, false, poisonf("unknown delivery id %q", id)
	}
	if err != nil {
		return job{}, false, db(err)
	}
	if del.Status != repository.StatusPending {
		return job{}, false, nil
	}
	return w.jobOf(ctx, del)
}

// jobOf loads the webhook and the event of a delivery to attempt it again. ok is false when
// the webhook is gone or disabled, or the event no longer stored: a pending delivery is then
// failed, a settled one keeps its outcome.
func (w *Worker) jobOf(ctx context.Context, del repository.Delivery) (job, bool, error) {
	h, err := w.store.Webhook(ctx, del.WebhookID)
	reason := ""
	switch {
	case errors.Is(err, repository.ErrNotFound):
		reason = "webhook deleted"
	case err != nil:
		return job{}, false, db(err)
	case !h.Enabled:
		reason = "webhook disabled"
	}
	var ev repository.Event
	if reason == "" {
		ev, err = w.store.GetEvent(ctx, del.EventID)
		switch {
		case errors.Is(err, repository.ErrNotFound):
			reason = "event no longer stored"
		case err != nil:
			return job{}, false, db(err)
		}
	}
	switch {
	case reason == "":
		return job{deliveryID: del.ID, event: ev, webhook: h, attempt: del.Attempts + 1}, true, nil
	case del.Status == repository.StatusPending:
		return job{}, false, w.settleWithout(ctx, del, reason)
	default:
		w.log.Info("delivery not attempted again", "delivery_id", del.ID, "webhook_id", del.WebhookID, "reason", reason)
		return job{}, false, nil
	}
}

// settleWithout fails a delivery that will not be attempted again.
func (w *Worker) settleWithout(ctx context.Context, del repository.Delivery, reason string) error {
	w.log.Info("delivery not attempted again", "delivery_id", del.ID, "webhook_id", del.WebhookID, "reason", reason)
	metricDeliveries.WithLabelValues("failed").Inc()
	return db(w.store.Record(ctx, repository.Outcome{
		DeliveryID: del.ID, EventID: del.EventID, WebhookID: del.WebhookID,
		Attempt: del.Attempts, Status: repository.StatusFailed, Error: reason, NoAttempt: true,
	}))
}

// deadLetter moves a message that cannot be processed to the dead queue with its reason.
func (w *Worker) deadLetter(ctx context.Context, d amqp.Delivery, reason string) error {
	w.log.Warn("message dead-lettered", "reason", reason, "routing_key", d.RoutingKey, "type", d.Type)
	headers := amqp.Table{}
	for k, v := range d.Headers {
		if k != "x-death" && k != "x-first-death-exchange" && k != "x-first-death-queue" && k != "x-first-death-reason" &&
			k != "x-last-death-exchange" && k != "x-last-death-queue" && k != "x-last-death-reason" {
			headers[k] = v
		}
	}
	headers[HeaderError] = reason
	headers["x-webhookd-exchange"] = d.Exchange
	headers["x-webhookd-routing-key"] = d.RoutingKey
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	err := w.pub.Publish(pctx, Publishing{
		Key:       w.cfg.Topology.DeadQueue(),
		Mandatory: true,
		Msg: amqp.Publishing{
			Headers:      headers,
			ContentType:  d.ContentType,
			MessageId:    d.MessageId,
			AppId:        d.AppId,
			Type:         d.Type,
			DeliveryMode: amqp.Persistent,
			Timestamp:    w.now(),
			Body:         d.Body,
		},
	})
	if err != nil {
		return fmt.Errorf("dead-letter: %w", err)
	}
	kind := d.Type
	if kind == "" {
		kind = "event"
	}
	metricDead.WithLabelValues(kind).Inc()
	return nil
}

func headerInt(v any) (int, bool) {
	switch n := v.(type) {
	case int8:
		return int(n), true
	case int16:
		return int(n), true
	case int32:
		return int(n), true
	case int64:
		return int(n), true
	case int:
		return n, true
	case uint8:
		return int(n), true
	case uint16:
		return int(n), true
	case uint32:
		return int(n), true
	}
	return 0, false
}
