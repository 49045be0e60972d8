-- Complaints are graded (003): general, or major, which runs as tier 1 and escalates as such.
ALTER TABLE tickets ADD COLUMN complaint_grade TEXT CHECK (complaint_grade IN ('general', 'major'));
CREATE INDEX tickets_by_category ON tickets (category, opened_at);
