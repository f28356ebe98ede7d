-- Per-object ordering (contract §9). An ordered webhook's deliveries of one object's events
-- get sequence numbers 1, 2, 3… in publish order; a delivery is attempted only once every
-- earlier one has settled. object_key is the first 16 bytes of the SHA-256 of the object id's
-- JSON text, so that any id fits a fixed-size key.

-- The last sequence number given out per (webhook, object), and the one up to which every
-- delivery has settled: the next is due once done_seq reaches it.
CREATE TABLE IF NOT EXISTS sequences (
  webhook_id BIGINT UNSIGNED NOT NULL,
  object_key BINARY(16) NOT NULL,
  last_seq INT UNSIGNED NOT NULL,
  done_seq INT UNSIGNED NOT NULL,
  PRIMARY KEY (webhook_id, object_key)
) ENGINE=InnoDB;

-- Each ordered delivery's place. Only ordered webhooks' deliveries have one, so the deliveries
-- of every other webhook pay for no extra key.
CREATE TABLE IF NOT EXISTS ordered_deliveries (
  webhook_id BIGINT UNSIGNED NOT NULL,
  object_key BINARY(16) NOT NULL,
  sequence INT UNSIGNED NOT NULL,
  delivery_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
  PRIMARY KEY (webhook_id, object_key, sequence),
  UNIQUE KEY ordered_deliveries_delivery (delivery_id)
) ENGINE=InnoDB;

-- The workers copy events to the sequencer's queue only while some webhook is ordered.
ALTER TABLE webhooks ADD KEY IF NOT EXISTS webhooks_ordered (ordered, enabled);
