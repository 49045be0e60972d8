-- What the contract clocks have fired on a ticket. Each column is set once,
-- by a conditional UPDATE, so nothing fires twice across restarts.
ALTER TABLE tickets ADD COLUMN acknowledge_breached_at INTEGER;
ALTER TABLE tickets ADD COLUMN on_site_breached_at INTEGER;
ALTER TABLE tickets ADD COLUMN resolve_breached_at INTEGER;
ALTER TABLE tickets ADD COLUMN escalation_level INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tickets ADD COLUMN loaner INTEGER NOT NULL DEFAULT 0 CHECK (loaner IN (0, 1));
ALTER TABLE tickets ADD COLUMN dispatched_at INTEGER;
ALTER TABLE tickets ADD COLUMN inaction_escalated_at INTEGER;
