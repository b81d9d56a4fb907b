-- The event store of postgres-es, plus two columns that make the table its own outbox.
--
-- tx_id:    the id of the writing transaction. The relay reads only rows whose tx_id is
--           below the oldest transaction still open (pg_snapshot_xmin), so a row that
--           commits late can never be behind the relay's cursor: no gaps, nothing skipped.
-- position: a global order among rows of one transaction (and a tiebreak in general).
-- postgres-es names its columns on insert, so the defaults fill these in.
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    tx_id          xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    position       bigint GENERATED ALWAYS AS IDENTITY,
    recorded_at    timestamptz                  NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE INDEX events_outbox_order ON events (tx_id, position);

-- Required by postgres-es's API even though no aggregate here is snapshotted yet.
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- How far the relay has published: the last (tx_id, position) acknowledged by the broker.
CREATE TABLE outbox_cursor
(
    relay    text   PRIMARY KEY,
    tx_id    xid8   NOT NULL,
    position bigint NOT NULL
);
