-- Who works on a ticket or a visit: a user's name. Comments are timeline lines; an internal
-- one is for the service team alone (a customer's user does not see it, a helpdesk takes it
-- as a private note), and its outbox row says so.
ALTER TABLE tickets ADD COLUMN assignee TEXT;
ALTER TABLE work_orders ADD COLUMN assignee TEXT;
ALTER TABLE timeline ADD COLUMN internal INTEGER NOT NULL DEFAULT 0 CHECK (internal IN (0, 1));
ALTER TABLE outbox ADD COLUMN internal INTEGER NOT NULL DEFAULT 0 CHECK (internal IN (0, 1));
CREATE INDEX tickets_by_assignee ON tickets (assignee, state) WHERE assignee IS NOT NULL;
CREATE INDEX work_orders_by_assignee ON work_orders (assignee, due_on) WHERE assignee IS NOT NULL;
