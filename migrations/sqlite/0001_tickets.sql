-- Tickets and their append-only timelines. Times are milliseconds since the
-- Unix epoch (UTC), the same on SQLite and PostgreSQL.
CREATE TABLE tickets (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    device          TEXT    NOT NULL,
    site            TEXT    NOT NULL,
    customer        TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    code            TEXT    NOT NULL,
    title           TEXT    NOT NULL,
    tier            INTEGER NOT NULL CHECK (tier IN (1, 2, 3)),
    state           TEXT    NOT NULL CHECK (state IN ('open', 'acknowledged', 'dispatched', 'on_site', 'resolved', 'closed', 'cancelled')),
    recovered       INTEGER NOT NULL DEFAULT 0 CHECK (recovered IN (0, 1)),
    occurrences     INTEGER NOT NULL DEFAULT 1,
    fault_at        INTEGER NOT NULL,
    opened_at       INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    last_raised_at  INTEGER NOT NULL,
    recovered_at    INTEGER,
    acknowledged_at INTEGER,
    resolved_at     INTEGER,
    closed_at       INTEGER,
    detail          TEXT    NOT NULL DEFAULT ''
);

-- Invariant 1: at most one open ticket per device and fault code.
CREATE UNIQUE INDEX tickets_one_open ON tickets (device, code)
    WHERE state NOT IN ('closed', 'cancelled');
CREATE INDEX tickets_by_state ON tickets (state, id);
CREATE INDEX tickets_by_device ON tickets (device, code, closed_at);

CREATE TABLE timeline (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id  INTEGER NOT NULL REFERENCES tickets (id),
    at         INTEGER NOT NULL,
    event      TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    from_state TEXT,
    to_state   TEXT,
    tier       INTEGER,
    note       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX timeline_by_ticket ON timeline (ticket_id, id);

-- Invariant 2: the timeline is append-only.
CREATE TRIGGER timeline_no_update BEFORE UPDATE ON timeline
BEGIN SELECT RAISE(ABORT, 'the timeline is append-only'); END;
CREATE TRIGGER timeline_no_delete BEFORE DELETE ON timeline
BEGIN SELECT RAISE(ABORT, 'the timeline is append-only'); END;
