package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/config"
	"github.com/webhookd/webhookd/internal/progress"
	"github.com/webhookd/webhookd/redeliver"
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
	if *dry {
		counts, err := store.CountByWebhook(ctx, ids)
		if err != nil {
			return err
		}
		printDryRun(out, len(ids), "redeliveries", counts)
		return nil
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
	if *dry {
		events, err := store.Unsent(ctx, w, since.t, until.t)
		if err != nil {
			return err
		}
		printDryRun(out, len(events), "replayed events", []repository.WebhookCount{{WebhookID: w.ID, N: len(events)}})
		return nil
	}
	var sent int
	shown := progress.New(out)
	err = withPublisher(ctx, cfg, func(ctx context.Context, p *broker.Publisher) error {
		var err error
		sent, err = redeliver.Replay(ctx, store, p, cfg.Queue, w, since.t, until.t, showProgress(shown, "replayed events"))
		return err
	})
	printSummary(out, shown, sent, 0, "replayed events")
	return err
}

// publishRedeliveries publishes one redelivery message per delivery id, showing its progress,
// and prints how many were confirmed.
func publishRedeliveries(ctx context.Context, cfg config.Config, out io.Writer, ids []string, dry bool, what string) error {
	if dry || len(ids) == 0 {
		fmt.Fprintf(out, "%d %s (dry run: %v)\n", len(ids), what, dry)
		return nil
	}
	var sent int
	shown := progress.New(out)
	err := withPublisher(ctx, cfg, func(ctx context.Context, p *broker.Publisher) error {
		var err error
		sent, err = redeliver.Publish(ctx, p, cfg.Queue, ids, showProgress(shown, what))
		return err
	})
	printSummary(out, shown, sent, len(ids), what)
	return err
}
