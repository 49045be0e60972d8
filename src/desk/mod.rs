//! The desk: where tickets are kept at run time. The writer turns the shards' fault events
//! into tickets, one transaction a batch, in which the store applies the rules of
//! `tickets::policy`; the watch fires
//! what the contract clocks of open tickets make due.

pub(crate) mod watch;
pub(crate) mod writer;

/// The desk's rules as configured.
#[derive(Debug, Clone)]
pub struct TicketConfig {
    /// A fault that returns within this long after its ticket closed reopens it.
    pub reopen_window: std::time::Duration,
}
