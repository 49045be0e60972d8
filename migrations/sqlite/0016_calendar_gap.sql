-- A contract clock that ran past the years its business calendar knows says so:
-- counted by weekdays alone, it ignores that year's holidays and make-up days.
ALTER TABLE tickets ADD COLUMN calendar_gap TEXT;
