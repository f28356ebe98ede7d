package broker_test

import (
	"reflect"
	"testing"

	"github.com/webhookd/webhookd/broker"
	"github.com/webhookd/webhookd/internal/testbed"
)

func TestURLs(t *testing.T) {
	t.Parallel()
	got := broker.URLs(" amqp://a/ ,, amqp://b/,")
	if want := []string{"amqp://a/", "amqp://b/"}; !reflect.DeepEqual(got, want) {
		t.Errorf("URLs = %q, want %q", got, want)
	}
}

// Dial goes on to the next URL when a node does not answer, whichever it asks first.
func TestDialTriesEachURL(t *testing.T) {
	t.Parallel()
	testbed.New(t) // skips in short mode: needs RabbitMQ
	urls := "amqp://guest:guest@127.0.0.1:1/," + testbed.AMQPURL
	for range 3 {
		conn, err := broker.Dial(urls, "dial test")
		if err != nil {
			t.Fatalf("Dial(%q): %v", urls, err)
		}
		conn.Close()
	}
	if _, err := broker.Dial("amqp://guest:guest@127.0.0.1:1/,amqp://guest:guest@127.0.0.1:2/", "dial test"); err == nil {
		t.Error("Dial to two closed ports succeeded")
	}
}
