-- Logins: one row per account. The failure count and the lock live here, in PostgreSQL,
-- so every replica sees the same lock and it survives restarts.
CREATE TABLE credentials
(
    customer_id   text PRIMARY KEY,
    -- argon2id PHC string; NULL: no password set. Failed logins of unknown ids are
    -- counted too, so an unknown id locks and answers exactly like a known one.
    password_hash text,
    role          text        NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'analyst', 'admin')),
    failed_count  integer     NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Logged-out tokens until they would have expired (also published to Redis for the
-- query side as `revoked:{jti}`).
CREATE TABLE revoked_tokens
(
    jti        text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE INDEX revoked_tokens_expiry ON revoked_tokens (expires_at);
