//! What the HTTP channels (Slack, PagerDuty, Jira, ServiceNow) share: one client with
//! bounded timeouts; the rule for a configured URL (https, or plain http to this
//! machine only; no credentials in it) and the joining of a site's address with an
//! API path; sending (a JSON POST, basic authentication) and the mapping of an
//! answer to a [`NotifyError`] that carries the status, `Retry-After` and the
//! service's error text, never the URL (a Slack webhook URL is a credential); and
//! text cut to a length in characters.

use std::time::Duration;

use reqwest::Url;

use super::{NotifyError, SecretValue};

/// The longest a request may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of an error body is kept in a message.
const DETAIL_LIMIT: usize = 300;

/// The HTTP client every channel uses (cheap to clone: it shares one pool). Its
/// resolver never hands out a link-local or instance-metadata address, so a channel
/// URL whose name resolves there fails to connect instead of reaching the metadata
/// service with the operator's identity.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .dns_resolver(std::sync::Arc::new(NoMetadataResolver))
        .user_agent(concat!("guardduty-operator/", env!("CARGO_PKG_VERSION")))
        // A redirect could carry credentials to another host: follow none.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the HTTP client's settings are valid")
}

/// Why a configured URL is refused: the rule the spec's validation
/// (`spec::notifications::check_url`), the CRD's CEL rule and the channels share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlProblem {
    /// A user or password in the URL (`https://user:pw@host`).
    Credentials,
    /// Plain http to a host other than this machine.
    PlainHttp,
    /// Another scheme, or https without a host.
    NotHttps,
    /// A link-local or instance-metadata address (169.254.169.254, fd00:ec2::254, …).
    Metadata,
}

/// Host names of cloud instance-metadata services.
const METADATA_NAMES: [&str; 4] = [
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.google.internal",
    "metadata",
];

/// A link-local address (169.254.0.0/16, fe80::/10) or AWS's instance-metadata
/// address over IPv6 (fd00:ec2::254): where credentials of the operator's own
/// identity can be read. No alert is ever sent there.
pub fn is_metadata_address(address: std::net::IpAddr) -> bool {
    match address {
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
        std::net::IpAddr::V6(v6) => {
            v6.is_unicast_link_local()
                || v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    }
}

/// The URL's host is a metadata address or name.
fn targets_metadata(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(address) => is_metadata_address(address),
        Err(_) => {
            METADATA_NAMES.contains(&bare.trim_end_matches('.').to_ascii_lowercase().as_str())
        }
    }
}

/// Resolves as the system does, leaving out link-local and instance-metadata
/// addresses; a name that resolves only to those is an error.
struct NoMetadataResolver;

impl reqwest::dns::Resolve for NoMetadataResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<std::net::SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| !is_metadata_address(a.ip()))
                .collect();
            if allowed.is_empty() && !found.is_empty() {
                return Err(format!(
                    "{host} resolves only to link-local or instance-metadata addresses: no \
                     alert is sent there"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// What is wrong with `url` as a service's address, if anything: it must be https,
/// or plain http to `127.0.0.1`, `::1` or `localhost` (a local relay, the tests), and
/// carry no credentials.
pub fn url_problem(url: &Url) -> Option<UrlProblem> {
    if !url.username().is_empty() || url.password().is_some() {
        return Some(UrlProblem::Credentials);
    }
    if targets_metadata(url) {
        return Some(UrlProblem::Metadata);
    }
    match url.scheme() {
        "https" if url.host().is_some() => None,
        "http" if is_loopback(url) => None,
        "http" => Some(UrlProblem::PlainHttp),
        _ => Some(UrlProblem::NotHttps),
    }
}

/// The host is `localhost`, `127.0.0.1` or `::1`: the hosts the CRD's CEL rule allows
/// plain http to. A parsed http URL's host is normalised (lower case, `127.1` written
/// `127.0.0.1`, `[0::1]` written `[::1]`), so comparing the text is exact.
fn is_loopback(url: &Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

/// A configured service URL, checked once against [`url_problem`]. `field` names it
/// and `example` shows a good value in the error, which shows at most the scheme and
/// host of what was given: some URLs (a Slack webhook) are credentials.
pub fn service_url(field: &str, example: &str, value: &str) -> Result<Url, NotifyError> {
    let url = Url::parse(value.trim()).map_err(|error| {
        NotifyError::Setup(format!(
            "{field} is not a URL ({error}): write it in full, such as {example}"
        ))
    })?;
    match url_problem(&url) {
        None => Ok(url),
        Some(UrlProblem::Credentials) => Err(NotifyError::Setup(format!(
            "{field} must not carry a user or password: credentials come from the \
             channel's Secret"
        ))),
        Some(UrlProblem::Metadata) => Err(NotifyError::Setup(format!(
            "{field} points at a link-local or instance-metadata address: no alert is sent \
             there"
        ))),
        Some(UrlProblem::PlainHttp | UrlProblem::NotHttps) => {
            let given = match url.host_str() {
                Some(host) => format!("{}://{host}", url.scheme()),
                None => format!("a {}: URL", url.scheme()),
            };
            Err(NotifyError::Setup(format!(
                "{field} must be an https URL such as {example} (http only to 127.0.0.1, \
                 ::1 or localhost), not {given}"
            )))
        }
    }
}

/// A site's address that API paths are appended to with [`endpoint`]: a
/// [`service_url`] without `?query` or `#fragment`.
pub fn site_url(field: &str, example: &str, value: &str) -> Result<Url, NotifyError> {
    let url = service_url(field, example, value)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(NotifyError::Setup(format!(
            "{field} must be the site's address without ?query or #fragment, such as \
             {example}"
        )));
    }
    Ok(url)
}

/// `site` with `segments` appended to its path, each one percent-encoded.
pub fn endpoint(site: &Url, segments: &[&str]) -> Url {
    let mut url = site.clone();
    // Never fails: an http(s) URL can always be a base.
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// Sends `request` with HTTP basic authentication and `Accept: application/json`
/// (the ticketing services); no answer at all is `Unreachable`.
pub async fn send_with_basic_auth(
    service: &'static str,
    request: reqwest::RequestBuilder,
    user: &SecretValue,
    password: &SecretValue,
) -> Result<reqwest::Response, NotifyError> {
    request
        .basic_auth(user.expose(), Some(password.expose()))
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|error| unreachable(service, error))
}

/// POSTs `body` as JSON to `url` and returns the body of a 2xx answer; an error
/// answer goes through `explain` (the service's own words, without secrets). Past a
/// 2xx the request has taken effect, so a body that cannot be read is an
/// `UnexpectedAnswer`, never worth a retry (which would do it twice).
pub async fn post_json(
    service: &'static str,
    client: &reqwest::Client,
    url: &Url,
    body: &serde_json::Value,
    explain: impl FnOnce(NotifyError) -> NotifyError,
) -> Result<Vec<u8>, NotifyError> {
    let response = client
        .post(url.clone())
        .json(body)
        .send()
        .await
        .map_err(|error| unreachable(service, error))?;
    let response = check(service, response).await.map_err(explain)?;
    let answer = response
        .bytes()
        .await
        .map_err(|_| NotifyError::UnexpectedAnswer {
            service,
            reason: "the body of its answer could not be read".into(),
        })?;
    Ok(answer.to_vec())
}

/// A request that got no answer, without its URL.
pub fn unreachable(service: &'static str, error: reqwest::Error) -> NotifyError {
    let error = error.without_url();
    let reason = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "connection failed".to_string()
    } else {
        crate::ports::error_chain(&error)
    };
    NotifyError::Unreachable { service, reason }
}

/// The response if its status is 2xx; otherwise the error it stands for, with
/// `Retry-After` (delay seconds or an HTTP date, see [`retry_after`]) and the start of
/// the body.
pub async fn check(
    service: &'static str,
    response: reqwest::Response,
) -> Result<reqwest::Response, NotifyError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, std::time::SystemTime::now()));
    let body = response.text().await.unwrap_or_default();
    Err(NotifyError::Http {
        service,
        status: status.as_u16(),
        retry_after,
        detail: shorten(body.trim()),
    })
}

/// The wait a `Retry-After` value asks for at `now` (RFC 9110 10.2.3): delay seconds,
/// or an HTTP date (IMF-fixdate, and the obsolete RFC 850 and asctime forms), a date
/// in the past being no wait; anything else is no answer (the backoff decides).
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The longest reason shown for an error answer.
const REASON_LIMIT: usize = 160;

/// A short, sanitised reason from a service's error text: the service's own words
/// (a Slack error token, a message a channel took out of the service's JSON), on one
/// line, URLs cut to their host, at most [`REASON_LIMIT`] characters; markup (a CDN's
/// error page) or a raw JSON or XML document is no reason and is left out whole.
pub fn reason(text: &str) -> String {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    let markup = ["<html", "<!doctype", "<body", "<head", "</", "<?xml"]
        .iter()
        .any(|tag| lower.contains(tag));
    let document = text.starts_with('{') || text.starts_with('[');
    if text.is_empty() || markup || document {
        return String::new();
    }
    let words: Vec<String> = shorten(text)
        .split_whitespace()
        .map(|word| match word.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
                let host = host.rsplit('@').next().unwrap_or_default();
                format!("{scheme}://{host}")
            }
            None => word.to_string(),
        })
        .collect();
    cut(&words.join(" "), REASON_LIMIT)
}

/// A service's text for an error message: on one line, at most [`DETAIL_LIMIT`]
/// characters.
pub fn shorten(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cut(&one_line, DETAIL_LIMIT)
}

/// `text` cut to at most `limit` characters (not bytes), ending in `…` when cut.
pub fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_delay_seconds_and_http_dates() {
        use std::time::UNIX_EPOCH;
        // Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example.
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after("Sun Nov  6 08:49:47 1994", now),
            Some(Duration::from_secs(10))
        );
        // A date already past asks for no wait; nonsense asks for nothing.
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }

    fn refusal(result: Result<Url, NotifyError>) -> String {
        match result {
            Err(NotifyError::Setup(message)) => message,
            other => panic!("not refused as a setup problem: {other:?}"),
        }
    }

    #[test]
    fn long_text_is_cut_to_the_limit_with_an_ellipsis() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut(&"é".repeat(300), 255).chars().count(), 255);
        assert_eq!(cut("abc", 0), "…");
    }

    #[test]
    fn error_text_is_one_line_of_at_most_the_detail_limit() {
        assert_eq!(shorten("bad\nrequest"), "bad request");
        let long = shorten(&"x".repeat(1000));
        assert_eq!(long.chars().count(), DETAIL_LIMIT);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn https_and_loopback_http_without_credentials_are_the_only_good_urls() {
        let problem = |text: &str| url_problem(&Url::parse(text).unwrap());
        for good in [
            "https://hooks.slack.com/services/T/B/X",
            "http://127.0.0.1:8080/x",
            "http://localhost/x",
            "http://LOCALHOST:1/x",
            "http://[::1]:8080",
            "http://127.1:8080",
            "http://[0:0:0:0:0:0:0:1]",
        ] {
            assert_eq!(problem(good), None, "{good}");
        }
        assert_eq!(
            problem("http://jira.example.com"),
            Some(UrlProblem::PlainHttp)
        );
        assert_eq!(problem("http://10.0.0.1"), Some(UrlProblem::PlainHttp));
        assert_eq!(problem("ftp://example.com"), Some(UrlProblem::NotHttps));
        assert_eq!(problem("mailto:a@example.com"), Some(UrlProblem::NotHttps));
        assert_eq!(
            problem("https://me:pw@example.com"),
            Some(UrlProblem::Credentials)
        );
        assert_eq!(
            problem("http://me@127.0.0.1"),
            Some(UrlProblem::Credentials)
        );
    }

    #[test]
    fn a_refused_url_is_named_by_its_field_with_an_example_and_only_its_host() {
        let example = "https://hooks.slack.com/services/…";
        let field = "the Slack webhook URL";
        assert_eq!(
            refusal(service_url(
                field,
                example,
                "http://hooks.slack.com/services/T/B/token"
            )),
            "the Slack webhook URL must be an https URL such as \
             https://hooks.slack.com/services/… (http only to 127.0.0.1, ::1 or localhost), \
             not http://hooks.slack.com"
        );
        assert_eq!(
            refusal(service_url(
                field,
                example,
                "https://u:token@hooks.slack.com/x"
            )),
            "the Slack webhook URL must not carry a user or password: credentials come from \
             the channel's Secret"
        );
        assert_eq!(
            refusal(service_url(
                field,
                example,
                "hooks.slack.com/services/T/B/token"
            )),
            "the Slack webhook URL is not a URL (relative URL without a base): write it in \
             full, such as https://hooks.slack.com/services/…"
        );
        assert!(
            refusal(service_url(field, example, "mailto:token@x")).ends_with("not a mailto: URL")
        );
    }

    #[test]
    fn a_site_url_has_no_query_or_fragment() {
        let site = |text: &str| site_url("jira.url", "https://example.atlassian.net", text);
        assert!(site("https://jira.example.com/jira").is_ok());
        assert_eq!(
            refusal(site("https://jira.example.com/?os_authType=basic")),
            "jira.url must be the site's address without ?query or #fragment, such as \
             https://example.atlassian.net"
        );
        assert!(refusal(site("https://jira.example.com/#top")).contains("#fragment"));
    }

    #[test]
    fn endpoints_keep_a_context_path_and_encode_segments() {
        let site = site_url("jira.url", "", "https://jira.example.com/jira/").unwrap();
        assert_eq!(
            endpoint(&site, &["rest", "api", "2", "issue", "SEC 1", "comment"]).as_str(),
            "https://jira.example.com/jira/rest/api/2/issue/SEC%201/comment"
        );
    }

    #[test]
    fn metadata_addresses_and_names_are_refused_even_over_https() {
        let problem = |text: &str| url_problem(&Url::parse(text).unwrap());
        for bad in [
            "https://169.254.169.254/latest/meta-data/",
            "http://169.254.170.2/v2/credentials",
            "https://[fd00:ec2::254]/latest",
            "https://[fe80::1]:8443/",
            "https://[::ffff:169.254.169.254]/",
            "https://instance-data/latest",
            "https://INSTANCE-DATA.ec2.internal./x",
            "https://metadata.google.internal/computeMetadata/v1/",
            // The URL parser normalises another spelling of 169.254.169.254.
            "https://2852039166/",
        ] {
            assert_eq!(problem(bad), Some(UrlProblem::Metadata), "{bad}");
        }
        for good in [
            "https://instance-data-store.example.com/",
            "https://metadata.example.com/",
            "https://169.255.0.1/",
        ] {
            assert_eq!(problem(good), None, "{good}");
        }
        assert_eq!(
            refusal(service_url(
                "jira.url",
                "https://x",
                "https://169.254.169.254/"
            )),
            "jira.url points at a link-local or instance-metadata address: no alert is sent \
             there"
        );
    }

    #[tokio::test]
    async fn the_resolver_never_hands_out_a_metadata_address() {
        use reqwest::dns::Resolve;
        let resolve = |host: &str| NoMetadataResolver.resolve(host.parse().unwrap());
        let refused = match resolve("169.254.169.254").await {
            Ok(_) => panic!("a metadata address was resolved"),
            Err(error) => error.to_string(),
        };
        assert_eq!(
            refused,
            "169.254.169.254 resolves only to link-local or instance-metadata addresses: no \
             alert is sent there"
        );
        let found: Vec<_> = resolve("127.0.0.1").await.unwrap().collect();
        assert_eq!(found.len(), 1);
        assert!(found[0].ip().is_loopback());
    }

    #[test]
    fn a_reason_is_the_services_words_never_a_page_or_document() {
        assert_eq!(reason("invalid_token"), "invalid_token");
        assert_eq!(
            reason("  channel_not_found\n(retry later) "),
            "channel_not_found (retry later)"
        );
        assert_eq!(
            reason("<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"),
            ""
        );
        assert_eq!(reason("<html>\n<head><title>503</title></head>"), "");
        assert_eq!(reason(r#"{"errors":["x"],"secret":"abc"}"#), "");
        assert_eq!(reason("<?xml version=\"1.0\"?><Error/>"), "");
        assert_eq!(
            reason("see https://user:pw@status.example.com/incidents/42?token=abc for details"),
            "see https://status.example.com for details"
        );
        let long = reason(&"word ".repeat(200));
        assert_eq!(long.chars().count(), REASON_LIMIT);
        assert!(long.ends_with('…'));
    }
}
