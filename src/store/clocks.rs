//! Tickets' contract clocks in the store: read a page at a time for the watch, and what
//! they made due fired, each at most once.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::notifications::{Brief, Notice};
use super::tickets::{Entry, append, state_of, tier_of};
use super::{SYSTEM, Store, StoreError, TERMINAL, flag_of, from_ms, ms, opt_ms, sql_list};
use crate::domain::TicketId;
use crate::tickets::clocks::{ClockName, Firing, Moments, OpenClock};
use crate::tickets::{Event, State};

/// The notifications a firing on a ticket makes.
pub type Plan<'a> = dyn Fn(&Firing, &Brief) -> Vec<Notice> + Send + Sync + 'a;

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

impl Store {
    /// Tickets' clocks, each with the time it last changed: a page of the open tickets, a
    /// page of the tickets (open or not) changed since a point, or one ticket whatever its state.
    pub async fn clocks(&self, which: Clocks) -> Result<Vec<(OpenClock, DateTime<Utc>)>, StoreError> {
        const COLUMNS: &str = "id, tier, state, contract, opened_at, updated_at, acknowledged_at, on_site_at, \
             acknowledge_by, on_site_by, resolve_by, acknowledge_breached_at, on_site_breached_at, resolve_breached_at, \
             escalation_level, dispatched_at, inaction_escalated_at, resolve_forced, recovered, loaner, \
             handed_on_at, first_fixed_at, factory_sent_at, factory_arrived_at, factory_back_at, remote_fix_breached_at, \
             on_site_fix_breached_at, factory_breached_at";
        let q = match which {
            Clocks::Open { after, limit } => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM tickets WHERE state NOT IN {} AND id > $1 \
                 ORDER BY id LIMIT $2",
                *TERMINAL
            )))
            .bind(after.0)
            .bind(i64::from(limit)),
            Clocks::Changed { at, after, limit } => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM tickets WHERE updated_at > $1 OR (updated_at = $1 AND id > $2) \
                 ORDER BY updated_at, id LIMIT $3"
            )))
            .bind(ms(at))
            .bind(after.0)
            .bind(i64::from(limit)),
            Clocks::Of(id) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM tickets WHERE id = $1"))).bind(id.0)
            }
        };
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut stage_breached = Vec::new();
            for c in [ClockName::RemoteFix, ClockName::OnSiteFix, ClockName::Factory] {
                if r.try_get::<Option<i64>, _>(format!("{}_breached_at", c.as_str()).as_str())?.is_some() {
                    stage_breached.push(c);
                }
            }
            let clock = OpenClock {
                id: TicketId(r.try_get("id")?),
                tier: tier_of(r)?,
                state: state_of(r)?,
                contract: r.try_get("contract")?,
                opened_at: from_ms(r.try_get("opened_at")?)?,
                acknowledged_at: opt_ms(r.try_get("acknowledged_at")?)?,
                on_site_at: opt_ms(r.try_get("on_site_at")?)?,
                acknowledge_by: opt_ms(r.try_get("acknowledge_by")?)?,
                on_site_by: opt_ms(r.try_get("on_site_by")?)?,
                resolve_by: opt_ms(r.try_get("resolve_by")?)?,
                acknowledge_breached: r.try_get::<Option<i64>, _>("acknowledge_breached_at")?.is_some(),
                on_site_breached: r.try_get::<Option<i64>, _>("on_site_breached_at")?.is_some(),
                resolve_breached: r.try_get::<Option<i64>, _>("resolve_breached_at")?.is_some(),
                escalation_level: r.try_get("escalation_level")?,
                dispatched_at: opt_ms(r.try_get("dispatched_at")?)?,
                inaction_escalated_at: opt_ms(r.try_get("inaction_escalated_at")?)?,
                awaiting_recovery: flag_of(r, "resolve_forced")? && !flag_of(r, "recovered")?,
                moments: moments_of(r)?,
                stage_breached,
                loaner: flag_of(r, "loaner")?,
            };
            out.push((clock, from_ms(r.try_get("updated_at")?)?));
        }
        Ok(out)
    }

    /// Applies what a ticket's clocks made due, each at most once, with the notifications
    /// `plan` makes of each that takes effect (in the same transaction); returns those firings.
    pub async fn fire(
        &self,
        id: TicketId,
        firings: &[Firing],
        now: DateTime<Utc>,
        plan: &Plan<'_>,
    ) -> Result<Vec<Firing>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut done: Vec<Firing> = Vec::new();
        let result = self.fire_in(&mut tx, id, firings, now, &mut done).await;
        result?;
        if !done.is_empty() {
            let r = sqlx::query("SELECT title, device, site, customer, tier FROM tickets WHERE id = $1")
                .bind(id.0)
                .fetch_one(&mut *tx)
                .await?;
            let brief = Brief {
                id: id.0,
                title: r.try_get("title")?,
                device: r.try_get("device")?,
                site: r.try_get("site")?,
                customer: r.try_get("customer")?,
                tier: r.try_get::<i64, _>("tier")?.clamp(1, 3) as u8,
                offset: chrono::Offset::fix(&chrono::Utc),
            };
            for f in &done {
                super::notifications::insert(&mut tx, id.0, &plan(f, &brief), now).await?;
            }
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn fire_in(
        &self,
        tx: &mut sqlx::SqliteConnection,
        id: TicketId,
        firings: &[Firing],
        now: DateTime<Utc>,
        done: &mut Vec<Firing>,
    ) -> Result<(), StoreError> {
        for f in firings {
            let (sql, note): (String, String) = match f {
                Firing::Breach { clock: ClockName::Acknowledge, due, .. } => (
                    "UPDATE tickets SET acknowledge_breached_at = $2, acknowledge_met = COALESCE(acknowledge_met, 0), \
                     updated_at = $2 WHERE id = $1 AND acknowledge_breached_at IS NULL AND acknowledged_at IS NULL"
                        .to_string(),
                    format!("acknowledge clock missed: due {}", due.to_rfc3339()),
                ),
                Firing::Breach { clock: ClockName::OnSite, due, .. } => (
                    "UPDATE tickets SET on_site_breached_at = $2, on_site_met = COALESCE(on_site_met, 0), \
                     updated_at = $2 WHERE id = $1 AND on_site_breached_at IS NULL AND on_site_at IS NULL"
                        .to_string(),
                    format!("on-site clock missed: due {}", due.to_rfc3339()),
                ),
                Firing::Breach { clock: ClockName::Resolve, due, loaner } => (
                    // Unfixed: not resolved, or resolved by force while the fault is still active.
                    format!(
                        "UPDATE tickets SET resolve_breached_at = $2, resolve_met = 0, {}updated_at = $2 \
                         WHERE id = $1 AND resolve_breached_at IS NULL AND (state NOT IN {} \
                         OR (state = '{}' AND resolve_forced = 1 AND recovered = 0))",
                        if *loaner { "loaner = 1, " } else { "" },
                        sql_list([State::Resolved, State::Closed, State::Cancelled].map(State::as_str)),
                        State::Resolved
                    ),
                    if *loaner {
                        format!(
                            "resolve clock missed: due {}; a loaner unit is owed until it is fixed",
                            due.to_rfc3339()
                        )
                    } else {
                        format!("resolve clock missed: due {}", due.to_rfc3339())
                    },
                ),
                Firing::Escalate { level, to, channel, due, unless } => {
                    let sql = "UPDATE tickets SET escalation_level = $3, updated_at = $2 WHERE id = $1 AND escalation_level < $3";
                    let res = sqlx::query(sql).bind(id.0).bind(ms(now)).bind(*level as i64).execute(&mut *tx).await?;
                    if res.rows_affected() == 1 {
                        let note = format!(
                            "level {level}: to {to} by {channel}; not {} by {}",
                            unless.as_str(),
                            due.to_rfc3339()
                        );
                        let e = Entry::note(Event::Escalated, SYSTEM, &note);
                        append(tx, id.0, now, e).await?;
                        done.push(f.clone());
                    }
                    continue;
                }
                Firing::Breach {
                    clock: clock @ (ClockName::RemoteFix | ClockName::OnSiteFix | ClockName::Factory),
                    due,
                    ..
                } => {
                    // Each stage clock is missed at most once, and only if it still runs: a fix, a
                    // hand-on or the unit's return may have come since the watch read the ticket.
                    let column = format!("{}_breached_at", clock.as_str());
                    let running = match clock {
                        ClockName::RemoteFix => "handed_on_at IS NULL AND first_fixed_at IS NULL",
                        ClockName::OnSiteFix => {
                            "on_site_at IS NOT NULL AND (first_fixed_at IS NULL OR first_fixed_at < on_site_at) \
                             AND (factory_sent_at IS NULL OR factory_sent_at < on_site_at)"
                        }
                        _ => {
                            "state = 'at_factory' AND factory_arrived_at IS NOT NULL AND factory_back_at IS NULL \
                              AND (first_fixed_at IS NULL OR first_fixed_at < factory_arrived_at)"
                        }
                    };
                    (
                        format!(
                            "UPDATE tickets SET {column} = $2, updated_at = $2 WHERE id = $1 AND {column} IS NULL \
                             AND {running}"
                        ),
                        format!("{} clock missed: due {}", clock.as_str().replace('_', "-"), due.to_rfc3339()),
                    )
                }
                Firing::Loaner { since } => {
                    let sql =
                        "UPDATE tickets SET loaner = 1, updated_at = $2 WHERE id = $1 AND loaner = 0 AND state = $3";
                    let q = sqlx::query(sql).bind(id.0).bind(ms(now)).bind(State::AtFactory.as_str());
                    if q.execute(&mut *tx).await?.rows_affected() == 1 {
                        let note = format!(
                            "the unit went to the factory at {}: a loaner unit is owed while it is away",
                            since.to_rfc3339()
                        );
                        append(tx, id.0, now, Entry::note(Event::Loaner, SYSTEM, &note)).await?;
                        done.push(f.clone());
                    }
                    continue;
                }
                Firing::Inaction { since, to } => {
                    let sql = "UPDATE tickets SET inaction_escalated_at = $2, updated_at = $2 WHERE id = $1 \
                               AND state = $4 AND dispatched_at = $3 \
                               AND (inaction_escalated_at IS NULL OR inaction_escalated_at < dispatched_at)";
                    let q = sqlx::query(sql).bind(id.0).bind(ms(now)).bind(ms(*since)).bind(State::Dispatched.as_str());
                    let res = q.execute(&mut *tx).await?;
                    if res.rows_affected() == 1 {
                        let note = format!("dispatched at {} with no progress since: to {to}", since.to_rfc3339());
                        let e = Entry::note(Event::Inaction, SYSTEM, &note);
                        append(tx, id.0, now, e).await?;
                        done.push(f.clone());
                    }
                    continue;
                }
            };
            let res = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0).bind(ms(now)).execute(&mut *tx).await?;
            if res.rows_affected() == 1 {
                let e = Entry::note(Event::Breach, SYSTEM, &note);
                append(tx, id.0, now, e).await?;
                done.push(f.clone());
            }
        }
        Ok(())
    }
}

/// The moments of a ticket's row that its stage clocks start and end on.
pub(super) fn moments_of(r: &sqlx::sqlite::SqliteRow) -> Result<Moments, StoreError> {
    Ok(Moments {
        opened_at: from_ms(r.try_get("opened_at")?)?,
        handed_on_at: opt_ms(r.try_get("handed_on_at")?)?,
        on_site_at: opt_ms(r.try_get("on_site_at")?)?,
        fixed_at: opt_ms(r.try_get("first_fixed_at")?)?,
        factory_sent_at: opt_ms(r.try_get("factory_sent_at")?)?,
        factory_arrived_at: opt_ms(r.try_get("factory_arrived_at")?)?,
        factory_back_at: opt_ms(r.try_get("factory_back_at")?)?,
    })
}
