-- Who made the change an outbox row carries: a change that came from a
-- helpdesk is not sent back to that helpdesk (no echo loops).
ALTER TABLE outbox ADD COLUMN origin TEXT NOT NULL DEFAULT '';
