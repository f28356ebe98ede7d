package delivery

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/webhookd/webhookd/retry"
)

// The delivery metrics, registered with Prometheus' default registry.
var (
	metricDeliveries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "webhookd_deliveries_total",
		Help: "Delivery attempts by outcome: succeeded, retried, failed.",
	}, []string{"outcome"})
	metricAttemptSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "webhookd_attempt_duration_seconds",
		Help:    "Time of one HTTP delivery attempt.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	})
	metricRetries = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "webhookd_retries_parked_total",
		Help: "Deliveries parked in a retry queue, by delay.",
	}, []string{"delay"})
	metricPostponed = promauto.NewCounter(prometheus.CounterOpts{
		Name: "webhookd_deliveries_postponed_total",
		Help: "Deliveries parked in the first retry queue without an attempt: their webhook was slow and had its share of attempts in flight, or the slow webhooks together had theirs.",
	})
	metricWaitingForRow = promauto.NewCounter(prometheus.CounterOpts{
		Name: "webhookd_retries_waiting_for_row_total",
		Help: "Retries that came back before their delivery's row was written, parked again.",
	})
	metricRepaired = promauto.NewCounter(prometheus.CounterOpts{
		Name: "webhookd_deliveries_repaired_total",
		Help: "Pending deliveries re-driven by the repair sweep: REPAIR_AFTER overdue, their retry message lost.",
	})
	metricOldestOverdue = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "webhookd_oldest_overdue_seconds",
		Help: "How long past its due time the pending delivery due first is; 0 when none is overdue.",
	})
	metricDuplicatesAvoided = promauto.NewCounter(prometheus.CounterOpts{
		Name: "webhookd_duplicate_attempts_avoided_total",
		Help: "Attempts not made because the same attempt was in flight in this worker and ended with a durable outcome (a message back after a lost channel).",
	})
	metricInFlight = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "webhookd_deliveries_in_flight",
		Help: "Delivery attempts in progress.",
	})
	metricDisabled = promauto.NewCounter(prometheus.CounterOpts{
		Name: "webhookd_webhooks_disabled_total",
		Help: "Webhooks the worker disabled (410 Gone or too many failures in a row).",
	})
	// MetricCacheLookups counts webhook cache lookups by result: hit or miss.
	MetricCacheLookups = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "webhookd_cache_lookups_total",
		Help: "Webhook cache lookups by result.",
	}, []string{"result"})
	// MetricBatchSize observes the size of each group commit, by kind: claim or record.
	MetricBatchSize = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "webhookd_log_batch_size",
		Help:    "Rows per group commit of the delivery log.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 10),
	}, []string{"kind"})
)

// Known label values are created up front so that dashboards see zeros, not missing series.
func init() {
	for _, o := range []string{"succeeded", "retried", "failed"} {
		metricDeliveries.WithLabelValues(o)
	}
	for _, r := range []string{"hit", "miss"} {
		MetricCacheLookups.WithLabelValues(r)
	}
}

// initLadderMetrics creates the series of each delay of ladder, which New knows only at run
// time, so that they are exported before the first retry is parked.
func initLadderMetrics(ladder retry.Ladder) {
	for _, d := range ladder.Delays() {
		metricRetries.WithLabelValues(d.String())
	}
}
