// Command webhookd is a webhook delivery worker: it consumes OBJECT.ACTION events from a
// RabbitMQ topic exchange, fans each out to the webhooks subscribed to it in MySQL, and POSTs
// signed JSON, XML or form payloads, retrying failures through TTL queues.
//
// Commands: run (default), migrate, emit, receive, redeliver, replay, status, api, token, help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/webhookd/webhookd/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0"

// errUsage marks a command line mistake: the command prints its usage and exits 2.
var errUsage = errors.New("usage")

type command struct {
	name, args, summary string
	run                 func(ctx context.Context, cfg config.Config, args []string, out io.Writer) error
	// needsConfig is false for commands that work without valid settings (help).
	needsConfig bool
}

func commands() []command {
	return []command{
		{"run", "", "run the worker (the default)", runWorker, true},
		{"migrate", "", "create or upgrade the database and its tables", runMigrate, true},
		{"emit", "EVENT --account N [--project N] [--object ID] [--data JSON] [--id ID]", "publish an event as the monolith does", runEmit, true},
		{"receive", "[--addr A] [--token T] [--status N]", "a debugging receiver: prints each webhook and checks its signatures", runReceive, false},
		{"redeliver", "ID… | --event ID | --webhook ID [--status S] [--since T] [--until T] [--dry-run]", "attempt deliveries once more", runRedeliver, true},
		{"replay", "--webhook ID --since T [--until T] [--dry-run]", "deliver stored events a webhook has no delivery for", runReplay, true},
		{"status", "[--limit N]", "one screen for an operator: queues, the last hour's deliveries, what is overdue, disabled, open", runStatus, true},
		{"api", "", "serve the delivery API and the portal on WEBHOOKD_API_ADDR", runAPI, true},
		{"token", "--account N [--scope read|write|\"read write\"] [--ttl D]", "print a token for the delivery API", runToken, true},
		{"help", "", "list commands and settings", nil, false},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	name := "run"
	if len(args) > 0 {
		name, args = args[0], args[1:]
	}
	if name == "help" || name == "-h" || name == "--help" {
		usage(stdout)
		return 0
	}
	var cmd *command
	for _, c := range commands() {
		if c.name == name {
			cmd = &c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "webhookd: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	cfg, err := config.Load()
	if err != nil && cmd.needsConfig {
		fmt.Fprintf(stderr, "webhookd: bad setting: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, cfg, args, stdout); err != nil {
		if errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "usage: webhookd %s %s\n", cmd.name, cmd.args)
			return 2
		}
		if errors.Is(err, errSetting) {
			fmt.Fprintf(stderr, "webhookd: %v\n", err)
			return 2
		}
		fmt.Fprintf(stderr, "webhookd %s: %v\n", cmd.name, err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "webhookd %s: webhook delivery worker\n\nUsage: webhookd [command] [flags]\n\nCommands:\n", version)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
		if c.args != "" {
			fmt.Fprintf(w, "  %-10s   %s %s\n", "", c.name, c.args)
		}
	}
	fmt.Fprintf(w, "\nSettings (environment variables, with defaults):\n")
	config.Usage(w)
}

func newLogger(cfg config.Config) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// newFlags makes a flag set whose errors are reported as usage errors.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}
