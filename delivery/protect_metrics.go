package delivery

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// The metrics of what protects the receivers (contract §8). webhookd_breakers_open, read
// from the breakers table, is the worker package's.
var (
	metricHeld = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "webhookd_deliveries_held_total",
		Help: "Deliveries held in a hold queue without an attempt, by reason: rate_limit, paused (Retry-After), circuit_open, outage.",
	}, []string{"reason"})
	metricWaitingForLimit = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "webhookd_deliveries_waiting_for_limit",
		Help: "Deliveries waiting in memory, without a worker slot, for their rate-limit slot (at most 1.625s away).",
	})
	metricSlotsMissed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "webhookd_rate_slots_missed_total",
		Help: "Rate-limit slots given up, another reserved, by why: answer_slow (the reservation's round trip too long to place it), back_late (a held delivery back after it), start_late (the attempt got its worker slot after it).",
	}, []string{"why"})
	metricStaleHolds = promauto.NewCounter(prometheus.CounterOpts{
		Name: "webhookd_stale_holds_dropped_total",
		Help: "Held deliveries back from a hold queue whose row had moved on (released, held again or attempted meanwhile), dropped.",
	})
	metricPaused = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "webhookd_webhooks_paused",
		Help: "Webhooks paused by a Retry-After, as last read from the database.",
	})
	metricBreakerChanges = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "webhookd_breaker_changes_total",
		Help: "Circuit breakers this worker opened or closed.",
	}, []string{"change"})
	metricOutage = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "webhookd_outage",
		Help: "1 while the worker takes its failures for its own network outage: consumption paused, /readyz 503.",
	})
)

func init() {
	for _, r := range []holdReason{heldRateLimit, heldPaused, heldCircuit, heldOutage} {
		metricHeld.WithLabelValues(string(r))
	}
	for _, c := range []string{"opened", "closed"} {
		metricBreakerChanges.WithLabelValues(c)
	}
	for _, w := range []string{"answer_slow", "back_late", "start_late"} {
		metricSlotsMissed.WithLabelValues(w)
	}
}
