package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/webhookd/webhookd/internal/backoff"
)

// PublishTimeout bounds the wait for the confirm of one of the worker's own messages.
const PublishTimeout = 10 * time.Second

// Publishing is one message to publish with a confirm.
type Publishing struct {
	Exchange  string
	Key       string
	Mandatory bool
	Msg       amqp.Publishing
}

// headerPublishSeq carries a mandatory message's publish sequence number, so that a return
// can be matched to the publish it answers.
const headerPublishSeq = "x-webhookd-publish-seq"

// ErrReturned means the broker could not route a mandatory message to any queue.
var ErrReturned = errors.New("message returned unroutable")

// ErrNacked means the broker refused responsibility for a message.
var ErrNacked = errors.New("message nacked by broker")

// Publisher publishes on its own connection in confirm mode. One goroutine owns the channel;
// callers hand it messages and wait for their confirms, so confirms of concurrent callers are
// pipelined rather than awaited one message at a time.
type Publisher struct {
	url   string
	name  string
	log   *slog.Logger
	reqs  chan pubRequest
	ready atomic.Bool
	// blocked is true while the broker blocks the connection (a memory or disk alarm):
	// publishes wait for it.
	blocked atomic.Bool
	// conn is the session's connection while it is ready: Channel opens channels on it.
	conn atomic.Pointer[amqp.Connection]
	// OnConnect, if set, runs on each new channel before publishing starts (to declare
	// topology). It runs on the owning goroutine.
	OnConnect func(*amqp.Channel) error
}

type pubRequest struct {
	p    Publishing
	done chan error
}

// NewPublisher makes a Publisher for the broker at url; Run connects it.
func NewPublisher(url, name string, log *slog.Logger) *Publisher {
	return &Publisher{url: url, name: name, log: log, reqs: make(chan pubRequest)}
}

// Ready reports whether the publisher has a channel.
func (p *Publisher) Ready() bool { return p.ready.Load() }

// Blocked reports whether the broker has blocked the publisher's connection, as RabbitMQ does
// while a memory or disk alarm is on: nothing published is confirmed until it is lifted.
func (p *Publisher) Blocked() bool { return p.blocked.Load() }

// Publish publishes and waits for the broker's confirm. It fails if the message was nacked,
// returned as unroutable (when mandatory), the channel closed first, or ctx ended: callers
// must bound ctx.
func (p *Publisher) Publish(ctx context.Context, pub Publishing) error {
	req := pubRequest{p: pub, done: make(chan error, 1)}
	select {
	case p.reqs <- req:
	case <-ctx.Done():
		return fmt.Errorf("publish to %q: %w", pub.Key, context.Cause(ctx))
	}
	select {
	case err := <-req.done:
		if err != nil {
			return fmt.Errorf("publish to %q: %w", pub.Key, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publish to %q: waiting for confirm: %w", pub.Key, context.Cause(ctx))
	}
}

// Run keeps a confirming channel open until ctx ends, reconnecting with backoff.
func (p *Publisher) Run(ctx context.Context) error {
	bo := backoff.New()
	for {
		err := p.session(ctx)
		if p.ready.Swap(false) {
			bo.Reset()
		}
		if ctx.Err() != nil {
			return nil
		}
		d := bo.Next()
		p.log.Warn("publisher connection lost, reconnecting", "err", err, "in", d)
		if !backoff.Sleep(ctx, d) {
			return nil
		}
	}
}

func (p *Publisher) session(ctx context.Context) error {
	conn, err := Dial(p.url, p.name)
	if err != nil {
		return err
	}
	defer conn.Close()
	blocks := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	defer p.blocked.Store(false)
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel.open: %w", err)
	}
	if p.OnConnect != nil {
		if err := p.OnConnect(ch); err != nil {
			return err
		}
	}
	if err := ch.Confirm(false); err != nil {
		return fmt.Errorf("confirm.select: %w", err)
	}
	// Buffered so that the library's reader never waits on us; a return is always sent to
	// its channel before the confirm of the same message, so draining returns on each
	// confirm sees it.
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 4096))
	returns := ch.NotifyReturn(make(chan amqp.Return, 256))
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	pending := map[uint64]pubRequest{}
	returned := map[uint64]string{}
	defer func() {
		for _, r := range pending {
			r.done <- errors.New("channel closed before confirm")
		}
	}()
	p.ready.Store(true)
	// Offered to Channel only now, once the topology is declared.
	p.conn.Store(conn)
	defer p.conn.Store(nil)
	p.log.Info("publisher connected")

	noteReturn := func(r amqp.Return) {
		if seq, ok := r.Headers[headerPublishSeq].(int64); ok {
			returned[uint64(seq)] = r.ReplyText
		}
	}
	for {
		// The library's reader holds a lock while it hands over a confirm: with the
		// confirms buffer full, a publish would wait on that lock while the reader waits on
		// us. Take no request until confirms have room.
		reqs := p.reqs
		if len(pending) >= cap(confirms)-1 {
			reqs = nil
		}
		select {
		case <-ctx.Done():
			return nil
		case b, ok := <-blocks:
			if !ok {
				blocks = nil // closed with the connection: closed ends the session
				continue
			}
			p.blocked.Store(b.Active)
			if b.Active {
				p.log.Error("broker blocked the publisher: publishes wait until its alarm is lifted", "reason", b.Reason)
			} else {
				p.log.Info("broker unblocked the publisher")
			}
		case err := <-closed:
			if err == nil {
				return errors.New("channel closed")
			}
			return err
		case r, ok := <-returns:
			if !ok {
				// Closed with the channel, before the confirms: closed and confirms end
				// the session. A closed channel is always ready, so it is dropped here.
				returns = nil
				continue
			}
			noteReturn(r)
		case c, ok := <-confirms:
			if !ok {
				return errors.New("confirm channel closed")
			}
		drain:
			for {
				select {
				case r, ok := <-returns:
					if !ok {
						// Every return sent before the close is noted: a closed
						// channel gives its buffer first. Draining it on would spin
						// here for good, the session never ending.
						returns = nil
						break drain
					}
					noteReturn(r)
				default:
					break drain
				}
			}
			req, found := pending[c.DeliveryTag]
			if !found {
				continue
			}
			delete(pending, c.DeliveryTag)
			reason, wasReturned := returned[c.DeliveryTag]
			delete(returned, c.DeliveryTag)
			switch {
			case !c.Ack:
				req.done <- ErrNacked
			case wasReturned:
				req.done <- fmt.Errorf("%w: %s", ErrReturned, reason)
			default:
				req.done <- nil
			}
		case req := <-reqs:
			seq := ch.GetNextPublishSeqNo()
			msg := req.p.Msg
			if req.p.Mandatory {
				// A returned message is matched to its publish by this header.
				headers := make(amqp.Table, len(msg.Headers)+1)
				for k, v := range msg.Headers {
					headers[k] = v
				}
				headers[headerPublishSeq] = int64(seq)
				msg.Headers = headers
			}
			if err := ch.PublishWithContext(ctx, req.p.Exchange, req.p.Key, req.p.Mandatory, false, msg); err != nil {
				req.done <- fmt.Errorf("basic.publish: %w", err)
				return err
			}
			pending[seq] = req
		}
	}
}
