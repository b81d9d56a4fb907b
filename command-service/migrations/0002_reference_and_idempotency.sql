-- Reference data for the pre-checks, built from KOS facts (kos.billing). Never a call to
-- KOS in the request path.
CREATE TABLE ref_products
(
    product_code  text PRIMARY KEY,
    name          text    NOT NULL,
    operator      text    NOT NULL,
    monthly_fee   bigint  NOT NULL,
    on_sale       boolean NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ref_lines
(
    line_number   text PRIMARY KEY,
    customer_id   text NOT NULL,
    operator      text NOT NULL,
    status        text NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED')),
    product_code  text NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ref_lines_customer ON ref_lines (customer_id);

-- Idempotency-Key -> the request id it stands for. The line aggregate remembers every
-- request id, so replaying a key re-runs the same command and gets the same answer.
CREATE TABLE idempotency_keys
(
    idempotency_key text PRIMARY KEY,
    fingerprint     text        NOT NULL,
    request_id      uuid        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
