-- The defects a return visit found (001 ¶14-15 "发现的缺陷…填入维修任务书"): each became a
-- repair task (a ticket whose contract clock gives its completion date), kept on the visit
-- as JSON: [{"text": …, "ticket": id}].
ALTER TABLE work_orders ADD COLUMN defects TEXT;
