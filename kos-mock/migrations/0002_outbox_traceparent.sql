-- The W3C trace context an answer was written under, so the publisher continues the
-- trace of the change KOS answered (NULL when traces are off).
ALTER TABLE outbox ADD COLUMN traceparent text;
