//! Who may do what: roles, the permission each API route declares, customer scope, and the
//! ticket states each role may move a ticket to. Pure: the API's guard asks, the store keeps
//! the users. README.md ("Users and roles") has the table this encodes.

use std::collections::BTreeSet;

use crate::domain::named;
use crate::tickets::State;

named! {
    /// What a user is for.
    pub enum Role {
        /// Everything, users and configuration included.
        Admin = "admin",
        /// All tickets, work orders, reports and SLA of its customers.
        Manager = "manager",
        /// Takes requests: acknowledges, dispatches, comments.
        Desk = "desk",
        /// Makes the visits: on site, resolved, work orders started and completed.
        Engineer = "engineer",
        /// Reads its own devices, tickets, visits and reports; changes nothing.
        Customer = "customer",
        /// A script's machine token.
        Integration = "integration",
    }
}

named! {
    /// What a route needs. Every route of the API declares one where it is registered.
    pub(crate) enum Perm {
        /// Anyone, signed in or not (`/healthz`, logging in).
        Open = "open",
        /// Anyone signed in: their own account, logging out.
        SignedIn = "signed_in",
        /// A helpdesk's signed request: the handler checks the signature, not a user.
        Helpdesk = "helpdesk",
        /// `/metrics`, when config does not leave it open.
        Metrics = "metrics",
        ReadTickets = "read_tickets",
        /// Reporting a ticket: a call, a letter, a visit, or a customer's own request.
        OpenTickets = "open_tickets",
        /// The contact register: registering calls, letters and visits, and answering them.
        Contacts = "contacts",
        /// Giving a ticket or a visit to someone.
        Assign = "assign",
        /// Comments on tickets (a customer's user: visible ones on its own).
        Comment = "comment",
        /// Transitions (each role to the states [`may_move_to`] allows).
        ActOnTickets = "act_on_tickets",
        ReadDevices = "read_devices",
        ReadContracts = "read_contracts",
        ReadSla = "read_sla",
        ReadReports = "read_reports",
        ReadWorkOrders = "read_work_orders",
        /// Starting and completing visits.
        DoVisits = "do_visits",
        /// Repair records, and the photos and signatures of a ticket.
        Repair = "repair",
        ReadOutbox = "read_outbox",
        RetryOutbox = "retry_outbox",
        ManageUsers = "manage_users",
        ReadAudit = "read_audit",
        /// The spare parts' stock, reserve and forecast.
        ReadSpares = "read_spares",
        /// Stocktakes and receipts of spare parts.
        CountSpares = "count_spares",
    }
}

impl Perm {
    /// Whether a route with this permission is answered without a signed-in user.
    pub(crate) fn is_public(self) -> bool {
        matches!(self, Perm::Open | Perm::Helpdesk)
    }
}

/// Whether `role` holds `perm`.
pub(crate) fn allows(role: Role, perm: Perm) -> bool {
    use Perm::*;
    match perm {
        Open | Helpdesk | SignedIn | OpenTickets | Comment => true,
        ManageUsers | ReadAudit => role == Role::Admin,
        _ => match role {
            Role::Admin => true,
            Role::Manager => true,
            Role::Desk => matches!(
                perm,
                ReadTickets
                    | ActOnTickets
                    | Assign
                    | Contacts
                    | ReadDevices
                    | ReadContracts
                    | ReadSla
                    | ReadWorkOrders
                    | ReadSpares
            ),
            Role::Engineer => {
                matches!(
                    perm,
                    ReadTickets
                        | ActOnTickets
                        | ReadDevices
                        | ReadContracts
                        | ReadWorkOrders
                        | DoVisits
                        | Repair
                        | ReadSpares
                )
            }
            Role::Customer => {
                matches!(perm, ReadTickets | ReadDevices | ReadContracts | ReadSla | ReadReports | ReadWorkOrders)
            }
            Role::Integration => matches!(
                perm,
                Metrics
                    | ReadTickets
                    | ActOnTickets
                    | Assign
                    | Contacts
                    | ReadDevices
                    | ReadContracts
                    | ReadSla
                    | ReadReports
                    | ReadWorkOrders
                    | Repair
                    | ReadOutbox
                    | ReadSpares
                    | CountSpares
            ),
        },
    }
}

/// Whether `role` may move a ticket to `to`: the desk takes and dispatches, the engineer is
/// on site and resolves, managers, admins and scripts do anything the state machine allows.
pub(crate) fn may_move_to(role: Role, to: State) -> bool {
    match role {
        Role::Admin | Role::Manager | Role::Integration => true,
        Role::Desk => matches!(to, State::Acknowledged | State::Dispatched | State::AtFactory),
        Role::Engineer => matches!(to, State::Acknowledged | State::OnSite | State::AtFactory | State::Resolved),
        Role::Customer => false,
    }
}

/// The customers a user sees: all, or some. A `customer` user always has some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Customers(BTreeSet<String>),
}

impl Scope {
    /// The scope of a user with these customers (none: all).
    pub fn of(customers: impl IntoIterator<Item = String>) -> Scope {
        let set: BTreeSet<String> = customers.into_iter().collect();
        if set.is_empty() { Scope::All } else { Scope::Customers(set) }
    }

    pub fn sees(&self, customer: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Customers(c) => c.contains(customer),
        }
    }

    /// The customers, or `None` for all.
    pub fn customers(&self) -> Option<&BTreeSet<String>> {
        match self {
            Scope::All => None,
            Scope::Customers(c) => Some(c),
        }
    }

    /// [`Scope::customers`] as a list, for a store query's filter.
    pub fn list(&self) -> Option<Vec<String>> {
        self.customers().map(|c| c.iter().cloned().collect())
    }
}

/// Whether a user of `role` with these customers is well formed: a customer user must be
/// scoped to its customers.
pub(crate) fn check_user(role: Role, customers: &[String]) -> Result<(), String> {
    if role == Role::Customer && customers.is_empty() {
        return Err("a customer user needs the customers it may see (--customer ID)".into());
    }
    Ok(())
}

/// How the API lets people in (`[http]`).
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// `/metrics` answers without a token.
    pub metrics_public: bool,
    /// How long a login's session lasts.
    pub session_ttl: std::time::Duration,
    /// Requests come through a reverse proxy: the client's address is the last of
    /// `X-Forwarded-For`, `X-Forwarded-Proto: https` means TLS, and `X-Forwarded-Host` is the
    /// origin pages are served from.
    pub behind_proxy: bool,
    /// The host names the API answers to (`Host`, or `X-Forwarded-Host` behind a proxy); empty:
    /// any. A page of another name that a DNS record points at us gets nothing.
    pub hosts: Vec<String>,
    /// Changes a user may make a minute, after a fifth of a minute's worth at once.
    pub writes_per_minute: u32,
}

impl Default for AccessConfig {
    fn default() -> AccessConfig {
        AccessConfig {
            metrics_public: false,
            session_ttl: std::time::Duration::from_secs(12 * 3600),
            behind_proxy: false,
            hosts: Vec::new(),
            writes_per_minute: 300,
        }
    }
}

/// The signed-in user a request acts as.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub name: String,
    pub role: Role,
    pub scope: Scope,
    /// The token or session it came with (the audit log names it).
    pub token_id: i64,
}

impl Principal {
    pub(crate) fn may(&self, perm: Perm) -> bool {
        allows(self.role, perm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_changes_nothing_and_only_an_admin_manages_users() {
        for &p in Perm::ALL {
            let changes = matches!(p, Perm::ActOnTickets | Perm::DoVisits | Perm::RetryOutbox | Perm::ManageUsers);
            if changes {
                assert!(!allows(Role::Customer, p), "{p:?}");
            }
            assert!(allows(Role::Admin, p), "{p:?}");
        }
        for &r in Role::ALL {
            assert_eq!(allows(r, Perm::ManageUsers), r == Role::Admin);
            assert_eq!(allows(r, Perm::ReadAudit), r == Role::Admin);
        }
        assert!(crate::tickets::lifecycle::ALL.iter().all(|&s| !may_move_to(Role::Customer, s)));
    }

    #[test]
    fn the_desk_dispatches_and_the_engineer_resolves() {
        assert!(may_move_to(Role::Desk, State::Dispatched));
        assert!(!may_move_to(Role::Desk, State::Resolved));
        assert!(!may_move_to(Role::Desk, State::Cancelled));
        assert!(may_move_to(Role::Engineer, State::Resolved));
        assert!(!may_move_to(Role::Engineer, State::Cancelled));
        assert!(may_move_to(Role::Manager, State::Cancelled));
        assert!(!allows(Role::Desk, Perm::DoVisits));
        assert!(allows(Role::Engineer, Perm::DoVisits));
    }

    #[test]
    fn scope_sees_its_customers_only() {
        let s = Scope::of(["c1".to_string()]);
        assert!(s.sees("c1") && !s.sees("c2"));
        assert!(Scope::of(Vec::<String>::new()).sees("c2"));
        assert!(check_user(Role::Customer, &[]).is_err());
        assert!(check_user(Role::Customer, &["c1".into()]).is_ok());
        assert!(check_user(Role::Desk, &[]).is_ok());
    }
}
