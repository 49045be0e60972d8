-- Visits owed after a service rather than on a calendar (a written fault
-- analysis after an on-site repair, a satisfaction call after a service) name
-- the ticket that called for them; one per plan and ticket.
ALTER TABLE work_orders ADD COLUMN ticket_id INTEGER REFERENCES tickets (id);
CREATE UNIQUE INDEX work_orders_by_ticket ON work_orders (contract, plan, ticket_id) WHERE ticket_id IS NOT NULL;
-- Whether a work order's events go to the customer's helpdesk (its plan's `helpdesk`).
ALTER TABLE work_orders ADD COLUMN helpdesk INTEGER NOT NULL DEFAULT 1 CHECK (helpdesk IN (0, 1));
-- Reports made on a cadence (the weekly activity report, the monthly,
-- quarterly and yearly analyses): once per customer, cadence, period and language.
ALTER TABLE reports ADD COLUMN cadence TEXT;
CREATE UNIQUE INDEX reports_by_cadence ON reports (customer, cadence, period_from, lang) WHERE cadence IS NOT NULL;
-- The scheduler asks every minute which tickets were resolved lately.
CREATE INDEX tickets_by_resolved ON tickets (resolved_at) WHERE resolved_at IS NOT NULL;
