package sender

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: a hostile receiver must not be
// able to pin a connection, a reader or a timer in the worker.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
