package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/config"
	"github.com/webhookd/webhookd/internal/progress"
	"github.com/webhookd/webhookd/repository"
)

// statusWindow is how far back `webhookd status` counts deliveries by outcome.
const statusWindow = time.Hour

// queueState is one queue as `webhookd status` shows it.
type queueState struct {
	broker.Queue
	messages, consumers int
	err                 error
}

// runStatus prints one screen for an operator: the queues' depths from the broker, and from
// the delivery log the deliveries of the last hour by outcome, the oldest overdue delivery,
// and the webhooks disabled or behind an open breaker. What one of the two servers cannot
// tell is said so, the rest printed all the same, and the command then exits 1.
func runStatus(ctx context.Context, cfg config.Config, args []string, out io.Writer) error {
	fs := newFlags("status")
	limit := fs.Int("limit", 10, "webhooks listed of each kind (disabled, open breaker)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *limit < 0 {
		return errUsage
	}
	now := time.Now()
	queues, qerr := readQueues(ctx, cfg)
	st, serr := readStatus(ctx, cfg, now, *limit)

	fmt.Fprintf(out, "webhookd status at %s\n\n", now.UTC().Format("2006-01-02 15:04:05 MST"))
	printQueues(out, queues, qerr)
	if serr != nil {
		fmt.Fprintf(out, "\nDelivery log: cannot read: %v\n", serr)
	} else {
		printLog(out, st, now, cfg.RepairAfter)
	}
	return errors.Join(qerr, serr)
}

// readQueues reads every queue of the worker's topology with a passive declare on a
// connection of the command's own.
func readQueues(ctx context.Context, cfg config.Config) ([]queueState, error) {
	conn, err := broker.Dial(cfg.AMQPURL, "webhookd status")
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	in := broker.NewInspector(conn.Channel)
	defer in.Close()
	var states []queueState
	for _, q := range topology(cfg).Queues() {
		if ctx.Err() != nil {
			return states, ctx.Err()
		}
		s := queueState{Queue: q}
		if info, err := in.Inspect(q.Name); err != nil {
			s.err = err
		} else {
			s.messages, s.consumers = info.Messages, info.Consumers
		}
		states = append(states, s)
	}
	return states, nil
}

func readStatus(ctx context.Context, cfg config.Config, now time.Time, limit int) (repository.Status, error) {
	store, err := repository.Open(ctx, cfg.MySQLDSN, repository.Options{MaxOpenConns: 2})
	if err != nil {
		return repository.Status{}, err
	}
	defer store.Close()
	return store.Status(ctx, now.Add(-statusWindow), limit)
}

func printQueues(out io.Writer, queues []queueState, err error) {
	fmt.Fprintln(out, "Queues (messages ready)")
	width := 0
	for _, q := range queues {
		width = max(width, len(q.Name))
	}
	for _, q := range queues {
		var count, note string
		switch {
		case q.err != nil:
			count, note = "?", fmt.Sprintf("%s, cannot be read: %v", q.Kind, q.err)
		case q.Kind == broker.KindWork:
			count, note = fmt.Sprint(q.messages), fmt.Sprintf("work, %d consumers", q.consumers)
			if q.consumers == 0 {
				note += ": no worker consumes it"
			}
		case q.Kind == broker.KindDead && q.messages > 0:
			count, note = fmt.Sprint(q.messages), "dead: cannot be processed, read their x-webhookd-error header"
		default:
			count, note = fmt.Sprint(q.messages), q.Kind
		}
		fmt.Fprintf(out, "  %-*s %9s  %s\n", width, q.Name, count, note)
	}
	if err != nil {
		fmt.Fprintf(out, "  broker: cannot read: %v\n", err)
	}
}

func printLog(out io.Writer, st repository.Status, now time.Time, repairAfter time.Duration) {
	fmt.Fprintf(out, "\nDeliveries changed in the last %s\n", progress.Duration(statusWindow))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, s := range []string{repository.StatusSucceeded, repository.StatusPending, repository.StatusFailed} {
		fmt.Fprintf(tw, "  %s\t%d\n", s, st.Outcomes[s])
	}
	tw.Flush()

	fmt.Fprint(out, "\nOldest overdue delivery: ")
	switch overdue := now.Sub(st.Due.DueAt); {
	case !st.HasDue:
		fmt.Fprintln(out, "none pending")
	case overdue <= 0:
		fmt.Fprintf(out, "none (the next is due in %s)\n", progress.Duration(-overdue))
	default:
		fmt.Fprintf(out, "%s overdue: delivery %s (webhook %d, %d attempts), due %s\n",
			progress.Duration(overdue), st.Due.ID, st.Due.WebhookID, st.Due.Attempts, st.Due.DueAt.UTC().Format(time.DateTime+" MST"))
		if overdue > repairAfter {
			fmt.Fprintf(out, "  more than REPAIR_AFTER (%s): the repair sweep is not keeping up; see the workers' logs\n", progress.Duration(repairAfter))
		}
	}

	fmt.Fprintf(out, "\nWebhooks disabled: %d\n", st.DisabledCount)
	printWebhooks(out, st.Disabled, st.DisabledCount)
	if st.BreakersErr != nil {
		fmt.Fprintf(out, "\nWebhooks with an open breaker: unknown: %v\n", st.BreakersErr)
		return
	}
	fmt.Fprintf(out, "\nWebhooks with an open breaker: %d\n", st.BreakersCount)
	printWebhooks(out, st.Breakers, st.BreakersCount)
}

func printWebhooks(out io.Writer, hooks []repository.WebhookState, total int) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, w := range hooks {
		account, url := "deleted", ""
		if w.AccountID.Valid {
			account = fmt.Sprintf("account %d", w.AccountID.Int64)
			url = clip(w.URL.String, 60)
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\tsince %s\t%s\n", w.ID, account, url, w.Since.UTC().Format("2006-01-02 15:04 MST"), clip(w.Reason.String, 60))
	}
	tw.Flush()
	if total > len(hooks) {
		fmt.Fprintf(out, "  … and %d more (--limit)\n", total-len(hooks))
	}
}

// clip shortens s to n characters.
func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
