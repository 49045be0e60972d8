-- Work orders go to the helpdesk like tickets: an outbox row is about either
-- a ticket or a work order, each with its own sequence, and a work order maps
-- to its own remote ticket per helpdesk. SQLite cannot relax NOT NULL in
-- place, so the outbox is rebuilt with its rows.
CREATE TABLE outbox_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id       INTEGER REFERENCES tickets (id),
    work_order_id   INTEGER REFERENCES work_orders (id),
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
    origin          TEXT    NOT NULL DEFAULT '',
    CHECK ((ticket_id IS NULL) != (work_order_id IS NULL)),
    UNIQUE (ticket_id, seq),
    UNIQUE (work_order_id, seq)
);
INSERT INTO outbox_new (id, ticket_id, seq, event_id, event, action, note, customer, created_at, state, attempts,
                        next_attempt_at, last_error, delivered_at, origin)
    SELECT id, ticket_id, seq, event_id, event, action, note, customer, created_at, state, attempts,
           next_attempt_at, last_error, delivered_at, origin FROM outbox;
-- Row ids go on from where the old table's left off, never reused.
UPDATE sqlite_sequence SET seq = (SELECT MAX(seq) FROM sqlite_sequence WHERE name IN ('outbox', 'outbox_new'))
    WHERE name = 'outbox_new';
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
CREATE INDEX outbox_by_ticket ON outbox (ticket_id, seq);
CREATE INDEX outbox_by_work_order ON outbox (work_order_id, seq);

CREATE TABLE remote_work_orders (
    work_order_id INTEGER NOT NULL REFERENCES work_orders (id),
    helpdesk      TEXT    NOT NULL,
    remote_id     TEXT    NOT NULL,
    remote_status TEXT,
    PRIMARY KEY (work_order_id, helpdesk)
);
