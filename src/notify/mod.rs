//! Notifications that reach people: what a contract clock's firing calls for is written as
//! rows in the firing's own transaction (`route` decides which), and the notifier here sends
//! the due rows through their channels (SMTP, a signed webhook, WeCom and DingTalk group
//! robots), each exchange within its channel's timeout, and records the outcome: delivered,
//! due again after a backoff, or dead after `outbox.dead_after`, as the helpdesk outbox does.

pub mod route;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::outbox::{DeliveryError, OutboxConfig, http_client, http_outcome, retry_at, unreachable};
use crate::store::{Notification, Store};
use route::{ChannelKind, Routing, dingtalk_url, robot_text};

/// A channel ready to send.
enum Sender {
    Email { from: Mailbox, transport: Box<AsyncSmtpTransport<Tokio1Executor>> },
    Http { client: reqwest::Client },
}

/// Sends the due notifications.
pub(crate) struct Notifier {
    store: Store,
    routing: Arc<Routing>,
    senders: HashMap<String, Sender>,
    clock: Arc<dyn Clock>,
    cfg: OutboxConfig,
}

/// Rows read a pass.
const PAGE: u32 = 32;

impl Notifier {
    pub(crate) fn new(
        store: Store,
        routing: Arc<Routing>,
        clock: Arc<dyn Clock>,
        cfg: OutboxConfig,
    ) -> anyhow::Result<Notifier> {
        let mut senders = HashMap::new();
        for c in &routing.channels {
            let s = match &c.kind {
                ChannelKind::Email(e) => {
                    Sender::Email { from: e.from.parse()?, transport: Box::new(crate::outbox::email::transport(e)?) }
                }
                _ => Sender::Http { client: http_client(c.timeout)? },
            };
            senders.insert(c.name.clone(), s);
        }
        Ok(Notifier { store, routing, senders, clock, cfg })
    }

    /// Sends what is due until shutdown: every second, and at once after a full page. Reports
    /// owed by mail go in a loop of their own, so that setting their PDFs never holds up a
    /// notification.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let me = Arc::new(self);
        let reports = {
            let (me, shutdown) = (Arc::clone(&me), shutdown.clone());
            tokio::spawn(async move {
                Notifier::repeat(&shutdown, "the reports owed by mail", || me.report_pass()).await;
            })
        };
        Notifier::repeat(&shutdown, "the notifications due", || me.notification_pass()).await;
        let _ = reports.await;
    }

    /// Runs `pass` until shutdown: every second, and at once after a full page.
    async fn repeat<F, Fut>(shutdown: &CancellationToken, what: &str, pass: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<usize, crate::store::StoreError>>,
    {
        loop {
            let full = match pass().await {
                Ok(n) => n == PAGE as usize,
                Err(e) => {
                    error!(error = %e, "reading {what} failed; retrying");
                    false
                }
            };
            if !full {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => return,
                }
            } else if shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// Kept reports owed to their customers: each mailed with its PDF attached.
    async fn report_pass(&self) -> Result<usize, crate::store::StoreError> {
        let due = self.store.due_report_mail(self.clock.now(), PAGE).await?;
        // A report mailed to several addresses is set once a pass.
        let mut set: HashMap<i64, Result<Vec<u8>, DeliveryError>> = HashMap::new();
        for m in &due {
            let outcome = self.mail_report(m, &mut set).await;
            let now = self.clock.now();
            match outcome {
                Ok(()) => {
                    info!(report = m.report.id, to = %m.address, lang = %m.report.lang, "report mailed");
                    self.store.report_mail_attempt(m.id, now, Ok(())).await?;
                }
                Err(e) => {
                    let message = match &e {
                        DeliveryError::Permanent(m)
                        | DeliveryError::Gone(m)
                        | DeliveryError::Retryable { message: m, .. } => m.clone(),
                    };
                    let next = retry_at(m.attempts, m.created_at, &e, now, &self.cfg);
                    warn!(report = m.report.id, to = %m.address, error = %message, dead = next.is_none(),
                        "mailing a report failed");
                    self.store.report_mail_attempt(m.id, now, Err((&message, next))).await?;
                }
            }
        }
        Ok(due.len())
    }

    /// Mails one kept report: its PDF (set from the markup it was made with), or its HTML for a
    /// report kept before PDFs were, attached to a short note; the SMTP exchange within the
    /// channel's timeout.
    async fn mail_report(
        &self,
        m: &crate::store::ReportMailDue,
        set: &mut HashMap<i64, Result<Vec<u8>, DeliveryError>>,
    ) -> Result<(), DeliveryError> {
        use lettre::message::{Attachment, MultiPart, SinglePart};
        let Some(c) = self.routing.channels.iter().find(|c| c.name == m.channel) else {
            return Err(DeliveryError::Permanent(format!("no channel `{}` is configured any more", m.channel)));
        };
        let Some(Sender::Email { from, transport }) = self.senders.get(&c.name) else {
            return Err(DeliveryError::Permanent(format!("channel `{}` does not send mail", c.name)));
        };
        let r = &m.report;
        let (bytes, content_type, ext) = if r.typst.is_empty() {
            (r.html.clone().into_bytes(), "text/html; charset=utf-8", "html")
        } else {
            if let std::collections::hash_map::Entry::Vacant(slot) = set.entry(r.id) {
                let made = match crate::report::render::fonts() {
                    // Fonts may yet be installed: try again later.
                    Err(message) => Err(DeliveryError::Retryable { after: None, message }),
                    Ok(fonts) => crate::report::render::typeset(r.typst.clone(), &fonts).await.map_err(|message| {
                        // The typesetter refusing the document refuses it every time.
                        if message.starts_with("the typesetter failed: aftercare-pdf:") {
                            DeliveryError::Permanent(message)
                        } else {
                            DeliveryError::Retryable { after: None, message }
                        }
                    }),
                };
                slot.insert(made);
            }
            match set.get(&r.id) {
                Some(Ok(pdf)) => (pdf.clone(), "application/pdf", "pdf"),
                Some(Err(e)) => return Err(e.clone()),
                None => return Err(DeliveryError::Retryable { after: None, message: "no PDF".into() }),
            }
        };
        let zh = r.lang.starts_with("zh");
        // The period as the customer reads it, as the report itself says.
        let said: serde_json::Value = serde_json::from_str(&r.json).unwrap_or_default();
        let day =
            |k: &str, t: DateTime<Utc>| said[k].as_str().map_or_else(|| t.date_naive().to_string(), str::to_string);
        let (first, last) = (day("first_day", r.from), day("last_day", r.to - chrono::TimeDelta::milliseconds(1)));
        let place = r.site.as_deref().map(|s| format!(" · {s}")).unwrap_or_default();
        let subject = if zh {
            format!("售后服务报告 {}{place} {first} – {last}", r.customer)
        } else {
            format!("After-sales service report {}{place} {first} – {last}", r.customer)
        };
        let body = if zh {
            format!("您好：\n\n附件为 {first} 至 {last} 的售后服务报告（第 {} 号），请查收并签字确认。\n", r.id)
        } else {
            format!(
                "Hello,\n\nattached is the after-sales service report {} for {first} to {last}, to read and sign.\n",
                r.id
            )
        };
        let to: Mailbox = m
            .address
            .parse()
            .map_err(|e| DeliveryError::Permanent(format!("`{}` is not a mail address: {e}", m.address)))?;
        let kind = ContentType::parse(content_type).map_err(|e| DeliveryError::Permanent(format!("{e}")))?;
        let domain = from.email.domain().to_string();
        let file = format!("report-{}-{first}-{}.{ext}", r.customer, r.lang);
        let mail = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<report-{}-{}@{domain}>", r.id, m.id)))
            .multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(body))
                    .singlepart(Attachment::new(file).body(bytes, kind)),
            )
            .map_err(|e| DeliveryError::Permanent(format!("building the mail: {e}")))?;
        match tokio::time::timeout(c.timeout, transport.send(mail)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_permanent() => Err(DeliveryError::Permanent(format!("SMTP: {e}"))),
            Ok(Err(e)) => Err(DeliveryError::Retryable { after: None, message: format!("SMTP: {e}") }),
            Err(_) => {
                Err(DeliveryError::Retryable { after: None, message: format!("SMTP took longer than {:?}", c.timeout) })
            }
        }
    }

    /// The notifications due.
    async fn notification_pass(&self) -> Result<usize, crate::store::StoreError> {
        let due = self.store.due_notifications(self.clock.now(), PAGE).await?;
        for n in &due {
            let outcome = self.send(n).await;
            let now = self.clock.now();
            let recorded = match &outcome {
                Ok(()) => {
                    info!(notification = n.id, ticket = n.ticket_id, channel = %n.channel, to = %n.recipient, "notified");
                    Ok(())
                }
                Err(e) => {
                    let (message, next) = self.after_failure(n, e, now);
                    warn!(notification = n.id, channel = %n.channel, to = %n.recipient, error = %message,
                        dead = next.is_none(), "a notification failed");
                    Err((message, next))
                }
            };
            let r = match recorded {
                Ok(()) => self.store.notification_attempt(n.id, now, Ok(())).await,
                Err((m, next)) => self.store.notification_attempt(n.id, now, Err((&m, next))).await,
            };
            r?;
        }
        Ok(due.len())
    }

    fn after_failure(
        &self,
        n: &Notification,
        e: &DeliveryError,
        now: DateTime<Utc>,
    ) -> (String, Option<DateTime<Utc>>) {
        let message = match e {
            DeliveryError::Permanent(m) | DeliveryError::Gone(m) | DeliveryError::Retryable { message: m, .. } => {
                m.clone()
            }
        };
        // A notification a person sent again has its time to die from then.
        let since = n.retried_at.unwrap_or(n.created_at);
        (message, retry_at(n.attempts, since, e, now, &self.cfg))
    }

    /// One delivery, the whole exchange within the channel's timeout.
    async fn send(&self, n: &Notification) -> Result<(), DeliveryError> {
        let Some(c) = self.routing.channels.iter().find(|c| c.name == n.channel) else {
            return Err(DeliveryError::Permanent(format!("no channel `{}` is configured any more", n.channel)));
        };
        let Some(sender) = self.senders.get(&c.name) else {
            return Err(DeliveryError::Permanent(format!("channel `{}` has no sender", c.name)));
        };
        let exchange = self.exchange(&c.kind, sender, n);
        match tokio::time::timeout(c.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(DeliveryError::Retryable {
                after: None,
                message: format!("{} took longer than {:?}", c.kind.name(), c.timeout),
            }),
        }
    }

    async fn exchange(&self, kind: &ChannelKind, sender: &Sender, n: &Notification) -> Result<(), DeliveryError> {
        match (kind, sender) {
            (ChannelKind::Email(_), Sender::Email { from, transport }) => {
                let to: Mailbox = n
                    .address
                    .parse()
                    .map_err(|e| DeliveryError::Permanent(format!("`{}` is not a mail address: {e}", n.address)))?;
                let domain = from.email.domain().to_string();
                let mail = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(n.subject.clone())
                    .message_id(Some(format!("<notify-{}@{domain}>", n.key)))
                    .header(ContentType::TEXT_PLAIN)
                    .body(n.body.clone())
                    .map_err(|e| DeliveryError::Permanent(format!("building the mail: {e}")))?;
                match transport.send(mail).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(format!("SMTP: {e}"))),
                    Err(e) => Err(DeliveryError::Retryable { after: None, message: format!("SMTP: {e}") }),
                }
            }
            (ChannelKind::Webhook { url, secret }, Sender::Http { client }) => {
                let body = json!({
                    "type": "notification",
                    "id": n.key,
                    "ticket": n.ticket_id,
                    "to": {"name": n.recipient, "address": n.address},
                    "subject": n.subject,
                    "text": n.body,
                    "created_at": n.created_at,
                })
                .to_string();
                let ts = self.clock.now().timestamp();
                let mut req = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("webhook-id", &n.key)
                    .header("webhook-timestamp", ts.to_string());
                if let Some(key) = secret {
                    req =
                        req.header("webhook-signature", crate::outbox::webhook::sign(key, &n.key, ts, body.as_bytes()));
                }
                let resp = req.body(body).send().await.map_err(|e| unreachable("the notification webhook", e))?;
                http_outcome(resp).await.map(|_| ())
            }
            (ChannelKind::WeCom { url }, Sender::Http { client }) => {
                let body = json!({
                    "msgtype": "text",
                    "text": {"content": robot_text(&n.subject, &n.body, &n.mentions), "mentioned_mobile_list": n.mentions},
                });
                let resp = client.post(url).json(&body).send().await.map_err(|e| unreachable("the WeCom robot", e))?;
                robot_answer("WeCom", &http_outcome(resp).await?, &[45009])
            }
            (ChannelKind::DingTalk { url, secret }, Sender::Http { client }) => {
                use secrecy::ExposeSecret as _;
                let url = match secret {
                    Some(s) => dingtalk_url(url, s.expose_secret(), self.clock.now().timestamp_millis()),
                    None => url.clone(),
                };
                let body = json!({
                    "msgtype": "text",
                    "text": {"content": robot_text(&n.subject, &n.body, &n.mentions)},
                    "at": {"atMobiles": n.mentions, "isAtAll": false},
                });
                let resp =
                    client.post(&url).json(&body).send().await.map_err(|e| unreachable("the DingTalk robot", e))?;
                robot_answer("DingTalk", &http_outcome(resp).await?, &[130101])
            }
            _ => Err(DeliveryError::Permanent("the channel's sender does not match its kind".into())),
        }
    }
}

/// A robot answers 200 with `{"errcode": 0}` when it took the message; another code is a
/// refusal (a bad key or signature, a missing keyword), and the codes in `busy` mean "too many
/// messages, try later".
fn robot_answer(robot: &str, text: &str, busy: &[i64]) -> Result<(), DeliveryError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| DeliveryError::Retryable {
        after: None,
        message: format!("{robot} answered something unexpected: {e}"),
    })?;
    match v["errcode"].as_i64() {
        Some(0) => Ok(()),
        Some(code) => {
            let message = format!("{robot} refused the message: {code} {}", v["errmsg"].as_str().unwrap_or(""));
            Err(if busy.contains(&code) {
                DeliveryError::Retryable { after: Some(Duration::from_secs(60)), message }
            } else {
                // A bad key or signature, a missing keyword: trying again changes nothing.
                DeliveryError::Permanent(message)
            })
        }
        None => Err(DeliveryError::Retryable { after: None, message: format!("{robot} answered without an errcode") }),
    }
}
