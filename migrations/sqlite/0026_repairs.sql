-- The repair record of an on-site repair (003, 004), one per ticket, kept as the JSON of its
-- fields (cause, work done, parts, time, cost, the customer's confirmation), with the billing
-- class and charge worked out when it was recorded. Attachments are the photos and signature
-- images of a ticket: their bytes live in files beside the database, named by their id.
CREATE TABLE repairs (
    ticket_id   INTEGER PRIMARY KEY REFERENCES tickets (id),
    record      TEXT    NOT NULL,
    class       TEXT    NOT NULL,
    charge      TEXT    NOT NULL,
    recorded_by TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL
);

CREATE TABLE attachments (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id    INTEGER NOT NULL REFERENCES tickets (id),
    kind         TEXT    NOT NULL CHECK (kind IN ('photo', 'signature')),
    content_type TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    uploaded_by  TEXT    NOT NULL,
    uploaded_at  INTEGER NOT NULL
);
CREATE INDEX attachments_by_ticket ON attachments (ticket_id, id);
