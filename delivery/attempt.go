package delivery

import (
	"context"
	"time"

	"github.com/webhookd/webhookd/retry"
	"github.com/webhookd/webhookd/sender"
)

// attemptIn makes the attempt in a slot the caller has taken and a place of its webhook's
// share, and gives both back when it ends, a panic included: a slot or a place kept would
// shrink the pool for good, and the place's start, left behind, would make its webhook look
// slow for good.
func (hd *Handler) attemptIn(ctx context.Context, j job, share *permit) (attemptResult, error) {
	defer share.release()
	defer hd.slots.Release(1)
	share.begin()
	metricInFlight.Inc()
	defer metricInFlight.Dec()
	return hd.attempt(ctx, j)
}

type attemptResult struct {
	sender.Response
	started time.Time
}

// attempt renders, signs and posts one attempt.
func (hd *Handler) attempt(ctx context.Context, j job) (attemptResult, error) {
	started := hd.now()
	res := attemptResult{started: started}
	req, err := sender.Attempt{
		URL: j.webhook.URL, Format: j.webhook.Format, Token: j.webhook.Token,
		DeliveryID: j.deliveryID, Number: j.attempt, At: started,
		UserAgent: "webhookd/" + hd.cfg.Version, Event: j.event.Payload(), Sequence: j.sequence,
	}.Request()
	if err != nil {
		return res, retry.Permanent(err)
	}
	resp, err := hd.send.Send(ctx, req)
	res.Response = resp
	metricAttemptSeconds.Observe(resp.Duration.Seconds())
	return res, err
}
