//! The email connector: one mail per event, threaded so that email-to-ticket
//! helpdesks (most of them) file every update on the same ticket: a subject
//! tag `[aftercare #ID]`, a stable `Message-ID` per event (the same on a
//! retry), and `In-Reply-To` / `References` naming the ticket's first mail.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{BoxFuture, Connector, Delivered, Delivery, DeliveryError, describe};

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
    /// The CA of a server whose certificate no public CA signed (PEM), relative paths already resolved.
    pub ca_file: Option<std::path::PathBuf>,
}

pub(crate) struct Email {
    name: String,
    from: Mailbox,
    to: Mailbox,
    domain: String,
    priorities: [String; 3],
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
}

/// The Message-ID of an event's mail, stable across retries.
pub(crate) fn message_id(event_id: &str, domain: &str) -> String {
    format!("<{event_id}@{domain}>")
}

/// The subject: the tag helpdesks match on, then what happened.
pub(crate) fn subject(d: &Delivery) -> String {
    d.subject.headline(d.row.event)
}

/// An SMTP transport to the configured server: its security, port, timeout and login.
pub(crate) fn transport(c: &EmailConfig) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = match (&c.security, &c.ca_file) {
        (Security::None, _) => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host),
        (Security::StartTls, None) => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.host)?,
        (Security::Tls, None) => AsyncSmtpTransport::<Tokio1Executor>::relay(&c.host)?,
        (security, Some(ca)) => {
            let pem = std::fs::read(ca).map_err(|e| anyhow::anyhow!("email ca_file {}: {e}", ca.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("email ca_file {}: not a PEM certificate: {e}", ca.display()))?;
            let params = TlsParameters::builder(c.host.clone()).add_root_certificate(cert).build_rustls()?;
            let tls = if *security == Security::Tls { Tls::Wrapper(params) } else { Tls::Required(params) };
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host).tls(tls)
        }
    };
    b = b.port(c.port).timeout(Some(c.timeout));
    if let Some(u) = &c.username {
        use secrecy::ExposeSecret as _;
        let p = c.password.as_ref().map(|p| p.expose_secret().to_string()).unwrap_or_default();
        b = b.credentials(Credentials::new(u.clone(), p));
    }
    Ok(b.build())
}

impl Email {
    pub(crate) fn new(name: &str, c: &EmailConfig, priorities: [String; 3]) -> anyhow::Result<Email> {
        let transport = transport(c)?;
        let from: Mailbox = c.from.parse()?;
        let domain = from.email.domain().to_string();
        Ok(Email { name: name.to_string(), from, to: c.to.parse()?, domain, priorities, transport, timeout: c.timeout })
    }
}

impl Connector for Email {
    fn name(&self) -> &str {
        &self.name
    }

    /// The whole SMTP exchange: connect, greeting, TLS, login and the mail. lettre's own
    /// timeout is per read or write, and a server that never greets holds it for longer.
    fn budget(&self) -> Duration {
        self.timeout
    }

    fn deliver<'a>(&'a self, d: &'a Delivery, _now: DateTime<Utc>) -> BoxFuture<'a, Result<Delivered, DeliveryError>> {
        Box::pin(async move {
            let root = message_id(&d.subject.first_event_id(), &self.domain);
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
                .body(describe(d, d.subject.priority(&self.priorities)))
                .map_err(|e| DeliveryError::Permanent(format!("building the mail: {e}")))?;
            match self.transport.send(mail).await {
                Ok(_) => Ok(Delivered::default()),
                Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(format!("SMTP: {e}"))),
                Err(e) => Err(DeliveryError::Retryable { after: None, message: format!("SMTP: {e}") }),
            }
        })
    }
}
