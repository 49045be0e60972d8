//! The HTTP side shared by the connectors: reading answers (Retry-After, gone, permanent),
//! sending with the whole exchange in a budget, and the client they use.

use super::*;

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Reads an HTTP answer: its body on 2xx; otherwise retryable (408, 425, 429, 5xx,
/// with `Retry-After`), gone (410) or permanent (other 4xx).
pub(crate) async fn http_outcome(resp: reqwest::Response) -> Result<String, DeliveryError> {
    let status = resp.status().as_u16();
    let after = retry_after(resp.headers());
    let text = resp.text().await;
    if (200..300).contains(&status) {
        return text.map_err(|e| DeliveryError::Retryable { after: None, message: format!("reading the answer: {e}") });
    }
    let text: String = text.unwrap_or_default().chars().take(300).collect();
    Err(match status {
        408 | 425 | 429 | 500..=599 => DeliveryError::Retryable { after, message: format!("HTTP {status}: {text}") },
        410 => DeliveryError::Gone(format!("HTTP 410: {text}")),
        _ => DeliveryError::Permanent(format!("HTTP {status}: {text}")),
    })
}

/// Sends a request to helpdesk `system` (RT, Redmine…) and reads its answer, naming the
/// system and what was asked in a permanent error.
pub(crate) async fn send_to(system: &str, what: &str, req: reqwest::RequestBuilder) -> Result<String, DeliveryError> {
    let resp = req.send().await.map_err(|e| unreachable(&format!("{system} {what}"), e))?;
    http_outcome(resp).await.map_err(|e| match e {
        DeliveryError::Permanent(m) => DeliveryError::Permanent(format!("{system} {what}: {m}")),
        other => other,
    })
}

/// An answer that does not parse: the server may be mid-upgrade or behind a proxy page; try again.
pub(crate) fn bad_answer(system: &str, what: &str, e: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::Retryable {
        after: None,
        message: format!("{system} answered {what} with something unexpected: {e}"),
    }
}

/// The remote ticket a delivery goes to, and whether its event still has to be told there:
/// the one recorded; else the one `find` finds by reference (made by an earlier attempt whose
/// answer was lost, which holds the first event already); else a new one from `create`,
/// which holds this event.
pub(crate) async fn remote_for<FF, CF>(
    d: &Delivery,
    find: impl FnOnce() -> FF,
    create: impl FnOnce() -> CF,
) -> Result<(RemoteTicket, bool), DeliveryError>
where
    FF: Future<Output = Result<Option<RemoteTicket>, DeliveryError>>,
    CF: Future<Output = Result<RemoteTicket, DeliveryError>>,
{
    if let Some(r) = &d.remote {
        return Ok((r.clone(), true));
    }
    match find().await? {
        // The first event (a ticket's `opened`, a work order's `scheduled`) is what made it.
        Some(r) => Ok((r, d.row.seq > 1)),
        None => Ok((create().await?, false)),
    }
}

/// A network failure (refused, reset, timed out) is worth another try; a redirect that
/// would take the credentials to another host is the helpdesk's configuration, and is not.
pub(crate) fn unreachable(what: &str, e: reqwest::Error) -> DeliveryError {
    // The URL without its query: a robot's key or token rides there, and must not reach a log.
    let at = e.url().map(|u| format!(" ({}{})", u.origin().ascii_serialization(), u.path())).unwrap_or_default();
    let redirect = e.is_redirect();
    let e = e.without_url();
    let mut message = format!("{what}{at}: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        message.push_str(&format!(": {c}"));
        cause = c.source();
    }
    if redirect { DeliveryError::Permanent(message) } else { DeliveryError::Retryable { after: None, message } }
}

/// An HTTP client for a helpdesk or a telemetry server: `timeout` on every request, and
/// redirects followed only within the same origin, so that credentials in headers (Redmine's
/// `X-Redmine-API-Key`, an InfluxDB token) never reach another host.
pub(crate) fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    let same_origin = reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(|u| u.origin());
        if attempt.previous().len() > 5 {
            attempt.error("more than 5 redirects")
        } else if first.is_some_and(|o| o != attempt.url().origin()) {
            let to = attempt.url().origin().ascii_serialization();
            attempt.error(format!("a redirect to another origin ({to}); credentials are not sent there"))
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder().timeout(timeout).connect_timeout(timeout).redirect(same_origin).build()
}

/// `url` fit to show: a `user:password@` in it becomes `***@`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact;

    #[test]
    fn credentials_in_a_url_are_not_shown() {
        assert_eq!(redact("http://u:secret@host:9/hook?x=1"), "http://***@host:9/hook?x=1");
        assert_eq!(redact("https://token@host/p@q"), "https://***@host/p@q");
        assert_eq!(redact("http://host/a@b"), "http://host/a@b");
        assert_eq!(redact("not a url"), "not a url");
    }
}
