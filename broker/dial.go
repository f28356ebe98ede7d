// Package broker is webhookd's side of RabbitMQ: dialling, the topology it declares, the
// confirming publisher, and the wire format of every message the worker sends itself (retry,
// redelivery, postponed, dead letter, notification). It knows nothing of the database or of
// HTTP; the consumer, the commands, the bench and the test beds all publish through it.
package broker

import (
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Dial opens a connection to the broker at url with a 10 s heartbeat, shown by the broker
// under name.
func Dial(url, name string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	conn, err := amqp.DialConfig(url, amqp.Config{
		Heartbeat:  10 * time.Second,
		Properties: props,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to broker: %w", err)
	}
	return conn, nil
}
