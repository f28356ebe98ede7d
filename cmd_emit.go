package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/config"
)

// withPublisher runs fn with a connected confirming publisher that has declared the topology,
// so that what fn publishes is routed even if no worker ever ran.
func withPublisher(ctx context.Context, cfg config.Config, fn func(ctx context.Context, p *broker.Publisher) error) error {
	log := slog.New(slog.DiscardHandler)
	p := broker.NewPublisher(cfg.AMQPURL, "webhookd cli", log)
	p.OnConnect = topology(cfg).Declare
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { p.Run(pctx); close(done) }()
	defer func() { cancel(); <-done }()
	return fn(ctx, p)
}

func runEmit(ctx context.Context, cfg config.Config, args []string, out io.Writer) error {
	fs := newFlags("emit")
	account := fs.Uint64("account", 0, "account id (required)")
	project := fs.Uint64("project", 0, "project id")
	object := fs.String("object", "", "object id (an integer or a string)")
	data := fs.String("data", "", "data, a JSON value")
	id := fs.String("id", "", "event id (random if empty)")
	var event string
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		event, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if event == "" && fs.NArg() == 1 {
		event = fs.Arg(0)
	}
	if event == "" || *account == 0 {
		return errUsage
	}
	if *id == "" {
		var b [12]byte
		rand.Read(b[:])
		*id = "evt_" + hex.EncodeToString(b[:])
	}
	body := map[string]any{
		"id":         *id,
		"event":      event,
		"accountId":  *account,
		"occurredAt": time.Now().UTC().Format(time.RFC3339Nano),
	}
	if *project != 0 {
		body["projectId"] = *project
	}
	if *object != "" {
		if n, err := strconv.ParseInt(*object, 10, 64); err == nil {
			body["objectId"] = n
		} else {
			body["objectId"] = *object
		}
	}
	if *data != "" {
		if !json.Valid([]byte(*data)) {
			return fmt.Errorf("--data is not valid JSON")
		}
		body["data"] = json.RawMessage(*data)
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	err = withPublisher(ctx, cfg, func(ctx context.Context, p *broker.Publisher) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return p.Publish(ctx, broker.Publishing{
			Exchange: cfg.Exchange,
			Key:      event,
			Msg: amqp.Publishing{
				ContentType:  "application/json",
				DeliveryMode: amqp.Persistent,
				Timestamp:    time.Now(),
				Body:         raw,
			},
		})
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "published %s %s\n", event, *id)
	return nil
}
