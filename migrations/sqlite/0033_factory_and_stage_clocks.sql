-- A unit returned to the factory (RMA, 001 ¶11-12 "对设备进行 RMA 操作"): a ticket state of its
-- own, `at_factory`, and the trip's moments; the factory's clock runs from the unit's arrival
-- (002 L108 "设备到工厂后,返修期不超过5个工作日").
-- The state's check is widened by moving its values to a new column with the wider check; the
-- indexes on the old column go first and come back on the new one.
DROP INDEX tickets_one_open;
DROP INDEX tickets_by_state;
DROP INDEX tickets_by_assignee;
ALTER TABLE tickets ADD COLUMN state_wide TEXT NOT NULL DEFAULT 'open'
    CHECK (state_wide IN ('open', 'acknowledged', 'dispatched', 'on_site', 'at_factory', 'resolved', 'closed', 'cancelled'));
UPDATE tickets SET state_wide = state;
ALTER TABLE tickets DROP COLUMN state;
ALTER TABLE tickets RENAME COLUMN state_wide TO state;
CREATE UNIQUE INDEX tickets_one_open ON tickets (device, code)
    WHERE state NOT IN ('closed', 'cancelled') AND code <> '';
CREATE INDEX tickets_by_state ON tickets (state, id);
CREATE INDEX tickets_by_assignee ON tickets (assignee, state) WHERE assignee IS NOT NULL;

ALTER TABLE tickets ADD COLUMN factory_sent_at INTEGER;
ALTER TABLE tickets ADD COLUMN factory_arrived_at INTEGER;
ALTER TABLE tickets ADD COLUMN factory_back_at INTEGER;
-- The factory's return number (RMA number, carrier's waybill), as a person gave it.
ALTER TABLE tickets ADD COLUMN factory_ref TEXT;

-- Clocks that start on a moment of the ticket rather than its opening (004 L61-65: the
-- 30-minute remote fix, the 3-hour on-site replacement; the factory's clock): the first time
-- the ticket was handed on to the field (dispatched, on site or sent to the factory), which
-- ends the remote fix; its first fix (a reopening does not undo what the stage clocks judged);
-- and when each of these clocks ran out unmet.
ALTER TABLE tickets ADD COLUMN handed_on_at INTEGER;
ALTER TABLE tickets ADD COLUMN first_fixed_at INTEGER;
ALTER TABLE tickets ADD COLUMN remote_fix_breached_at INTEGER;
ALTER TABLE tickets ADD COLUMN on_site_fix_breached_at INTEGER;
ALTER TABLE tickets ADD COLUMN factory_breached_at INTEGER;
UPDATE tickets SET handed_on_at =
    (SELECT MIN(at) FROM timeline WHERE ticket_id = tickets.id AND to_state IN ('dispatched', 'on_site'));
UPDATE tickets SET first_fixed_at = CASE
    WHEN resolve_forced = 1 THEN CASE WHEN recovered = 1 AND resolved_at IS NOT NULL THEN recovered_at END
    ELSE (SELECT MIN(at) FROM timeline WHERE ticket_id = tickets.id AND to_state = 'resolved') END;
-- Tickets older than these clocks were promised nothing by them: none is fired for them.
UPDATE tickets SET remote_fix_breached_at = updated_at, on_site_fix_breached_at = updated_at,
    factory_breached_at = updated_at;
