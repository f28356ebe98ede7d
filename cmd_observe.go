package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/trace"

	"github.com/webhookd/webhookd/internal/tracing"
)

// registerReady exports webhookd_ready: 1 while ready says yes, as /readyz does, else 0. A
// worker waiting for its database at start exports 0.
func registerReady(ready func() bool) {
	promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "webhookd_ready",
		Help: "1 while the worker is connected to RabbitMQ and MySQL and consuming (/readyz answers 200), else 0.",
	}, func() float64 {
		if ready() {
			return 1
		}
		return 0
	})
}

// tracingFlushTimeout bounds how long the spans still buffered at exit may take to leave.
const tracingFlushTimeout = 5 * time.Second

// startTracing makes the tracer provider the OTEL_ environment asks for (a no-op one unless an
// OTLP endpoint is set) and returns it with a function that flushes and stops it.
func startTracing(ctx context.Context, log *slog.Logger) (trace.TracerProvider, func(), error) {
	tp, shutdown, err := tracing.Setup(ctx, version, log)
	if err != nil {
		return nil, nil, err
	}
	if tracing.Enabled() {
		log.Info("tracing on: spans exported over OTLP")
	}
	return tp, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tracingFlushTimeout)
		defer cancel()
		if err := shutdown(sctx); err != nil {
			log.Warn("tracing: spans not flushed at exit", "err", err)
		}
	}, nil
}
