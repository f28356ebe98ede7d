package tracing

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	traceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	spanID      = "00f067aa0ba902b7"
	traceparent = "00-" + traceID + "-" + spanID + "-01"
)

func TestHeadersGet(t *testing.T) {
	tests := []struct {
		name    string
		headers amqp.Table
		want    string
	}{
		{"string", amqp.Table{"traceparent": traceparent}, traceparent},
		{"bytes", amqp.Table{"traceparent": []byte(traceparent)}, traceparent},
		{"other case", amqp.Table{"TraceParent": traceparent}, traceparent},
		{"exact case first", amqp.Table{"TRACEPARENT": "x", "traceparent": traceparent}, traceparent},
		{"not text", amqp.Table{"traceparent": int32(7)}, ""},
		{"missing", amqp.Table{"other": "x"}, ""},
		{"nil", nil, ""},
	}
	for _, tt := range tests {
		if got := Headers(tt.headers).Get("traceparent"); got != tt.want {
			t.Errorf("%s: Get = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestExtractInject(t *testing.T) {
	ctx := Extract(context.Background(), amqp.Table{"traceparent": traceparent, "tracestate": "a=1"})
	sc := trace.SpanContextFromContext(ctx)
	if sc.TraceID().String() != traceID || sc.SpanID().String() != spanID || !sc.IsRemote() || !sc.IsSampled() {
		t.Fatalf("extracted %v, want trace %s span %s, remote and sampled", sc, traceID, spanID)
	}
	if got := Extract(context.Background(), amqp.Table{"traceparent": "nonsense"}); trace.SpanContextFromContext(got).IsValid() {
		t.Errorf("a malformed traceparent gave a valid span context")
	}

	shared := amqp.Table{"x-webhookd-delivery": "d1"}
	msg := Inject(ctx, amqp.Publishing{Headers: shared})
	if got := msg.Headers["traceparent"]; got != traceparent {
		t.Errorf("injected traceparent = %v, want %s", got, traceparent)
	}
	if msg.Headers["tracestate"] != "a=1" || msg.Headers["x-webhookd-delivery"] != "d1" {
		t.Errorf("injected headers = %v, want tracestate and the message's own kept", msg.Headers)
	}
	if len(shared) != 1 {
		t.Errorf("Inject changed the caller's table: %v", shared)
	}
	if got := Inject(context.Background(), amqp.Publishing{Headers: shared}); len(got.Headers) != 1 {
		t.Errorf("Inject without a span context added headers: %v", got.Headers)
	}
}

func TestStartMakesNoSpanUnderANonRecordingParent(t *testing.T) {
	ctx, span := Start(context.Background(), "claim")
	if span.IsRecording() || ctx != context.Background() {
		t.Errorf("Start without a parent made a span or a context")
	}
	End(span, errors.New("ignored"))

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, msg := StartMessage(context.Background(), tp.Tracer(Name), "q", amqp.Delivery{
		Type: "retry", RoutingKey: "q", Headers: amqp.Table{"traceparent": traceparent},
	})
	_, child := Start(ctx, "attempt")
	End(child, errors.New("boom"))
	End(msg, nil)
	ended := rec.Ended()
	if len(ended) != 2 {
		t.Fatalf("%d spans ended, want 2", len(ended))
	}
	c, m := ended[0], ended[1]
	if m.Name() != "process retry" || m.Parent().SpanID().String() != spanID || m.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("message span %q, parent %v, kind %v", m.Name(), m.Parent().SpanID(), m.SpanKind())
	}
	if c.Name() != "attempt" || c.Parent().SpanID() != m.SpanContext().SpanID() || c.Status().Code != codes.Error {
		t.Errorf("child span %q, parent %v, status %v: want attempt under the message, failed", c.Name(), c.Parent().SpanID(), c.Status())
	}
}

func TestSetup(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, k := range []string{envEndpoint, envTracesEndpoint, envProtocol, envTracesProtocol, envSDKDisabled, envTracesExporter} {
		t.Setenv(k, "")
	}
	tp, stop, err := Setup(t.Context(), "test", log)
	if err != nil || !Off(tp) {
		t.Fatalf("no endpoint: provider %T, err %v; want a no-op provider", tp, err)
	}
	stop(t.Context())

	t.Setenv(envEndpoint, "http://127.0.0.1:1")
	for _, tt := range []struct{ key, value, wantErr string }{
		{envTracesExporter, "console", envTracesExporter},
		{envProtocol, "thrift", envProtocol},
		{envTracesProtocol, "udp", envTracesProtocol},
	} {
		t.Run(tt.key, func(t *testing.T) {
			t.Setenv(tt.key, tt.value)
			if _, _, err := Setup(t.Context(), "test", log); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s=%s: err %v, want one naming %s", tt.key, tt.value, err, tt.wantErr)
			}
		})
	}
	for _, off := range [][2]string{{envSDKDisabled, "true"}, {envTracesExporter, "none"}} {
		t.Run(off[0], func(t *testing.T) {
			t.Setenv(off[0], off[1])
			if tp, _, err := Setup(t.Context(), "test", log); err != nil || !Off(tp) {
				t.Errorf("%s=%s: provider %T, err %v; want tracing off", off[0], off[1], tp, err)
			}
		})
	}
	for _, protocol := range []string{"", "http/protobuf", "grpc"} {
		t.Run("protocol "+protocol, func(t *testing.T) {
			t.Setenv(envProtocol, protocol)
			tp, stop, err := Setup(t.Context(), "test", log)
			if err != nil || Off(tp) {
				t.Fatalf("protocol %q: provider %T, err %v; want an SDK provider", protocol, tp, err)
			}
			// Nothing was recorded: stopping sends nothing to the endpoint that is not there.
			if err := stop(t.Context()); err != nil {
				t.Errorf("stop: %v", err)
			}
		})
	}
}

// TestOffCostsNoAllocation: with tracing off a step's span is a context lookup.
func TestOffCostsNoAllocation(t *testing.T) {
	ctx := context.Background()
	err := errors.New("x")
	allocs := testing.AllocsPerRun(1000, func() {
		c, span := Start(ctx, "attempt")
		if span.IsRecording() {
			t.Fatal("a span recorded with tracing off")
		}
		End(span, err)
		_ = Inject(c, amqp.Publishing{})
	})
	if allocs != 0 {
		t.Errorf("a step with tracing off allocates %v times, want 0", allocs)
	}
}
