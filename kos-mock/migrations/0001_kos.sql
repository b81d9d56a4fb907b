-- KOS's own data: catalog, customers and lines, bills, product-change orders, and the
-- outbox its facts and results leave through (written in the same transaction as the
-- state they describe).

CREATE TABLE products (
    product_code  text PRIMARY KEY,
    name          text NOT NULL,
    operator      text NOT NULL,
    monthly_fee   bigint NOT NULL CHECK (monthly_fee >= 0),
    data_mb       bigint,
    voice_minutes bigint,
    sms_count     bigint,
    on_sale       boolean NOT NULL,
    -- Last sequence used by this product's facts.
    sequence      bigint NOT NULL
);

CREATE TABLE customers (
    customer_id text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE lines (
    line_number         text PRIMARY KEY,
    customer_id         text NOT NULL REFERENCES customers,
    operator            text NOT NULL,
    status              text NOT NULL CHECK (status IN ('ACTIVE', 'SUSPENDED')),
    product_code        text NOT NULL REFERENCES products,
    commitment_months   integer NOT NULL CHECK (commitment_months >= 0),
    contract_started_on date NOT NULL,
    contract_ends_on    date NOT NULL,
    -- Device price paid in installments over the commitment (0: no device).
    device_price        bigint NOT NULL DEFAULT 0 CHECK (device_price >= 0),
    payment_method      text NOT NULL,
    -- Last sequence used by this line's facts (line, bill and payment facts share it).
    sequence            bigint NOT NULL
);

-- Every product change KOS carried out, in order.
CREATE TABLE line_product_history (
    id                    bigserial PRIMARY KEY,
    line_number           text NOT NULL REFERENCES lines,
    previous_product_code text NOT NULL,
    new_product_code      text NOT NULL,
    kos_order_id          text NOT NULL,
    request_id            uuid,
    changed_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX line_product_history_request ON line_product_history (request_id);

CREATE TABLE bills (
    line_number    text NOT NULL REFERENCES lines,
    month          text NOT NULL,
    total_amount   bigint NOT NULL,
    payment_status text NOT NULL,
    bill           jsonb NOT NULL,
    issued_at      timestamptz NOT NULL,
    PRIMARY KEY (line_number, month)
);

-- One row per product-change request KOS answered (idempotency by request id).
CREATE TABLE orders (
    request_id            uuid PRIMARY KEY,
    kos_order_id          text NOT NULL UNIQUE,
    line_number           text NOT NULL,
    outcome               text NOT NULL CHECK (outcome IN ('EXECUTED', 'REFUSED')),
    previous_product_code text,
    new_product_code      text,
    reason_code           text,
    message               text NOT NULL,
    -- How many times the request arrived (duplicates and redeliveries included).
    deliveries            integer NOT NULL DEFAULT 1,
    received_at           timestamptz NOT NULL,
    answered_at           timestamptz NOT NULL,
    -- The result envelope, re-sent unchanged when the request arrives again.
    result                jsonb NOT NULL
);

CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    -- `billing` (kos.billing) or `results` (kos.product-change-results); the topic
    -- prefix is applied when publishing.
    topic      text NOT NULL CHECK (topic IN ('billing', 'results')),
    key        text NOT NULL,
    envelope   jsonb NOT NULL,
    published  boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE NOT published;
