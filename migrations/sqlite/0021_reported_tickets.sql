-- Tickets people report: by which channel, about what, from whom, in their words, entered by
-- which user. A sensor's ticket is a fault by the sensor channel. `sensed` says whether a
-- device's rule raised the ticket's fault: a report no sensor has confirmed is not an active
-- fault (it can be resolved without force, and is no rule state to restore at start).
-- A report may name no device (`device` and `kind` are empty) or no fault code (`code` is
-- empty): such a ticket stands alone, outside the one-open-ticket-per-fault rule.
ALTER TABLE tickets ADD COLUMN category TEXT NOT NULL DEFAULT 'fault'
    CHECK (category IN ('fault', 'request', 'question', 'complaint'));
ALTER TABLE tickets ADD COLUMN channel TEXT NOT NULL DEFAULT 'sensor'
    CHECK (channel IN ('sensor', 'phone', 'web', 'email', 'visit', 'helpdesk'));
ALTER TABLE tickets ADD COLUMN reporter_name TEXT;
ALTER TABLE tickets ADD COLUMN reporter_phone TEXT;
ALTER TABLE tickets ADD COLUMN problem TEXT;
ALTER TABLE tickets ADD COLUMN reported_by TEXT;
ALTER TABLE tickets ADD COLUMN sensed INTEGER NOT NULL DEFAULT 1 CHECK (sensed IN (0, 1));

DROP INDEX tickets_one_open;
CREATE UNIQUE INDEX tickets_one_open ON tickets (device, code)
    WHERE state NOT IN ('closed', 'cancelled') AND code <> '';
