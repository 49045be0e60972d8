-- Spare parts in stock per device model and part (004 L77 "备品备件库"), and every move of
-- stock: a count (stocktake), a receipt, or parts a repair took (with its ticket).
CREATE TABLE spare_stock (
    model      TEXT    NOT NULL,
    part       TEXT    NOT NULL,
    quantity   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (model, part)
);

CREATE TABLE spare_moves (
    id        INTEGER PRIMARY KEY,
    model     TEXT    NOT NULL,
    part      TEXT    NOT NULL,
    kind      TEXT    NOT NULL CHECK (kind IN ('count', 'receipt', 'used')),
    delta     INTEGER NOT NULL,
    ticket_id INTEGER REFERENCES tickets (id),
    by_user   TEXT    NOT NULL,
    note      TEXT    NOT NULL DEFAULT '',
    at        INTEGER NOT NULL
);
CREATE INDEX spare_moves_by_part ON spare_moves (model, part, at);
CREATE INDEX spare_moves_by_ticket ON spare_moves (ticket_id) WHERE ticket_id IS NOT NULL;
