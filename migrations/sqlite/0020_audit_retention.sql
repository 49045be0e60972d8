-- The audit log is append-only for its last 90 days; past them the daemon's retention
-- ([store] audit_retention, 90 days or more) removes rows, and nothing else may.
DROP TRIGGER audit_no_delete;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
WHEN old.at > (CAST(strftime('%s', 'now') AS INTEGER) - 90 * 86400) * 1000
BEGIN SELECT RAISE(ABORT, 'the audit log keeps its last 90 days'); END;
