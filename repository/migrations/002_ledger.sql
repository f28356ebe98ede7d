-- Ids compare exactly: utf8mb4_bin pads with spaces, so "x" and "x " were one key. NO PAD
-- collations compare every byte.
ALTER TABLE events MODIFY id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL;

-- due_at is when a pending delivery's next attempt is due; NULL once it has settled. The repair
-- sweep re-drives the deliveries that are long overdue, found through deliveries_due.
ALTER TABLE deliveries
  MODIFY id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
  MODIFY event_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
  ADD COLUMN IF NOT EXISTS due_at DATETIME(6) NULL,
  ADD KEY IF NOT EXISTS deliveries_due (due_at);

ALTER TABLE attempts MODIFY delivery_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL;

-- Deliveries pending before this migration were due when they last changed.
UPDATE deliveries SET due_at = updated_at WHERE status = 'pending';
