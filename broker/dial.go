// Package broker is webhookd's side of RabbitMQ: dialling, the topology it declares, the
// confirming publisher, and the wire format of every message the worker sends itself (retry,
// redelivery, postponed, dead letter, notification). It knows nothing of the database or of
// HTTP; the consumer, the commands, the bench and the test beds all publish through it.
package broker

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Dial opens a connection with a 10 s heartbeat, shown by the broker under name, to the first
// of urls that answers: urls is one broker URL or several, comma-separated (the nodes of a
// cluster). Each call starts one node further along the list, so that reconnects spread over
// the nodes and a node that is down is not asked first every time.
func Dial(urls, name string) (*amqp.Connection, error) {
	list := URLs(urls)
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	start := int(next.Add(1))
	var errs []error
	for i := range list {
		url := list[(start+i)%len(list)]
		conn, err := amqp.DialConfig(url, amqp.Config{
			Heartbeat:  10 * time.Second,
			Properties: props,
		})
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("connect to broker: %w", errors.Join(errs...))
}

// next rotates the node Dial asks first.
var next atomic.Uint32

// URLs splits a comma-separated list of broker URLs, dropping blanks.
func URLs(urls string) []string {
	var list []string
	for _, u := range strings.Split(urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			list = append(list, u)
		}
	}
	if len(list) == 0 {
		list = []string{""}
	}
	return list
}
