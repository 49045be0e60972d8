-- Tickets people opened in a helpdesk (not aftercare), each seen once: the aftercare ticket it
-- became (linked in remote_tickets in the same transaction), or why it could not be placed.
-- `adopted` is set once the remote ticket carries aftercare's reference, so that its status
-- changes are polled like those of the tickets aftercare made there.
CREATE TABLE helpdesk_intake (
    helpdesk  TEXT    NOT NULL,
    remote_id TEXT    NOT NULL,
    ticket_id INTEGER REFERENCES tickets (id),
    reason    TEXT,
    adopted   INTEGER NOT NULL DEFAULT 0 CHECK (adopted IN (0, 1)),
    seen_at   INTEGER NOT NULL,
    PRIMARY KEY (helpdesk, remote_id)
);
