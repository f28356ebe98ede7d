package broker

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestRetryRoundTrip(t *testing.T) {
	t.Parallel()
	since := time.UnixMilli(1_700_000_000_000)
	for _, r := range []Retry{{DeliveryID: "d", Attempt: 2, Step: 1}, {DeliveryID: "d", Attempt: 3, Step: 2, WaitingSince: since}} {
		msg := r.Publishing(time.Now())
		got, err := ParseRetry(msg.Headers)
		if err != nil || got != r {
			t.Errorf("ParseRetry(Publishing(%+v)) = %+v, %v", r, got, err)
		}
	}
	for _, h := range []amqp.Table{{}, {HeaderDelivery: "d", HeaderAttempt: int32(0), HeaderStep: int32(0)}, {HeaderDelivery: "d", HeaderAttempt: "2", HeaderStep: int32(0)}} {
		if _, err := ParseRetry(h); err == nil {
			t.Errorf("ParseRetry(%v) accepted", h)
		}
	}
}

// A copy published again keeps where the message first came from, and drops the broker's
// records of its deaths and deliveries.
func TestCopyKeepsTheOrigin(t *testing.T) {
	t.Parallel()
	d := amqp.Delivery{
		Exchange: "events", RoutingKey: "TASK.CREATED", Body: []byte("{}"), Type: "",
		Headers: amqp.Table{"x-delivery-count": int64(10), "x-death": []any{}, "traceparent": "00-x"},
	}
	c := Copy(d)
	again := amqp.Delivery{Exchange: "", RoutingKey: "webhookd", Headers: c.Headers, Body: c.Body}
	if RoutingKey(again) != "TASK.CREATED" || Exchange(again) != "events" {
		t.Errorf("copy's origin = %q %q, want events TASK.CREATED", Exchange(again), RoutingKey(again))
	}
	if _, ok := c.Headers["x-delivery-count"]; ok {
		t.Error("copy keeps x-delivery-count")
	}
	if _, ok := c.Headers["x-death"]; ok {
		t.Error("copy keeps x-death")
	}
	if c.Headers["traceparent"] != "00-x" || c.DeliveryMode != amqp.Persistent {
		t.Errorf("copy lost a header or persistence: %+v", c)
	}
	if Redelivered(d) || !Redelivered(again) {
		t.Errorf("Redelivered = %v for the original, %v for the copy; want false, true", Redelivered(d), Redelivered(again))
	}
	if n, ok := DeliveryCount(d); !ok || n != 10 {
		t.Errorf("DeliveryCount = %d, %v; want 10", n, ok)
	}
}
