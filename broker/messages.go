package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Message types of the worker's own messages. An event from the monolith has no type.
const (
	// TypeRetry marks a delivery coming back from a retry queue; its headers say which.
	TypeRetry = "retry"
	// TypeRedeliver marks a redelivery request: body {"redeliver":"<delivery id>"}.
	TypeRedeliver = "redeliver"
	// TypePostponed marks a message of postponed deliveries: body a JSON array of Postponed.
	TypePostponed = "postponed"
)

// Headers of the worker's own messages.
const (
	// HeaderDelivery carries the delivery id of a retry.
	HeaderDelivery = "x-webhookd-delivery"
	// HeaderAttempt carries the number of the attempt a retry will make.
	HeaderAttempt = "x-webhookd-attempt"
	// HeaderStep carries the ladder step a retry is on.
	HeaderStep = "x-webhookd-step"
	// HeaderWaitingSince carries, in Unix milliseconds, when a retry first came back to find
	// its delivery had no row yet.
	HeaderWaitingSince = "x-webhookd-waiting-since"
	// HeaderError carries the reason a message was dead-lettered.
	HeaderError = "x-webhookd-error"
	// HeaderExchange carries the exchange a dead-lettered message had come from.
	HeaderExchange = "x-webhookd-exchange"
	// HeaderRoutingKey carries the routing key a dead-lettered message had.
	HeaderRoutingKey = "x-webhookd-routing-key"
)

// Routing keys of the notifications on NotificationExchange.
const (
	// NotificationDisabled announces a webhook the worker disabled.
	NotificationDisabled = "webhook.disabled"
	// NotificationCircuitOpened announces a webhook whose breaker opened: its deliveries
	// are held.
	NotificationCircuitOpened = "webhook.circuit_opened"
	// NotificationCircuitClosed announces a webhook whose breaker closed after a probe
	// succeeded: its held deliveries go out.
	NotificationCircuitClosed = "webhook.circuit_closed"
)

// ErrMalformed marks a message of the worker's own whose headers or body are not of its type's
// form. Such a message will never be processed.
var ErrMalformed = errors.New("malformed message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Retry is the message that brings a delivery back from a retry queue for its next attempt.
type Retry struct {
	// DeliveryID is the delivery to attempt again.
	DeliveryID string
	// Attempt is the number of the attempt it will make: 2 or more after a failed attempt.
	Attempt int
	// Step is the ladder step it is on.
	Step int
	// WaitingSince is when the retry first found no row for its delivery; zero until then.
	WaitingSince time.Time
}

// Publishing is the persistent message for r, without a body: r travels in headers.
func (r Retry) Publishing(now time.Time) amqp.Publishing {
	h := amqp.Table{
		HeaderDelivery: r.DeliveryID,
		HeaderAttempt:  int32(r.Attempt),
		HeaderStep:     int32(r.Step),
	}
	if !r.WaitingSince.IsZero() {
		h[HeaderWaitingSince] = r.WaitingSince.UnixMilli()
	}
	return amqp.Publishing{
		Headers:      h,
		Type:         TypeRetry,
		DeliveryMode: amqp.Persistent,
		Timestamp:    now,
	}
}

// Again is the retry message d, which carried r, to publish once more: d's headers with r's
// and without the broker's death records.
func (r Retry) Again(d amqp.Delivery, now time.Time) amqp.Publishing {
	msg := r.Publishing(now)
	h := withoutDeaths(d.Headers)
	for k, v := range msg.Headers {
		h[k] = v
	}
	msg.Headers = h
	return msg
}

// ParseRetry reads a retry message's headers; the error wraps ErrMalformed.
func ParseRetry(h amqp.Table) (Retry, error) {
	id, _ := h[HeaderDelivery].(string)
	attempt, okA := headerInt(h[HeaderAttempt])
	step, okS := headerInt(h[HeaderStep])
	// A failed attempt's retry carries 2 or more; 1 is a first attempt postponed by a worker
	// from before postponements shared messages.
	if id == "" || !okA || !okS || attempt < 1 || step < 0 {
		return Retry{}, malformed("retry message without valid %s, %s and %s headers", HeaderDelivery, HeaderAttempt, HeaderStep)
	}
	r := Retry{DeliveryID: id, Attempt: attempt, Step: step}
	if ms, ok := h[HeaderWaitingSince].(int64); ok && ms > 0 {
		r.WaitingSince = time.UnixMilli(ms)
	}
	return r, nil
}

// Redelivery is the persistent message asking for another attempt of delivery id.
func Redelivery(id string, now time.Time) amqp.Publishing {
	body, _ := json.Marshal(map[string]string{"redeliver": id})
	return amqp.Publishing{
		Type:         TypeRedeliver,
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		Timestamp:    now,
		Body:         body,
	}
}

// ParseRedelivery reads the delivery id of a redelivery message's body; the error wraps
// ErrMalformed.
func ParseRedelivery(body []byte) (string, error) {
	var req struct {
		Redeliver string `json:"redeliver"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Redeliver == "" {
		return "", malformed(`redelivery message: want {"redeliver":"<delivery id>"}`)
	}
	return req.Redeliver, nil
}

// Postponed is one delivery put off without using up an attempt. It carries what is needed
// to make the attempt it has not made yet, even for a first attempt, whose delivery has no
// row.
type Postponed struct {
	Delivery string `json:"delivery"`
	Event    string `json:"event"`
	Webhook  uint64 `json:"webhook"`
	Attempt  int    `json:"attempt"`
	Step     int    `json:"step"`
	// Redelivery marks an attempt asked for whatever the delivery's status.
	Redelivery bool `json:"redelivery,omitempty"`
	// Due, in Unix microseconds, is the due time its hold wrote in the delivery's row: a copy
	// whose row has moved on since (another hold, a release, an attempt) is stale. Zero for a
	// postponement, which checks nothing.
	Due int64 `json:"due,omitempty"`
	// CircuitSince, in Unix milliseconds, is when it was first held for its webhook's open
	// breaker; it fails once held longer than the breaker's hold. Zero when not held for one.
	CircuitSince int64 `json:"circuitSince,omitempty"`
	// Slot and SlotBy, in Unix microseconds, are the rate-limit slot reserved for its
	// attempt: it may start at Slot, and must have started by SlotBy. Zero for none.
	Slot   int64 `json:"slot,omitempty"`
	SlotBy int64 `json:"slotBy,omitempty"`
	// Probe marks the delivery released to probe its webhook's open breaker, the probe
	// claimed for it.
	Probe bool `json:"probe,omitempty"`
}

// PostponedMessage is the persistent message carrying ps together.
func PostponedMessage(ps []*Postponed, now time.Time) (amqp.Publishing, error) {
	body, err := json.Marshal(ps)
	if err != nil {
		return amqp.Publishing{}, fmt.Errorf("encode postponed deliveries: %w", err)
	}
	return amqp.Publishing{
		Type:         TypePostponed,
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		Timestamp:    now,
		Body:         body,
	}, nil
}

// ParsePostponed reads a message of postponed deliveries; the error wraps ErrMalformed. It
// checks the form of each entry, not that the delivery exists.
func ParsePostponed(body []byte) ([]Postponed, error) {
	var ps []Postponed
	if err := json.Unmarshal(body, &ps); err != nil || len(ps) == 0 {
		return nil, malformed("postponed deliveries: want a JSON array of deliveries")
	}
	for _, p := range ps {
		if p.Event == "" || p.Delivery == "" || p.Attempt < 1 || p.Step < 0 {
			return nil, malformed("postponed deliveries: %+v is not a valid delivery", p)
		}
	}
	return ps, nil
}

// DeadLetter is the persistent copy of d for the dead queue: its body and properties, its
// headers but the broker's own death records, the reason, and where it had come from.
func DeadLetter(d amqp.Delivery, reason string, now time.Time) amqp.Publishing {
	headers := withoutDeaths(d.Headers)
	headers[HeaderError] = reason
	headers[HeaderExchange] = Exchange(d)
	headers[HeaderRoutingKey] = RoutingKey(d)
	return amqp.Publishing{
		Headers:      headers,
		ContentType:  d.ContentType,
		MessageId:    d.MessageId,
		AppId:        d.AppId,
		Type:         d.Type,
		DeliveryMode: amqp.Persistent,
		Timestamp:    now,
		Body:         d.Body,
	}
}

// Copy is a persistent copy of d to publish again: its body, properties and headers without
// the broker's death and delivery records.
//
// The copy goes straight to a queue, so it keeps where it first came from in HeaderExchange and
// HeaderRoutingKey: an event's routing key must match its name.
func Copy(d amqp.Delivery) amqp.Publishing {
	h := withoutDeaths(d.Headers)
	delete(h, headerDeliveryCount)
	h[HeaderExchange] = Exchange(d)
	h[HeaderRoutingKey] = RoutingKey(d)
	h[headerRequeued] = true
	return amqp.Publishing{
		Headers:       h,
		ContentType:   d.ContentType,
		CorrelationId: d.CorrelationId,
		MessageId:     d.MessageId,
		AppId:         d.AppId,
		Type:          d.Type,
		DeliveryMode:  amqp.Persistent,
		Timestamp:     d.Timestamp,
		Body:          d.Body,
	}
}

// headerRequeued marks a copy published again by Copy.
const headerRequeued = "x-webhookd-requeued"

// Redelivered reports whether d was handed out before: by the broker (a requeue or a lost
// channel) or, as a Copy, by webhookd. A handler must then expect its work partly done.
func Redelivered(d amqp.Delivery) bool {
	again, _ := d.Headers[headerRequeued].(bool)
	return d.Redelivered || again
}

// RoutingKey is the routing key d was first published with: HeaderRoutingKey on a copy
// webhookd published again, d's own otherwise.
func RoutingKey(d amqp.Delivery) string {
	if k, ok := d.Headers[HeaderRoutingKey].(string); ok {
		return k
	}
	return d.RoutingKey
}

// Exchange is the exchange d was first published to, as RoutingKey is its routing key.
func Exchange(d amqp.Delivery) string {
	if e, ok := d.Headers[HeaderExchange].(string); ok {
		return e
	}
	return d.Exchange
}

// headerDeliveryCount is where quorum queues count a message's earlier deliveries.
const headerDeliveryCount = "x-delivery-count"

// DeliveryCount is how many times the broker delivered d before, as quorum queues count it,
// and false where the queue does not count.
func DeliveryCount(d amqp.Delivery) (int, bool) {
	return headerInt(d.Headers[headerDeliveryCount])
}

// withoutDeaths copies h without the broker's own death records: a message webhookd publishes
// again travels in its own headers.
func withoutDeaths(h amqp.Table) amqp.Table {
	out := make(amqp.Table, len(h)+3)
	for k, v := range h {
		switch k {
		case "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
			"x-last-death-exchange", "x-last-death-queue", "x-last-death-reason":
		default:
			out[k] = v
		}
	}
	return out
}

// Notification tells the monolith that something happened to a webhook.
type Notification struct {
	WebhookID uint64
	AccountID uint64
	URL       string
	Reason    string
	At        time.Time
}

// Publishing is the persistent JSON message of n (contract §4).
func (n Notification) Publishing(now time.Time) amqp.Publishing {
	body, _ := json.Marshal(map[string]any{
		"webhookId": n.WebhookID,
		"accountId": n.AccountID,
		"url":       n.URL,
		"reason":    n.Reason,
		"at":        n.At.UTC().Format(time.RFC3339),
	})
	return amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		Timestamp:    now,
		Body:         body,
	}
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
		if n < math.MinInt32 || n > math.MaxInt32 {
			return 0, false // the worker writes int32: not one of its own
		}
		return int(n), true
	case int:
		if n < math.MinInt32 || n > math.MaxInt32 {
			return 0, false
		}
		return n, true
	case uint8:
		return int(n), true
	case uint16:
		return int(n), true
	case uint32:
		if n > math.MaxInt32 {
			return 0, false
		}
		return int(n), true
	}
	return 0, false
}
