//! The Redmine connector (REST, API key). An issue is created in the
//! configured project with the subject tag `[aftercare #ID]`, which is also
//! how the connector finds it again when a create's answer was lost; updates
//! are notes, and the issue's status follows aftercare's state, in the same
//! request. Priority, status and tracker names are looked up once, by name.
//! Redmine is polled for status changes people make there (see status.rs).

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OnceCell;

use super::status::{Opened, Polled, RemoteChange, StatusSource, adopted_subject};
use super::{
    BoxFuture, Connector, Delivered, Delivery, DeliveryError, StatusMap, Subject, bad_answer, describe, marker,
    remote_for, send_to,
};
use crate::store::{OutboxEvent, RemoteTicket};
use crate::tickets::Event;

#[derive(Debug, Clone)]
pub struct RedmineConfig {
    pub url: String,
    pub api_key: SecretString,
    /// The project's identifier (or numeric id).
    pub project: String,
    /// The tracker of new issues, by name; `None` takes the project's default.
    pub tracker: Option<String>,
    pub statuses: StatusMap,
    pub timeout: Duration,
    pub poll_every: Duration,
    /// Take in the tickets people open there themselves.
    pub intake: bool,
}

impl RedmineConfig {
    /// Redmine's default statuses.
    pub fn default_statuses() -> StatusMap {
        StatusMap {
            active: "In Progress".into(),
            resolved: "Resolved".into(),
            closed: "Closed".into(),
            cancelled: "Rejected".into(),
        }
    }
}

pub(crate) struct Redmine {
    name: String,
    base: String,
    cfg: RedmineConfig,
    priorities: [String; 3],
    client: reqwest::Client,
    names: OnceCell<Names>,
}

const PER_PAGE: usize = 100;
const MAX_PAGES: usize = 5;

/// Ids of the names the config uses, read from Redmine once.
#[derive(Debug)]
struct Names {
    statuses: Vec<Named>,
    priorities: Vec<Named>,
    tracker: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
struct Named {
    id: i64,
    name: String,
    #[serde(default)]
    is_closed: bool,
}

#[derive(Debug, Deserialize)]
struct Issue {
    id: i64,
    subject: String,
    status: Named,
    updated_on: Option<String>,
    #[serde(default)]
    journals: Vec<Journal>,
    #[serde(default)]
    description: Option<String>,
    created_on: Option<String>,
    author: Option<Named>,
}

#[derive(Debug, Deserialize)]
struct Journal {
    user: Option<Named>,
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    details: Vec<Detail>,
}

#[derive(Debug, Deserialize)]
struct Detail {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Issues {
    issues: Vec<Issue>,
    total_count: Option<usize>,
}

fn find_name<'a>(list: &'a [Named], name: &str) -> Option<&'a Named> {
    list.iter().find(|n| n.name.eq_ignore_ascii_case(name))
}

impl Redmine {
    pub(crate) fn new(name: &str, cfg: &RedmineConfig, priorities: [String; 3]) -> anyhow::Result<Redmine> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = super::http_client(cfg.timeout)?;
        Ok(Redmine {
            name: name.to_string(),
            base: cfg.url.trim_end_matches('/').to_string(),
            cfg: cfg.clone(),
            priorities,
            client,
            names: OnceCell::new(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}/{path}", self.base))
            .header("x-redmine-api-key", self.cfg.api_key.expose_secret())
    }

    async fn send(&self, what: &str, req: reqwest::RequestBuilder) -> Result<String, DeliveryError> {
        send_to("Redmine", what, req).await
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, what: &str, path: &str) -> Result<T, DeliveryError> {
        let body = self.send(what, self.request(reqwest::Method::GET, path)).await?;
        serde_json::from_str(&body).map_err(|e| bad_answer("Redmine", what, e))
    }

    /// The ids behind the configured names; a name Redmine does not know is a permanent error.
    async fn names(&self) -> Result<&Names, DeliveryError> {
        self.names
            .get_or_try_init(|| async {
                #[derive(Deserialize)]
                struct S {
                    issue_statuses: Vec<Named>,
                }
                #[derive(Deserialize)]
                struct P {
                    issue_priorities: Vec<Named>,
                }
                #[derive(Deserialize)]
                struct T {
                    trackers: Vec<Named>,
                }
                let s: S = self.get("the statuses", "issue_statuses.json").await?;
                let p: P = self.get("the priorities", "enumerations/issue_priorities.json").await?;
                let tracker = match &self.cfg.tracker {
                    None => None,
                    Some(name) => {
                        let t: T = self.get("the trackers", "trackers.json").await?;
                        let known = t.trackers.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ");
                        Some(
                            find_name(&t.trackers, name)
                                .ok_or_else(|| {
                                    DeliveryError::Permanent(format!(
                                        "Redmine has no tracker `{name}`; it has: {known}"
                                    ))
                                })?
                                .id,
                        )
                    }
                };
                let names = Names { statuses: s.issue_statuses, priorities: p.issue_priorities, tracker };
                let m = &self.cfg.statuses;
                for want in [&m.active, &m.resolved, &m.closed, &m.cancelled] {
                    if find_name(&names.statuses, want).is_none() {
                        let known = names.statuses.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
                        return Err(DeliveryError::Permanent(format!(
                            "Redmine has no status `{want}`; it has: {known}"
                        )));
                    }
                }
                for want in &self.priorities {
                    if find_name(&names.priorities, want).is_none() {
                        let known = names.priorities.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
                        return Err(DeliveryError::Permanent(format!(
                            "Redmine has no priority `{want}`; it has: {known}"
                        )));
                    }
                }
                Ok(names)
            })
            .await
    }

    fn priority_id(&self, names: &Names, s: &Subject) -> Option<i64> {
        find_name(&names.priorities, s.priority(&self.priorities)).map(|p| p.id)
    }

    /// Whether the issue already carries an event's note: the last attempt's update took,
    /// though its answer was lost.
    async fn told(&self, id: &str, d: &Delivery) -> Result<bool, DeliveryError> {
        #[derive(Deserialize)]
        struct One {
            issue: Issue,
        }
        let one: One = self.get("a read", &format!("issues/{id}.json?include=journals")).await?;
        let mark = marker(&d.row);
        Ok(one.issue.journals.iter().any(|j| j.notes.as_deref().is_some_and(|n| n.contains(&mark))))
    }

    /// The issue that carries this ticket's or work order's subject tag, if one was made already.
    async fn find(&self, s: &Subject) -> Result<Option<RemoteTicket>, DeliveryError> {
        let tag = s.tag();
        let req = self.request(reqwest::Method::GET, "issues.json").query(&[
            ("project_id", self.cfg.project.as_str()),
            ("status_id", "*"),
            ("subject", &format!("~{tag}")),
            ("sort", "id"),
            ("limit", "25"),
        ]);
        let body = self.send("a search", req).await?;
        let found: Issues = serde_json::from_str(&body).map_err(|e| bad_answer("Redmine", "a search", e))?;
        // "contains" matches words in any order: check the tag itself.
        let hit = found.issues.into_iter().filter(|i| i.subject.contains(&tag)).min_by_key(|i| i.id);
        Ok(hit.map(|i| RemoteTicket { id: i.id.to_string(), status: Some(i.status.name) }))
    }

    async fn create(&self, d: &Delivery, names: &Names) -> Result<RemoteTicket, DeliveryError> {
        let s = &d.subject;
        let mut issue = json!({
            "project_id": self.cfg.project,
            "subject": s.title(),
            "description": describe(d, s.priority(&self.priorities)),
        });
        if let Some(p) = self.priority_id(names, s) {
            issue["priority_id"] = p.into();
        }
        if let Some(tr) = names.tracker {
            issue["tracker_id"] = tr.into();
        }
        let req = self.request(reqwest::Method::POST, "issues.json").json(&json!({ "issue": issue }));
        let body = self.send("create", req).await?;
        #[derive(Deserialize)]
        struct Created {
            issue: Issue,
        }
        let c: Created = serde_json::from_str(&body).map_err(|e| bad_answer("Redmine", "a create", e))?;
        Ok(RemoteTicket { id: c.issue.id.to_string(), status: Some(c.issue.status.name) })
    }
}

impl Connector for Redmine {
    fn name(&self) -> &str {
        &self.name
    }

    /// An event takes a few requests (names, look up, create or update, read back), each
    /// within the timeout.
    fn budget(&self) -> Duration {
        self.cfg.timeout.saturating_mul(super::REQUESTS_PER_EVENT)
    }

    fn status_source(&self) -> Option<&dyn StatusSource> {
        Some(self)
    }

    fn deliver<'a>(&'a self, d: &'a Delivery, _now: DateTime<Utc>) -> BoxFuture<'a, Result<Delivered, DeliveryError>> {
        Box::pin(async move {
            let s = &d.subject;
            let names = self.names().await?;
            let (mut remote, note) = remote_for(d, || self.find(s), || self.create(d, names)).await?;
            let map = &self.cfg.statuses;
            let want = map.status_for(s.meaning());
            let closed = |s: &str| find_name(&names.statuses, s).is_some_and(|n| n.is_closed);
            let same =
                remote.status.as_deref().is_some_and(|s| map.meaning(s, closed(s)) == map.meaning(want, closed(want)));
            let mut issue = serde_json::Map::new();
            if note && (d.row.attempts == 0 || !self.told(&remote.id, d).await?) {
                issue.insert("notes".into(), describe(d, s.priority(&self.priorities)).into());
                if d.row.internal {
                    issue.insert("private_notes".into(), true.into());
                }
            }
            if !same {
                let id = find_name(&names.statuses, want).map(|s| s.id);
                issue.insert("status_id".into(), id.into());
            }
            if d.row.event == OutboxEvent::Ticket(Event::Promoted) {
                issue.insert("priority_id".into(), self.priority_id(names, s).into());
            }
            if !issue.is_empty() {
                let path = format!("issues/{}.json", remote.id);
                let req = self.request(reqwest::Method::PUT, &path).json(&json!({ "issue": issue }));
                self.send("update", req).await?;
                if !same {
                    // Redmine drops a status change its workflow does not allow, and says nothing.
                    #[derive(Deserialize)]
                    struct One {
                        issue: Issue,
                    }
                    let now: One = self.get("a read", &path).await?;
                    if !now.issue.status.name.eq_ignore_ascii_case(want) {
                        return Err(DeliveryError::Permanent(format!(
                            "Redmine kept issue {} at `{}` instead of `{want}`: its workflow does not let the API \
                             user make that change",
                            remote.id, now.issue.status.name
                        )));
                    }
                    remote.status = Some(now.issue.status.name);
                }
            }
            Ok(Delivered { remote: Some(remote) })
        })
    }
}

impl StatusSource for Redmine {
    fn every(&self) -> Duration {
        self.cfg.poll_every
    }

    fn takes_in(&self) -> bool {
        self.cfg.intake
    }

    fn changed<'a>(
        &'a self,
        cursor: Option<&'a str>,
        _now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Polled, DeliveryError>> {
        Box::pin(async move {
            let mut out = Polled::default();
            let mut newest: Option<String> = None;
            for page in 0..MAX_PAGES {
                let mut q: Vec<(&str, String)> = vec![
                    ("project_id", self.cfg.project.clone()),
                    ("status_id", "*".into()),
                    ("sort", "updated_on".into()),
                    ("limit", PER_PAGE.to_string()),
                    ("offset", (page * PER_PAGE).to_string()),
                ];
                if let Some(c) = cursor {
                    q.push(("updated_on", format!(">={c}")));
                }
                let body = self.send("a poll", self.request(reqwest::Method::GET, "issues.json").query(&q)).await?;
                let list: Issues = serde_json::from_str(&body).map_err(|e| bad_answer("Redmine", "a poll", e))?;
                let n = list.issues.len();
                for i in list.issues {
                    if !i.subject.contains("[aftercare #") {
                        continue;
                    }
                    if let Some(u) = i.updated_on {
                        newest = newest.max(Some(u));
                    }
                    out.changes.push(RemoteChange {
                        remote_id: i.id.to_string(),
                        meaning: self.cfg.statuses.meaning(&i.status.name, i.status.is_closed),
                        status: i.status.name,
                        by: None,
                    });
                }
                if n < PER_PAGE || list.total_count.is_some_and(|t| (page + 1) * PER_PAGE >= t) {
                    break;
                }
            }
            out.cursor = newest;
            Ok(out)
        })
    }

    fn who<'a>(&'a self, remote_id: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            #[derive(Deserialize)]
            struct One {
                issue: Issue,
            }
            let one: One = self.get("a read", &format!("issues/{remote_id}.json?include=journals")).await.ok()?;
            let j = one.issue.journals.iter().rev().find(|j| j.details.iter().any(|d| d.name == "status_id"))?;
            j.user.as_ref().map(|u| u.name.clone())
        })
    }

    fn opened<'a>(&'a self, since: &'a str, _now: DateTime<Utc>) -> BoxFuture<'a, Result<Vec<Opened>, DeliveryError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for page in 0..MAX_PAGES {
                let q: Vec<(&str, String)> = vec![
                    ("project_id", self.cfg.project.clone()),
                    ("status_id", "*".into()),
                    ("created_on", format!(">={since}")),
                    ("sort", "created_on".into()),
                    ("limit", PER_PAGE.to_string()),
                    ("offset", (page * PER_PAGE).to_string()),
                ];
                let body = self.send("a poll", self.request(reqwest::Method::GET, "issues.json").query(&q)).await?;
                let list: Issues = serde_json::from_str(&body).map_err(|e| bad_answer("Redmine", "a poll", e))?;
                let n = list.issues.len();
                for i in list.issues {
                    out.push(Opened {
                        remote_id: i.id.to_string(),
                        subject: i.subject,
                        text: Some(i.description.unwrap_or_default()),
                        requestor: i.author.map(|a| a.name).unwrap_or_default(),
                        status: i.status.name,
                        created: i.created_on.unwrap_or_else(|| since.to_string()),
                    });
                }
                if n < PER_PAGE || list.total_count.is_some_and(|t| (page + 1) * PER_PAGE >= t) {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn adopt<'a>(&'a self, remote_id: &'a str, ticket: i64) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            #[derive(Deserialize)]
            struct One {
                issue: Issue,
            }
            let path = format!("issues/{remote_id}.json");
            let one: One = self.get("a read", &path).await?;
            let issue = json!({ "issue": { "subject": adopted_subject(ticket, &one.issue.subject) } });
            self.send("update", self.request(reqwest::Method::PUT, &path).json(&issue)).await?;
            Ok(())
        })
    }
}
