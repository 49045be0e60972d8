//! The repair record of an on-site repair, pure (003, 004): what was found, what was done,
//! the parts replaced and from which stock, the time spent, the cost and who pays it, and the
//! customer's confirmation. The record is checked here, its charge worked out here, and what a
//! contract requires of it on resolve is named here; the store keeps it beside the ticket.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::model::BillingClass;
pub use crate::contracts::RepairField as Field;

/// The longest text of a record's field, in characters.
pub const MAX_TEXT: usize = 4_000;
/// The most parts one record lists.
pub const MAX_PARTS: usize = 100;
/// The most photos one record names.
pub const MAX_PHOTOS: usize = 20;

/// One part replaced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// The part number.
    pub number: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub quantity: u32,
    /// The stock it was taken from: the site's spares, a van, the central store.
    pub stock: String,
    /// A wear part (fuses, lamps, seals, filters): half price out of warranty where the contract says so.
    #[serde(default)]
    pub wear: bool,
    /// What one costs the supplier, in cents.
    #[serde(default)]
    pub unit_cost: u64,
}

/// The customer's confirmation of the repair.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// Who signed, as they wrote it.
    pub name: String,
    /// The attachment (of kind `signature`) holding the signature image.
    pub signature: Option<i64>,
    /// When they signed.
    pub at: DateTime<Utc>,
    /// `at` in the site's time, in answers (the API's local-time layer writes it over anything given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub at_local: Option<String>,
}

/// The customer's consent to a charged repair before the work (002 L400 "维修前会向贵方说明并
/// 出示收费标准,征得贵方同意后,我方实施维修"): who agreed, to what quote, when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    /// Who agreed, as they gave their name.
    pub name: String,
    /// The price quoted from the fee scale, in cents.
    pub quote: u64,
    pub at: DateTime<Utc>,
    /// `at` in the site's time, in answers (the API's local-time layer writes it over anything given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub at_local: Option<String>,
}

/// A repair record as given, and as kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepairRecord {
    /// What was found: the fault's cause.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cause: String,
    /// What was done.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub work_done: String,
    #[serde(default)]
    pub parts: Vec<Part>,
    /// Time spent on the repair, in minutes.
    pub labour_minutes: Option<u32>,
    /// Travel there and back.
    pub travel_minutes: Option<u32>,
    pub travel_km: Option<u32>,
    /// Labour and travel as costed, in cents.
    #[serde(default)]
    pub labour_cost: u64,
    #[serde(default)]
    pub travel_cost: u64,
    /// Who pays; the ticket's own class when not given.
    #[schema(value_type = Option<BillingClass>)]
    pub billing: Option<BillingClass>,
    /// The price agreed for a `billable` repair, in cents (its cost when not given).
    pub price: Option<u64>,
    pub confirmation: Option<Confirmation>,
    /// The customer's consent to the charge, before the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
    /// The number of the invoice or receipt given for what was charged (002 L400 "提供有效收费发票或收据").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// Attachments (of kind `photo`) taken on site.
    #[serde(default)]
    pub photos: Vec<i64>,
}

/// What a repair costs and what the customer is charged, in cents.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Charge {
    pub parts: u64,
    pub labour: u64,
    pub travel: u64,
    /// The whole cost to the supplier.
    pub cost: u64,
    /// What the customer pays.
    pub charged: u64,
}

impl RepairRecord {
    /// Checks the record's own sense; the first thing wrong, for a 400.
    pub fn check(&self) -> Result<(), String> {
        for (name, text) in [("cause", &self.cause), ("work_done", &self.work_done)] {
            if text.chars().count() > MAX_TEXT {
                return Err(format!("`{name}` has at most {MAX_TEXT} characters"));
            }
        }
        if self.parts.len() > MAX_PARTS {
            return Err(format!("a record lists at most {MAX_PARTS} parts"));
        }
        for (i, p) in self.parts.iter().enumerate() {
            let short = |s: &str| !s.trim().is_empty() && s.chars().count() <= 200;
            if !short(&p.number) {
                return Err(format!("part {}: a part number of 1 to 200 characters is needed", i + 1));
            }
            if !short(&p.stock) {
                return Err(format!("part {}: the stock it came from is needed (1 to 200 characters)", i + 1));
            }
            if p.name.chars().count() > 200 {
                return Err(format!("part {}: a name has at most 200 characters", i + 1));
            }
            if p.quantity == 0 || p.quantity > 10_000 {
                return Err(format!("part {}: a quantity of 1 to 10000 is needed", i + 1));
            }
        }
        if self.photos.len() > MAX_PHOTOS {
            return Err(format!("a record names at most {MAX_PHOTOS} photos"));
        }
        if let Some(c) = &self.confirmation
            && (c.name.trim().is_empty() || c.name.chars().count() > 200)
        {
            return Err("the confirmation needs the signer's name (1 to 200 characters)".into());
        }
        if let Some(c) = &self.consent {
            if c.name.trim().is_empty() || c.name.chars().count() > 200 {
                return Err("the consent needs the name of who agreed (1 to 200 characters)".into());
            }
            if self.confirmation.as_ref().is_some_and(|k| k.at < c.at) {
                return Err("the consent comes before the work, so before the confirmation".into());
            }
        }
        if self.receipt.as_ref().is_some_and(|r| r.trim().is_empty() || r.chars().count() > 100) {
            return Err("a receipt number has 1 to 100 characters".into());
        }
        Ok(())
    }

    /// The charge under `class`; wear parts at half their cost out of warranty when
    /// `wear_half_price` (004). A free repair charges nothing; a billable one its agreed price
    /// (its cost, when no price was agreed).
    pub fn charge(&self, class: BillingClass, wear_half_price: bool) -> Charge {
        let part = |p: &Part, half: bool| {
            let full = p.unit_cost.saturating_mul(u64::from(p.quantity));
            if half && p.wear { full / 2 } else { full }
        };
        let sum = |half: bool| self.parts.iter().fold(0u64, |a, p| a.saturating_add(part(p, half)));
        let parts = sum(false);
        let cost = parts.saturating_add(self.labour_cost).saturating_add(self.travel_cost);
        let charged = match class {
            BillingClass::Free => 0,
            BillingClass::AtCost => {
                sum(wear_half_price).saturating_add(self.labour_cost).saturating_add(self.travel_cost)
            }
            BillingClass::BillableAtCost => cost,
            BillingClass::Billable => self.price.unwrap_or(cost),
        };
        Charge { parts, labour: self.labour_cost, travel: self.travel_cost, cost, charged }
    }

    /// The required fields this record lacks; the consent and the receipt are required of a
    /// `charged` repair only.
    pub fn missing(&self, required: &[Field], charged: bool) -> Vec<Field> {
        required
            .iter()
            .copied()
            .filter(|f| match f {
                Field::Consent => charged && self.consent.is_none(),
                Field::Receipt => charged && self.receipt.is_none(),
                Field::Cause => self.cause.trim().is_empty(),
                Field::WorkDone => self.work_done.trim().is_empty(),
                Field::Parts => self.parts.is_empty(),
                Field::Labour => self.labour_minutes.is_none(),
                Field::Travel => self.travel_minutes.is_none() && self.travel_km.is_none(),
                Field::Cost => {
                    self.labour_cost == 0 && self.travel_cost == 0 && self.parts.iter().all(|p| p.unit_cost == 0)
                }
                Field::Confirmation => self.confirmation.is_none(),
                Field::Signature => self.confirmation.as_ref().and_then(|c| c.signature).is_none(),
                Field::Photos => self.photos.is_empty(),
            })
            .collect()
    }

    /// One line for the timeline and the helpdesk.
    pub fn summary(&self, class: BillingClass, charge: &Charge) -> String {
        let mut s = String::from("repair recorded");
        if !self.cause.is_empty() {
            s.push_str(&format!("; cause: {}", self.cause));
        }
        if !self.work_done.is_empty() {
            s.push_str(&format!("; done: {}", self.work_done));
        }
        if !self.parts.is_empty() {
            let parts: Vec<String> = self.parts.iter().map(|p| format!("{} x{}", p.number, p.quantity)).collect();
            s.push_str(&format!("; parts: {}", parts.join(", ")));
        }
        if let Some(m) = self.labour_minutes {
            s.push_str(&format!("; labour {m} min"));
        }
        s.push_str(&format!("; {class}, charged {}.{:02}", charge.charged / 100, charge.charged % 100));
        if let Some(c) = &self.consent {
            s.push_str(&format!("; {} agreed to {}.{:02} before the work", c.name, c.quote / 100, c.quote % 100));
        }
        if let Some(c) = &self.confirmation {
            s.push_str(&format!("; confirmed by {}", c.name));
        }
        if let Some(r) = &self.receipt {
            s.push_str(&format!("; receipt {r}"));
        }
        s
    }
}

/// A kept record with what follows from it.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Repair {
    /// The record as given.
    pub record: RepairRecord,
    /// The billing class applied.
    pub class: BillingClass,
    pub charge: Charge,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
}

/// An attachment as listed: its bytes are at `GET /api/v1/tickets/{ticket}/attachments/{id}`
/// (a visit's at `GET /api/v1/work-orders/{work_order}/attachments/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Attachment {
    pub id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_order_id: Option<i64>,
    #[schema(value_type = String)]
    pub kind: AttachmentKind,
    pub content_type: String,
    pub size: i64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    pub uploaded_by: String,
    pub uploaded_at: DateTime<Utc>,
}

crate::domain::named! {
    /// What an attachment shows.
    pub enum AttachmentKind {
        Photo = "photo",
        /// The customer's signature, for a repair's confirmation or a visit's.
        Signature = "signature",
    }
}

/// An image's type, known from its first bytes (never from what the sender said).
pub fn image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(wear: bool, qty: u32, cost: u64) -> Part {
        Part { number: "P-1".into(), name: String::new(), quantity: qty, stock: "van".into(), wear, unit_cost: cost }
    }

    #[test]
    fn wear_parts_are_half_price_only_at_cost_and_only_where_the_contract_says() {
        let r = RepairRecord {
            parts: vec![part(true, 2, 1_000), part(false, 1, 5_000)],
            labour_cost: 3_000,
            travel_cost: 500,
            ..Default::default()
        };
        let c = r.charge(BillingClass::AtCost, true);
        assert_eq!((c.parts, c.cost, c.charged), (7_000, 10_500, 1_000 + 5_000 + 3_000 + 500));
        assert_eq!(r.charge(BillingClass::AtCost, false).charged, 10_500);
        assert_eq!(r.charge(BillingClass::Free, true).charged, 0);
        assert_eq!(r.charge(BillingClass::BillableAtCost, true).charged, 10_500);
        let b = RepairRecord { billing: Some(BillingClass::Billable), price: Some(20_000), ..r };
        assert_eq!(b.charge(BillingClass::Billable, true).charged, 20_000);
    }

    #[test]
    fn missing_names_each_required_field_absent() {
        let r = RepairRecord { cause: "blown fuse".into(), labour_minutes: Some(30), ..Default::default() };
        let req = [Field::Cause, Field::Labour, Field::Parts, Field::Signature, Field::Photos];
        assert_eq!(r.missing(&req, false), vec![Field::Parts, Field::Signature, Field::Photos]);
        let signed = RepairRecord {
            confirmation: Some(Confirmation {
                name: "Li".into(),
                signature: Some(3),
                at: DateTime::UNIX_EPOCH,
                at_local: None,
            }),
            ..r
        };
        assert_eq!(signed.missing(&[Field::Confirmation, Field::Signature], false), Vec::<Field>::new());
        // The consent and the receipt are asked of a charged repair only.
        let money = [Field::Consent, Field::Receipt];
        assert_eq!(signed.missing(&money, false), Vec::<Field>::new());
        assert_eq!(signed.missing(&money, true), money.to_vec());
    }

    #[test]
    fn a_record_that_makes_no_sense_is_refused() {
        let bad = RepairRecord { parts: vec![part(false, 0, 0)], ..Default::default() };
        assert!(bad.check().unwrap_err().contains("quantity"));
        let unnamed =
            RepairRecord { parts: vec![Part { number: " ".into(), ..part(false, 1, 0) }], ..Default::default() };
        assert!(unnamed.check().unwrap_err().contains("part number"));
    }

    #[test]
    fn images_are_known_by_their_first_bytes() {
        assert_eq!(image_type(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(image_type(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(image_type(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(image_type(b"<svg onload=alert(1)>"), None);
    }
}
