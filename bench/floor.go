package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// runFloor is the bare floor: the least any worker has to do per event. It consumes the queue,
// signs each body with HMAC-SHA256, POSTs it to the receiver over keep-alive connections and
// acks it — no parsing, no database, no retries. The bench runs it as its own process, as it
// runs webhookd, so that both pay for the same process boundaries.
func runFloor(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	queue := fs.String("queue", "", "queue to consume")
	url := fs.String("url", "", "where to POST")
	token := fs.String("token", benchToken, "signing key")
	concurrency := fs.Int("concurrency", 128, "POSTs in flight")
	prefetch := fs.Int("prefetch", 256, "broker prefetch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *queue == "" || *url == "" {
		return fmt.Errorf("floor: -queue and -url are required")
	}
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return fmt.Errorf("floor: connect: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("floor: channel.open: %w", err)
	}
	if err := ch.Qos(*prefetch, 0, false); err != nil {
		return fmt.Errorf("floor: basic.qos: %w", err)
	}
	deliveries, err := ch.Consume(*queue, "floor", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("floor: basic.consume: %w", err)
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *concurrency, IdleConnTimeout: 90 * time.Second},
	}
	key := []byte(*token)
	var wg sync.WaitGroup
	for range *concurrency {
		wg.Go(func() {
			for {
				var d amqp.Delivery
				var ok bool
				select {
				case d, ok = <-deliveries:
				case <-ctx.Done():
					return
				}
				if !ok {
					return
				}
				mac := hmac.New(sha256.New, key)
				mac.Write(d.Body)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, *url, bytes.NewReader(d.Body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Webhook-Signature", "sha256="+hex.EncodeToString(mac.Sum(nil)))
				resp, err := client.Do(req)
				if err != nil {
					d.Nack(false, true)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				// amqp091-go serialises channel methods, so acking from here is safe; with
				// multiple=false no ack covers another goroutine's message.
				d.Ack(false)
			}
		})
	}
	wg.Wait()
	return nil
}
