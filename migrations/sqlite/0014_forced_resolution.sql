-- A resolution forced while the ticket's fault was still active (`"force": true`
-- with a note): its resolve clock counts as met or missed only once the fault recovers.
ALTER TABLE tickets ADD COLUMN resolve_forced INTEGER NOT NULL DEFAULT 0 CHECK (resolve_forced IN (0, 1));
