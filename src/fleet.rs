//! The fleet as configured: sites, customers, devices and their kinds'
//! profiles. Built once at start and shared read-only (`Arc<Fleet>`).

use std::hash::BuildHasher;

use chrono::{FixedOffset, NaiveDate};
use serde::Serialize;

use crate::contracts::{Contract, Covered, Deadlines};
use crate::domain::{CustomerId, DeviceId, DeviceIdx, SiteId};
use crate::rules::Profile;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Site {
    pub id: SiteId,
    pub name: String,
    pub address: String,
    /// Such as `+08:00`.
    #[serde(serialize_with = "ser_offset")]
    #[schema(value_type = String)]
    pub utc_offset: FixedOffset,
}

fn ser_offset<S: serde::Serializer>(o: &FixedOffset, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(o)
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Customer {
    pub id: CustomerId,
    /// The helpdesk that receives this customer's tickets.
    pub helpdesk: Option<String>,
    pub name: String,
    pub contact: String,
    pub phone: String,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub idx: DeviceIdx,
    pub id: DeviceId,
    pub name: String,
    /// Index into [`Fleet::kinds`].
    pub kind: usize,
    pub site: SiteId,
    pub customer: CustomerId,
    pub model: String,
    pub serial: String,
    pub accepted_on: NaiveDate,
    /// Delivered (到货): plans anchored on delivery run from it; the acceptance date when not given.
    pub delivered_on: NaiveDate,
    /// How to poll it, for a Modbus device (boxed: most devices have none, and a fleet holds
    /// many devices).
    pub modbus: Option<Box<crate::modbus::Endpoint>>,
}

/// A part kept in stock for a device model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spare {
    pub model: String,
    /// The part number, as repair records name it.
    pub part: String,
    pub name: String,
    /// How many of the part one unit holds.
    pub per_unit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Fleet {
    pub sites: Vec<Site>,
    pub customers: Vec<Customer>,
    pub devices: Vec<Device>,
    pub kinds: Vec<Profile>,
    pub contracts: Vec<Contract>,
    /// The spare parts kept, per device model.
    pub spares: Vec<Spare>,
    /// Positions in `devices`, found by id: 4 bytes a device where a map of ids held 40.
    by_id: hashbrown::HashTable<DeviceIdx>,
    hasher: std::hash::RandomState,
}

impl Fleet {
    pub fn new(
        sites: Vec<Site>,
        customers: Vec<Customer>,
        mut devices: Vec<Device>,
        kinds: Vec<Profile>,
        contracts: Vec<Contract>,
    ) -> Fleet {
        // Kept for the daemon's life: no room for devices that will never come.
        devices.shrink_to_fit();
        let hasher = std::hash::RandomState::new();
        let mut by_id = hashbrown::HashTable::with_capacity(devices.len());
        for d in &devices {
            let same = |i: &DeviceIdx| devices[i.0 as usize].id == d.id;
            let rehash = |i: &DeviceIdx| hasher.hash_one(devices[i.0 as usize].id.as_str());
            // Config refuses a second device with the same id; the first one stays if not.
            if let hashbrown::hash_table::Entry::Vacant(v) = by_id.entry(hasher.hash_one(d.id.as_str()), same, rehash) {
                v.insert(d.idx);
            }
        }
        Fleet { sites, customers, devices, kinds, contracts, spares: Vec::new(), by_id, hasher }
    }
    /// The local date at a device's site.
    pub fn local_day(&self, idx: DeviceIdx, at: chrono::DateTime<chrono::Utc>) -> NaiveDate {
        let d = self.device(idx);
        match self.sites.iter().find(|s| s.id == d.site) {
            Some(s) => at.with_timezone(&s.utc_offset).date_naive(),
            None => at.date_naive(),
        }
    }
    /// The warranty and repeat-repair terms for a fault `code` on device `idx` at `at`.
    pub fn warranty(
        &self,
        idx: DeviceIdx,
        code: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> (Option<crate::contracts::WarrantyStatus>, Option<crate::contracts::RepeatRule>) {
        let day = self.local_day(idx, at);
        let terms = |c: &crate::contracts::Contract| {
            (
                Some(c.warranty_status(self.covered(idx), code, day)),
                Some(crate::contracts::RepeatRule {
                    window: c.repeat_window,
                    replace_at_failed_repairs: c.replace_at_failed_repairs,
                }),
            )
        };
        match crate::contracts::governing(&self.contracts, self.covered(idx), day) {
            Ok(c) => terms(c),
            // A contract that ended still repairs its devices at cost for life, where it says so:
            // its warranty has run out by then, so the repair is at cost.
            // Of several, the one that covers the device most closely, then the latest to end.
            Err(_) => match self
                .contracts
                .iter()
                .filter(|c| {
                    c.lifetime_repair_at_cost && c.coverage(self.covered(idx)) > 0 && c.ends.is_some_and(|e| day > e)
                })
                .max_by_key(|c| (c.coverage(self.covered(idx)), c.ends))
            {
                Some(c) => {
                    let (status, rule) = terms(c);
                    let status = status.map(|mut s| {
                        s.in_warranty = false;
                        s
                    });
                    (status, rule)
                }
                None => (None, None),
            },
        }
    }
    /// The deadlines a new ticket of `tier` on device `idx` gets at `at`.
    pub fn deadlines(&self, idx: DeviceIdx, tier: crate::domain::Tier, at: chrono::DateTime<chrono::Utc>) -> Deadlines {
        let day = self.local_day(idx, at);
        crate::contracts::deadlines_for(&self.contracts, self.covered(idx), tier, at, day)
    }
    /// The business calendars that contracts in force (or yet to start) count on and that end
    /// within `within` days of `today`: each a line saying so, and what to do.
    pub fn calendars_ending(&self, today: NaiveDate, within: i64) -> Vec<String> {
        let mut out: Vec<(String, Vec<&str>, NaiveDate)> = Vec::new();
        for c in self.contracts.iter().filter(|c| c.ends.is_none_or(|e| e >= today)) {
            let Some(cal) = &c.calendar else { continue };
            let Some(last) = cal.last_covered_day() else { continue };
            if (last - today).num_days() > within {
                continue;
            }
            match out.iter_mut().find(|(name, _, _)| *name == cal.name) {
                Some((_, users, _)) => users.push(&c.id),
                None => out.push((cal.name.clone(), vec![&c.id], last)),
            }
        }
        out.into_iter()
            .map(|(name, users, last)| {
                let when = match (last - today).num_days() {
                    d if d < 0 => format!("ended on {last}"),
                    d => format!("ends on {last}, in {d} days"),
                };
                format!(
                    "calendar {name} (contracts {}) {when}: working-day and business-hour clocks past it count \
                     weekdays only; add next year's official schedule as a file of its own (README, \"Business calendars\")",
                    users.join(", ")
                )
            })
            .collect()
    }
    pub fn lookup(&self, id: &str) -> Option<DeviceIdx> {
        let h = self.hasher.hash_one(id);
        self.by_id.find(h, |i| self.devices[i.0 as usize].id.as_str() == id).copied()
    }
    pub fn device(&self, idx: DeviceIdx) -> &Device {
        &self.devices[idx.0 as usize]
    }
    pub fn profile_of(&self, idx: DeviceIdx) -> &Profile {
        &self.kinds[self.device(idx).kind]
    }
    pub fn kind_name(&self, idx: DeviceIdx) -> &str {
        &self.profile_of(idx).name
    }
    /// What a contract needs to know of device `idx` to say whether it covers it.
    pub fn covered(&self, idx: DeviceIdx) -> Covered<'_> {
        let d = self.device(idx);
        Covered {
            id: &d.id,
            site: &d.site,
            customer: &d.customer,
            kind: self.kind_name(idx),
            accepted_on: d.accepted_on,
        }
    }
}
