package delivery_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
)

// spansOf returns the ended spans of trace tid by name.
func spansOf(rec *tracetest.SpanRecorder, tid trace.TraceID) map[string][]sdktrace.ReadOnlySpan {
	out := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() == tid {
			out[s.Name()] = append(out[s.Name()], s)
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) attribute.Value {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// TestTraceOfAnEvent runs an event through the real services with the monolith's traceparent:
// the message's span continues it, the claim, the lookup, both attempts, the records and the
// park are its children with the destination, status and attempt number, the retry's message
// continues the trace from the park, and no receiver sees any trace context.
func TestTraceOfAnEvent(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	rc := testbed.NewReceiver(t)
	bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/ok"})
	flaky := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "TASK.CREATED", URL: rc.URL + "/flaky"})
	// The traced event's first attempt to /flaky fails; every other request succeeds.
	var failedOnce atomic.Bool
	rc.Respond(func(r *http.Request, n int) (int, http.Header) {
		if r.Header.Get("X-Webhook-Delivery") == repository.DeliveryID("traced", flaky) && !failedOnce.Swap(true) {
			return http.StatusInternalServerError, nil
		}
		return http.StatusOK, nil
	})
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(t.Context()) })
	bed.StartWorker(testbed.WorkerOptions{TracerProvider: tp})

	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
	)
	tid, _ := trace.TraceIDFromHex(traceID)
	remote, _ := trace.SpanIDFromHex(spanID)
	bed.Publish(bed.Exchange, "TASK.CREATED", amqp.Publishing{
		ContentType: "application/json",
		// As some publishers send it: bytes, not a string.
		Headers: amqp.Table{"traceparent": []byte("00-" + traceID + "-" + spanID + "-01"), "tracestate": "monolith=1"},
		Body:    []byte(testbed.Event("traced", "TASK.CREATED", 1, "")),
	})
	bed.PublishEvent("TASK.CREATED", testbed.Event("untraced", "TASK.CREATED", 1, ""))
	testbed.Eventually(t, wait, "the flaky delivery to succeed on attempt 2", func() bool {
		return bed.Count("SELECT COUNT(*) FROM deliveries WHERE id = ? AND status = 'succeeded' AND attempts = 2",
			repository.DeliveryID("traced", flaky)) == 1
	})
	// The message spans end once their handlers return, after the records.
	var spans map[string][]sdktrace.ReadOnlySpan
	testbed.Eventually(t, wait, "the spans of both messages of the traced event", func() bool {
		spans = spansOf(rec, tid)
		return len(spans["process event"]) == 1 && len(spans["process retry"]) == 1
	})

	event := spans["process event"][0]
	if p := event.Parent(); p.SpanID() != remote || !p.IsRemote() {
		t.Errorf("event span's parent = %v (remote %v), want the monolith's span %v", p.SpanID(), p.IsRemote(), remote)
	}
	if event.SpanKind() != trace.SpanKindConsumer || attr(event, "webhookd.event.id").AsString() != "traced" ||
		attr(event, "messaging.destination.name").AsString() != bed.Queue {
		t.Errorf("event span: kind %v, attributes %v", event.SpanKind(), event.Attributes())
	}
	if got := event.SpanContext().TraceState().Get("monolith"); got != "1" {
		t.Errorf("tracestate monolith = %q, want 1", got)
	}
	children := map[string]int{}
	for name, ss := range spans {
		for _, s := range ss {
			if s.Parent().SpanID() == event.SpanContext().SpanID() {
				children[name]++
			}
		}
	}
	for name, want := range map[string]int{"claim": 1, "lookup": 1, "attempt": 2, "record": 2, "park": 1} {
		if children[name] != want {
			t.Errorf("event span has %d %q children, want %d (all: %v)", children[name], name, want, children)
		}
	}

	retried := spans["process retry"][0]
	park := spans["park"][0]
	if retried.Parent().SpanID() != park.SpanContext().SpanID() {
		t.Errorf("retry span's parent = %v, want the park span %v", retried.Parent().SpanID(), park.SpanContext().SpanID())
	}
	if got := attr(park, "webhookd.attempt").AsInt64(); got != 2 {
		t.Errorf("park span: next attempt %d, want 2", got)
	}
	attempts := map[int64]sdktrace.ReadOnlySpan{} // by status
	for _, a := range spans["attempt"] {
		if host := attr(a, "server.address").AsString(); host != "127.0.0.1" {
			t.Errorf("attempt span server.address = %q, want 127.0.0.1", host)
		}
		attempts[attr(a, "http.response.status_code").AsInt64()*10+attr(a, "webhookd.attempt").AsInt64()] = a
	}
	failed, ok := attempts[5001]
	if !ok || failed.Status().Code != codes.Error || failed.Parent().SpanID() != event.SpanContext().SpanID() {
		t.Errorf("no failed attempt 1 (status 500, span failed) under the event span; attempts: %v", attempts)
	}
	second, ok := attempts[2002]
	if !ok || second.Parent().SpanID() != retried.SpanContext().SpanID() || second.Status().Code == codes.Error {
		t.Errorf("no attempt 2 (status 200) under the retry's span; attempts: %v", attempts)
	}
	if _, ok := attempts[2001]; !ok {
		t.Errorf("no attempt 1 with status 200 (the other webhook); attempts: %v", attempts)
	}

	// The event published without trace context starts a trace of its own.
	testbed.Eventually(t, wait, "the untraced event's span", func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == "process event" && attr(s, "webhookd.event.id").AsString() == "untraced" {
				if s.Parent().IsValid() || s.SpanContext().TraceID() == tid {
					t.Errorf("untraced event's span: parent %v, trace %v; want a new root", s.Parent(), s.SpanContext().TraceID())
				}
				return true
			}
		}
		return false
	})

	// Internal trace context never reaches a receiver.
	for _, r := range rc.Requests("") {
		for k, vs := range r.Header {
			lk := strings.ToLower(k)
			if lk == "traceparent" || lk == "tracestate" || lk == "baggage" || strings.Contains(strings.Join(vs, " "), traceID) {
				t.Errorf("request to %s carries %s: %v", r.Path, k, vs)
			}
		}
	}
}
