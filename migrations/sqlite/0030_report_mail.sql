-- Kept reports as PDFs, and mailed. A report keeps the Typst markup it was set from, so that
-- its PDF is the report as it was made whenever it is asked for. Each kept report a contract
-- wants mailed has a row per address, written in the report's own transaction, once (the
-- report and the address are unique), and sent, retried and dead-lettered like the
-- notifications.
ALTER TABLE reports ADD COLUMN typst TEXT;

CREATE TABLE report_mail (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    report_id       INTEGER NOT NULL REFERENCES reports (id),
    channel         TEXT    NOT NULL,
    address         TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    delivered_at    INTEGER,
    UNIQUE (report_id, address)
);
CREATE INDEX report_mail_due ON report_mail (state, next_attempt_at);
