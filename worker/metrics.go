package worker

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// The worker's own metrics, registered with Prometheus' default registry: what the broker and
// the database say of the state of the whole (every worker reports the same values), beside
// the delivery metrics of this worker's own work.
var (
	metricQueueMessages = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "webhookd_queue_messages",
		Help: "Messages ready in each of the worker's queues (kind: work, retry, hold, due, ordering, dead), read from the broker with a passive declare.",
	}, []string{"queue", "kind"})
	metricQueueConsumers = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "webhookd_queue_consumers",
		Help: "Consumers of the work queue, every worker's, as the broker counts them.",
	}, []string{"queue"})
	metricBreakersOpen = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "webhookd_breakers_open",
		Help: "Webhooks whose circuit breaker is open (rows of the breakers table).",
	})
	metricRepairAfter = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "webhookd_repair_after_seconds",
		Help: "WEBHOOKD_REPAIR_AFTER: a pending delivery this long overdue is re-driven by the repair sweep.",
	})
)
