//! The Email channel: one plain-text message per alert to every `email.to` address,
//! sent through Amazon SES v2 (`SendEmail`, simple content) or, when `email.smtp` is
//! set, through an SMTP server (lettre, one connection per delivery).
//!
//! Addresses are parsed once, when the channel is built, so a typo in the manifest is
//! a setup error naming the field, not a failed delivery. Over SMTP the password only
//! travels inside lettre's `Credentials`; errors name the server, never the password.

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{Notifier, NotifyError, SecretValue};
use crate::domain::alert::Alert;
use crate::spec::notifications::{EmailSpec, SmtpSpec, SmtpTls};

/// How long one SMTP step (connect, each command) may take before the delivery
/// fails as retryable.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// SES accepts at most 50 recipients per message; the manifest's schema says the same.
pub const MAX_RECIPIENTS: usize = 50;

const SES_OPERATION: &str = "send an email with Amazon SES";

/// The Email channel of one notification.
pub struct EmailChannel {
    from: Mailbox,
    to: Vec<Mailbox>,
    sender: Sender,
}

enum Sender {
    Ses(aws_sdk_sesv2::Client),
    Smtp {
        transport: Box<AsyncSmtpTransport<Tokio1Executor>>,
        /// `host:port`, for errors.
        server: String,
        /// Kept only to scrub it from server replies quoted in errors.
        password: Option<SecretValue>,
    },
}

impl EmailChannel {
    /// Email through Amazon SES v2; `spec.from` must be a verified identity (or in a
    /// verified domain) of the client's account and region.
    pub fn ses(
        spec: &EmailSpec,
        client: aws_sdk_sesv2::Client,
    ) -> Result<EmailChannel, NotifyError> {
        let (from, to) = addresses(spec)?;
        Ok(EmailChannel {
            from,
            to,
            sender: Sender::Ses(client),
        })
    }

    /// Email through the SMTP server `smtp` (`spec.smtp`, passed apart so callers do
    /// not have to unwrap it again), authenticating with `credentials` (user,
    /// password) when given.
    pub fn smtp(
        spec: &EmailSpec,
        smtp: &SmtpSpec,
        credentials: Option<(SecretValue, SecretValue)>,
    ) -> Result<EmailChannel, NotifyError> {
        let (from, to) = addresses(spec)?;
        let host = smtp.host.trim();
        if host.is_empty() {
            return Err(NotifyError::Setup("email.smtp.host is empty".into()));
        }
        let server = format!("{host}:{}", smtp.port);
        let tls_parameters = || {
            TlsParameters::new(host.to_string()).map_err(|e| {
                NotifyError::Setup(format!(
                    "failed to set up TLS for SMTP server {server}: {e}"
                ))
            })
        };
        let builder = match smtp.tls {
            // A relay on a trusted network: plain text, as the manifest asked.
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            // STARTTLS or nothing: a server that does not offer it gets no credentials
            // and no message (no silent downgrade).
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .tls(Tls::Required(tls_parameters()?)),
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .tls(Tls::Wrapper(tls_parameters()?)),
        }
        .port(smtp.port)
        .timeout(Some(SMTP_TIMEOUT));
        let (builder, password) = match credentials {
            Some((user, password)) => (
                builder.credentials(Credentials::new(
                    user.expose().to_string(),
                    password.expose().to_string(),
                )),
                Some(password),
            ),
            None => (builder, None),
        };
        Ok(EmailChannel {
            from,
            to,
            sender: Sender::Smtp {
                transport: Box::new(builder.build()),
                server,
                password,
            },
        })
    }

    async fn send(&self, alert: &Alert) -> Result<(), NotifyError> {
        match &self.sender {
            Sender::Ses(client) => self.send_ses(client, alert).await,
            Sender::Smtp {
                transport,
                server,
                password,
            } => {
                let message = self.smtp_message(alert)?;
                transport
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|e| smtp_error(server, &e, password.as_ref()))
            }
        }
    }

    async fn send_ses(
        &self,
        client: &aws_sdk_sesv2::Client,
        alert: &Alert,
    ) -> Result<(), NotifyError> {
        use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

        let content = |data: String| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(|e| NotifyError::Setup(format!("failed to build the SES message: {e}")))
        };
        let message = Message::builder()
            .subject(content(alert.subject())?)
            .body(Body::builder().text(content(alert.text())?).build())
            .build();
        client
            .send_email()
            .from_email_address(self.from.to_string())
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(self.to.iter().map(Mailbox::to_string).collect()))
                    .build(),
            )
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map(drop)
            .map_err(|e| NotifyError::Aws {
                operation: SES_OPERATION,
                source: crate::ports::AwsError::of_sdk(e),
            })
    }

    fn smtp_message(&self, alert: &Alert) -> Result<Message, NotifyError> {
        let mut builder = Message::builder().from(self.from.clone());
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .subject(alert.subject())
            .header(ContentType::TEXT_PLAIN)
            .body(alert.text())
            .map_err(|e| NotifyError::Setup(format!("failed to build the email: {e}")))
    }
}

impl Notifier for EmailChannel {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(self.send(alert))
    }
}

impl fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let via = match &self.sender {
            Sender::Ses(_) => "Amazon SES".to_string(),
            Sender::Smtp { server, .. } => format!("SMTP {server}"),
        };
        f.debug_struct("EmailChannel")
            .field("via", &via)
            .field("from", &self.from.to_string())
            .field("recipients", &self.to.len())
            .finish_non_exhaustive()
    }
}

/// `email.from` and `email.to`, parsed (`name@example.com` or
/// `Security <name@example.com>`).
fn addresses(spec: &EmailSpec) -> Result<(Mailbox, Vec<Mailbox>), NotifyError> {
    let from = spec
        .from
        .trim()
        .parse::<Mailbox>()
        .map_err(|e| NotifyError::Setup(format!("email.from is not an email address: {e}")))?;
    if spec.to.is_empty() {
        return Err(NotifyError::Setup(
            "email.to needs at least one address".into(),
        ));
    }
    if spec.to.len() > MAX_RECIPIENTS {
        return Err(NotifyError::Setup(format!(
            "email.to has {} addresses; at most {MAX_RECIPIENTS} are allowed",
            spec.to.len()
        )));
    }
    let to = spec
        .to
        .iter()
        .enumerate()
        .map(|(i, to)| {
            to.trim().parse::<Mailbox>().map_err(|e| {
                NotifyError::Setup(format!("email.to[{i}] is not an email address: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((from, to))
}

/// A lettre error as [`NotifyError::Smtp`]: 5xx replies, a server that cannot do what
/// the manifest requires (no STARTTLS, no usable AUTH mechanism) and a failed TLS
/// negotiation (an untrusted certificate, a server that does not speak TLS) are
/// permanent; 4xx replies, refused or dropped connections and timeouts are worth
/// another attempt.
fn smtp_error(
    server: &str,
    error: &lettre::transport::smtp::Error,
    password: Option<&SecretValue>,
) -> NotifyError {
    use std::error::Error as _;

    // The innermost cause is the precise one (the server's reply text, the I/O
    // error); lettre's own Display repeats its causes.
    let mut cause = error.source();
    let mut tls_failed = error.is_tls();
    let mut detail = None;
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            // rustls reports a failed handshake or certificate as invalid data.
            tls_failed |= io.kind() == std::io::ErrorKind::InvalidData;
        }
        detail = Some(current.to_string());
        cause = current.source();
    }
    let detail = detail.unwrap_or_else(|| error.to_string());
    let (reason, permanent) = if let Some(code) = error.status() {
        (format!("answered {code}: {detail}"), error.is_permanent())
    } else if error.is_client() {
        (detail, true)
    } else if tls_failed {
        (format!("TLS negotiation failed: {detail}"), true)
    } else if error.is_timeout() {
        (format!("timed out: {detail}"), false)
    } else if error.is_response() {
        (format!("could not read the reply: {detail}"), false)
    } else {
        (format!("connection failed: {detail}"), false)
    };
    let reason = match password.map(SecretValue::expose).filter(|p| !p.is_empty()) {
        Some(password) => reason.replace(password, "<redacted>"),
        None => reason,
    };
    NotifyError::Smtp {
        server: server.to_string(),
        reason,
        permanent,
    }
}
