-- The contact register (003): every call, letter or visit, whether or not it becomes a ticket,
-- with who made it and about what, answered within 24 hours.
CREATE TABLE contacts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,
    channel       TEXT    NOT NULL CHECK (channel IN ('phone', 'web', 'email', 'visit', 'helpdesk')),
    customer      TEXT,
    name          TEXT    NOT NULL DEFAULT '',
    address       TEXT    NOT NULL DEFAULT '',
    phone         TEXT    NOT NULL DEFAULT '',
    purchase_date TEXT,
    problem       TEXT    NOT NULL,
    taken_by      TEXT    NOT NULL,
    answer_by     INTEGER NOT NULL,
    answered_at   INTEGER,
    answered_by   TEXT,
    answer        TEXT,
    ticket_id     INTEGER REFERENCES tickets (id)
);
CREATE INDEX contacts_unanswered ON contacts (answer_by) WHERE answered_at IS NULL;
CREATE INDEX contacts_by_customer ON contacts (customer, at);
