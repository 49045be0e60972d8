//! What an event says to people: the ticket or visit it is about, its headline, its text
//! and the marker a retry looks for.

use super::*;
use crate::store::OutboxEvent;
use crate::tickets::Event;

/// A visit kind as people write it: `Inspection`, `Follow-up`.
fn visit_name(kind: &str) -> String {
    let mut name = kind.replace('_', "-");
    if let Some(first) = name.get(0..1) {
        name.replace_range(0..1, &first.to_uppercase());
    }
    name
}

/// What a visit is: `Inspection of lit-001`, or for a plan that follows services, known by
/// its name, `Fault analysis after ticket #12 on lit-001`.
fn visit(w: &WorkOrder) -> String {
    match w.ticket_id {
        Some(t) => format!("{} after ticket #{t} on {}", visit_name(&w.plan), w.device),
        None => format!("{} of {}", visit_name(w.kind.as_str()), w.device),
    }
}

impl Subject {
    /// The tag in every subject, which email-to-ticket helpdesks thread on and lookups search
    /// for: `[aftercare #12]` for a ticket, `[aftercare WO-7]` for a work order.
    pub(crate) fn tag(&self) -> String {
        match self {
            Subject::Ticket(t) => format!("[aftercare #{}]", t.id.0),
            Subject::WorkOrder(w) => format!("[aftercare WO-{}]", w.id),
        }
    }

    /// aftercare's reference in other systems: the webhook dedup key, RT's custom field.
    pub(crate) fn reference(&self) -> String {
        match self {
            Subject::Ticket(t) => format!("aftercare-ticket-{}", t.id.0),
            Subject::WorkOrder(w) => format!("aftercare-work-order-{}", w.id),
        }
    }

    /// The event id of the first event, which every later mail refers to.
    pub(crate) fn first_event_id(&self) -> String {
        match self {
            Subject::Ticket(t) => format!("aftercare-{}-1", t.id.0),
            Subject::WorkOrder(w) => format!("aftercare-wo-{}-1", w.id),
        }
    }

    /// The helpdesk's priority: the ticket's tier; a planned visit is never urgent (tier 3's).
    pub(crate) fn priority<'a>(&self, priorities: &'a [String; 3]) -> &'a str {
        let tier = match self {
            Subject::Ticket(t) => (t.tier.number() as usize).clamp(1, 3),
            Subject::WorkOrder(_) => 3,
        };
        &priorities[tier - 1]
    }

    /// The title of the remote ticket.
    pub(crate) fn title(&self) -> String {
        match self {
            Subject::Ticket(t) => {
                format!("{} Tier {} {}: {}", self.tag(), t.tier.number(), t.about(), t.title)
            }
            Subject::WorkOrder(w) => format!("{} {} at {}, due {}", self.tag(), visit(w), w.site, w.due_on),
        }
    }

    /// The title of a mail about `event`: the tag helpdesks match on, then what happened.
    pub(crate) fn headline(&self, event: OutboxEvent) -> String {
        match self {
            Subject::Ticket(t) => format!(
                "{} Tier {} {}: {}",
                self.tag(),
                t.tier.number(),
                t.about(),
                match event {
                    OutboxEvent::Ticket(Event::Transition) => format!("now {}", t.state),
                    other => other.as_str().replace('_', " "),
                }
            ),
            Subject::WorkOrder(w) => {
                format!("{} {} due {}: {}", self.tag(), visit(w), w.due_on, event.as_str().replace('_', " "))
            }
        }
    }

    /// What the remote ticket's status should mean now.
    pub(crate) fn meaning(&self) -> Meaning {
        match self {
            Subject::Ticket(t) => match t.state {
                State::Open | State::Acknowledged | State::Dispatched | State::OnSite | State::AtFactory => {
                    Meaning::Active
                }
                State::Resolved => Meaning::Resolved,
                State::Closed => Meaning::Closed,
                State::Cancelled => Meaning::Cancelled,
            },
            // A missed visit is still owed: it stays open until it is done.
            Subject::WorkOrder(w) if w.state == crate::domain::VisitState::Done => Meaning::Resolved,
            Subject::WorkOrder(_) => Meaning::Active,
        }
    }

    /// `ticket` or `work_order`: the prefix of webhook event types.
    pub(crate) fn noun(&self) -> &'static str {
        match self {
            Subject::Ticket(_) => "ticket",
            Subject::WorkOrder(_) => "work_order",
        }
    }
}

/// An event as text, for a mail, a ticket's first description or a comment.
pub(crate) fn describe(d: &Delivery, priority: &str) -> String {
    let mut s = match &d.subject {
        Subject::Ticket(t) => {
            let device = match t.device.0.as_str() {
                "" => String::new(),
                id => format!("Device {id} ({}) at ", t.kind),
            };
            let code = if t.code.0.is_empty() { t.category.as_str() } else { t.code.as_str() };
            let mut s = format!(
                "{}\n\nTicket {}: {code}, tier {}, {}\n{device}site {}, customer {}\nEvent: {} at {}\n",
                t.title,
                t.id.0,
                t.tier.number(),
                t.state,
                t.site.0,
                t.customer.0,
                d.row.event,
                d.row.created_at
            );
            if let Some(r) = &t.reporter {
                let who: Vec<&str> =
                    [r.name.as_str(), r.phone.as_str()].into_iter().filter(|x| !x.is_empty()).collect();
                s.push_str(&format!("Reported by {} ({})\n", who.join(", "), t.channel));
            }
            if let Some(p) = &t.problem {
                s.push_str(&format!("Problem: {p}\n"));
            }
            s.push_str(&format!("Priority: {priority}\n"));
            if !d.row.note.is_empty() {
                s.push_str(&format!("Note: {}\n", d.row.note));
            }
            if let Some(by) = t.clock.resolve_by {
                s.push_str(&format!("Resolve by: {by}\n"));
            }
            s
        }
        Subject::WorkOrder(w) => {
            let mut s = format!(
                "{} of device {} at site {}, customer {}, due on {}\n\nWork order {}: {} (contract {}, plan {})\n\
                 Event: {} at {}\nPriority: {priority}\n",
                visit_name(w.kind.as_str()),
                w.device,
                w.site,
                w.customer,
                w.due_on,
                w.id,
                w.state,
                w.contract,
                w.plan,
                d.row.event,
                d.row.created_at
            );
            if let Some(t) = w.ticket_id {
                s.push_str(&format!("After the service of ticket {t}\n"));
            }
            if !d.row.note.is_empty() {
                s.push_str(&format!("Note: {}\n", d.row.note));
            }
            let answers = w.answers.as_ref().and_then(|a| a.as_object());
            if !w.checklist.is_empty() {
                s.push_str(if answers.is_some() { "\nChecklist, as answered:\n" } else { "\nChecklist:\n" });
                for item in &w.checklist {
                    match answers.and_then(|a| a.get(item)) {
                        Some(v) => {
                            s.push_str(&format!("- {item}: {}\n", crate::report::render::answer_text(v, "measured")))
                        }
                        None => s.push_str(&format!("- {item}\n")),
                    }
                }
            }
            if let (Some(by), Some(at)) = (&w.completed_by, w.completed_at) {
                s.push_str(&format!("Done by {by} at {at}\n"));
            }
            s
        }
    };
    s.push_str(&format!("\n{}\n", marker(&d.row)));
    s
}

/// The line every text of an event ends with. A retry looks for it on the remote ticket: a
/// comment whose answer was lost (a timeout, a kill) is not written twice.
pub(crate) fn marker(row: &OutboxRow) -> String {
    format!("Event id: {}, sequence {}", row.event_id, row.seq)
}
