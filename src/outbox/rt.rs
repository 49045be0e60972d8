//! The Request Tracker 5 connector (REST2, token auth). A ticket is created
//! in the configured queue with aftercare's reference in a custom field (or,
//! without one, in the subject tag); updates are comments; the RT status
//! follows aftercare's state. Before creating, the connector looks the ticket
//! up by its reference, so a create whose answer was lost is not repeated.
//! RT is polled for status changes people make there (see status.rs).

use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::status::{Opened, Polled, RemoteChange, StatusSource, adopted_subject};
use super::{
    BoxFuture, Connector, Delivered, Delivery, DeliveryError, StatusMap, Subject, bad_answer, describe, marker,
    remote_for, send_to,
};
use crate::store::{OutboxEvent, RemoteTicket};
use crate::tickets::Event;

#[derive(Debug, Clone)]
pub struct RtConfig {
    /// RT's web root, such as `https://rt.example.net/rt`; the API is under `/REST/2.0`.
    pub url: String,
    pub token: SecretString,
    pub queue: String,
    /// A ticket custom field that holds aftercare's reference; `None` searches the subject tag.
    pub reference_field: Option<String>,
    pub statuses: StatusMap,
    pub timeout: Duration,
    pub poll_every: Duration,
    /// Take in the tickets people open there themselves.
    pub intake: bool,
}

impl RtConfig {
    /// RT's default lifecycle: new, open, stalled, resolved, rejected, deleted.
    pub fn default_statuses() -> StatusMap {
        StatusMap {
            active: "open".into(),
            resolved: "resolved".into(),
            closed: "resolved".into(),
            cancelled: "rejected".into(),
        }
    }
}

pub(crate) struct RequestTracker {
    name: String,
    api: String,
    cfg: RtConfig,
    priorities: [String; 3],
    client: reqwest::Client,
}

/// How many tickets a search asks for, and how many pages one poll reads at most.
const PER_PAGE: usize = 100;
const MAX_PAGES: usize = 5;
/// A poll reaches back this much before its cursor, for clock skew between us and RT.
const SLACK_SECS: i64 = 120;

#[derive(Debug, Deserialize)]
struct Created {
    id: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    items: Vec<Item>,
    /// RT writes `0.0` here for an empty result: read it as a number of any kind.
    #[serde(default)]
    pages: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Item {
    #[serde(rename = "id")]
    id: serde_json::Value,
    status: Option<String>,
    subject: Option<String>,
    last_updated: Option<String>,
    last_updated_by: Option<UserRef>,
    created: Option<String>,
    #[serde(default)]
    requestor: Vec<UserRef>,
}

#[derive(Debug, Deserialize)]
struct UserRef {
    id: String,
}

/// RT sends ids as strings; accept numbers too.
fn id_of(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A TicketSQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl RequestTracker {
    pub(crate) fn new(name: &str, cfg: &RtConfig, priorities: [String; 3]) -> anyhow::Result<RequestTracker> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = super::http_client(cfg.timeout)?;
        let api = format!("{}/REST/2.0", cfg.url.trim_end_matches('/'));
        Ok(RequestTracker { name: name.to_string(), api, cfg: cfg.clone(), priorities, client })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}/{path}", self.api))
            .header("authorization", format!("token {}", self.cfg.token.expose_secret()))
    }

    async fn send(&self, what: &str, req: reqwest::RequestBuilder) -> Result<String, DeliveryError> {
        send_to("RT", what, req).await
    }

    /// Which RT tickets a search covers: one ticket's or work order's, by the reference field
    /// or the subject tag; or (`None`) all of aftercare's tickets, work orders aside.
    fn ours(&self, s: Option<&Subject>) -> String {
        match (&self.cfg.reference_field, s) {
            (Some(f), Some(s)) => format!("'CF.{{{f}}}' = {}", quote(&s.reference())),
            (Some(f), None) => format!("'CF.{{{f}}}' LIKE 'aftercare-ticket-'"),
            (None, Some(s)) => format!("Subject LIKE {}", quote(&s.tag())),
            (None, None) => "Subject LIKE '[aftercare #'".to_string(),
        }
    }

    async fn search(&self, query: &str, page: usize) -> Result<Page, DeliveryError> {
        let req = self.request(reqwest::Method::GET, "tickets").query(&[
            ("query", query),
            ("fields", "Status,Subject,LastUpdated,LastUpdatedBy"),
            ("orderby", "LastUpdated"),
            ("order", "ASC"),
            ("per_page", &PER_PAGE.to_string()),
            ("page", &page.to_string()),
        ]);
        let body = self.send("search", req).await?;
        serde_json::from_str(&body).map_err(|e| bad_answer("RT", "a search", e))
    }

    /// The RT ticket that carries this ticket's or work order's reference, if one was made already.
    async fn find(&self, s: &Subject) -> Result<Option<RemoteTicket>, DeliveryError> {
        let q = format!("Queue = {} AND {}", quote(&self.cfg.queue), self.ours(Some(s)));
        let page = self.search(&q, 1).await?;
        let tag = s.tag();
        let found = page
            .items
            .iter()
            // A LIKE on the subject also matches `[aftercare #12]` inside other text: check.
            .filter(|i| self.cfg.reference_field.is_some() || i.subject.as_deref().is_some_and(|s| s.contains(&tag)))
            .filter_map(|i| Some((id_of(&i.id)?.parse::<u64>().ok()?, i.status.clone())))
            .min_by_key(|(id, _)| *id);
        Ok(found.map(|(id, status)| RemoteTicket { id: id.to_string(), status }))
    }

    async fn create(&self, d: &Delivery) -> Result<RemoteTicket, DeliveryError> {
        let s = &d.subject;
        let p = s.priority(&self.priorities);
        let mut body = json!({
            "Queue": self.cfg.queue,
            "Subject": s.title(),
            "Content": describe(d, p),
            "ContentType": "text/plain",
            "Priority": p,
        });
        if let Some(f) = &self.cfg.reference_field {
            body["CustomFields"] = json!({ f: s.reference() });
        }
        let answer = self.send("create", self.request(reqwest::Method::POST, "ticket").json(&body)).await?;
        let c: Created = serde_json::from_str(&answer).map_err(|e| bad_answer("RT", "a create", e))?;
        let id = id_of(&c.id).ok_or_else(|| bad_answer("RT", "a create", "no id"))?;
        Ok(RemoteTicket { id, status: Some("new".into()) })
    }

    /// Whether the ticket already carries an event's text: the last attempt's comment took,
    /// though its answer was lost. Its newest texts are enough, for a retry follows soon.
    async fn told(&self, id: &str, d: &Delivery) -> Result<bool, DeliveryError> {
        let path = format!("ticket/{id}/attachments?fields=Content&orderby=id&order=DESC&per_page=20");
        let body = self.send("read", self.request(reqwest::Method::GET, &path)).await?;
        #[derive(Deserialize)]
        struct Texts {
            #[serde(default)]
            items: Vec<Text>,
        }
        #[derive(Deserialize)]
        struct Text {
            #[serde(rename = "Content", default)]
            content: Option<String>,
        }
        let t: Texts = serde_json::from_str(&body).map_err(|e| bad_answer("RT", "a read", e))?;
        let mark = marker(&d.row);
        Ok(t.items.iter().any(|i| i.content.as_deref().is_some_and(|c| c.contains(&mark))))
    }

    async fn status_of(&self, id: &str) -> Result<String, DeliveryError> {
        let body = self.send("read", self.request(reqwest::Method::GET, &format!("ticket/{id}"))).await?;
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| bad_answer("RT", "a read", e))?;
        Ok(v["Status"].as_str().unwrap_or_default().to_string())
    }
}

impl Connector for RequestTracker {
    fn name(&self) -> &str {
        &self.name
    }

    /// An event takes a few requests (look up, create or comment, set the status, read it
    /// back), each within the timeout.
    fn budget(&self) -> Duration {
        self.cfg.timeout.saturating_mul(super::REQUESTS_PER_EVENT)
    }

    fn status_source(&self) -> Option<&dyn StatusSource> {
        Some(self)
    }

    fn deliver<'a>(&'a self, d: &'a Delivery, _now: DateTime<Utc>) -> BoxFuture<'a, Result<Delivered, DeliveryError>> {
        Box::pin(async move {
            let s = &d.subject;
            let (mut remote, comment) = remote_for(d, || self.find(s), || self.create(d)).await?;
            if comment && (d.row.attempts == 0 || !self.told(&remote.id, d).await?) {
                let body = json!({
                    "Subject": format!("{} {}", s.tag(), d.row.event.as_str().replace('_', " ")),
                    "Content": describe(d, s.priority(&self.priorities)),
                    "ContentType": "text/plain",
                });
                let path = format!("ticket/{}/comment", remote.id);
                self.send("comment", self.request(reqwest::Method::POST, &path).json(&body)).await?;
            }
            let want = self.cfg.statuses.status_for(s.meaning());
            let map = &self.cfg.statuses;
            let same = remote.status.as_deref().is_some_and(|s| map.meaning(s, false) == map.meaning(want, false));
            let mut update = serde_json::Map::new();
            if !same {
                update.insert("Status".into(), want.into());
            }
            if d.row.event == OutboxEvent::Ticket(Event::Promoted) {
                update.insert("Priority".into(), s.priority(&self.priorities).into());
            }
            if !update.is_empty() {
                let path = format!("ticket/{}", remote.id);
                let msgs = self.send("update", self.request(reqwest::Method::PUT, &path).json(&update)).await?;
                if !same {
                    // RT answers 200 even when it refuses a status; read it back.
                    let now = self.status_of(&remote.id).await?;
                    if !now.eq_ignore_ascii_case(want) {
                        return Err(DeliveryError::Permanent(format!(
                            "RT kept ticket {} at `{now}` instead of `{want}`: {}",
                            remote.id,
                            msgs.chars().take(300).collect::<String>()
                        )));
                    }
                    remote.status = Some(now);
                }
            }
            Ok(Delivered { remote: Some(remote) })
        })
    }
}

impl StatusSource for RequestTracker {
    fn every(&self) -> Duration {
        self.cfg.poll_every
    }

    fn takes_in(&self) -> bool {
        self.cfg.intake
    }

    fn changed<'a>(
        &'a self,
        cursor: Option<&'a str>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Polled, DeliveryError>> {
        Box::pin(async move {
            let mut q = format!("Queue = {} AND {}", quote(&self.cfg.queue), self.ours(None));
            if let Some(c) = cursor.and_then(|c| DateTime::parse_from_rfc3339(c).ok()) {
                // RT reads absolute dates in the API user's time zone, which we do
                // not know; a relative date means the same instant in any zone.
                let back = (now - c.with_timezone(&Utc)).num_seconds().max(0) + SLACK_SECS;
                q.push_str(&format!(" AND LastUpdated > '{back} seconds ago'"));
            }
            let mut out = Polled::default();
            let mut newest: Option<DateTime<Utc>> = None;
            for page in 1..=MAX_PAGES {
                let p = self.search(&q, page).await?;
                let n = p.items.len();
                for i in p.items {
                    let Some(id) = id_of(&i.id) else { continue };
                    if let Some(at) = i.last_updated.as_deref().and_then(|s| DateTime::parse_from_rfc3339(s).ok()) {
                        newest = newest.max(Some(at.with_timezone(&Utc)));
                    }
                    let Some(status) = i.status else { continue };
                    out.changes.push(RemoteChange {
                        remote_id: id,
                        meaning: self.cfg.statuses.meaning(&status, false),
                        status,
                        by: i.last_updated_by.map(|u| u.id),
                    });
                }
                if n < PER_PAGE || p.pages.is_some_and(|pages| page as f64 >= pages) {
                    break;
                }
            }
            out.cursor = newest.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            Ok(out)
        })
    }

    fn opened<'a>(&'a self, since: &'a str, now: DateTime<Utc>) -> BoxFuture<'a, Result<Vec<Opened>, DeliveryError>> {
        Box::pin(async move {
            let since = DateTime::parse_from_rfc3339(since).map_or(now, |t| t.with_timezone(&Utc));
            let back = (now - since).num_seconds().max(0) + SLACK_SECS;
            let q = format!(
                "Queue = {} AND Created > '{back} seconds ago' AND Subject NOT LIKE '[aftercare '",
                quote(&self.cfg.queue)
            );
            let mut out = Vec::new();
            for page in 1..=MAX_PAGES {
                let req = self.request(reqwest::Method::GET, "tickets").query(&[
                    ("query", q.as_str()),
                    ("fields", "Status,Subject,Created,Requestor"),
                    ("orderby", "Created"),
                    ("order", "ASC"),
                    ("per_page", &PER_PAGE.to_string()),
                    ("page", &page.to_string()),
                ]);
                let body = self.send("search", req).await?;
                let p: Page = serde_json::from_str(&body).map_err(|e| bad_answer("RT", "a search", e))?;
                let n = p.items.len();
                for i in p.items {
                    let Some(id) = id_of(&i.id) else { continue };
                    let created = i
                        .created
                        .as_deref()
                        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                        .map_or(now, |t| t.with_timezone(&Utc));
                    out.push(Opened {
                        text: None,
                        remote_id: id,
                        subject: i.subject.unwrap_or_default(),
                        requestor: i.requestor.first().map(|u| u.id.clone()).unwrap_or_default(),
                        status: i.status.unwrap_or_default(),
                        created: created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    });
                }
                if n < PER_PAGE || p.pages.is_some_and(|pages| page as f64 >= pages) {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn text<'a>(&'a self, remote_id: &'a str) -> BoxFuture<'a, Result<String, DeliveryError>> {
        Box::pin(self.first_text(remote_id))
    }

    fn adopt<'a>(&'a self, remote_id: &'a str, ticket: i64) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let path = format!("ticket/{remote_id}");
            let body = self.send("read", self.request(reqwest::Method::GET, &path)).await?;
            let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| bad_answer("RT", "a read", e))?;
            let subject = v["Subject"].as_str().unwrap_or_default();
            let mut update = json!({ "Subject": adopted_subject(ticket, subject) });
            if let Some(f) = &self.cfg.reference_field {
                update["CustomFields"] = json!({ f: format!("aftercare-ticket-{ticket}") });
            }
            self.send("update", self.request(reqwest::Method::PUT, &path).json(&update)).await?;
            Ok(())
        })
    }
}

impl RequestTracker {
    /// What the person wrote when opening a ticket: its first attachment's text.
    async fn first_text(&self, id: &str) -> Result<String, DeliveryError> {
        let path = format!("ticket/{id}/attachments?fields=Content,ContentType&orderby=id&order=ASC&per_page=5");
        let body = self.send("read", self.request(reqwest::Method::GET, &path)).await?;
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| bad_answer("RT", "a read", e))?;
        let text = v["items"].as_array().into_iter().flatten().find_map(|i| {
            let plain = i["ContentType"].as_str().is_none_or(|t| t.starts_with("text/plain"));
            i["Content"].as_str().filter(|c| plain && !c.trim().is_empty()).map(decode_content)
        });
        Ok(text.unwrap_or_default())
    }
}

/// RT's REST2 gives an attachment's content as base64; older answers gave it as text.
fn decode_content(c: &str) -> String {
    use base64::Engine as _;
    match base64::engine::general_purpose::STANDARD.decode(c.trim()) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => c.to_string(),
    }
}
