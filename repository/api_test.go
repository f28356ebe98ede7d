package repository_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/webhookd/webhookd/internal/testbed"
	"github.com/webhookd/webhookd/repository"
)

// The API's queries find a row only through the account that owns it, and answer another
// account's ids with ErrNotFound, as unknown ones.
func TestAPIQueriesAreScopedByAccount(t *testing.T) {
	t.Parallel()
	bed := testbed.New(t)
	ctx := context.Background()
	off := false
	mine := bed.AddWebhook(testbed.Webhook{Account: 1, Event: "A.B", URL: "http://x/", Enabled: &off})
	bed.Exec("UPDATE webhooks SET disabled_reason = 'gone', consecutive_failures = 4, notify_pending = 1 WHERE id = ?", mine)
	bed.Exec("INSERT INTO breakers (webhook_id, opened_at, probe_at) VALUES (?, NOW(6), NOW(6))", mine)
	now := time.Now().UTC()
	bed.Exec("INSERT INTO events (id, event, account_id, object_id, occurred_at, data, received_at) VALUES ('e', 'A.B', 1, '\"o/1\"', 'x', '{}', ?)", now)
	bed.Exec("INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, created_at, updated_at) VALUES ('d', 'e', ?, 'failed', 1, ?, ?)", mine, now, now)
	s := bed.Store

	notFound := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, repository.ErrNotFound) {
			t.Errorf("%s as account 2: %v, want ErrNotFound", what, err)
		}
	}
	_, err := s.AccountWebhook(ctx, 2, mine)
	notFound("AccountWebhook", err)
	_, err = s.SigningWebhook(ctx, 2, mine)
	notFound("SigningWebhook", err)
	_, err = s.AccountDelivery(ctx, 2, "d")
	notFound("AccountDelivery", err)
	_, err = s.AccountEvent(ctx, 2, "e")
	notFound("AccountEvent", err)
	notFound("EnableWebhook", s.EnableWebhook(ctx, 2, mine))
	if ds, err := s.AccountEventDeliveries(ctx, 2, "e"); err != nil || len(ds) != 0 {
		t.Errorf("AccountEventDeliveries as account 2 = %v, %v; want none", ds, err)
	}
	if ks, err := s.RetryBatch(ctx, 1, repository.RetryQuery{Status: "failed"}, nil, 10); err != nil || len(ks) != 0 {
		t.Errorf("RetryBatch of a disabled webhook = %v, %v; want none", ks, err)
	}

	// Enabling resets failures and the circuit; a reason still to be announced stays.
	if err := s.EnableWebhook(ctx, 1, mine); err != nil {
		t.Fatal(err)
	}
	w, err := s.AccountWebhook(ctx, 1, mine)
	if err != nil || !w.Enabled || w.ConsecutiveFailures != 0 || w.CircuitOpen || w.DisabledReason.String != "gone" {
		t.Errorf("after EnableWebhook: %+v, %v", w, err)
	}
	if err := s.EnableWebhook(ctx, 1, mine); err != nil {
		t.Errorf("enabling an enabled webhook: %v", err)
	}
	if ks, err := s.RetryBatch(ctx, 1, repository.RetryQuery{Status: "failed"}, nil, 10); err != nil || len(ks) != 1 || ks[0].ID != "d" {
		t.Errorf("RetryBatch once enabled = %v, %v; want d", ks, err)
	}
	for _, obj := range []string{"o/1"} {
		ds, err := s.AccountDeliveries(ctx, 1, repository.DeliveryQuery{ObjectID: obj, Limit: 10})
		if err != nil || len(ds) != 1 || ds[0].Event != "A.B" {
			t.Errorf("deliveries of object %q = %+v, %v; want d", obj, ds, err)
		}
	}
}
