package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"golang.org/x/sync/errgroup"
)

const (
	// eventName is the routing key of every bench event.
	eventName = "TASK.CREATED"
	// publishers is how many connections publish a backlog side by side.
	publishers = 4
	// confirmWindow is how many unconfirmed messages each publisher keeps in flight.
	confirmWindow = 2000
)

// filler pads an event's data to about 1 KiB of JSON.
var filler = strings.Repeat("lorem ipsum dolor sit amet ", 33)[:880]

// eventBody is a bench event of account with about 1 KiB of data. sentAt (Unix nanoseconds)
// comes first in data so that the receiver finds it cheaply.
func eventBody(id string, account int, seq int, sentAt int64) []byte {
	b := make([]byte, 0, 1200)
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","event":"TASK.CREATED","accountId":`...)
	b = strconv.AppendInt(b, int64(account), 10)
	b = append(b, `,"objectId":`...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, `,"occurredAt":"`...)
	b = time.Unix(0, sentAt).UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","data":{"sentAt":`...)
	b = strconv.AppendInt(b, sentAt, 10)
	b = append(b, `,"id":`...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, `,"title":"Fix the flaky deploy","status":"open","estimate":1.5,"done":false,"owner":{"id":7,"name":"Ada Lovelace"},"tags":["infra","urgent"],"description":"`...)
	b = append(b, filler...)
	b = append(b, `"}}`...)
	return b
}

// publishBacklog publishes n events made by body(i) to exchange over several connections,
// each keeping confirmWindow confirms in flight, and returns once every one is confirmed.
func publishBacklog(ctx context.Context, exchange string, n int, body func(i int) []byte) (time.Duration, error) {
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for p := range publishers {
		g.Go(func() error {
			var idx []int
			for i := p; i < n; i += publishers {
				idx = append(idx, i)
			}
			return publishConfirmed(gctx, exchange, idx, body)
		})
	}
	err := g.Wait()
	return time.Since(start), err
}

// publishConfirmed publishes the events idx on its own connection and waits for every
// confirm, keeping at most confirmWindow of them outstanding.
func publishConfirmed(ctx context.Context, exchange string, idx []int, body func(i int) []byte) error {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return fmt.Errorf("publisher: connect: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("publisher: channel.open: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("publisher: confirm.select: %w", err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, confirmWindow))
	window := make(chan struct{}, confirmWindow)
	nacked := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		for range idx {
			c, ok := <-confirms
			if !ok {
				return
			}
			if !c.Ack {
				nacked++
			}
			<-window
		}
	})
	for _, i := range idx {
		select {
		case window <- struct{}{}:
		case <-ctx.Done():
			conn.Close()
			wg.Wait()
			return ctx.Err()
		}
		err := ch.PublishWithContext(ctx, exchange, eventName, false, false, amqp.Publishing{
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			Body:         body(i),
		})
		if err != nil {
			conn.Close()
			wg.Wait()
			return fmt.Errorf("publisher: basic.publish: %w", err)
		}
	}
	wg.Wait()
	if nacked > 0 {
		return fmt.Errorf("publisher: %d messages nacked", nacked)
	}
	return nil
}

// publishSteady publishes rate events a second for d, each stamped with the time it is
// published, confirms awaited asynchronously so that a slow confirm never delays the next
// publish. It returns how many it published.
func publishSteady(ctx context.Context, exchange string, rate int, d time.Duration, body func(i int, sentAt int64) []byte) (int, error) {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return 0, fmt.Errorf("publisher: connect: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("publisher: channel.open: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		return 0, fmt.Errorf("publisher: confirm.select: %w", err)
	}
	total := int(float64(rate) * d.Seconds())
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, total+1))
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	sent := 0
	for sent < total {
		select {
		case <-ctx.Done():
			return sent, ctx.Err()
		case now := <-tick.C:
			due := min(total, int(now.Sub(start).Seconds()*float64(rate)))
			for ; sent < due; sent++ {
				err := ch.PublishWithContext(ctx, exchange, eventName, false, false, amqp.Publishing{
					ContentType:  "application/json",
					DeliveryMode: amqp.Persistent,
					Body:         body(sent, time.Now().UnixNano()),
				})
				if err != nil {
					return sent, fmt.Errorf("publisher: basic.publish: %w", err)
				}
			}
		}
	}
	wait := time.NewTimer(30 * time.Second)
	defer wait.Stop()
	for range sent {
		select {
		case c := <-confirms:
			if !c.Ack {
				return sent, fmt.Errorf("publisher: message %d nacked", c.DeliveryTag)
			}
		case <-wait.C:
			return sent, fmt.Errorf("publisher: confirms missing after 30s")
		}
	}
	return sent, nil
}
