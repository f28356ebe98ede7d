package delivery

import (
	"context"
	"testing"
	"time"

	"github.com/webhookd/webhookd/repository"
)

// BenchmarkAdmitUnlimited is what the admission policy costs a delivery to a webhook with no
// rate limit, no pause and a closed breaker, beside none or 1,000 webhooks paused and behind
// open breakers: no I/O, an atomic load and two map lookups.
func BenchmarkAdmitUnlimited(b *testing.B) {
	for _, others := range []int{0, 1000} {
		b.Run(map[int]string{0: "alone", 1000: "beside 1000 open"}[others], func(b *testing.B) {
			hd := &Handler{now: time.Now, policy: policy{probe: 30 * time.Second, hold: 24 * time.Hour}}
			var bs []repository.Breaker
			var ps []repository.Pause
			for i := range others {
				bs = append(bs, repository.Breaker{WebhookID: uint64(i + 1000), OpenedAt: time.Now(), ProbeAt: time.Now().Add(time.Minute)})
				ps = append(ps, repository.Pause{WebhookID: uint64(i + 5000), Until: time.Now().Add(time.Minute)})
			}
			hd.guards.replace(bs, ps, time.Now())
			o := newOutage(5, 10*time.Second, time.Now)
			j := job{webhook: repository.Webhook{ID: 7}}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				a, err := hd.admit(ctx, &j)
				if err != nil || a.verdict != admitGo {
					b.Fatalf("admit = %+v, %v", a, err)
				}
				o.answer()
			}
		})
	}
}
