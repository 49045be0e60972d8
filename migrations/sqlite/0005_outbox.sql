-- The transactional outbox: every ticket change the helpdesk must see is a
-- row written in the same transaction as the change, delivered in order per
-- ticket by the relay, retried, and dead-lettered when it cannot be.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id       INTEGER NOT NULL REFERENCES tickets (id),
    seq             INTEGER NOT NULL,
    event_id        TEXT    NOT NULL UNIQUE,
    event           TEXT    NOT NULL,
    action          TEXT    NOT NULL CHECK (action IN ('trigger', 'update', 'resolve')),
    note            TEXT    NOT NULL DEFAULT '',
    customer        TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    delivered_at    INTEGER,
    UNIQUE (ticket_id, seq)
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_by_ticket ON outbox (ticket_id, seq);

-- Which remote ticket each aftercare ticket maps to, per helpdesk.
CREATE TABLE remote_tickets (
    ticket_id INTEGER NOT NULL REFERENCES tickets (id),
    helpdesk  TEXT    NOT NULL,
    remote_id TEXT    NOT NULL,
    PRIMARY KEY (ticket_id, helpdesk)
);
