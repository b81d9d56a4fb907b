-- The read tables (one JSON document per view row, with the columns its lookups need),
-- the per-aggregate checkpoint that makes the projector idempotent, the apply log that
-- proves no event was applied twice, and the parking lot.

CREATE TABLE applied (
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

CREATE TABLE apply_log (
    event_id       uuid PRIMARY KEY,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint NOT NULL,
    -- 1 unless an event was applied twice (which the projector must never do).
    times          integer NOT NULL DEFAULT 1,
    applied_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE parked (
    id             bigserial PRIMARY KEY,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint NOT NULL,
    topic          text NOT NULL,
    partition      integer NOT NULL,
    "offset"       bigint NOT NULL,
    key            bytea,
    payload        bytea NOT NULL,
    reason         text NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_by_aggregate ON parked (aggregate_type, aggregate_id, sequence);

CREATE TABLE products (
    product_code text PRIMARY KEY,
    operator     text NOT NULL,
    on_sale      boolean NOT NULL,
    doc          jsonb NOT NULL
);
CREATE INDEX products_by_operator ON products (operator) WHERE on_sale;

CREATE TABLE lines (
    line_number text PRIMARY KEY,
    doc         jsonb NOT NULL,
    -- When the current product was last set (the setting event's occurred_at): KOS facts
    -- and the command side's completions arrive on different topics, so the newest wins
    -- whatever order they are read in.
    product_at  timestamptz
);

CREATE TABLE bills (
    line_number text NOT NULL,
    month       text NOT NULL,
    doc         jsonb NOT NULL,
    PRIMARY KEY (line_number, month)
);

CREATE TABLE change_requests (
    request_id   uuid PRIMARY KEY,
    line_number  text NOT NULL,
    status       text NOT NULL,
    requested_at timestamptz NOT NULL,
    doc          jsonb NOT NULL
);
CREATE INDEX change_requests_by_line ON change_requests (line_number, requested_at DESC);

CREATE TABLE bill_inquiries (
    inquiry_id  uuid PRIMARY KEY,
    line_number text NOT NULL,
    month       text NOT NULL,
    result      text NOT NULL,
    inquired_at timestamptz NOT NULL
);
CREATE INDEX bill_inquiries_by_line ON bill_inquiries (line_number, inquired_at DESC);
