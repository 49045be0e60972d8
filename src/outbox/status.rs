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
    /// Whether tickets people open there are taken in.
    fn takes_in(&self) -> bool {
        false
    }
    /// What a person wrote when opening remote ticket `remote_id`, for a listing without it.
    fn text<'a>(&'a self, _remote_id: &'a str) -> BoxFuture<'a, Result<String, DeliveryError>> {
        Box::pin(async { Ok(String::new()) })
    }
    /// Tickets people opened in the helpdesk since `since` (an RFC 3339 time), not aftercare's,
    /// oldest first.
    fn opened<'a>(&'a self, _since: &'a str, _now: DateTime<Utc>) -> BoxFuture<'a, Result<Vec<Opened>, DeliveryError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Marks a remote ticket as aftercare ticket `ticket`'s (its subject tag, its reference),
    /// so that `changed` finds it from now on.
    fn adopt<'a>(&'a self, _remote_id: &'a str, _ticket: i64) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A ticket people opened in a helpdesk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opened {
    pub remote_id: String,
    pub subject: String,
    /// What the person wrote; `None` when the listing does not give it (see `text`).
    pub text: Option<String>,
    /// Who asked: a requestor's address, an author's name.
    pub requestor: String,
    pub status: String,
    /// RFC 3339, UTC.
    pub created: String,
}

/// How far the first look for tickets people opened reaches back.
const FIRST_LOOK_BACK_MINUTES: i64 = 10;

/// The subject tag every ticket aftercare makes in a helpdesk starts with.
pub(crate) const TAG: &str = "[aftercare ";

/// The subject of a remote ticket adopted as aftercare ticket `id`: the tag, then the person's
/// own subject (cut to fit a helpdesk's 255 characters).
pub(crate) fn adopted_subject(id: i64, subject: &str) -> String {
    let tag = format!("[aftercare #{id}]");
    let room = 255usize.saturating_sub(tag.chars().count() + 1);
    format!("{tag} {}", subject.chars().take(room).collect::<String>())
}

/// Takes in the tickets people opened in helpdesk `name` since the last look: each becomes an
/// aftercare ticket with its clocks, linked to the remote one in the same transaction (so it is
/// never taken twice), and the remote ticket is tagged as aftercare's. Returns how many were
/// taken in.
pub(crate) async fn intake(
    store: &Store,
    fleet: &crate::fleet::Fleet,
    name: &str,
    src: &dyn StatusSource,
    clock: &dyn Clock,
) -> Result<usize, PollError> {
    if !src.takes_in() {
        return Ok(0);
    }
    let key = format!("{name}#intake");
    let now = clock.now();
    let stamp = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // The first look reaches back a little: a ticket opened while aftercare was being set up.
    let since = match store.poll_cursor(&key).await? {
        Some(c) => c,
        None => stamp(now - chrono::TimeDelta::minutes(FIRST_LOOK_BACK_MINUTES)),
    };
    let opened = src.opened(&since, now).await.map_err(PollError::Remote)?;
    let mut taken = 0;
    let mut newest = since.clone();
    for o in &opened {
        // Where the next look starts moves as each ticket is dealt with, so that one that fails
        // holds up only itself and those after it.
        if o.created > newest {
            store.set_poll_cursor(&key, &newest).await?;
            newest = o.created.clone();
        }
        if o.subject.contains(TAG) || store.intake_seen(name, &o.remote_id).await? {
            continue;
        }
        let text = match &o.text {
            Some(t) => t.clone(),
            None => src.text(&o.remote_id).await.unwrap_or_else(|e| {
                warn!(helpdesk = name, remote = %o.remote_id, error = ?e, "reading what the person wrote failed; taking the subject alone");
                String::new()
            }),
        };
        let placed = crate::tickets::intake::from_helpdesk(fleet, name, &o.subject, &text, &o.requestor)
            .and_then(|r| crate::tickets::intake::intake(fleet, &r, now));
        let i = match placed {
            Ok(i) => i,
            Err(why) => {
                warn!(helpdesk = name, remote = %o.remote_id, reason = %why, "a ticket people opened in the helpdesk cannot be placed");
                store.intake_refused(name, &o.remote_id, &why, now).await?;
                continue;
            }
        };
        let actor = origin_of(name, &o.requestor);
        let link = crate::store::Link { helpdesk: name, remote_id: &o.remote_id, status: Some(&o.status) };
        let (id, _) = store.take_report_with(&i, &actor, now, Some(link)).await?;
        tracing::info!(helpdesk = name, remote = %o.remote_id, ticket = id.0, "a ticket people opened in the helpdesk is taken in");
        taken += 1;
    }
    for (remote, ticket) in store.unadopted(name).await? {
        match src.adopt(&remote, ticket).await {
            Ok(()) => store.set_adopted(name, &remote).await?,
            Err(e) => {
                warn!(helpdesk = name, remote = %remote, error = ?e, "tagging a taken-in ticket failed; will retry");
                break;
            }
        }
    }
    if newest > since {
        store.set_poll_cursor(&key, &newest).await?;
    }
    Ok(taken)
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
        (Meaning::Resolved, Open | Acknowledged | Dispatched | OnSite | AtFactory) => &[Resolved],
        (Meaning::Closed, Open | Acknowledged | Dispatched | OnSite | AtFactory) => &[Resolved, Closed],
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
