-- Subscriptions: the monolith inserts and updates these rows (contract §2).
CREATE TABLE IF NOT EXISTS webhooks (
  id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  account_id BIGINT UNSIGNED NOT NULL,
  project_id BIGINT UNSIGNED NULL,
  event VARCHAR(64) NOT NULL,
  url VARCHAR(2048) NOT NULL,
  format ENUM('json','xml','form') NOT NULL DEFAULT 'json',
  token VARCHAR(255) NOT NULL,
  enabled TINYINT(1) NOT NULL DEFAULT 1,
  consecutive_failures INT UNSIGNED NOT NULL DEFAULT 0,
  disabled_reason VARCHAR(255) NULL,
  notify_pending TINYINT(1) NOT NULL DEFAULT 0,
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
  KEY webhooks_lookup (account_id, event)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Every event as received, so that it can be redelivered or replayed after its messages are gone.
-- claim marks the batch that inserted the row: it tells a new event from a duplicate id.
CREATE TABLE IF NOT EXISTS events (
  id VARCHAR(64) NOT NULL PRIMARY KEY,
  event VARCHAR(64) NOT NULL,
  account_id BIGINT UNSIGNED NOT NULL,
  project_id BIGINT UNSIGNED NULL,
  object_id VARCHAR(1024) NULL,
  occurred_at VARCHAR(64) NOT NULL,
  data LONGBLOB NOT NULL,
  received_at DATETIME(6) NOT NULL,
  claim BIGINT UNSIGNED NOT NULL DEFAULT 0,
  KEY events_account_event (account_id, event, received_at),
  KEY events_received (received_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per (event, webhook): the unique key is what makes a duplicate event id harmless.
CREATE TABLE IF NOT EXISTS deliveries (
  id VARCHAR(64) NOT NULL PRIMARY KEY,
  event_id VARCHAR(64) NOT NULL,
  webhook_id BIGINT UNSIGNED NOT NULL,
  status ENUM('pending','succeeded','failed') NOT NULL DEFAULT 'pending',
  attempts INT UNSIGNED NOT NULL DEFAULT 0,
  last_status_code SMALLINT UNSIGNED NULL,
  last_error TEXT NULL,
  created_at DATETIME(6) NOT NULL,
  updated_at DATETIME(6) NOT NULL,
  UNIQUE KEY deliveries_event_webhook (event_id, webhook_id),
  KEY deliveries_webhook_status (webhook_id, status, created_at),
  KEY deliveries_updated (updated_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per attempt: what the customer's endpoint answered, and when.
CREATE TABLE IF NOT EXISTS attempts (
  id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  delivery_id VARCHAR(64) NOT NULL,
  attempt INT UNSIGNED NOT NULL,
  started_at DATETIME(6) NOT NULL,
  duration_us BIGINT UNSIGNED NOT NULL,
  status_code SMALLINT UNSIGNED NULL,
  error TEXT NULL,
  response_body VARBINARY(1024) NULL,
  KEY attempts_delivery (delivery_id, attempt),
  KEY attempts_started (started_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
