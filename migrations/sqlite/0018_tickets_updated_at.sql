-- The clock watcher keeps open tickets in memory and reads, each second, only
-- the tickets changed since its last look, a page at a time in this order.
CREATE INDEX tickets_changed ON tickets (updated_at, id);
