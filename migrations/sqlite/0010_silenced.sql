-- A ticket opened while an engineer is on a visit to its device (a work order
-- in progress) is recorded but silenced: no clocks run and nothing goes to
-- the helpdesk, so engineers on site do not page themselves.
ALTER TABLE tickets ADD COLUMN silenced_by INTEGER REFERENCES work_orders (id);
