package repository

import (
	"context"
	"fmt"
	"slices"

	"github.com/jmoiron/sqlx"
)

// WebhookCount is how many of some deliveries go to one webhook.
type WebhookCount struct {
	WebhookID uint64 `db:"webhook_id"`
	N         int    `db:"n"`
}

// countBatch is how many ids one counting statement names.
const countBatch = 1000

// CountByWebhook counts the deliveries of ids by webhook, in webhook order (a dry run's
// report). Ids that name no delivery are not counted.
func (s *Store) CountByWebhook(ctx context.Context, ids []string) ([]WebhookCount, error) {
	byHook := map[uint64]int{}
	var order []uint64
	for start := 0; start < len(ids); start += countBatch {
		q, args, err := sqlx.In("SELECT webhook_id, COUNT(*) AS n FROM deliveries WHERE id IN (?) GROUP BY webhook_id",
			ids[start:min(start+countBatch, len(ids))])
		if err != nil {
			return nil, fmt.Errorf("count deliveries by webhook: %w", err)
		}
		var counts []WebhookCount
		if err := s.db.SelectContext(ctx, &counts, q, args...); err != nil {
			return nil, fmt.Errorf("count deliveries by webhook: %w", err)
		}
		for _, c := range counts {
			if _, seen := byHook[c.WebhookID]; !seen {
				order = append(order, c.WebhookID)
			}
			byHook[c.WebhookID] += c.N
		}
	}
	slices.Sort(order)
	out := make([]WebhookCount, len(order))
	for i, id := range order {
		out[i] = WebhookCount{WebhookID: id, N: byHook[id]}
	}
	return out, nil
}
