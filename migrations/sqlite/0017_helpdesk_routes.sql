-- Which helpdesk each customer's changes go to (its [[customers]] entry's
-- `helpdesk`), rewritten at every start. Only these customers' changes become
-- outbox rows, and each helpdesk's relay claims its own customers' rows.
CREATE TABLE helpdesk_routes (
    customer TEXT PRIMARY KEY,
    helpdesk TEXT NOT NULL
);
-- The relay asks for the due rows of one helpdesk's customers.
CREATE INDEX outbox_due_by_customer ON outbox (state, customer, next_attempt_at);
