-- The contract clocks of a ticket: deadlines computed when it opens (or is
-- promoted), and whether each was met, recorded when the transition happens.
ALTER TABLE tickets ADD COLUMN contract TEXT;
ALTER TABLE tickets ADD COLUMN no_clock TEXT;
ALTER TABLE tickets ADD COLUMN acknowledge_by INTEGER;
ALTER TABLE tickets ADD COLUMN on_site_by INTEGER;
ALTER TABLE tickets ADD COLUMN resolve_by INTEGER;
ALTER TABLE tickets ADD COLUMN on_site_at INTEGER;
ALTER TABLE tickets ADD COLUMN acknowledge_met INTEGER CHECK (acknowledge_met IN (0, 1));
ALTER TABLE tickets ADD COLUMN on_site_met INTEGER CHECK (on_site_met IN (0, 1));
ALTER TABLE tickets ADD COLUMN resolve_met INTEGER CHECK (resolve_met IN (0, 1));
