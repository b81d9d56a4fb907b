-- Failed logins counted per account and client address (IPv6 by its /64): a guesser
-- locks the account for their own address only, and its owner logs in from theirs.
-- A count starts over once a lockout window passes without a failure; rows that old
-- are deleted, so ids that do not exist leave nothing behind for long (they are
-- counted like real ones, so the answers do not tell them apart).
CREATE TABLE login_failures
(
    customer_id  text        NOT NULL,
    address      text        NOT NULL,
    failed_count integer     NOT NULL,
    locked_until timestamptz,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (customer_id, address)
);

CREATE INDEX login_failures_age ON login_failures (updated_at);

-- The rows failed logins of unknown ids left in `credentials` (no password). The
-- columns `failed_count` and `locked_until` stay while replicas of the previous
-- release may still run beside this one; nothing reads them any more.
DELETE FROM credentials WHERE password_hash IS NULL;
