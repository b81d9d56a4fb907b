-- An Idempotency-Key belongs to the caller who sent it (the token's subject): one
-- customer's keys can neither be seen (a 422 for a key someone else used) nor taken
-- ahead of time by another.
ALTER TABLE idempotency_keys ADD COLUMN caller text;
-- Keys stored before this: their line's owner, the only customer who could have sent
-- them (a request an admin made with a key is then found under its owner's name).
UPDATE idempotency_keys k
   SET caller = r.customer_id
  FROM ref_lines r
 WHERE r.line_number = split_part(k.fingerprint, '|', 1);
UPDATE idempotency_keys SET caller = '' WHERE caller IS NULL;
ALTER TABLE idempotency_keys ALTER COLUMN caller SET NOT NULL;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (caller, idempotency_key);
