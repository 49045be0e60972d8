-- Warranty at the time of the fault, billing, and the repeat-repair rule.
ALTER TABLE tickets ADD COLUMN warranty TEXT;                 -- JSON: component, in_warranty, components[]
ALTER TABLE tickets ADD COLUMN billing TEXT CHECK (billing IN ('free', 'at_cost', 'billable'));
ALTER TABLE tickets ADD COLUMN billing_reason TEXT;
ALTER TABLE tickets ADD COLUMN failed_repairs INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tickets ADD COLUMN replace_unit INTEGER NOT NULL DEFAULT 0 CHECK (replace_unit IN (0, 1));
