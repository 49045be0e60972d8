-- Visits the contracts promise, made ahead of their due date by the
-- scheduler. The unique key makes each one once, across restarts and clock jumps.
CREATE TABLE work_orders (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    contract     TEXT    NOT NULL,
    plan         TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('patrol', 'inspection', 'maintenance', 'follow_up')),
    device       TEXT    NOT NULL,
    site         TEXT    NOT NULL,
    customer     TEXT    NOT NULL,
    due_on       TEXT    NOT NULL,   -- YYYY-MM-DD, the site's local date
    created_at   INTEGER NOT NULL,
    state        TEXT    NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'in_progress', 'done', 'missed')),
    checklist    TEXT    NOT NULL DEFAULT '[]',
    answers      TEXT,
    completed_at INTEGER,
    completed_by TEXT,
    UNIQUE (contract, plan, device, due_on)
);
CREATE INDEX work_orders_by_due ON work_orders (state, due_on);
CREATE INDEX work_orders_by_device ON work_orders (device, due_on);
