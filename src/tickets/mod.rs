//! Tickets: the pure state machine, the ticket types, and the writer task
//! that turns fault events into ticket rows.

pub mod clocks;
pub mod lifecycle;
pub mod model;
pub mod sla;
pub mod writer;

pub use lifecycle::{State, TransitionError};
pub use model::{Ticket, TimelineEntry};
