//! Tickets, pure: the types, the state machine, the rules that decide what a fault event,
//! a person's transition or a contract clock does to a ticket, and the service levels. The
//! store keeps them; the desk runs them.

pub(crate) mod clocks;
pub mod intake;
pub(crate) mod lifecycle;
pub(crate) mod model;
pub(crate) mod policy;
pub mod repair;
pub(crate) mod sla;

pub use lifecycle::{State, TransitionError};
pub use model::{Event, Outcome, Ticket, TicketFilter, TimelineEntry};
