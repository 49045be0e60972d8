//! The email connector: one mail per event, threaded so that email-to-ticket
//! helpdesks (most of them) file every update on the same ticket: a subject
//! tag `[aftercare #ID]`, a stable `Message-ID` per event (the same on a
//! retry), and `In-Reply-To` / `References` naming the ticket's first mail.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{BoxFuture, Connector, Delivery, DeliveryError};

/// How the connector reaches its SMTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Plain SMTP, for a relay on the same host or network.
    None,
    /// STARTTLS on the submission port.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

#[derive(Debug, Clone)]
pub struct EmailConfig {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub password: Option<secrecy::SecretString>,
    pub from: String,
    pub to: String,
    pub timeout: Duration,
}

pub struct Email {
    name: String,
    from: Mailbox,
    to: Mailbox,
    domain: String,
    priorities: [String; 3],
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// The Message-ID of an event's mail, stable across retries.
pub fn message_id(event_id: &str, domain: &str) -> String {
    format!("<{event_id}@{domain}>")
}

/// The subject: the tag helpdesks match on, then what happened.
pub fn subject(d: &Delivery) -> String {
    let t = &d.ticket;
    format!(
        "[aftercare #{}] Tier {} {} on {}: {}",
        t.id.0,
        t.tier.number(),
        t.code.0,
        t.device.0,
        match d.row.event.as_str() {
            "transition" => format!("now {}", t.state),
            other => other.replace('_', " "),
        }
    )
}

fn text(d: &Delivery, priority: &str) -> String {
    let t = &d.ticket;
    let mut s = format!(
        "{}\n\nTicket {}: {}, tier {}, {}\nDevice {} ({}) at site {}, customer {}\nEvent: {} at {}\n",
        t.title,
        t.id.0,
        t.code.0,
        t.tier.number(),
        t.state,
        t.device.0,
        t.kind,
        t.site.0,
        t.customer.0,
        d.row.event,
        d.row.created_at
    );
    s.push_str(&format!("Priority: {priority}\n"));
    if !d.row.note.is_empty() {
        s.push_str(&format!("Note: {}\n", d.row.note));
    }
    if let Some(by) = t.clock.resolve_by {
        s.push_str(&format!("Resolve by: {by}\n"));
    }
    s.push_str(&format!("\nEvent id: {}, sequence {}\n", d.row.event_id, d.row.seq));
    s
}

impl Email {
    pub fn new(name: &str, c: &EmailConfig, priorities: [String; 3]) -> anyhow::Result<Email> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = match c.security {
            Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host),
            Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.host)?,
            Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&c.host)?,
        };
        b = b.port(c.port).timeout(Some(c.timeout));
        if let Some(u) = &c.username {
            use secrecy::ExposeSecret as _;
            let p = c.password.as_ref().map(|p| p.expose_secret().to_string()).unwrap_or_default();
            b = b.credentials(Credentials::new(u.clone(), p));
        }
        let from: Mailbox = c.from.parse()?;
        let domain = from.email.domain().to_string();
        Ok(Email { name: name.to_string(), from, to: c.to.parse()?, domain, priorities, transport: b.build() })
    }
}

impl Connector for Email {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, d: &'a Delivery, _now: DateTime<Utc>) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let root = message_id(&format!("aftercare-{}-1", d.ticket.id.0), &self.domain);
            let mut m = Message::builder()
                .from(self.from.clone())
                .to(self.to.clone())
                .subject(subject(d))
                .message_id(Some(message_id(&d.row.event_id, &self.domain)))
                .header(ContentType::TEXT_PLAIN);
            if d.row.seq > 1 {
                m = m.in_reply_to(root.clone()).references(root);
            }
            let mail = m
                .body(text(d, &self.priorities[d.ticket.tier.number() as usize - 1]))
                .map_err(|e| DeliveryError::Permanent(format!("building the mail: {e}")))?;
            match self.transport.send(mail).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(format!("SMTP: {e}"))),
                Err(e) => Err(DeliveryError::Retryable { after: None, message: format!("SMTP: {e}") }),
            }
        })
    }
}
