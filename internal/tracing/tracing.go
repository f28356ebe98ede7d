// Package tracing is webhookd's OpenTelemetry tracing: the tracer provider the standard OTEL_
// environment variables ask for (none unless an OTLP endpoint is set), the W3C trace context
// carried in AMQP headers, and child spans that cost a context lookup while tracing is off.
//
// A trace follows an event: the span of the message that carried it continues the monolith's
// traceparent, if it sent one, and the claim, the lookups, each attempt, the record and the
// park are its children. A parked retry carries the park's trace context, so the next attempt
// continues the same trace. Trace context never leaves for the receivers: the attempt's
// request is built header by header, and no HTTP instrumentation adds any.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Name is the instrumentation scope of webhookd's spans.
const Name = "github.com/webhookd/webhookd"

// The standard variables that decide whether tracing is on and which exporter sends it. Every
// other setting (headers, timeout, TLS, sampler, batching, resource) is read by the SDK.
const (
	envEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envSDKDisabled    = "OTEL_SDK_DISABLED"
	envTracesExporter = "OTEL_TRACES_EXPORTER"
)

// Enabled reports whether the environment asks for traces: an OTLP endpoint is set
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), and neither
// OTEL_SDK_DISABLED=true nor OTEL_TRACES_EXPORTER=none turns it off.
func Enabled() bool {
	if os.Getenv(envEndpoint) == "" && os.Getenv(envTracesEndpoint) == "" {
		return false
	}
	if strings.EqualFold(strings.TrimSpace(os.Getenv(envSDKDisabled)), "true") {
		return false
	}
	return strings.TrimSpace(os.Getenv(envTracesExporter)) != "none"
}

// Setup returns the tracer provider the environment asks for and a function that flushes and
// stops it. While tracing is off (see Enabled) the provider is a no-op one, nothing runs, and
// stop does nothing. Otherwise spans are batched (OTEL_BSP_*) and sent by OTLP over HTTP, or
// gRPC when OTEL_EXPORTER_OTLP_PROTOCOL (or its TRACES_ form) is grpc; the sampler is
// OTEL_TRACES_SAMPLER's, by default parentbased_always_on, so the monolith's sampling decision
// holds; service.name is webhookd unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES say
// otherwise. Errors of the exporter are logged on log. A setting Setup cannot use is an error
// that names it.
func Setup(ctx context.Context, version string, log *slog.Logger) (trace.TracerProvider, func(context.Context) error, error) {
	off := func(context.Context) error { return nil }
	if !Enabled() {
		return noop.NewTracerProvider(), off, nil
	}
	if v := strings.TrimSpace(os.Getenv(envTracesExporter)); v != "" && v != "otlp" {
		return nil, off, fmt.Errorf("%s: want otlp or none, got %q", envTracesExporter, v)
	}
	protocol, name := os.Getenv(envProtocol), envProtocol
	if p := os.Getenv(envTracesProtocol); p != "" {
		protocol, name = p, envTracesProtocol
	}
	var exp sdktrace.SpanExporter
	var err error
	switch protocol {
	case "", "http/protobuf", "http/json":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, off, fmt.Errorf("%s: want http/protobuf, http/json or grpc, got %q", name, protocol)
	}
	if err != nil {
		return nil, off, fmt.Errorf("make OTLP trace exporter: %w", err)
	}
	// Later detectors win: the environment's service name over ours.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("webhookd"), semconv.ServiceVersion(version)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, off, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "err", err) }))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// Off reports whether tp records nothing, so that callers can leave tracing out altogether.
func Off(tp trace.TracerProvider) bool {
	if tp == nil {
		return true
	}
	_, noopProvider := tp.(noop.TracerProvider)
	return noopProvider
}
