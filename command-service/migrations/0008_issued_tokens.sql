-- Tokens issued at login, until they expire: a password reset, a role change or
-- "log out everywhere" revokes every live token of the account at once (each goes to
-- `revoked_tokens` and Redis like a logout), instead of leaving them valid up to 30
-- minutes.
CREATE TABLE issued_tokens
(
    jti         text PRIMARY KEY,
    customer_id text        NOT NULL,
    expires_at  timestamptz NOT NULL
);

CREATE INDEX issued_tokens_account ON issued_tokens (customer_id);
CREATE INDEX issued_tokens_expiry ON issued_tokens (expires_at);
