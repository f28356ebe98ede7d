package main

import (
	"fmt"
	"io"

	"github.com/webhookd/webhookd/internal/progress"
	"github.com/webhookd/webhookd/redeliver"
	"github.com/webhookd/webhookd/repository"
)

// showProgress returns the option that shows a redelivery run's progress on p: the rows a
// replay makes, then the things published.
func showProgress(p *progress.Printer, things string) redeliver.Option {
	return redeliver.WithProgress(func(pr redeliver.Progress) {
		if pr.Step == redeliver.StepCreate {
			p.Update("created", "deliveries", pr.Done, pr.Total)
			return
		}
		p.Update("published", things, pr.Done, pr.Total)
	})
}

// printSummary ends a run on p: how many things the broker confirmed, of how many when known
// (total > 0) and fewer, and how long it took.
func printSummary(out io.Writer, p *progress.Printer, sent, total int, things string) {
	took := progress.Duration(p.Done())
	if total > 0 && sent < total {
		fmt.Fprintf(out, "%d %s published in %s, of %d: the others were not confirmed\n", sent, things, took, total)
		return
	}
	fmt.Fprintf(out, "%d %s published in %s\n", sent, things, took)
}

// printDryRun prints what a run would publish, in all and to each webhook.
func printDryRun(out io.Writer, n int, things string, counts []repository.WebhookCount) {
	fmt.Fprintf(out, "%d %s (dry run: true)\n", n, things)
	for _, c := range counts {
		if c.N > 0 {
			fmt.Fprintf(out, "  webhook %d: %d\n", c.WebhookID, c.N)
		}
	}
}
