-- Notifications to people: an escalation step, a breach, a loaner owed or a dispatched ticket
-- left alone, told to the people of a role through a channel (mail, a signed webhook for an
-- SMS gateway, a WeCom or DingTalk group robot). Written in the same transaction as the
-- firing, once (the key is the ticket, the firing, the channel and the recipient), and
-- delivered, retried and dead-lettered like the helpdesk outbox.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id       INTEGER NOT NULL REFERENCES tickets (id),
    key             TEXT    NOT NULL UNIQUE,
    channel         TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    address         TEXT    NOT NULL,
    mentions        TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    delivered_at    INTEGER,
    -- When a person last sent a dead one again: its time to die counts from here.
    retried_at      INTEGER
);
CREATE INDEX notifications_due ON notifications (state, next_attempt_at);
