// Package consumer takes messages off the work queue and owns their acknowledgement, nothing
// more: what a message means is its Handler's business.
//
// One goroutine owns the consuming channel. Handlers run on their own goroutines, bounded by
// the prefetch, and hand their verdict back to the owner, which acks on the channel the
// message came from, or drops the verdict if that channel is gone (the broker has requeued
// the message already). The one place where a handler's error becomes ack, dead-letter or
// requeue is settle.go.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/backoff"
)

// Handler processes one message. A nil error acks it; an error marked with Reject sends it to
// the dead queue with the error's text; any other error puts it back on the queue.
type Handler interface {
	Handle(ctx context.Context, d amqp.Delivery) error
}

// HandlerFunc makes a function a Handler.
type HandlerFunc func(ctx context.Context, d amqp.Delivery) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, d amqp.Delivery) error { return f(ctx, d) }

// Publisher publishes with a confirm; the consumer uses it to dead-letter.
type Publisher interface {
	Publish(ctx context.Context, p broker.Publishing) error
}

// Config is what the consumer needs to know.
type Config struct {
	// AMQPURL is the broker. Required.
	AMQPURL string
	// Queue is the queue consumed. Required.
	Queue string
	// DeadQueue is where unprocessable messages go. Defaults to Queue + ".dead".
	DeadQueue string
	// Prefetch bounds unacknowledged messages, and so the handlers running at once. Defaults
	// to 16; must be at least 1.
	Prefetch int
	// ShutdownTimeout bounds how long handlers in flight may finish on shutdown before they
	// are cancelled. Defaults to 30s.
	ShutdownTimeout time.Duration
	// RequeuePause is how long a handler that failed waits before its message goes back, so
	// that a message failing at once does not spin through the queue. Defaults to 500ms.
	RequeuePause time.Duration
	// MaxRequeues is how many times a message is put back on its queue with a nack before it
	// is published to the queue afresh instead (and the copy taken acked): the broker's count
	// of its deliveries starts again, so a delivery limit (RabbitMQ 4 gives quorum queues one
	// of 20) never drops or dead-letters a message webhookd still means to process. Defaults
	// to 10.
	MaxRequeues int
	// Name is the connection name shown by the broker. Defaults to "webhookd".
	Name string
	// Declare, if set, runs on each new channel before consuming starts. Defaults to none.
	Declare func(*amqp.Channel) error
	// Paused, if set, is asked before each message is taken: while it answers true, messages
	// stay with the broker. Defaults to never paused.
	Paused func() bool
}

// WithDefaults returns c with every unset field at its default.
func (c Config) WithDefaults() Config {
	if c.DeadQueue == "" && c.Queue != "" {
		c.DeadQueue = c.Queue + ".dead"
	}
	if c.Prefetch == 0 {
		c.Prefetch = 16
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.RequeuePause == 0 {
		c.RequeuePause = 500 * time.Millisecond
	}
	if c.Name == "" {
		c.Name = "webhookd"
	}
	if c.MaxRequeues == 0 {
		c.MaxRequeues = 10
	}
	if c.Paused == nil {
		c.Paused = func() bool { return false }
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.AMQPURL == "":
		return errors.New("consumer: AMQPURL is required")
	case c.Queue == "":
		return errors.New("consumer: Queue is required")
	case c.Prefetch < 1:
		return fmt.Errorf("consumer: Prefetch must be at least 1, not %d", c.Prefetch)
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("consumer: ShutdownTimeout must not be negative, not %s", c.ShutdownTimeout)
	case c.MaxRequeues < 1:
		return fmt.Errorf("consumer: MaxRequeues must be at least 1, not %d", c.MaxRequeues)
	case c.RequeuePause < 0:
		return fmt.Errorf("consumer: RequeuePause must not be negative, not %s", c.RequeuePause)
	}
	return nil
}

// Consumer consumes one queue until its context ends.
type Consumer struct {
	cfg       Config
	handler   Handler
	pub       Publisher
	log       *slog.Logger
	now       func() time.Time
	consuming atomic.Bool
	// handlers owns every handler goroutine, including those of a session that broke.
	handlers sync.WaitGroup
}

// New makes a Consumer of cfg, its defaults filled. It fails if cfg is not valid.
func New(cfg Config, h Handler, pub Publisher, log *slog.Logger) (*Consumer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Consumer{cfg: cfg, handler: h, pub: pub, log: log, now: time.Now}, nil
}

// Consuming reports whether the consumer has a channel and takes messages.
func (c *Consumer) Consuming() bool { return c.consuming.Load() }

// Run consumes until ctx ends, then stops taking messages, lets handlers in flight finish for
// up to ShutdownTimeout, cancels the rest (their messages go back to the queue), and returns
// nil. Lost connections are re-established with backoff; Run never gives up on them.
func (c *Consumer) Run(ctx context.Context) error {
	// work outlives ctx by the shutdown timeout so that handlers in flight can finish.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	bo := backoff.New()
	for {
		connected, err := c.session(ctx, work, cancelWork)
		if connected {
			bo.Reset()
		}
		if ctx.Err() != nil {
			break
		}
		d := bo.Next()
		c.log.Warn("consumer connection lost, reconnecting", "err", err, "in", d)
		if !backoff.Sleep(ctx, d) {
			break
		}
	}
	// Handlers of broken sessions may still run; they get the shutdown timeout too.
	idle := make(chan struct{})
	go func() { c.handlers.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-time.After(c.cfg.ShutdownTimeout):
		cancelWork()
		<-idle
	}
	return nil
}
