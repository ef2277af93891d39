//! The Email channel against real components: Amazon SES v2 on moto (region
//! ap-southeast-2, delivered messages read back from moto's `/moto-api/data.json`),
//! and SMTP against a small SMTP server in this file that speaks enough of RFC 5321
//! for lettre and records what it was sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region};
use guardduty_operator::notify::email::EmailChannel;
use guardduty_operator::notify::{Notifier, NotifyError, SecretValue};
use guardduty_operator::spec::notifications::{EmailSpec, SecretRef, SmtpSpec, SmtpTls};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::common::alerts::{alert, remediated};
use crate::common::channel_checks::{assert_none_contains, shown_texts};

const REGION: &str = "ap-southeast-2";
const PASSWORD: &str = "s3cret-Pa55word";

/// Something unique to this run, so messages of earlier runs on the same moto do not count.
fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}{}", std::process::id(), nanos % 1_000_000_000)
}

fn spec(from: &str, to: &[&str]) -> EmailSpec {
    EmailSpec {
        from: from.to_string(),
        to: to.iter().map(|t| t.to_string()).collect(),
        smtp: None,
    }
}

async fn ses() -> aws_sdk_sesv2::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(aws_sdk_sesv2::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .endpoint_url(crate::common::moto_url())
        .load()
        .await;
    aws_sdk_sesv2::Client::new(&config)
}

/// The messages moto's SES recorded from `source`.
async fn ses_messages_from(source: &str) -> Vec<Value> {
    let data: Value = crate::common::moto_state().await;
    data["ses"]["Message"]
        .as_array()
        .expect("moto lists SES messages")
        .iter()
        .filter(|m| m["source"] == source)
        .cloned()
        .collect()
}

#[tokio::test]
async fn an_alert_is_sent_through_ses_to_every_recipient_in_one_message() {
    let run = nonce();
    let from = format!("guardduty-{run}@example.com");
    let to = [
        format!("oncall-{run}@example.com"),
        format!("secops-{run}@example.com"),
    ];
    let client = ses().await;
    client
        .create_email_identity()
        .email_identity(&from)
        .send()
        .await
        .expect("verify the sender in moto");
    let channel = EmailChannel::ses(&spec(&from, &[&to[0], &to[1]]), client).unwrap();
    assert_eq!(channel.kind(), "email");

    let alert = remediated(alert("oncall"));
    channel
        .deliver(&alert)
        .await
        .expect("SES accepts the email");

    let messages = ses_messages_from(&from).await;
    assert_eq!(
        messages.len(),
        1,
        "one SendEmail for all recipients: {messages:?}"
    );
    let message = &messages[0];
    assert_eq!(message["subject"], alert.subject().as_str());
    assert_eq!(message["body"], alert.text().as_str());
    assert_eq!(
        message["destinations"]["ToAddresses"],
        serde_json::json!([to[0], to[1]])
    );
    assert!(
        alert.subject().ends_with("— remediated"),
        "{}",
        alert.subject()
    );
}

#[tokio::test]
async fn an_unverified_sender_is_a_permanent_ses_error_naming_the_problem() {
    let run = nonce();
    let from = format!("unverified-{run}@example.com");
    let channel = EmailChannel::ses(&spec(&from, &["oncall@example.com"]), ses().await).unwrap();

    let error = channel.deliver(&alert("oncall")).await.unwrap_err();

    let NotifyError::Aws { operation, source } = &error else {
        panic!("expected an AWS error, got {error:?}");
    };
    assert_eq!(*operation, "send an email with Amazon SES");
    assert_eq!(source.code.as_deref(), Some("MessageRejected"));
    assert!(source.message.contains("not verified"), "{source}");
    assert_eq!(error.category().as_str(), "aws-error");
    assert!(!error.is_retryable());
    assert_eq!(error.to_string(), "failed to send an email with Amazon SES");
    assert!(ses_messages_from(&from).await.is_empty());
}

#[tokio::test]
async fn addresses_that_do_not_parse_are_setup_errors_naming_the_field() {
    let client = ses().await;
    let setup = |result: Result<EmailChannel, NotifyError>| match result {
        Err(NotifyError::Setup(message)) => message,
        other => panic!("expected a setup error, got {other:?}"),
    };

    let message = setup(EmailChannel::ses(
        &spec("not an address", &["oncall@example.com"]),
        client.clone(),
    ));
    assert!(
        message.starts_with("email.from is not an email address"),
        "{message}"
    );

    let message = setup(EmailChannel::ses(
        &spec(
            "gd@example.com",
            &["oncall@example.com", "oncall.example.com"],
        ),
        client.clone(),
    ));
    assert!(
        message.starts_with("email.to[1] is not an email address"),
        "{message}"
    );

    let message = setup(EmailChannel::ses(
        &spec("gd@example.com", &[]),
        client.clone(),
    ));
    assert_eq!(message, "email.to needs at least one address");

    // A display name is an address too.
    EmailChannel::ses(
        &spec(
            "GuardDuty <gd@example.com>",
            &["Security Team <secops@example.com>"],
        ),
        client,
    )
    .expect("addresses with display names");
}

// ---------------------------------------------------------------------------------
// SMTP

/// What the test SMTP server answers to a step.
#[derive(Clone)]
struct Script {
    /// Whether EHLO offers STARTTLS (the server cannot actually do TLS).
    offer_starttls: bool,
    auth_reply: &'static str,
    rcpt_reply: &'static str,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            offer_starttls: false,
            auth_reply: "235 2.7.0 Authentication successful",
            rcpt_reply: "250 2.1.5 OK",
        }
    }
}

/// One connection as the server saw it.
#[derive(Debug, Clone, Default)]
struct Session {
    ehlo: Option<String>,
    /// `(user, password)` from AUTH PLAIN or AUTH LOGIN.
    auth: Option<(String, String)>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    /// The message as sent after DATA (dot-unstuffed, CRLF line ends).
    data: Option<String>,
    commands: Vec<String>,
}

struct SmtpServer {
    addr: SocketAddr,
    sessions: Arc<Mutex<Vec<Session>>>,
}

impl SmtpServer {
    async fn start(script: Script) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let shared = sessions.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let index = {
                    let mut sessions = shared.lock().unwrap();
                    sessions.push(Session::default());
                    sessions.len() - 1
                };
                tokio::spawn(serve(stream, script.clone(), shared.clone(), index));
            }
        });
        SmtpServer { addr, sessions }
    }

    fn sessions(&self) -> Vec<Session> {
        self.sessions.lock().unwrap().clone()
    }

    fn spec(&self, tls: SmtpTls) -> SmtpSpec {
        SmtpSpec {
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
            tls,
            credentials_secret_ref: Some(SecretRef {
                name: "smtp".into(),
            }),
        }
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    script: Script,
    sessions: Arc<Mutex<Vec<Session>>>,
    index: usize,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let update = |f: &mut dyn FnMut(&mut Session)| f(&mut sessions.lock().unwrap()[index]);
    macro_rules! reply {
        ($text:expr) => {
            if write
                .write_all(format!("{}\r\n", $text).as_bytes())
                .await
                .is_err()
            {
                return;
            }
        };
    }
    reply!("220 smtp.test ESMTP ready");
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end_matches(['\r', '\n']).to_string();
        update(&mut |s| s.commands.push(command.clone()));
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            let name = command[4..].trim().to_string();
            update(&mut |s| s.ehlo = Some(name.clone()));
            let mut answer = String::from("250-smtp.test greets you\r\n");
            if script.offer_starttls {
                answer.push_str("250-STARTTLS\r\n");
            }
            answer.push_str("250-AUTH PLAIN LOGIN\r\n250 8BITMIME");
            reply!(answer);
        } else if let Some(initial) = upper.strip_prefix("AUTH PLAIN").map(|_| &command[10..]) {
            let encoded = if initial.trim().is_empty() {
                reply!("334 ");
                let mut response = String::new();
                if lines.read_line(&mut response).await.is_err() {
                    return;
                }
                response.trim().to_string()
            } else {
                initial.trim().to_string()
            };
            let decoded = String::from_utf8_lossy(&base64_decode(&encoded)).into_owned();
            let mut parts = decoded.split('\0').skip(1);
            let user = parts.next().unwrap_or_default().to_string();
            let password = parts.next().unwrap_or_default().to_string();
            update(&mut |s| s.auth = Some((user.clone(), password.clone())));
            reply!(script.auth_reply);
        } else if upper.starts_with("AUTH LOGIN") {
            let mut answers = Vec::new();
            for prompt in ["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6"] {
                reply!(prompt);
                let mut response = String::new();
                if lines.read_line(&mut response).await.is_err() {
                    return;
                }
                answers.push(String::from_utf8_lossy(&base64_decode(response.trim())).into_owned());
            }
            update(&mut |s| s.auth = Some((answers[0].clone(), answers[1].clone())));
            reply!(script.auth_reply);
        } else if upper.starts_with("MAIL FROM:") {
            let from = angle(&command);
            update(&mut |s| s.mail_from = Some(from.clone()));
            reply!("250 2.1.0 OK");
        } else if upper.starts_with("RCPT TO:") {
            let to = angle(&command);
            update(&mut |s| s.rcpt_to.push(to.clone()));
            reply!(script.rcpt_reply);
        } else if upper == "DATA" {
            reply!("354 End data with <CR><LF>.<CR><LF>");
            let mut data = String::new();
            loop {
                let mut line = String::new();
                match lines.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            update(&mut |s| s.data = Some(data.clone()));
            reply!("250 2.0.0 OK queued");
        } else if upper == "QUIT" {
            reply!("221 2.0.0 Bye");
            return;
        } else if upper == "RSET" || upper == "NOOP" {
            reply!("250 2.0.0 OK");
        } else {
            reply!("502 5.5.1 Command not implemented");
        }
    }
}

/// The address between `<` and `>` of MAIL FROM / RCPT TO.
fn angle(command: &str) -> String {
    let start = command.find('<').map(|i| i + 1).unwrap_or(0);
    let end = command.rfind('>').unwrap_or(command.len());
    command[start..end].to_string()
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.bytes() {
        let Some(value) = ALPHABET.iter().position(|&a| a == byte) else {
            continue; // padding, line breaks
        };
        buffer = (buffer << 6) | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

fn quoted_printable_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' if bytes[i + 1..].starts_with(b"\n") => i += 2,
            b'=' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).expect("a =XX escape"));
                i += 3;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// A parsed message: unfolded headers (encoded words decoded) and the decoded body.
struct Mail {
    headers: Vec<(String, String)>,
    body: String,
}

impl Mail {
    fn parse(data: &str) -> Mail {
        let (head, body) = data.split_once("\r\n\r\n").expect("headers and a body");
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                let last = headers
                    .last_mut()
                    .expect("a header before its continuation");
                last.1.push_str(line);
            } else {
                let (name, value) = line.split_once(':').expect("a header");
                headers.push((name.to_string(), value.trim_start().to_string()));
            }
        }
        for header in &mut headers {
            header.1 = decode_words(&header.1);
        }
        let mut mail = Mail {
            headers,
            body: String::new(),
        };
        let bytes = match mail
            .header("Content-Transfer-Encoding")
            .map(str::to_ascii_lowercase)
        {
            Some(e) if e == "base64" => base64_decode(body),
            Some(e) if e == "quoted-printable" => quoted_printable_decode(body),
            _ => body.as_bytes().to_vec(),
        };
        mail.body = String::from_utf8(bytes)
            .expect("a UTF-8 body")
            .replace("\r\n", "\n")
            .trim_end_matches('\n')
            .to_string();
        mail
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`) decoded; the white
/// space between two encoded words dropped.
fn decode_words(value: &str) -> String {
    let mut out = Vec::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let between = &rest[..start];
        if !(after_word && between.trim().is_empty()) {
            out.extend_from_slice(between.as_bytes());
        }
        let word = &rest[start + 2..];
        let mut parts = word.splitn(3, '?');
        let (_charset, encoding, tail) = (parts.next(), parts.next(), parts.next());
        let (Some(encoding), Some(tail)) = (encoding, tail) else {
            out.extend_from_slice(&rest.as_bytes()[start..]);
            rest = "";
            break;
        };
        let end = tail.find("?=").expect("an encoded word's end");
        let text = &tail[..end];
        match encoding {
            "b" | "B" => out.extend(base64_decode(text)),
            _ => out.extend(quoted_printable_decode(&text.replace('_', " "))),
        }
        rest = &tail[end + 2..];
        after_word = true;
    }
    out.extend_from_slice(rest.as_bytes());
    String::from_utf8(out).expect("UTF-8 words")
}

fn credentials() -> Option<(SecretValue, SecretValue)> {
    Some((SecretValue::new("alerts"), SecretValue::new(PASSWORD)))
}

fn smtp_email(server: &SmtpServer, tls: SmtpTls) -> EmailChannel {
    let spec = EmailSpec {
        smtp: Some(server.spec(tls)),
        ..spec(
            "GuardDuty Operator <guardduty@example.com>",
            &["oncall@example.com", "secops@example.com"],
        )
    };
    let smtp = spec.smtp.clone().unwrap();
    EmailChannel::smtp(&spec, &smtp, credentials()).expect("an SMTP channel")
}

#[track_caller]
fn assert_no_password(error: &NotifyError, channel: &EmailChannel) {
    assert_none_contains(&shown_texts([error], channel), &[PASSWORD]);
}

#[tokio::test]
async fn an_alert_is_sent_over_smtp_with_its_subject_body_recipients_and_credentials() {
    let server = SmtpServer::start(Script::default()).await;
    let channel = smtp_email(&server, SmtpTls::None);
    let alert = alert("oncall");

    channel
        .deliver(&alert)
        .await
        .expect("the server accepts the email");

    let sessions = server.sessions();
    assert_eq!(sessions.len(), 1, "one connection: {sessions:?}");
    let session = &sessions[0];
    assert_eq!(session.auth, Some(("alerts".into(), PASSWORD.into())));
    assert_eq!(session.mail_from.as_deref(), Some("guardduty@example.com"));
    assert_eq!(
        session.rcpt_to,
        ["oncall@example.com", "secops@example.com"]
    );
    let mail = Mail::parse(session.data.as_deref().expect("a message"));
    assert_eq!(
        mail.header("From"),
        Some("\"GuardDuty Operator\" <guardduty@example.com>")
    );
    assert_eq!(
        mail.header("To"),
        Some("oncall@example.com, secops@example.com")
    );
    assert_eq!(mail.header("Subject"), Some(alert.subject().as_str()));
    assert_eq!(
        mail.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(mail.body, alert.text());
    // The connection was closed politely.
    assert_eq!(
        session.commands.last().map(String::as_str),
        Some("QUIT"),
        "{:?}",
        session.commands
    );
}

#[tokio::test]
async fn a_recipient_refused_with_550_is_a_permanent_smtp_error() {
    let server = SmtpServer::start(Script {
        rcpt_reply: "550 5.1.1 <oncall@example.com>: Recipient address rejected",
        ..Script::default()
    })
    .await;
    let channel = smtp_email(&server, SmtpTls::None);

    let error = channel.deliver(&alert("oncall")).await.unwrap_err();

    let NotifyError::Smtp {
        server: name,
        reason,
        permanent,
    } = &error
    else {
        panic!("expected an SMTP error, got {error:?}");
    };
    assert_eq!(*name, server.addr.to_string());
    assert!(*permanent);
    assert_eq!(
        reason,
        "answered 550: 5.1.1 <oncall@example.com>: Recipient address rejected"
    );
    assert_eq!(error.category().as_str(), "rejected");
    assert!(!error.is_retryable());
    assert_no_password(&error, &channel);
    assert!(server.sessions()[0].data.is_none());
}

#[tokio::test]
async fn a_recipient_deferred_with_451_is_retryable() {
    let server = SmtpServer::start(Script {
        rcpt_reply: "451 4.3.0 Mail server temporarily rejected message",
        ..Script::default()
    })
    .await;
    let channel = smtp_email(&server, SmtpTls::None);

    let error = channel.deliver(&alert("oncall")).await.unwrap_err();

    assert!(
        matches!(&error, NotifyError::Smtp { permanent: false, reason, .. } if reason.contains("451")),
        "{error:?}"
    );
    assert_eq!(error.category().as_str(), "smtp-error");
    assert!(error.is_retryable());
    assert_no_password(&error, &channel);
}

#[tokio::test]
async fn refused_credentials_are_permanent_and_the_password_never_shows() {
    let server = SmtpServer::start(Script {
        auth_reply: "535 5.7.8 Authentication credentials invalid",
        ..Script::default()
    })
    .await;
    let channel = smtp_email(&server, SmtpTls::None);

    let error = channel.deliver(&alert("oncall")).await.unwrap_err();

    assert!(
        matches!(&error, NotifyError::Smtp { permanent: true, reason, .. } if reason.contains("535")),
        "{error:?}"
    );
    assert_no_password(&error, &channel);
    assert!(server.sessions()[0].mail_from.is_none());
}

#[tokio::test]
async fn a_refused_connection_is_retryable_and_names_the_server() {
    // A port nobody listens on: bind one, then let it go.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let spec = EmailSpec {
        smtp: Some(SmtpSpec {
            host: addr.ip().to_string(),
            port: addr.port(),
            tls: SmtpTls::None,
            credentials_secret_ref: None,
        }),
        ..spec("guardduty@example.com", &["oncall@example.com"])
    };
    let channel = EmailChannel::smtp(&spec, spec.smtp.as_ref().unwrap(), credentials()).unwrap();

    let error = channel.deliver(&alert("oncall")).await.unwrap_err();

    assert!(
        matches!(&error, NotifyError::Smtp { permanent: false, server, reason } if *server == addr.to_string() && reason.starts_with("connection failed: ")),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert!(
        error
            .to_string()
            .starts_with(&format!("SMTP server {addr}: ")),
        "{error}"
    );
    assert_no_password(&error, &channel);
}

#[tokio::test]
async fn starttls_is_required_so_a_server_without_it_gets_neither_credentials_nor_mail() {
    let server = SmtpServer::start(Script::default()).await;
    let channel = smtp_email(&server, SmtpTls::StartTls);

    let error = channel.deliver(&alert("oncall")).await.unwrap_err();

    assert!(
        matches!(&error, NotifyError::Smtp { permanent: true, reason, .. } if reason == "STARTTLS is not supported on this server"),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    let session = &server.sessions()[0];
    assert!(session.ehlo.is_some(), "{session:?}");
    assert_eq!(session.auth, None);
    assert_eq!(session.mail_from, None);
    assert_no_password(&error, &channel);
}

#[tokio::test]
async fn implicit_tls_against_a_plain_text_server_fails_without_sending_anything() {
    let server = SmtpServer::start(Script::default()).await;
    let channel = smtp_email(&server, SmtpTls::Tls);

    let error = channel.deliver(&alert("oncall")).await.unwrap_err();

    // A TLS failure does not heal by itself: permanent.
    assert!(
        matches!(&error, NotifyError::Smtp { permanent: true, reason, .. } if reason.starts_with("TLS negotiation failed: ")),
        "{error:?}"
    );
    let session = &server.sessions()[0];
    assert_eq!(session.ehlo, None, "{session:?}");
    assert_eq!(session.auth, None);
    assert_no_password(&error, &channel);
}

#[tokio::test]
async fn smtp_addresses_that_do_not_parse_are_setup_errors_naming_the_field() {
    let server = SmtpServer::start(Script::default()).await;
    let smtp = server.spec(SmtpTls::None);
    let bad = spec("guardduty@example.com", &["oncall@@example.com"]);

    let error = EmailChannel::smtp(&bad, &smtp, credentials()).unwrap_err();

    assert!(
        matches!(&error, NotifyError::Setup(m) if m.starts_with("email.to[0] is not an email address")),
        "{error:?}"
    );
    assert!(server.sessions().is_empty());
}
