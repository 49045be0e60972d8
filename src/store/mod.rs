//! Persistence. Only this module holds SQL; the rest of aftercare speaks
//! the domain verbs of [`Store`].

mod history;
mod outbox;
mod sqlite;
mod work_orders;

pub use history::DeviceEvent;
pub use outbox::{OutboxRow, RemoteTicket, SubjectId};
pub use work_orders::{NewWorkOrder, Served, StoredReport, WorkOrder, WorkOrderFilter};

pub use sqlite::Store;

use crate::tickets::TransitionError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("creating the data folder {path}: {source}")]
    Folder { path: String, source: std::io::Error },
    #[error("the database holds a value aftercare cannot read: {0}")]
    Corrupt(String),
}

/// Why a transition was not made.
#[derive(Debug, thiserror::Error)]
pub enum TransitionFailure {
    #[error("no ticket {0}")]
    NotFound(i64),
    #[error("{0}")]
    Refused(#[from] TransitionError),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a transition carries besides its target state.
#[derive(Debug, Clone, Copy, Default)]
pub struct TransitionOptions<'a> {
    /// Makes the repair billable for this cause (the caller checks the contract names it).
    pub billable: Option<&'a str>,
    /// Resolves a ticket whose fault is still active; its resolve clock waits for the recovery.
    pub force: bool,
    /// The resolution replaced the unit: the repeat-repair rule counts afresh from here.
    pub unit_replaced: bool,
}

/// A fault event with the device's facts resolved, ready to be written.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    pub device: String,
    pub site: String,
    pub customer: String,
    pub kind: String,
    pub code: String,
    pub title: String,
    pub tier: crate::domain::Tier,
    pub at: chrono::DateTime<chrono::Utc>,
    pub detail: String,
    pub change: Change,
    /// The contract clocks for a raise (a new ticket) or a promotion.
    pub deadlines: crate::contracts::Deadlines,
    /// The device's warranty on the day of the fault, under its contract.
    pub warranty: Option<crate::contracts::WarrantyStatus>,
    /// The contract's repeat-repair rule.
    pub repeat: Option<crate::contracts::RepeatRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Raised,
    Cleared,
    Promoted,
}

/// A device-reported alarm turned on or off.
#[derive(Debug, Clone)]
pub struct AlarmRecord {
    pub device: String,
    pub code: String,
    pub active: bool,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// A fault that was active when the daemon last stopped, to restore rule state.
#[derive(Debug, Clone)]
pub struct ActiveFault {
    pub device: String,
    pub code: String,
    pub tier: crate::domain::Tier,
    /// When the current episode of the fault began (its latest raise).
    pub since: chrono::DateTime<chrono::Utc>,
}

/// Which tickets' clocks to read: pages of at most `limit`, so that no statement holds the
/// database long however many tickets there are.
#[derive(Debug, Clone, Copy)]
pub enum Clocks {
    /// Tickets not closed or cancelled with an id above `after`, by id.
    Open { after: crate::domain::TicketId, limit: u32 },
    /// Tickets, open or not, changed after (`at`, `after`), by change time and id.
    Changed { at: chrono::DateTime<chrono::Utc>, after: crate::domain::TicketId, limit: u32 },
    /// One ticket, whatever its state.
    Of(crate::domain::TicketId),
}
