-- A visit's photos and the customer's signature, as a ticket's are (0026): the bytes live in
-- files beside the database, named by their id. A visit done with the customer present keeps
-- who signed for it and which image is the signature.
CREATE TABLE visit_attachments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    work_order_id INTEGER NOT NULL REFERENCES work_orders (id),
    kind          TEXT    NOT NULL CHECK (kind IN ('photo', 'signature')),
    content_type  TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    sha256        TEXT    NOT NULL,
    uploaded_by   TEXT    NOT NULL,
    uploaded_at   INTEGER NOT NULL
);
CREATE INDEX visit_attachments_by_visit ON visit_attachments (work_order_id, id);

ALTER TABLE work_orders ADD COLUMN signed_by TEXT;
ALTER TABLE work_orders ADD COLUMN signature_id INTEGER;
