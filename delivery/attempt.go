package delivery

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/webhookd/webhookd/formatter"
	"github.com/webhookd/webhookd/retry"
	"github.com/webhookd/webhookd/sender"
	"github.com/webhookd/webhookd/signer"
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
	format, err := formatter.ParseFormat(j.webhook.Format)
	if err != nil {
		return res, retry.Permanent(err)
	}
	body, err := formatter.Render(format, render(j.event))
	if err != nil {
		return res, retry.Permanent(err)
	}
	h := make(http.Header, 10)
	h.Set(sender.HeaderContentType, format.ContentType())
	h.Set(sender.HeaderUserAgent, "webhookd/"+hd.cfg.Version)
	h.Set(sender.HeaderEvent, j.event.Name)
	h.Set(sender.HeaderDelivery, j.deliveryID)
	h.Set(sender.HeaderAttempt, strconv.Itoa(j.attempt))
	h.Set(sender.HeaderSignature, signer.Signature(j.webhook.Token, body))
	ts := started.Unix()
	h.Set(sender.HeaderStandardID, j.deliveryID)
	h.Set(sender.HeaderStandardTimestamp, strconv.FormatInt(ts, 10))
	h.Set(sender.HeaderStandardSignature, signer.StandardSignature(j.webhook.Token, j.deliveryID, ts, body))
	resp, err := hd.send.Send(ctx, sender.Request{URL: j.webhook.URL, Header: h, Body: body})
	res.Response = resp
	metricAttemptSeconds.Observe(resp.Duration.Seconds())
	return res, err
}
