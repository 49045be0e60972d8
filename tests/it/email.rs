//! The email connector against an aiosmtpd sink (tests/peers/smtp_sink.py):
//! plain SMTP, STARTTLS with AUTH, and TLS with AUTH, trusting a CA file.

use std::io::BufRead;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{all_online, one_ticket};
use crate::harness::*;

/// One received mail: the login it was sent with (`-` for none) and its text.
pub(crate) type Mails = Arc<Mutex<Vec<(String, String)>>>;

pub(crate) struct Sink {
    pub(crate) port: u16,
    pub(crate) mails: Mails,
    _child: Reaped,
}

/// The Python with aiosmtpd, or `None` (then the test says so and passes,
/// unless AFTERCARE_TEST_REQUIRE_PEERS is set, as in CI).
pub(crate) fn python() -> Option<String> {
    match std::env::var("AFTERCARE_TEST_SMTP_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var_os("AFTERCARE_TEST_REQUIRE_PEERS").is_some() => {
            panic!("AFTERCARE_TEST_SMTP_PYTHON is not set; run `eval \"$(scripts/peers.sh)\"` first")
        }
        _ => {
            eprintln!("AFTERCARE_TEST_SMTP_PYTHON is not set: skipping; `eval \"$(scripts/peers.sh)\"` sets it");
            None
        }
    }
}

impl Sink {
    pub(crate) fn start(python: &str, mode: &str, tls: Option<(&Path, &Path)>) -> Sink {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let script = repo().join("tests/peers/smtp_sink.py");
        let mut cmd = std::process::Command::new(python);
        cmd.arg(&script).arg(port.to_string()).arg(mode);
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        let mut child = Reaped(
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("the SMTP sink"),
        );
        let out = child.0.stdout.take().unwrap();
        let mails: Mails = Arc::default();
        let m2 = Arc::clone(&mails);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut cur: Option<(String, String)> = None;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if line == "READY" {
                    let _ = ready_tx.send(());
                } else if let Some(login) = line.strip_prefix("MAIL ") {
                    cur = Some((login.to_string(), String::new()));
                } else if line == "END MAIL" {
                    m2.lock().unwrap().extend(cur.take());
                } else if let Some((_, text)) = cur.as_mut() {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        ready_rx.recv_timeout(std::time::Duration::from_secs(20)).expect("the SMTP sink to start");
        Sink { port, mails, _child: child }
    }
}

pub(crate) fn header(mail: &str, name: &str) -> String {
    mail.lines().find_map(|l| l.strip_prefix(&format!("{name}: "))).map(str::to_string).unwrap_or_default()
}

/// A daemon whose one customer mails its tickets with `email = { … }`.
fn daemon(fleet: &[&str], email: &str) -> (Daemon, String) {
    let broker = Broker::Embedded;
    let (dir, prefix) = Daemon::setup(fleet, "30s", "10m", &broker);
    let path = dir.path().join("aftercare.toml");
    let cfg = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[[customers]]\nid = \"cust-1\"\n", "[[customers]]\nid = \"cust-1\"\nhelpdesk = \"mail\"\n")
        + &format!("[helpdesks.mail]\nemail = {{ {email} }}\n");
    std::fs::write(&path, cfg).unwrap();
    (Daemon::start(dir, &prefix, &broker), prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_reach_an_email_helpdesk_as_one_thread() {
    let Some(python) = python() else { return };
    let sink = Sink::start(&python, "plain", None);
    let fleet = ["lit-009:lighting"];
    let (d, _) = daemon(
        &fleet,
        &format!(
            "server = \"smtp://127.0.0.1:{}\", from = \"aftercare <aftercare@example.net>\", to = \"desk@example.net\", timeout = \"5s\"",
            sink.port
        ),
    );
    let mut sim = Sim::start(&d, &fleet);
    all_online(&d, 1).await;
    sim.send("inject lit-009 leakage");
    let t = one_ticket(&d, "lit-009", "leakage", "opened", |_| true).await;
    let id = t["id"].as_i64().unwrap();
    sim.send("clear lit-009 leakage");
    let got = wait_for("two mails", 40, || async {
        let m = sink.mails.lock().unwrap().clone();
        (m.len() >= 2).then_some(m)
    })
    .await;
    let (first, second) = (&got[0].1, &got[1].1);
    assert_eq!(got[0].0, "-", "no login on plain SMTP");
    assert_eq!(header(first, "Subject"), format!("[aftercare #{id}] Tier 1 leakage on lit-009: opened"), "{first}");
    assert_eq!(header(first, "Message-ID"), format!("<aftercare-{id}-1@example.net>"));
    assert_eq!(header(first, "In-Reply-To"), "");
    assert_eq!(header(second, "Subject"), format!("[aftercare #{id}] Tier 1 leakage on lit-009: recovered"));
    assert_eq!(header(second, "Message-ID"), format!("<aftercare-{id}-2@example.net>"));
    assert_eq!(header(second, "In-Reply-To"), format!("<aftercare-{id}-1@example.net>"));
    assert_eq!(header(second, "References"), format!("<aftercare-{id}-1@example.net>"));
    assert!(first.contains("Leakage current (safety)"), "{first}");
    assert!(first.contains("Priority: urgent"), "the default priority of tier 1: {first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_over_starttls_and_tls_with_a_login() {
    let Some(python) = python() else { return };
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    for (mode, scheme, device) in [("starttls", "smtp+starttls", "lit-041"), ("tls", "smtps", "lit-042")] {
        let sink = Sink::start(&python, mode, Some((&cert, &key)));
        let fleet = [&format!("{device}:lighting")[..]];
        let (d, _) = daemon(
            &fleet,
            &format!(
                "server = \"{scheme}://localhost:{}\", username = \"aftercare\", password = \"s3cret\", \
                 from = \"aftercare@example.net\", to = \"desk@example.net\", timeout = \"5s\", ca_file = \"{}\"",
                sink.port,
                cert.display()
            ),
        );
        let mut sim = Sim::start(&d, &fleet);
        all_online(&d, 1).await;
        sim.send(&format!("inject {device} leakage"));
        let got = wait_for(&format!("a mail over {mode}"), 40, || async {
            let m = sink.mails.lock().unwrap().clone();
            (!m.is_empty()).then_some(m)
        })
        .await;
        assert_eq!(got[0].0, "aftercare", "{mode}: sent after logging in");
        assert!(header(&got[0].1, "Subject").ends_with(&format!("leakage on {device}: opened")), "{}", got[0].1);
        d.terminate();
    }
}

/// An email helpdesk with a secret of its own may report back what people did there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_helpdesk_signs_what_it_reports_back() {
    let fleet = ["lit-010:lighting"];
    // The mail server is nowhere: what matters here is what comes back.
    let (d, prefix) = daemon(
        &fleet,
        "server = \"smtp://127.0.0.1:9\", from = \"a@example.net\", to = \"desk@example.net\", timeout = \"1s\", \
         secret = \"whsec_c2VjcmV0LW9mLXRoZS1tYWlsLWRlc2s=\"",
    );
    let (host, port) = d.mqtt.rsplit_once(':').unwrap();
    let (c, mut el) = rumqttc::AsyncClient::new(rumqttc::MqttOptions::new("lit-010", host, port.parse().unwrap()), 10);
    tokio::spawn(async move { while el.poll().await.is_ok() {} });
    let topic = format!("{prefix}/site-a/lit-010/telemetry");
    let id = wait_for("the leakage ticket", 30, || {
        let c = c.clone();
        let topic = topic.clone();
        let d = &d;
        async move {
            c.publish(topic, rumqttc::QoS::AtLeastOnce, false, r#"{"metrics": {"leakage_ma": 45}}"#).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            tickets_for(d, "lit-010", "leakage").await.first().and_then(|t| t["id"].as_i64())
        }
    })
    .await;
    let body = serde_json::json!({"ticket": id, "status": "acknowledged", "by": "desk"}).to_string();
    #[allow(clippy::disallowed_methods)]
    let ts = chrono::Utc::now().timestamp();
    let sign = |key: &[u8]| {
        use base64::Engine as _;
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(format!("evt-9.{ts}.{body}").as_bytes());
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
    };
    let post = |sig: String| {
        api()
            .post(d.url("/api/v1/helpdesks/mail/events"))
            .header("webhook-id", "evt-9")
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body.clone())
            .send()
    };
    assert_eq!(post(sign(b"a guess")).await.unwrap().status().as_u16(), 401);
    let r = post(sign(b"secret-of-the-mail-desk")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let t = get(&d.url(&format!("/api/v1/tickets/{id}"))).await;
    assert_eq!(t["state"], serde_json::json!("acknowledged"));
}
