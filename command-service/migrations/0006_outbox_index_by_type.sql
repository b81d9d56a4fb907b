-- The relay reads `WHERE aggregate_type = $1 AND (tx_id, position) > cursor AND tx_id <
-- xmin ORDER BY tx_id, position LIMIT n`. On (tx_id, position) alone the type was a
-- filter, and the planner's generic plan (the statement is prepared) AND-ed that index
-- with the primary key, whose leading column is the type: every batch walked the key of
-- every event (5.8 ms per batch at 60,000 rows, growing with the table). With the type
-- leading this index, all three conditions are index bounds and the batch is a range
-- scan from the cursor that stops at xmin, whatever the table's size.
--
-- On a large live table, build the new index with CREATE INDEX CONCURRENTLY before
-- applying this migration (it then finds it by name and only drops the old one).
CREATE INDEX IF NOT EXISTS events_outbox ON events (aggregate_type, tx_id, position);

DROP INDEX events_outbox_order;
