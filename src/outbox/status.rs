//! Status coming back from helpdesks that aftercare polls (Request Tracker,
//! Redmine). Each poll asks only for the remote tickets changed since the
//! helpdesk's cursor, a bounded number of pages at a time. A remote ticket's
//! status is compared with the one aftercare last saw or set there: only a
//! difference is somebody's change, and it becomes a transition whose actor
//! names the helpdesk and the person (`helpdesk:NAME (person)`), so the relay
//! never sends it back (no echo).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::warn;

use super::{BoxFuture, DeliveryError, Meaning, origin_of};
use crate::clock::Clock;
use crate::store::{Store, StoreError, SubjectId, TransitionFailure};
use crate::tickets::State;

/// A remote ticket whose status may have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteChange {
    pub remote_id: String,
    pub status: String,
    pub meaning: Meaning,
    /// Who made the last change, when the listing says.
    pub by: Option<String>,
}

/// One poll's answer: the changed tickets and where the next poll starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Polled {
    pub changes: Vec<RemoteChange>,
    /// `None` keeps the cursor where it was.
    pub cursor: Option<String>,
}

/// A helpdesk aftercare polls for status changes.
pub(crate) trait StatusSource: Send + Sync {
    /// How often to poll.
    fn every(&self) -> Duration;
    /// Remote tickets changed since `cursor` (all of aftercare's, the first time).
    fn changed<'a>(
        &'a self,
        cursor: Option<&'a str>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Polled, DeliveryError>>;
    /// Who made the last status change of a remote ticket, when `changed` could not say.
    fn who<'a>(&'a self, _remote_id: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PollError {
    #[error("{0:?}")]
    Remote(DeliveryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The transitions that bring a ticket in state `from` to what the remote status means.
pub(crate) fn steps(from: State, to: Meaning) -> &'static [State] {
    use State::*;
    match (to, from) {
        (Meaning::Active, Resolved | Closed) => &[Open],
        (Meaning::Resolved, Open | Acknowledged | Dispatched | OnSite) => &[Resolved],
        (Meaning::Closed, Open | Acknowledged | Dispatched | OnSite) => &[Resolved, Closed],
        (Meaning::Closed, Resolved) => &[Closed],
        (Meaning::Cancelled, Open | Acknowledged | Dispatched) => &[Cancelled],
        _ => &[],
    }
}

/// One poll of helpdesk `name`; returns how many tickets changed state.
pub(crate) async fn poll(
    store: &Store,
    name: &str,
    src: &dyn StatusSource,
    clock: &dyn Clock,
) -> Result<usize, PollError> {
    let cursor = store.poll_cursor(name).await?;
    let polled = src.changed(cursor.as_deref(), clock.now()).await.map_err(PollError::Remote)?;
    let mut applied = 0;
    for c in &polled.changes {
        let Some((ticket_id, last)) = store.ticket_of_remote(name, &c.remote_id).await? else { continue };
        if last.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(&c.status)) {
            continue; // what aftercare set or already saw
        }
        let Some(ticket) = store.ticket(ticket_id).await? else { continue };
        let steps = steps(ticket.state, c.meaning);
        if !steps.is_empty() {
            let by = match &c.by {
                Some(b) => Some(b.clone()),
                None => src.who(&c.remote_id).await,
            };
            let actor = origin_of(name, by.as_deref().unwrap_or_default());
            let note = format!("status `{}` in {name}, ticket {}", c.status, c.remote_id);
            for to in steps {
                // A resolution made in the helpdesk stands even while the fault is active (forced).
                let opts = crate::store::TransitionOptions { force: true, ..Default::default() };
                match store.transition_with(ticket_id, *to, &actor, &note, clock.now(), opts).await {
                    Ok(_) => {}
                    Err(TransitionFailure::Store(e)) => return Err(e.into()),
                    Err(e) => {
                        warn!(helpdesk = name, ticket = ticket_id.0, remote = %c.remote_id, error = %e,
                              "a status change from the helpdesk does not apply");
                        break;
                    }
                }
            }
            applied += 1;
        }
        store.set_remote(SubjectId::Ticket(ticket_id), name, &c.remote_id, Some(&c.status)).await?;
    }
    // Cursors are RFC 3339 times in UTC, to the second: their order is the text's.
    if let Some(next) = polled.cursor.filter(|n| cursor.as_ref().is_none_or(|c| n > c)) {
        store.set_poll_cursor(name, &next).await?;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_statuses_map_to_the_fewest_transitions() {
        assert_eq!(steps(State::Open, Meaning::Resolved), &[State::Resolved]);
        assert_eq!(steps(State::OnSite, Meaning::Closed), &[State::Resolved, State::Closed]);
        assert_eq!(steps(State::Resolved, Meaning::Closed), &[State::Closed]);
        assert_eq!(steps(State::Closed, Meaning::Active), &[State::Open]);
        assert_eq!(steps(State::Resolved, Meaning::Active), &[State::Open]);
        // Already there, or nothing to do.
        assert!(steps(State::Open, Meaning::Active).is_empty());
        assert!(steps(State::Resolved, Meaning::Resolved).is_empty());
        assert!(steps(State::Closed, Meaning::Resolved).is_empty());
        assert!(steps(State::Open, Meaning::Ignore).is_empty());
        // An engineer on site is not cancelled from the helpdesk.
        assert!(steps(State::OnSite, Meaning::Cancelled).is_empty());
        assert_eq!(steps(State::Acknowledged, Meaning::Cancelled), &[State::Cancelled]);
    }
}
