-- The event writer now keeps kos_deadlines itself, in the same statement as the events
-- (event_store.rs), instead of the per-row plpgsql trigger of 0003, which parsed every
-- SentToKos / Completed / Failed payload and re-read its WHEN clause on every INSERT.
--
-- deadline_kept: true when the statement that wrote the row also kept kos_deadlines.
-- Writers older than this migration (during a rolling update) leave it false, and for
-- them the trigger still does the work, so no deadline is lost. Once no such writer can
-- run, a later migration may drop the trigger and its function.
ALTER TABLE events ADD COLUMN deadline_kept boolean NOT NULL DEFAULT false;

DROP TRIGGER events_kos_deadline ON events;

CREATE TRIGGER events_kos_deadline
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NOT NEW.deadline_kept
          AND NEW.event_type IN ('ProductChangeSentToKos', 'ProductChangeCompleted', 'ProductChangeFailed'))
EXECUTE FUNCTION track_kos_deadline();
