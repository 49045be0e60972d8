-- A ticket's billing may be "billable at cost" (004 L5 "只收取成本费", 002 L102 "只收取工本费"):
-- the column's check is widened by moving its values to a new column with the wider check.
ALTER TABLE tickets ADD COLUMN billing_class TEXT CHECK (billing_class IN ('free', 'at_cost', 'billable', 'billable_at_cost'));
UPDATE tickets SET billing_class = billing;
ALTER TABLE tickets DROP COLUMN billing;
ALTER TABLE tickets RENAME COLUMN billing_class TO billing;
