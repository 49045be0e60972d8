//! The ticket state machine, pure: which transitions a person (or a
//! helpdesk) may make, and why the others are refused.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Open,
    Acknowledged,
    Dispatched,
    OnSite,
    /// The unit is away at the factory for repair (RMA).
    AtFactory,
    Resolved,
    Closed,
    Cancelled,
}

pub(crate) const ALL: [State; 8] = [
    State::Open,
    State::Acknowledged,
    State::Dispatched,
    State::OnSite,
    State::AtFactory,
    State::Resolved,
    State::Closed,
    State::Cancelled,
];

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Acknowledged => "acknowledged",
            State::Dispatched => "dispatched",
            State::OnSite => "on_site",
            State::AtFactory => "at_factory",
            State::Resolved => "resolved",
            State::Closed => "closed",
            State::Cancelled => "cancelled",
        }
    }

    /// Closed and cancelled tickets are done; every other state holds the
    /// device's one open ticket for its fault code.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Closed | State::Cancelled)
    }

    /// The states a person may move a ticket to from here.
    pub fn next(self) -> &'static [State] {
        use State::*;
        match self {
            Open => &[Acknowledged, Dispatched, Resolved, Cancelled],
            Acknowledged => &[Dispatched, OnSite, AtFactory, Resolved, Cancelled],
            Dispatched => &[OnSite, AtFactory, Resolved, Cancelled],
            OnSite => &[Dispatched, AtFactory, Resolved],
            // Back from the factory: to be installed, installed, or fixed.
            AtFactory => &[Dispatched, OnSite, Resolved],
            Resolved => &[Closed, Open],
            Closed => &[Open],
            Cancelled => &[],
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<State, String> {
        ALL.iter().copied().find(|st| st.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown state `{s}`; states are {}", names.join(", "))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("the ticket is already {0}")]
    Same(State),
    #[error("a cancelled ticket is final; a new fault opens a new ticket")]
    Final,
    #[error("cannot go from {from} to {to}; from {from} a ticket can go to {}", names(.from.next()))]
    Illegal { from: State, to: State },
}

fn names(s: &[State]) -> String {
    s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// Checks a transition asked for by a person or a helpdesk.
pub(crate) fn check(from: State, to: State) -> Result<(), TransitionError> {
    if from == to {
        return Err(TransitionError::Same(from));
    }
    if from == State::Cancelled {
        return Err(TransitionError::Final);
    }
    if from.next().contains(&to) { Ok(()) } else { Err(TransitionError::Illegal { from, to }) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    fn check_table(from: State, allowed: &[State]) {
        for to in ALL {
            let ok = check(from, to).is_ok();
            assert_eq!(ok, allowed.contains(&to), "{from} -> {to}");
        }
    }

    #[test]
    fn transitions_follow_the_table() {
        check_table(Open, &[Acknowledged, Dispatched, Resolved, Cancelled]);
        check_table(Acknowledged, &[Dispatched, OnSite, AtFactory, Resolved, Cancelled]);
        check_table(Dispatched, &[OnSite, AtFactory, Resolved, Cancelled]);
        check_table(OnSite, &[Dispatched, AtFactory, Resolved]);
        check_table(AtFactory, &[Dispatched, OnSite, Resolved]);
        check_table(Resolved, &[Closed, Open]);
        check_table(Closed, &[Open]);
        check_table(Cancelled, &[]);
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(check(Open, Open).unwrap_err().to_string(), "the ticket is already open");
        assert_eq!(
            check(Closed, OnSite).unwrap_err().to_string(),
            "cannot go from closed to on_site; from closed a ticket can go to open"
        );
        assert!(check(Cancelled, Open).unwrap_err().to_string().contains("final"));
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in ALL {
            assert_eq!(s.as_str().parse::<State>(), Ok(s));
        }
        assert!("done".parse::<State>().unwrap_err().contains("on_site"));
    }

    #[test]
    fn only_closed_and_cancelled_are_terminal() {
        let terminal: Vec<State> = ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, vec![Closed, Cancelled]);
    }
}
