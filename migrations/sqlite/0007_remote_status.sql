-- Status coming back from helpdesks that aftercare polls (Request Tracker,
-- Redmine): the remote status last seen or set, so that only a change people
-- made there is applied, and each helpdesk's poll cursor, so that a poll asks
-- only for what changed since the last one, across restarts.
ALTER TABLE remote_tickets ADD COLUMN remote_status TEXT;
CREATE UNIQUE INDEX remote_tickets_by_remote ON remote_tickets (helpdesk, remote_id);
CREATE TABLE helpdesk_cursors (
    helpdesk TEXT PRIMARY KEY,
    cursor   TEXT NOT NULL
);
