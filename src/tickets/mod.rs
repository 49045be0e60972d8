//! Tickets, pure: the types, the state machine, the rules that decide what a fault event,
//! a person's transition or a contract clock does to a ticket, and the service levels. The
//! store keeps them; the desk runs them.

pub mod clocks;
pub mod lifecycle;
pub mod model;
pub mod policy;
pub mod sla;

pub use lifecycle::{State, TransitionError};
pub use model::{Event, Outcome, Ticket, TicketFilter, TimelineEntry};
