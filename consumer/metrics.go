package consumer

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// The consumer's metrics, registered with Prometheus' default registry.
var (
	metricMessages = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "webhookd_messages_total",
		Help: "Messages taken off the work queue, by how they were settled: ack, requeue, requeued_afresh (published again after MaxRequeues).",
	}, []string{"result"})
	metricDead = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "webhookd_dead_lettered_total",
		Help: "Messages sent to the dead queue, by kind of message.",
	}, []string{"kind"})
)

// Known label values are created up front so that dashboards see zeros, not missing series.
func init() {
	for _, r := range []string{"ack", "requeue", "requeued_afresh"} {
		metricMessages.WithLabelValues(r)
	}
	for _, k := range []string{"event", "retry", "redeliver", "postponed"} {
		metricDead.WithLabelValues(k)
	}
}
