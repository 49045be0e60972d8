//! The fleet as configured: sites, customers, devices and their kinds'
//! profiles. Built once at start and shared read-only (`Arc<Fleet>`).

use std::collections::HashMap;

use chrono::{FixedOffset, NaiveDate};
use serde::Serialize;

use crate::domain::{CustomerId, DeviceId, DeviceIdx, SiteId};
use crate::rules::Profile;

#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub id: SiteId,
    pub name: String,
    pub address: String,
    #[serde(serialize_with = "ser_offset")]
    pub utc_offset: FixedOffset,
}

fn ser_offset<S: serde::Serializer>(o: &FixedOffset, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(o)
}

#[derive(Debug, Clone, Serialize)]
pub struct Customer {
    pub id: CustomerId,
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
}

#[derive(Debug, Clone, Default)]
pub struct Fleet {
    pub sites: Vec<Site>,
    pub customers: Vec<Customer>,
    pub devices: Vec<Device>,
    pub kinds: Vec<Profile>,
    by_id: HashMap<String, DeviceIdx>,
}

impl Fleet {
    pub fn new(
        sites: Vec<Site>,
        customers: Vec<Customer>,
        devices: Vec<Device>,
        kinds: Vec<Profile>,
    ) -> Fleet {
        let by_id = devices.iter().map(|d| (d.id.0.clone(), d.idx)).collect();
        Fleet {
            sites,
            customers,
            devices,
            kinds,
            by_id,
        }
    }
    pub fn lookup(&self, id: &str) -> Option<DeviceIdx> {
        self.by_id.get(id).copied()
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
}
