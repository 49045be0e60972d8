//! Tickets in the store: the rows and their timelines, the batch of fault events applied in
//! one transaction, and people's transitions, each change with its helpdesk event.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::{SYSTEM, Store, StoreError, TERMINAL, flag_of, from_ms, ms, named, opt_ms};
use crate::contracts::RepeatRule;
use crate::domain::{CustomerId, DeviceId, FaultChange, FaultCode, OutboxState, SiteId, TicketId, Tier, VisitState};
use crate::tickets::model::{
    Billing, BillingClass, Category, Channel, Clock, FactoryTrip, Outcome, Reporter, Ticket, TicketFilter,
    TimelineEntry,
};
use crate::tickets::{Event, State, TransitionError, policy};

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

impl From<policy::Refusal> for TransitionFailure {
    fn from(r: policy::Refusal) -> TransitionFailure {
        match r {
            policy::Refusal::Illegal(e) => TransitionFailure::Refused(e),
            policy::Refusal::Conflict(m) => TransitionFailure::Conflict(m),
        }
    }
}

/// One ticket's clocks for the service levels: see [`Store::clock_outcomes`].
#[derive(Debug, Clone)]
pub struct ClockOutcome {
    pub contract: Option<String>,
    pub tier: Tier,
    /// Acknowledge, on site, resolve, as judged.
    pub met: [Option<bool>; 3],
    pub moments: crate::tickets::clocks::Moments,
}

impl ClockOutcome {
    /// Its outcomes on every clock, the stage clocks judged at `now` by its contract among `contracts`.
    pub fn outcomes(&self, contracts: &[crate::contracts::Contract], now: DateTime<Utc>) -> [Option<bool>; 6] {
        let contract = self.contract.as_deref().and_then(|id| contracts.iter().find(|c| c.id == id));
        crate::tickets::sla::outcomes(self.met, contract, self.tier, &self.moments, now)
    }
}

/// What a transition carries besides its target state.
#[derive(Debug, Clone, Copy, Default)]
pub struct TransitionOptions<'a> {
    /// Makes the repair billable for this cause (the caller checks the contract names it).
    pub billable: Option<&'a str>,
    /// The cause is one the contract charges at cost only ("只收取成本费"): `billable_at_cost`.
    pub at_cost: bool,
    /// Resolves a ticket whose fault is still active; its resolve clock waits for the recovery.
    pub force: bool,
    /// The resolution replaced the unit: the repeat-repair rule counts afresh from here.
    pub unit_replaced: bool,
    /// The factory's return number for a unit sent there (`at_factory`).
    pub factory_ref: Option<&'a str>,
    /// An appraisal found the component's life abnormally short: repaired free (001 ¶18).
    pub short_life: bool,
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
    pub change: crate::domain::FaultChange,
    /// The contract clocks for a raise (a new ticket) or a promotion.
    pub deadlines: crate::contracts::Deadlines,
    /// The device's warranty on the day of the fault, under its contract.
    pub warranty: Option<crate::contracts::WarrantyStatus>,
    /// The contract's repeat-repair rule.
    pub repeat: Option<crate::contracts::RepeatRule>,
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

const TICKET_COLUMNS: &str = "id, device, site, customer, kind, code, title, tier, state, recovered, occurrences, \
     fault_at, opened_at, updated_at, last_raised_at, recovered_at, acknowledged_at, resolved_at, closed_at, detail, \
     contract, no_clock, acknowledge_by, on_site_by, resolve_by, on_site_at, acknowledge_met, on_site_met, resolve_met, \
     acknowledge_breached_at, on_site_breached_at, resolve_breached_at, escalation_level, loaner, dispatched_at, \
     inaction_escalated_at, warranty, billing, billing_reason, failed_repairs, replace_unit, silenced_by, resolve_forced, calendar_gap, \
     category, channel, reporter_name, reporter_phone, problem, reported_by, sensed, assignee, complaint_grade, \
     handed_on_at, first_fixed_at, factory_sent_at, factory_arrived_at, factory_back_at, factory_ref, \
     CASE WHEN state IN ('resolved', 'closed', 'cancelled') THEN NULL \
     WHEN acknowledge_met IS NULL AND acknowledge_by IS NOT NULL THEN acknowledge_by \
     WHEN on_site_met IS NULL AND on_site_by IS NOT NULL THEN on_site_by \
     WHEN resolve_met IS NULL AND resolve_by IS NOT NULL THEN resolve_by END AS next_due";

/// A row's `tier` column.
pub(super) fn tier_of(r: &SqliteRow) -> Result<Tier, StoreError> {
    let tier: i64 = r.try_get("tier")?;
    Tier::from_number(tier).ok_or_else(|| StoreError::Corrupt(format!("tier {tier}")))
}

/// A row's `state` column.
pub(super) fn state_of(r: &SqliteRow) -> Result<State, StoreError> {
    let state: String = r.try_get("state")?;
    State::from_str(&state).map_err(StoreError::Corrupt)
}

fn ticket_from_row(r: &SqliteRow) -> Result<Ticket, StoreError> {
    Ok(Ticket {
        id: TicketId(r.try_get("id")?),
        device: DeviceId(r.try_get("device")?),
        site: SiteId(r.try_get("site")?),
        customer: CustomerId(r.try_get("customer")?),
        kind: r.try_get("kind")?,
        code: FaultCode(r.try_get("code")?),
        category: named(r, "category", Category::parse)?,
        channel: named(r, "channel", Channel::parse)?,
        reporter: match (
            r.try_get::<Option<String>, _>("reporter_name")?,
            r.try_get::<Option<String>, _>("reporter_phone")?,
        ) {
            (None, None) => None,
            (name, phone) => Some(Reporter { name: name.unwrap_or_default(), phone: phone.unwrap_or_default() }),
        },
        problem: r.try_get("problem")?,
        reported_by: r.try_get("reported_by")?,
        sensed: flag_of(r, "sensed")?,
        assignee: r.try_get("assignee")?,
        complaint_grade: r
            .try_get::<Option<String>, _>("complaint_grade")?
            .map(|g| {
                crate::tickets::intake::Grade::parse(&g).ok_or_else(|| StoreError::Corrupt(format!("grade `{g}`")))
            })
            .transpose()?,
        title: r.try_get("title")?,
        tier: tier_of(r)?,
        state: state_of(r)?,
        recovered: flag_of(r, "recovered")?,
        occurrences: r.try_get("occurrences")?,
        fault_at: from_ms(r.try_get("fault_at")?)?,
        opened_at: from_ms(r.try_get("opened_at")?)?,
        updated_at: from_ms(r.try_get("updated_at")?)?,
        last_raised_at: from_ms(r.try_get("last_raised_at")?)?,
        recovered_at: opt_ms(r.try_get("recovered_at")?)?,
        acknowledged_at: opt_ms(r.try_get("acknowledged_at")?)?,
        resolved_at: opt_ms(r.try_get("resolved_at")?)?,
        closed_at: opt_ms(r.try_get("closed_at")?)?,
        detail: r.try_get("detail")?,
        clock: Clock {
            contract: r.try_get("contract")?,
            no_clock: r.try_get("no_clock")?,
            acknowledge_by: opt_ms(r.try_get("acknowledge_by")?)?,
            on_site_by: opt_ms(r.try_get("on_site_by")?)?,
            resolve_by: opt_ms(r.try_get("resolve_by")?)?,
            on_site_at: opt_ms(r.try_get("on_site_at")?)?,
            acknowledge_met: r.try_get::<Option<i64>, _>("acknowledge_met")?.map(|v| v != 0),
            on_site_met: r.try_get::<Option<i64>, _>("on_site_met")?.map(|v| v != 0),
            resolve_met: r.try_get::<Option<i64>, _>("resolve_met")?.map(|v| v != 0),
            acknowledge_breached_at: opt_ms(r.try_get("acknowledge_breached_at")?)?,
            on_site_breached_at: opt_ms(r.try_get("on_site_breached_at")?)?,
            resolve_breached_at: opt_ms(r.try_get("resolve_breached_at")?)?,
            escalation_level: r.try_get("escalation_level")?,
            loaner: flag_of(r, "loaner")?,
            dispatched_at: opt_ms(r.try_get("dispatched_at")?)?,
            resolve_forced: flag_of(r, "resolve_forced")?,
            calendar_gap: r.try_get("calendar_gap")?,
            next_due: opt_ms(r.try_get("next_due")?)?,
            handed_on_at: opt_ms(r.try_get("handed_on_at")?)?,
            fixed_at: opt_ms(r.try_get("first_fixed_at")?)?,
            stages: Vec::new(),
        },
        factory: match opt_ms(r.try_get("factory_sent_at")?)? {
            Some(sent_at) => Some(FactoryTrip {
                sent_at,
                arrived_at: opt_ms(r.try_get("factory_arrived_at")?)?,
                back_at: opt_ms(r.try_get("factory_back_at")?)?,
                reference: r.try_get("factory_ref")?,
            }),
            None => None,
        },
        warranty: match r.try_get::<Option<String>, _>("warranty")? {
            Some(w) => Some(serde_json::from_str(&w).map_err(|e| StoreError::Corrupt(format!("warranty: {e}")))?),
            None => None,
        },
        billing: r
            .try_get::<Option<String>, _>("billing")?
            .map(|class| {
                let class =
                    BillingClass::parse(&class).ok_or_else(|| StoreError::Corrupt(format!("billing `{class}`")))?;
                Ok::<_, StoreError>(Billing { class, reason: r.try_get("billing_reason")? })
            })
            .transpose()?,
        failed_repairs: r.try_get("failed_repairs")?,
        replace_unit: flag_of(r, "replace_unit")?,
        silenced_by: r.try_get("silenced_by")?,
        timeline: None,
        repair: None,
        attachments: None,
    })
}

/// One timeline line to append.
pub(super) struct Entry<'a> {
    pub(super) event: Event,
    pub(super) actor: &'a str,
    pub(super) from: Option<State>,
    pub(super) to: Option<State>,
    pub(super) tier: Option<Tier>,
    pub(super) note: &'a str,
}

impl<'a> Entry<'a> {
    /// A line that records `event` with a `note` and no change of state or tier.
    pub(super) fn note(event: Event, actor: &'a str, note: &'a str) -> Entry<'a> {
        Entry { event, actor, from: None, to: None, tier: None, note }
    }
}

pub(super) async fn append(
    conn: &mut SqliteConnection,
    ticket: i64,
    at: DateTime<Utc>,
    e: Entry<'_>,
) -> Result<(), StoreError> {
    append_line(conn, ticket, at, e, false).await
}

/// [`append`], for the service team alone when `internal`.
pub(super) async fn append_line(
    conn: &mut SqliteConnection,
    ticket: i64,
    at: DateTime<Utc>,
    e: Entry<'_>,
    internal: bool,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO timeline (ticket_id, at, event, actor, from_state, to_state, tier, note, internal) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(ticket)
    .bind(ms(at))
    .bind(e.event.as_str())
    .bind(e.actor)
    .bind(e.from.map(State::as_str))
    .bind(e.to.map(State::as_str))
    .bind(e.tier.map(|t| t.number() as i64))
    .bind(e.note)
    .bind(i64::from(internal))
    .execute(&mut *conn)
    .await?;
    // Every change is one the helpdesk must see: an outbox row in the same transaction, for a
    // customer that has a helpdesk (one without gets none, and costs the relay nothing).
    let action = policy::helpdesk_action(e.event, e.to);
    sqlx::query(
        "INSERT INTO outbox (ticket_id, seq, event_id, event, action, note, customer, created_at, next_attempt_at, origin, state, internal) \
         SELECT $1, n.seq, 'aftercare-' || $1 || '-' || n.seq, $2, $3, $4, t.customer, $5, $5, $6, \
         CASE WHEN t.silenced_by IS NULL THEN $7 ELSE $8 END, $9 \
         FROM tickets t, (SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM outbox WHERE ticket_id = $1) n WHERE t.id = $1 \
         AND EXISTS (SELECT 1 FROM helpdesk_routes r WHERE r.customer = t.customer)",
    )
    .bind(ticket)
    .bind(e.event.as_str())
    .bind(action.as_str())
    .bind(e.note)
    .bind(ms(at))
    .bind(e.actor)
    .bind(OutboxState::Pending.as_str())
    .bind(OutboxState::Skipped.as_str())
    .bind(i64::from(internal))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Applies a batch of fault events in one transaction, in order.
    /// Returns, per event, what it did and to which ticket.
    pub async fn apply_faults(
        &self,
        records: &[FaultRecord],
        now: DateTime<Utc>,
        reopen_window: Duration,
    ) -> Result<Vec<(Outcome, Option<TicketId>)>, StoreError> {
        self.apply_batch(records, &[], now, reopen_window).await
    }

    /// Applies fault events and keeps devices' alarms, in one transaction.
    pub async fn apply_batch(
        &self,
        records: &[FaultRecord],
        alarms: &[AlarmRecord],
        now: DateTime<Utc>,
        reopen_window: Duration,
    ) -> Result<Vec<(Outcome, Option<TicketId>)>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for a in alarms {
            let q = if a.active {
                sqlx::query(
                    "INSERT INTO device_alarms (device, code, since) VALUES ($1, $2, $3) \
                     ON CONFLICT (device, code) DO NOTHING",
                )
            } else {
                // Cleared, whatever time the device gives: a stale row would raise it after a restart.
                sqlx::query("DELETE FROM device_alarms WHERE device = $1 AND code = $2 AND $3 = $3")
            };
            q.bind(&a.device).bind(&a.code).bind(ms(a.at)).execute(&mut *tx).await?;
        }
        let mut out = Vec::with_capacity(records.len());
        for rec in records {
            let r = match rec.change {
                FaultChange::Raised => raise(&mut tx, rec, now, reopen_window).await?,
                FaultChange::Cleared => clear(&mut tx, rec, now).await?,
                FaultChange::Promoted => promote(&mut tx, rec, now).await?,
            };
            // The device's state history, kept apart from tickets (which merge recurrences);
            // a clear that found nothing open changed nothing.
            if matches!(r.0, Outcome::Nothing) {
                out.push(r);
                continue;
            }
            sqlx::query(
                "INSERT INTO device_events (device, at, event, code, tier, detail) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&rec.device)
            .bind(ms(rec.at))
            .bind(rec.change.as_str())
            .bind(&rec.code)
            .bind(rec.tier.number() as i64)
            .bind(&rec.detail)
            .execute(&mut *tx)
            .await?;
            out.push(r);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Moves a ticket to another state on a person's (or helpdesk's) word.
    pub async fn transition(
        &self,
        id: TicketId,
        to: State,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Ticket, TransitionFailure> {
        self.transition_with(id, to, by, note, now, TransitionOptions::default()).await
    }

    /// A transition with its options: a billable cause, a forced resolution, a replaced unit.
    pub async fn transition_with(
        &self,
        id: TicketId,
        to: State,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
        opts: TransitionOptions<'_>,
    ) -> Result<Ticket, TransitionFailure> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(StoreError::from)?;
        let row = sqlx::query("SELECT state, recovered, sensed, code FROM tickets WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?
            .ok_or(TransitionFailure::NotFound(id.0))?;
        let from = state_of(&row)?;
        // A report no device's rule has confirmed is no active fault.
        let recovered = flag_of(&row, "recovered")? || !flag_of(&row, "sensed")?;
        let code: String = row.try_get("code").map_err(StoreError::from)?;
        let ask = policy::Ask { note, force: opts.force, unit_replaced: opts.unit_replaced };
        let policy::Transition { forced, note } = policy::transition(id, &code, recovered, from, to, ask)?;
        // The first move out of `open` is the response that the acknowledge clock measures.
        let respond = if from == State::Open {
            ", acknowledged_at = COALESCE(acknowledged_at, $3), acknowledge_met = COALESCE(acknowledge_met, \
             CASE WHEN acknowledge_by IS NULL THEN NULL WHEN $3 <= acknowledge_by THEN 1 ELSE 0 END)"
        } else {
            ""
        };
        // The first hand-on to the field ends the remote fix; a unit leaving the factory is back.
        let handed = if matches!(to, State::Dispatched | State::OnSite | State::AtFactory) {
            ", handed_on_at = COALESCE(handed_on_at, $3)"
        } else {
            ""
        };
        let back = if from == State::AtFactory { ", factory_back_at = $3" } else { "" };
        let set = match to {
            State::OnSite => {
                ", on_site_at = COALESCE(on_site_at, $3), on_site_met = COALESCE(on_site_met, \
                 CASE WHEN on_site_by IS NULL THEN NULL WHEN $3 <= on_site_by THEN 1 ELSE 0 END)"
            }
            // Each trip to the factory is timed afresh.
            State::AtFactory => {
                ", factory_sent_at = $3, factory_arrived_at = NULL, factory_back_at = NULL, \
                 factory_breached_at = NULL, factory_ref = $4"
            }
            // The resolve clock of a forced resolution is judged when the fault recovers (see `clear`);
            // one already breached stays missed.
            State::Resolved if forced => {
                ", resolved_at = $3, resolve_forced = 1, resolve_met = \
                 CASE WHEN resolve_breached_at IS NULL THEN NULL ELSE 0 END"
            }
            State::Resolved => {
                ", resolved_at = $3, resolve_forced = 0, first_fixed_at = COALESCE(first_fixed_at, $3), resolve_met = \
                 CASE WHEN resolve_by IS NULL THEN NULL WHEN $3 <= resolve_by THEN 1 ELSE 0 END"
            }
            State::Dispatched => ", dispatched_at = $3",
            State::Closed | State::Cancelled => ", closed_at = $3",
            State::Open => ", closed_at = NULL, resolved_at = NULL, resolve_forced = 0",
            _ => "",
        };
        let set = format!("{respond}{handed}{back}{set}");
        let sql = format!("UPDATE tickets SET state = $1, updated_at = $3{set} WHERE id = $2");
        let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(to.as_str()).bind(id.0).bind(ms(now));
        let q = if to == State::AtFactory { q.bind(opts.factory_ref) } else { q };
        let res = q.execute(&mut *tx).await;
        match res {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(TransitionFailure::Conflict(format!(
                    "cannot reopen ticket {id}: another ticket for the same device and fault is open"
                )));
            }
            r => {
                r.map_err(StoreError::from)?;
            }
        }
        let entry =
            Entry { event: Event::Transition, actor: by, from: Some(from), to: Some(to), tier: None, note: &note };
        append(&mut tx, id.0, now, entry).await?;
        if let Some(cause) = opts.billable {
            sqlx::query("UPDATE tickets SET billing = $3, billing_reason = $2 WHERE id = $1")
                .bind(id.0)
                .bind(cause)
                .bind(if opts.at_cost { BillingClass::BillableAtCost } else { BillingClass::Billable }.as_str())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            let note = format!("billable: {cause}");
            let entry = Entry::note(Event::Billing, by, &note);
            append(&mut tx, id.0, now, entry).await?;
        }
        if opts.short_life {
            sqlx::query("UPDATE tickets SET billing = $2, billing_reason = 'short_life' WHERE id = $1")
                .bind(id.0)
                .bind(BillingClass::Free.as_str())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from)?;
            let note = "free: the component's life was appraised abnormally short";
            append(&mut tx, id.0, now, Entry::note(Event::Billing, by, note)).await?;
        }
        if opts.unit_replaced {
            // The repeat-repair rule counts the new unit's failed repairs from here.
            let note = "the unit was replaced: failed repairs count afresh";
            let entry = Entry::note(Event::UnitReplaced, by, note);
            append(&mut tx, id.0, now, entry).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        if to == State::Resolved {
            self.resolved.notify_one();
        }
        self.ticket(id).await?.ok_or(TransitionFailure::NotFound(id.0))
    }

    /// Records that the unit of a ticket `at_factory` reached the factory at `at` (not before it
    /// was sent): the factory's clock starts there. Once a trip.
    pub async fn factory_arrived(
        &self,
        id: TicketId,
        at: DateTime<Utc>,
        by: &str,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<Ticket, TransitionFailure> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(StoreError::from)?;
        let row = sqlx::query("SELECT state, factory_sent_at, factory_arrived_at FROM tickets WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?
            .ok_or(TransitionFailure::NotFound(id.0))?;
        let state = state_of(&row)?;
        let sent = opt_ms(row.try_get("factory_sent_at").map_err(StoreError::from)?)?;
        let arrived = opt_ms(row.try_get("factory_arrived_at").map_err(StoreError::from)?)?;
        let refuse = |m: String| Err(TransitionFailure::Conflict(m));
        match (state, sent, arrived) {
            (State::AtFactory, _, Some(a)) => {
                return refuse(format!("ticket {id}'s unit reached the factory at {}", a.to_rfc3339()));
            }
            (State::AtFactory, Some(s), None) if at < s => {
                return refuse(format!("ticket {id}'s unit was sent at {}; it cannot arrive before", s.to_rfc3339()));
            }
            (State::AtFactory, Some(_), None) => {}
            (s, _, _) => return refuse(format!("ticket {id} is {s}, not at the factory")),
        }
        sqlx::query("UPDATE tickets SET factory_arrived_at = $2, updated_at = $3 WHERE id = $1")
            .bind(id.0)
            .bind(ms(at))
            .bind(ms(now))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let when = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
        let text = if note.is_empty() {
            format!("the unit reached the factory at {when}")
        } else {
            format!("the unit reached the factory at {when}: {note}")
        };
        append(&mut tx, id.0, now, Entry::note(Event::Factory, by, &text)).await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.ticket(id).await?.ok_or(TransitionFailure::NotFound(id.0))
    }

    /// Returns when a ticket was resolved since the last call returned (at once if one was).
    pub async fn resolved(&self) {
        self.resolved.notified().await
    }

    /// When a ticket of these customers (`None`: any) last changed, in ms; `None` with no ticket.
    pub async fn latest_change(&self, customers: Option<&[String]>) -> Result<Option<i64>, StoreError> {
        let sql =
            format!("SELECT MAX(updated_at) FROM tickets WHERE 1 = 1{}", super::in_customers("customer", customers, 1));
        let mut q = sqlx::query_scalar::<_, Option<i64>>(sqlx::AssertSqlSafe(sql));
        for c in customers.unwrap_or_default() {
            q = q.bind(c);
        }
        Ok(q.fetch_one(&self.pool).await?)
    }

    /// One ticket with its timeline.
    pub async fn ticket(&self, id: TicketId) -> Result<Option<Ticket>, StoreError> {
        let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = $1");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let mut t = ticket_from_row(&row)?;
        let rows = sqlx::query(
            "SELECT at, event, actor, from_state, to_state, tier, note, internal FROM timeline WHERE ticket_id = $1 \
             ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?;
        let mut timeline = Vec::with_capacity(rows.len());
        for r in rows {
            let state = |c: &str| -> Result<Option<State>, StoreError> {
                let s: Option<String> = r.try_get(c)?;
                s.map(|s| State::from_str(&s).map_err(StoreError::Corrupt)).transpose()
            };
            timeline.push(TimelineEntry {
                at: from_ms(r.try_get("at")?)?,
                event: super::named(&r, "event", Event::parse)?,
                actor: r.try_get("actor")?,
                from_state: state("from_state")?,
                to_state: state("to_state")?,
                tier: r.try_get::<Option<i64>, _>("tier")?.and_then(Tier::from_number),
                note: r.try_get("note")?,
                internal: flag_of(&r, "internal")?,
            });
        }
        t.timeline = Some(timeline);
        Ok(Some(t))
    }

    /// Tickets matching a filter, newest first.
    pub async fn tickets(&self, f: &TicketFilter) -> Result<Vec<Ticket>, StoreError> {
        let mut sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE 1 = 1");
        let mut args: Vec<String> = Vec::new();
        let mut text = |col: &str, v: &Option<String>, sql: &mut String| {
            if let Some(v) = v {
                args.push(v.clone());
                sql.push_str(&format!(" AND {col} = ${}", args.len()));
            }
        };
        text("state", &f.state.map(|s| s.as_str().to_string()), &mut sql);
        text("device", &f.device, &mut sql);
        text("code", &f.code, &mut sql);
        text("customer", &f.customer, &mut sql);
        text("site", &f.site, &mut sql);
        text("kind", &f.kind, &mut sql);
        text("assignee", &f.assignee, &mut sql);
        text("category", &f.category.map(|c| c.as_str().to_string()), &mut sql);
        text("channel", &f.channel.map(|c| c.as_str().to_string()), &mut sql);
        if let Some(cs) = &f.customers {
            let mut marks = Vec::new();
            for c in cs {
                args.push(c.clone());
                marks.push(format!("${}", args.len()));
            }
            sql.push_str(&if marks.is_empty() {
                " AND 1 = 0".to_string()
            } else {
                format!(" AND customer IN ({})", marks.join(", "))
            });
        }
        if let Some(t) = f.tier {
            sql.push_str(&format!(" AND tier = {}", t.number()));
        }
        if let Some(r) = f.recovered {
            sql.push_str(if r { " AND recovered = 1" } else { " AND recovered = 0" });
        }
        if let Some(open) = f.open {
            sql.push_str(&format!(" AND state {}IN {}", if open { "NOT " } else { "" }, *TERMINAL));
        }
        if let Some((from, to)) = f.opened {
            sql.push_str(&format!(" AND opened_at >= {} AND opened_at < {}", ms(from), ms(to)));
        }
        if let Some(b) = f.breached {
            let any = "(acknowledge_breached_at IS NOT NULL OR on_site_breached_at IS NOT NULL \
                       OR resolve_breached_at IS NOT NULL)";
            sql.push_str(&if b { format!(" AND {any}") } else { format!(" AND NOT {any}") });
        }
        // The select list names the next deadline; a condition or an order on it goes through
        // a subquery, as portable SQL cannot use a column alias in WHERE.
        let mut sql = format!("SELECT * FROM ({sql}) t WHERE 1 = 1");
        if let Some(before) = f.due_before {
            sql.push_str(&format!(" AND next_due IS NOT NULL AND next_due <= {}", ms(before)));
        }
        let order = if f.by_deadline { "(next_due IS NULL), next_due, id" } else { "id DESC" };
        sql.push_str(&format!(" ORDER BY {order} LIMIT {} OFFSET {}", f.limit.clamp(1, 10_000), f.offset.max(0)));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            q = q.bind(a);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(ticket_from_row).collect()
    }

    /// Tickets matching a condition over ($1 customer or NULL, $2 from, $3 to), oldest first.
    pub(super) async fn tickets_where(
        &self,
        cond: &str,
        customer: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Ticket>, StoreError> {
        let sql = format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE {cond} ORDER BY opened_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(customer)
            .bind(ms(from))
            .bind(ms(to))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(ticket_from_row).collect()
    }

    /// Faults whose latest ticket has not recovered, whatever its state: the rule state to
    /// restore after a restart. A fault whose ticket was closed or cancelled while it was still
    /// active opens no new ticket until it clears, before a restart as after one.
    pub async fn active_faults(&self) -> Result<Vec<ActiveFault>, StoreError> {
        let rows = sqlx::query(
            "SELECT device, code, tier, last_raised_at FROM tickets t WHERE recovered = 0 AND sensed = 1 \
             AND id = (SELECT MAX(id) FROM tickets l WHERE l.device = t.device AND l.code = t.code)",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ActiveFault {
                    device: r.try_get("device")?,
                    code: r.try_get("code")?,
                    tier: tier_of(r)?,
                    since: from_ms(r.try_get("last_raised_at")?)?,
                })
            })
            .collect()
    }

    /// Devices' alarm codes that are active, as (device, code).
    pub async fn active_alarms(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT device, code FROM device_alarms ORDER BY device, code").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get("device")?, r.try_get("code")?))).collect()
    }

    /// The clock outcomes of a customer's tickets opened in `[from, to)` (not cancelled): each
    /// ticket's contract (`None`: none governed it), tier, the acknowledge, on-site and resolve
    /// clocks as judged, and the moments its stage clocks run on.
    pub async fn clock_outcomes(
        &self,
        customer: Option<&str>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ClockOutcome>, StoreError> {
        let rows = sqlx::query(
            "SELECT contract, tier, acknowledge_met, on_site_met, resolve_met, opened_at, handed_on_at, on_site_at, \
             first_fixed_at, factory_sent_at, factory_arrived_at, factory_back_at FROM tickets \
             WHERE ($1 IS NULL OR customer = $1) AND opened_at >= $2 AND opened_at < $3 AND state != $4",
        )
        .bind(customer)
        .bind(ms(from))
        .bind(ms(to))
        .bind(State::Cancelled.as_str())
        .fetch_all(&self.pool)
        .await?;
        let b = |v: Option<i64>| v.map(|v| v != 0);
        rows.iter()
            .map(|r| {
                Ok(ClockOutcome {
                    contract: r.try_get("contract")?,
                    tier: tier_of(r)?,
                    met: [b(r.try_get("acknowledge_met")?), b(r.try_get("on_site_met")?), b(r.try_get("resolve_met")?)],
                    moments: super::clocks::moments_of(r)?,
                })
            })
            .collect()
    }
}

/// The ticket of a device and fault that is neither closed nor cancelled, if any.
async fn current(
    conn: &mut SqliteConnection,
    rec: &FaultRecord,
) -> Result<Option<(policy::Current, SqliteRow)>, StoreError> {
    let sql = format!(
        "SELECT id, state, tier, acknowledge_by, on_site_by, resolve_by, calendar_gap FROM tickets \
         WHERE device = $1 AND code = $2 AND state NOT IN {}",
        *TERMINAL
    );
    let row =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&rec.device).bind(&rec.code).fetch_optional(&mut *conn).await?;
    let Some(row) = row else { return Ok(None) };
    let current = policy::Current { id: TicketId(row.try_get("id")?), state: state_of(&row)?, tier: tier_of(&row)? };
    Ok(Some((current, row)))
}

/// Counts another occurrence of a fault on a ticket, reopening it when the rules say so.
async fn count_again(
    conn: &mut SqliteConnection,
    c: &policy::Count,
    rec: &FaultRecord,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let reopen = match c.reopen_from {
        Some(_) => format!("state = '{}', closed_at = NULL, resolved_at = NULL, ", State::Open),
        None => String::new(),
    };
    let sql = format!(
        "UPDATE tickets SET {reopen}recovered = 0, recovered_at = NULL, occurrences = occurrences + 1, \
         tier = $2, last_raised_at = $3, updated_at = $4, detail = $5, sensed = 1 WHERE id = $1"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(c.id.0)
        .bind(i64::from(c.tier.number()))
        .bind(ms(rec.at))
        .bind(ms(now))
        .bind(&rec.detail)
        .execute(&mut *conn)
        .await?;
    let to = c.reopen_from.map(|_| State::Open);
    let e = Entry { event: c.event(), actor: SYSTEM, from: c.reopen_from, to, tier: Some(c.tier), note: &c.note };
    append(conn, c.id.0, now, e).await
}

/// Raises a fault: counted on a ticket or a new one opened (`policy::raise`), then the
/// repeat-repair rule (`policy::repair_failed`).
async fn raise(
    conn: &mut SqliteConnection,
    rec: &FaultRecord,
    now: DateTime<Utc>,
    reopen_window: Duration,
) -> Result<(Outcome, Option<TicketId>), StoreError> {
    // Read before the raise, which unresolves a ticket it reopens.
    let last_resolved: Option<i64> = match rec.repeat {
        Some(_) => {
            sqlx::query_scalar("SELECT MAX(resolved_at) FROM tickets WHERE device = $1 AND code = $2")
                .bind(&rec.device)
                .bind(&rec.code)
                .fetch_one(&mut *conn)
                .await?
        }
        None => None,
    };
    let current = current(conn, rec).await?.map(|(c, _)| c);
    let closed = match current {
        Some(_) => None,
        None => last_closed(conn, rec).await?,
    };
    let (outcome, id) = match policy::raise(current, closed, rec.tier, &rec.detail, reopen_window, now) {
        Some(count) => {
            count_again(conn, &count, rec, now).await?;
            (count.outcome(), count.id)
        }
        None => (Outcome::Opened, open(conn, rec, now).await?),
    };
    if let (Outcome::Opened | Outcome::Reopened, Some(rule), Some(resolved)) = (outcome, rec.repeat, last_resolved) {
        let resolved = from_ms(resolved)?;
        if policy::repair_failed(&rule, resolved, now) {
            failed_repair(conn, id, rec, &rule, resolved, now).await?;
        }
    }
    Ok((outcome, Some(id)))
}

/// The latest closed ticket of a device and fault.
async fn last_closed(conn: &mut SqliteConnection, rec: &FaultRecord) -> Result<Option<policy::Closed>, StoreError> {
    let row = sqlx::query(
        "SELECT id, tier, closed_at FROM tickets WHERE device = $1 AND code = $2 AND state = $3 \
         ORDER BY closed_at DESC LIMIT 1",
    )
    .bind(&rec.device)
    .bind(&rec.code)
    .bind(State::Closed.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        let closed_at: Option<i64> = r.try_get("closed_at")?;
        let closed_at = closed_at.ok_or_else(|| StoreError::Corrupt("a closed ticket with no closed_at".into()))?;
        Ok(policy::Closed { id: TicketId(r.try_get("id")?), tier: tier_of(&r)?, closed_at: from_ms(closed_at)? })
    })
    .transpose()
}

/// Counts a failed repair on ticket `id` and, when the rules say so, asks for the unit's replacement.
async fn failed_repair(
    conn: &mut SqliteConnection,
    id: TicketId,
    rec: &FaultRecord,
    rule: &RepeatRule,
    resolved: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let replaced: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(e.at) FROM timeline e JOIN tickets t ON t.id = e.ticket_id WHERE t.device = $1 AND e.event = $2",
    )
    .bind(&rec.device)
    .bind(Event::UnitReplaced.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let since = policy::failed_repairs_count_from(rule, replaced.map(from_ms).transpose()?, now);
    let earlier: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM timeline e JOIN tickets t ON t.id = e.ticket_id \
         WHERE t.device = $1 AND t.code = $2 AND e.event = $3 AND e.at >= $4",
    )
    .bind(&rec.device)
    .bind(&rec.code)
    .bind(Event::RepairFailed.as_str())
    .bind(ms(since))
    .fetch_one(&mut *conn)
    .await?;
    let in_warranty = rec.warranty.as_ref().is_some_and(|w| w.in_warranty);
    let f = policy::failed_repair(rule, earlier, resolved, in_warranty, now);
    sqlx::query("UPDATE tickets SET failed_repairs = $2 WHERE id = $1")
        .bind(id.0)
        .bind(f.count)
        .execute(&mut *conn)
        .await?;
    let e = Entry::note(Event::RepairFailed, SYSTEM, &f.note);
    append(conn, id.0, now, e).await?;
    let Some(note) = f.replace else { return Ok(()) };
    let res = sqlx::query("UPDATE tickets SET replace_unit = 1 WHERE id = $1 AND replace_unit = 0")
        .bind(id.0)
        .execute(&mut *conn)
        .await?;
    if res.rows_affected() == 1 {
        let e = Entry::note(Event::ReplaceUnit, SYSTEM, &note);
        append(conn, id.0, now, e).await?;
    }
    Ok(())
}

/// Opens a ticket for a fault, silenced during a visit (`policy::opening`).
async fn open(conn: &mut SqliteConnection, rec: &FaultRecord, now: DateTime<Utc>) -> Result<TicketId, StoreError> {
    // An engineer on a visit to the device: the fault is recorded, but nobody is paged for it.
    let visit: Option<i64> =
        sqlx::query_scalar("SELECT id FROM work_orders WHERE device = $1 AND state = $2 ORDER BY id LIMIT 1")
            .bind(&rec.device)
            .bind(VisitState::InProgress.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let o = policy::opening(visit, &rec.deadlines, &rec.detail);
    let d = &o.deadlines;
    let row = sqlx::query(
        "INSERT INTO tickets (device, site, customer, kind, code, title, tier, state, fault_at, opened_at, updated_at, \
         last_raised_at, detail, contract, no_clock, acknowledge_by, on_site_by, resolve_by, warranty, billing, silenced_by, \
         calendar_gap) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $20, $8, $9, $9, $8, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
         RETURNING id",
    )
    .bind(&rec.device)
    .bind(&rec.site)
    .bind(&rec.customer)
    .bind(&rec.kind)
    .bind(&rec.code)
    .bind(&rec.title)
    .bind(i64::from(rec.tier.number()))
    .bind(ms(rec.at))
    .bind(ms(now))
    .bind(&rec.detail)
    .bind(&d.contract)
    .bind(&d.no_clock)
    .bind(d.acknowledge_by.map(ms))
    .bind(d.on_site_by.map(ms))
    .bind(d.resolve_by.map(ms))
    .bind(rec.warranty.as_ref().and_then(|w| serde_json::to_string(w).ok()))
    .bind(rec.warranty.as_ref().map(|w| BillingClass::of_warranty(w.in_warranty).as_str()))
    .bind(o.silenced_by)
    .bind(&d.calendar_gap)
    .bind(State::Open.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let id: i64 = row.try_get("id")?;
    let e = Entry {
        event: Event::Opened,
        actor: SYSTEM,
        from: None,
        to: Some(State::Open),
        tier: Some(rec.tier),
        note: &o.note,
    };
    append(conn, id, now, e).await?;
    Ok(TicketId(id))
}

/// A fault cleared: its latest ticket, whatever its state, is marked recovered. A forced
/// resolution's resolve clock is judged now, by the time of the recovery.
async fn clear(
    conn: &mut SqliteConnection,
    rec: &FaultRecord,
    now: DateTime<Utc>,
) -> Result<(Outcome, Option<TicketId>), StoreError> {
    let row = sqlx::query(
        "UPDATE tickets SET recovered = 1, recovered_at = $3, updated_at = $4, resolve_met = \
         CASE WHEN resolve_forced = 1 AND resolve_met IS NULL AND resolve_by IS NOT NULL \
         THEN CASE WHEN $3 <= resolve_by THEN 1 ELSE 0 END ELSE resolve_met END, \
         first_fixed_at = CASE WHEN resolve_forced = 1 AND resolved_at IS NOT NULL AND first_fixed_at IS NULL \
         THEN $3 ELSE first_fixed_at END \
         WHERE id = (SELECT MAX(id) FROM tickets WHERE device = $1 AND code = $2) AND recovered = 0 RETURNING id",
    )
    .bind(&rec.device)
    .bind(&rec.code)
    .bind(ms(rec.at))
    .bind(ms(now))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok((Outcome::Nothing, None));
    };
    let id: i64 = row.try_get("id")?;
    let e = Entry::note(Event::Recovered, SYSTEM, &rec.detail);
    append(conn, id, now, e).await?;
    Ok((Outcome::Recovered, Some(TicketId(id))))
}

/// A fault became more severe: its ticket takes the tier and the stricter clocks (`policy::promotion`).
async fn promote(
    conn: &mut SqliteConnection,
    rec: &FaultRecord,
    now: DateTime<Utc>,
) -> Result<(Outcome, Option<TicketId>), StoreError> {
    let Some((current, row)) = current(conn, rec).await? else {
        return Ok((Outcome::Nothing, None));
    };
    let clocks = policy::Clocks {
        acknowledge_by: opt_ms(row.try_get("acknowledge_by")?)?,
        on_site_by: opt_ms(row.try_get("on_site_by")?)?,
        resolve_by: opt_ms(row.try_get("resolve_by")?)?,
        calendar_gap: row.try_get("calendar_gap")?,
    };
    let Some((c, note)) = policy::promotion(current.tier, &clocks, rec.tier, &rec.deadlines, &rec.detail) else {
        return Ok((Outcome::Nothing, Some(current.id)));
    };
    sqlx::query(
        "UPDATE tickets SET tier = $2, updated_at = $3, acknowledge_by = $4, on_site_by = $5, resolve_by = $6, \
         calendar_gap = $7 WHERE id = $1",
    )
    .bind(current.id.0)
    .bind(i64::from(rec.tier.number()))
    .bind(ms(now))
    .bind(c.acknowledge_by.map(ms))
    .bind(c.on_site_by.map(ms))
    .bind(c.resolve_by.map(ms))
    .bind(&c.calendar_gap)
    .execute(&mut *conn)
    .await?;
    let e = Entry { event: Event::Promoted, actor: SYSTEM, from: None, to: None, tier: Some(rec.tier), note: &note };
    append(conn, current.id.0, now, e).await?;
    Ok((Outcome::Promoted, Some(current.id)))
}

#[cfg(test)]
mod tests;
