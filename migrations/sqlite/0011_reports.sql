-- Inspection reports, made when an inspection work order is completed; the
-- contracts want them within 3 working days (`due_by`), and they are made at once.
CREATE TABLE reports (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    work_order_id INTEGER REFERENCES work_orders (id),
    customer      TEXT    NOT NULL,
    site          TEXT,
    period_from   INTEGER NOT NULL,
    period_to     INTEGER NOT NULL,
    made_at       INTEGER NOT NULL,
    due_by        INTEGER,
    lang          TEXT    NOT NULL,
    json          TEXT    NOT NULL,
    html          TEXT    NOT NULL,
    UNIQUE (work_order_id, lang)
);
