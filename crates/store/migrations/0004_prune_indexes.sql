-- What the periodic pruning deletes by (Store::prune): one range scan each.
CREATE INDEX idempotency_keys_by_created ON idempotency_keys (created_at);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);
