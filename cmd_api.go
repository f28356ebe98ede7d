package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/webhookd/webhookd/api"
	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/config"
)

// runAPI serves the delivery API and the portal (contract §10) until SIGINT or SIGTERM. It
// reads the log in MySQL and publishes redeliveries on its own confirming connection; any
// number may run beside the workers.
func runAPI(ctx context.Context, cfg config.Config, args []string, _ io.Writer) error {
	if len(args) > 0 {
		return errUsage
	}
	if err := cfg.RequireAPISecret(); err != nil {
		return fmt.Errorf("%w: %w", errSetting, err)
	}
	log := newLogger(cfg).With("component", "api")
	// Listening comes first, so that a taken port stops the command at once.
	ln, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("WEBHOOKD_API_ADDR: %w", err)
	}
	defer ln.Close()
	store, err := openStore(ctx, cfg, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer store.Close()
	pub := broker.NewPublisher(cfg.AMQPURL, "webhookd api", log)
	// Declaring the topology lets a retry be queued even before any worker has run.
	pub.OnConnect = topology(cfg).Declare
	srv, err := api.New(api.Options{
		Secret:    []byte(cfg.APISecret),
		Queue:     cfg.Queue,
		UserAgent: "webhookd/" + version,
		Log:       log,
	}, store, pub)
	if err != nil {
		return err
	}
	log.Info("webhookd api listening", "version", version, "addr", ln.Addr().String(), "queue", cfg.Queue)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return pub.Run(gctx) })
	g.Go(func() error { return srv.Serve(gctx, ln) })
	return g.Wait()
}

// runToken prints a token for the API, signed with WEBHOOKD_API_SECRET.
func runToken(_ context.Context, cfg config.Config, args []string, out io.Writer) error {
	fs := newFlags("token")
	account := fs.Uint64("account", 0, "the account the token speaks for (required)")
	scope := fs.String("scope", "read", `"read", "write" or "read write"`)
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *account == 0 || fs.NArg() > 0 {
		return errUsage
	}
	if err := cfg.RequireAPISecret(); err != nil {
		return fmt.Errorf("%w: %w", errSetting, err)
	}
	tok, err := api.Mint([]byte(cfg.APISecret), *account, *scope, time.Now(), *ttl)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, strings.TrimPrefix(err.Error(), "mint token: "))
	}
	fmt.Fprintln(out, tok)
	return nil
}

// errSetting marks a setting a command needs and lacks: exit code 2, as for bad settings.
var errSetting = errors.New("bad setting")
