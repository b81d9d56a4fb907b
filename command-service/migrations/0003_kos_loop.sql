-- The KOS loop: reference data built from kos.billing facts in order, and the deadlines
-- of changes waiting for KOS's answer.

-- The sequence of the last KOS fact applied to a row. A fact at or below it is a
-- redelivery and changes nothing.
ALTER TABLE ref_products ADD COLUMN kos_sequence bigint NOT NULL DEFAULT 0;
ALTER TABLE ref_lines ADD COLUMN kos_sequence bigint NOT NULL DEFAULT 0;

-- One row per change handed to KOS and not yet answered: the timeout sweeper's index.
-- Kept by a trigger on the event store, so it is written in the same transaction as the
-- events and can never disagree with them, whatever code path appends events.
CREATE TABLE kos_deadlines
(
    request_id  uuid PRIMARY KEY,
    line_number text        NOT NULL,
    answer_by   timestamptz NOT NULL
);

CREATE INDEX kos_deadlines_due ON kos_deadlines (answer_by);

CREATE FUNCTION track_kos_deadline() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    IF NEW.event_type = 'ProductChangeSentToKos' THEN
        INSERT INTO kos_deadlines (request_id, line_number, answer_by)
        VALUES ((NEW.payload -> 'ProductChangeSentToKos' ->> 'request_id')::uuid,
                NEW.aggregate_id,
                (NEW.payload -> 'ProductChangeSentToKos' ->> 'answer_by')::timestamptz)
        ON CONFLICT (request_id) DO NOTHING;
    ELSIF NEW.event_type IN ('ProductChangeCompleted', 'ProductChangeFailed') THEN
        DELETE FROM kos_deadlines
        WHERE request_id = (NEW.payload -> NEW.event_type ->> 'request_id')::uuid;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_kos_deadline
    AFTER INSERT ON events
    FOR EACH ROW
    WHEN (NEW.event_type IN ('ProductChangeSentToKos', 'ProductChangeCompleted', 'ProductChangeFailed'))
EXECUTE FUNCTION track_kos_deadline();
