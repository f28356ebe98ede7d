// Command bench measures webhookd against the bare floor on the real RabbitMQ and MariaDB and
// prints one Markdown table, with the machine it ran on and the date.
//
//	go run ./bench                  every scenario (make bench), about 4 minutes
//	go run ./bench -only drain,rss  some of them: floor, drain, classic, floorsteady, steady,
//	                                fanout, rss, slow, slow4, limits, breaker, ordered
//	go run ./bench profile          drain a backlog with an in-process worker under a CPU
//	                                profile and print its top (-hooks 1000: fan-out; -slow 1:
//	                                beside a webhook answering after 5 s)
//	go run ./bench latency          split steady-rate latency into stages, in-process worker
//	go run ./bench floor …          the floor consumer; the bench runs it as its own process
//
// The floor is the least a worker must do per event: consume, sign with HMAC-SHA256, POST to
// the same receiver, ack. webhookd runs as its own process, built with `go build -o` and
// started as `webhookd run` with WEBHOOKD_* settings naming a database, exchange and queues of
// its own. Every scenario makes its own (database bench_<run>_<n><scenario>, migrated by
// `webhookd migrate`; queues declared by webhookd's own topology code) and deletes them when it
// ends, the worker's dead and retry queues included. The receiver is a keep-alive HTTP server
// inside the bench process. A scenario during which RabbitMQ or MariaDB restarted, or webhookd
// logged a warning (a lost connection, a database pause), is run again, up to three times, and
// the report says so: other work shares the servers.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// bench is one run: the worker binary, the receiver, and what to clean up.
type bench struct {
	runID       string
	bin         string // webhookd, built for this run
	self        string // this executable, for the floor
	tmp         string
	rc          *receiver
	concurrency int
	prefetch    int
	cleanups    cleanups
	envCount    int
}

var scenarioNames = []string{"floor", "drain", "classic", "floorsteady", "steady", "fanout", "rss", "slow", "slow4", "limits", "breaker", "ordered"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// A reader that stops early (| head) must not kill the bench before its cleanup: with
	// SIGPIPE asked for, a write to a closed stdout fails instead.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	args := os.Args[1:]
	var err error
	switch {
	case len(args) > 0 && args[0] == "floor":
		err = runFloor(ctx, args[1:])
	case len(args) > 0 && args[0] == "profile":
		err = runProfile(ctx, args[1:])
	case len(args) > 0 && args[0] == "latency":
		err = runLatency(ctx, args[1:])
	default:
		err = runBench(ctx, args)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	only := fs.String("only", strings.Join(scenarioNames, ","), "scenarios to run: "+strings.Join(scenarioNames, ", "))
	concurrency := fs.Int("concurrency", 128, "WEBHOOKD_CONCURRENCY of the worker (and the floor's POSTs in flight)")
	prefetch := fs.Int("prefetch", 1024, "WEBHOOKD_PREFETCH of the worker (and the floor)")
	n := fs.Int("n", 50_000, "events in the drain backlogs")
	keep := fs.Bool("keep", false, "keep the worker logs")
	rounds := fs.Int("rounds", 3, "drains of the floor and of webhookd, each; the median is reported")
	if err := fs.Parse(args); err != nil {
		return err
	}
	want := strings.Split(*only, ",")
	for _, w := range want {
		if !slices.Contains(scenarioNames, w) {
			return fmt.Errorf("unknown scenario %q; have %s", w, strings.Join(scenarioNames, ", "))
		}
	}
	started := time.Now()
	b, err := newBench(ctx, *concurrency, *prefetch)
	if err != nil {
		return err
	}
	defer func() {
		b.cleanups.run()
		if !*keep {
			os.RemoveAll(b.tmp)
		}
	}()
	fmt.Fprintf(os.Stderr, "bench: run %s, worker logs in %s\n", b.runID, b.tmp)

	var rep report
	rep.concurrency, rep.prefetch = b.concurrency, b.prefetch
	step := func(name string, fn func() error) error {
		if !slices.Contains(want, name) {
			return nil
		}
		// Other work shares the servers (a test may restart MariaDB): a scenario that fails,
		// or during which a server restarted or webhookd logged trouble, is run again with
		// fresh names, up to three times in all.
		for try := 1; ; try++ {
			if err := waitServices(ctx, time.Minute); err != nil {
				return fmt.Errorf("%s: servers not answering: %w", name, err)
			}
			t, servers := time.Now(), serverPIDs()
			fmt.Fprintf(os.Stderr, "bench: %s…", name)
			err := fn()
			fmt.Fprintf(os.Stderr, " %.1fs\n", time.Since(t).Seconds())
			if err == nil && serverPIDs() != servers {
				err = fmt.Errorf("RabbitMQ or MariaDB restarted meanwhile")
			}
			if err == nil || ctx.Err() != nil {
				return ctx.Err()
			}
			if try == 3 {
				return fmt.Errorf("%s: %w", name, err)
			}
			fmt.Fprintf(os.Stderr, "bench: %s disturbed, running it again: %v\n", name, err)
			rep.reruns = append(rep.reruns, name)
		}
	}
	steps := []struct {
		name string
		fn   func() error
	}{
		{"floor", func() (err error) {
			rep.floor, err = median(*rounds, func() (drainResult, error) { return b.floorDrain(ctx, *n) })
			return
		}},
		{"drain", func() (err error) {
			rep.quorum, err = median(*rounds, func() (drainResult, error) { return b.drain(ctx, "drain", "quorum", *n, false) })
			return
		}},
		{"classic", func() error {
			var err error
			if rep.classic, err = b.drain(ctx, "classic", "classic", *n, false); err != nil {
				return err
			}
			rep.classicV2, err = b.drain(ctx, "cqv2", "classic", *n, true)
			return err
		}},
		{"floorsteady", func() (err error) { rep.floorSteady, err = b.floorSteady(ctx, 1000, 30*time.Second); return }},
		{"steady", func() (err error) { rep.steady, err = b.steady(ctx, 1000, 30*time.Second); return }},
		{"fanout", func() (err error) { rep.fanout, err = b.fanout(ctx, 20, 1000); return }},
		{"rss", func() (err error) { rep.rss, err = b.drain(ctx, "rss", "quorum", 100_000, false); return }},
		{"slow", func() (err error) {
			rep.slow, err = b.slow(ctx, "slow", 30_000, 1, 5*time.Second, 30*time.Second)
			return
		}},
		{"slow4", func() (err error) {
			rep.slow4, err = b.slow(ctx, "slow4", 30_000, 4, 5*time.Second, 30*time.Second)
			return
		}},
		{"limits", func() (err error) { rep.limits, err = b.limits(ctx, 1000, 20, 5); return }},
		{"breaker", func() (err error) { rep.breaker, err = b.breaker(ctx, 20_000); return }},
		{"ordered", func() (err error) { rep.ordered, err = b.ordering(ctx, 20_000, 1000); return }},
	}
	for _, s := range steps {
		if err := step(s.name, s.fn); err != nil {
			return err
		}
	}
	rep.machine = machineInfo(ctx)
	// Clean up before printing, so that a reader who stops reading early leaves nothing behind.
	b.cleanups.run()
	rep.elapsed = time.Since(started)
	rep.print(os.Stdout)
	return nil
}

func newBench(ctx context.Context, concurrency, prefetch int) (*bench, error) {
	tmp, err := os.MkdirTemp("", "webhookd-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{runID: randomHex(4), tmp: tmp, concurrency: concurrency, prefetch: prefetch}
	if b.self, err = os.Executable(); err != nil {
		return nil, err
	}
	if b.bin, err = buildWorker(ctx, tmp); err != nil {
		return nil, err
	}
	if b.rc, err = startReceiver(); err != nil {
		return nil, err
	}
	b.cleanups.add(b.rc.close)
	return b, nil
}
