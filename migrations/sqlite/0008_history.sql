-- Telemetry history kept in the embedded store: hourly rollups per device and
-- metric (merged as partial hours arrive), and the devices' state changes.
-- Both are kept for `history.retention` (default 5 years).
CREATE TABLE rollups (
    device  TEXT    NOT NULL,
    metric  TEXT    NOT NULL,
    hour    INTEGER NOT NULL,   -- start of the hour, ms since the epoch (UTC)
    min     REAL    NOT NULL,
    max     REAL    NOT NULL,
    sum     REAL    NOT NULL,
    count   INTEGER NOT NULL,
    last    REAL    NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (device, metric, hour)
) WITHOUT ROWID;
CREATE INDEX rollups_by_hour ON rollups (hour);

CREATE TABLE device_events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT    NOT NULL,
    at     INTEGER NOT NULL,
    event  TEXT    NOT NULL,   -- raised, cleared, promoted
    code   TEXT    NOT NULL,   -- the fault; `offline` raised/cleared is the device going offline/online
    tier   INTEGER NOT NULL,
    detail TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX device_events_by_device ON device_events (device, at);
CREATE INDEX device_events_by_at ON device_events (at);
