-- Protecting the receivers (contract §8): a webhook's attempts per second across all workers
-- (NULL: no limit), and per-object ordering (§9).
ALTER TABLE webhooks
  ADD COLUMN IF NOT EXISTS rate_limit INT UNSIGNED NULL,
  ADD COLUMN IF NOT EXISTS ordered TINYINT(1) NOT NULL DEFAULT 0;

-- A row means that webhook's circuit is open: no attempt but a probe at probe_at. It references
-- nothing, so that deleting a webhook never waits on it; the breaker removes its own rows.
CREATE TABLE IF NOT EXISTS breakers (
  webhook_id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  opened_at DATETIME(6) NOT NULL,
  probe_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- The delivery API's filters (contract §10), each served by an index, newest first. A secondary
-- key ends with the primary key, so (…, created_at) orders by (created_at, id) as the cursor does.
-- An account's deliveries, or one webhook's, by time: the API joins webhooks on account_id
-- (webhooks_lookup) and reads each webhook's deliveries in this order. Status has
-- deliveries_webhook_status, event_id deliveries_event_webhook.
ALTER TABLE deliveries
  ADD KEY IF NOT EXISTS deliveries_webhook_created (webhook_id, created_at);

-- Events polling: an account's events by time; by object (also the deliveries' object_id
-- filter, joined on event_id). By event name: events_account_event.
ALTER TABLE events
  ADD KEY IF NOT EXISTS events_account_received (account_id, received_at),
  ADD KEY IF NOT EXISTS events_account_object (account_id, object_id(255), received_at);
