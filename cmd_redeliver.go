package main

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/config"
	"github.com/webhookd/webhookd/repository"
)

// timeFlag is an RFC 3339 time flag.
type timeFlag struct{ t time.Time }

func (f *timeFlag) String() string { return f.t.Format(time.RFC3339) }
func (f *timeFlag) Set(s string) error {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("want an RFC 3339 time, got %q", s)
	}
	f.t = t
	return nil
}

func runRedeliver(ctx context.Context, cfg config.Config, args []string, out io.Writer) error {
	fs := newFlags("redeliver")
	event := fs.String("event", "", "every delivery of this event")
	webhook := fs.Uint64("webhook", 0, "deliveries to this webhook")
	status := fs.String("status", "", "only deliveries with this status: pending, succeeded or failed")
	var since, until timeFlag
	fs.Var(&since, "since", "only deliveries created at or after this time (RFC 3339)")
	fs.Var(&until, "until", "only deliveries created before this time (RFC 3339)")
	dry := fs.Bool("dry-run", false, "count, do not redeliver")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	f := repository.DeliveryFilter{IDs: fs.Args(), EventID: *event, WebhookID: *webhook, Status: *status, Since: since.t, Until: until.t}
	switch {
	case len(f.IDs) > 0 && (f.EventID != "" || f.WebhookID != 0):
		return errUsage
	case len(f.IDs) == 0 && f.EventID == "" && f.WebhookID == 0:
		return errUsage
	case f.Status != "" && f.Status != repository.StatusPending && f.Status != repository.StatusSucceeded && f.Status != repository.StatusFailed:
		return fmt.Errorf("--status: want pending, succeeded or failed, got %q", f.Status)
	}
	store, err := repository.Open(ctx, cfg.MySQLDSN, repository.Options{MaxOpenConns: 2})
	if err != nil {
		return err
	}
	defer store.Close()
	ids, err := store.FindDeliveries(ctx, f)
	if err != nil {
		return err
	}
	if len(f.IDs) > len(ids) {
		fmt.Fprintf(out, "%d of the ids given are unknown or belong to a deleted or disabled webhook\n", len(f.IDs)-len(ids))
	}
	return publishRedeliveries(ctx, cfg, out, ids, *dry, "redeliveries")
}

func runReplay(ctx context.Context, cfg config.Config, args []string, out io.Writer) error {
	fs := newFlags("replay")
	webhook := fs.Uint64("webhook", 0, "the webhook to replay events to (required)")
	var since, until timeFlag
	fs.Var(&since, "since", "events received at or after this time (RFC 3339, required)")
	fs.Var(&until, "until", "events received before this time (RFC 3339; default now)")
	dry := fs.Bool("dry-run", false, "count, do not replay")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *webhook == 0 || since.t.IsZero() || fs.NArg() > 0 {
		return errUsage
	}
	if until.t.IsZero() {
		until.t = time.Now()
	}
	store, err := repository.Open(ctx, cfg.MySQLDSN, repository.Options{MaxOpenConns: 2})
	if err != nil {
		return err
	}
	defer store.Close()
	w, err := store.Webhook(ctx, *webhook)
	if err != nil {
		return err
	}
	if !w.Enabled {
		return fmt.Errorf("webhook %d is disabled: enable it first (UPDATE webhooks SET enabled = 1 WHERE id = %d)", w.ID, w.ID)
	}
	events, err := store.Unsent(ctx, w, since.t, until.t)
	if err != nil {
		return err
	}
	var ids []string
	if !*dry {
		for _, e := range events {
			id, err := store.CreateDelivery(ctx, e, w.ID)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
	} else {
		ids = events
	}
	return publishRedeliveries(ctx, cfg, out, ids, *dry, "replayed events")
}

// publishRedeliveries publishes one redelivery message per delivery id, several awaiting
// their confirms at once, and prints how many were confirmed.
func publishRedeliveries(ctx context.Context, cfg config.Config, out io.Writer, ids []string, dry bool, what string) error {
	if dry || len(ids) == 0 {
		fmt.Fprintf(out, "%d %s (dry run: %v)\n", len(ids), what, dry)
		return nil
	}
	var sent atomic.Int64
	err := withPublisher(ctx, cfg, func(ctx context.Context, p *broker.Publisher) error {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(64)
		for _, id := range ids {
			g.Go(func() error {
				pctx, cancel := context.WithTimeout(gctx, 30*time.Second)
				defer cancel()
				err := p.Publish(pctx, broker.Publishing{Key: cfg.Queue, Mandatory: true, Msg: broker.Redelivery(id, time.Now())})
				if err == nil {
					sent.Add(1)
				}
				return err
			})
		}
		return g.Wait()
	})
	fmt.Fprintf(out, "%d %s\n", sent.Load(), what)
	return err
}
