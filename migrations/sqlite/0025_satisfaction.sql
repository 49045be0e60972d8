-- Satisfaction after a service (000 篇六, 003): one survey per ticket, answered once, through
-- a one-time link (kept as the SHA-256 of its secret) or by the desk on the phone.
CREATE TABLE surveys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id   INTEGER NOT NULL UNIQUE REFERENCES tickets (id),
    customer    TEXT    NOT NULL,
    engineer    TEXT,
    token_hash  TEXT    UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    answered_at INTEGER,
    channel     TEXT CHECK (channel IN ('link', 'phone')),
    recorded_by TEXT,
    score       INTEGER CHECK (score BETWEEN 1 AND 5),
    comment     TEXT
);
CREATE INDEX surveys_by_answer ON surveys (customer, answered_at);
