//! Alerts: who hears about which finding, and when again.
//!
//! Pure: from the channels' routes, the pass's findings and what the operator did
//! about each, and the record of what was already delivered, it decides the exact
//! alerts to send. A finding is alerted once per channel when first seen, again only
//! when its severity rises or the operator's response to it changes, and a last time
//! (resolved) when it is no longer listed. The record only moves on a delivery, so a
//! failed alert is tried again on the next pass.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use super::finding::{Finding, ReportOnly};
use super::ids::FindingId;
use super::severity::{Severity, SeverityBand};
use super::time::Timestamp;

/// What an alert is about, with everything a person needs to act on it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingSummary {
    pub id: FindingId,
    #[serde(rename = "type")]
    pub finding_type: String,
    /// Empty when the finding is no longer listed (a resolved alert).
    pub title: String,
    pub severity: Severity,
    pub account_id: String,
    pub region: String,
    pub instance: Option<String>,
    pub security_groups: Vec<String>,
    pub ports: Vec<u16>,
    pub remote_ips: Vec<IpAddr>,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub count: Option<i64>,
    /// A sample finding (CreateSampleFindings): alerted, never acted on.
    pub sample: bool,
}

impl FindingSummary {
    pub fn of(finding: &Finding) -> FindingSummary {
        FindingSummary {
            id: finding.id.clone(),
            finding_type: finding.finding_type.clone(),
            title: finding.title.clone(),
            severity: finding.severity,
            account_id: finding.account_id.clone(),
            region: finding.region.clone(),
            instance: finding.instance.as_ref().map(|i| i.id.to_string()),
            security_groups: finding
                .instance
                .as_ref()
                .map(|i| i.security_groups.clone())
                .unwrap_or_default(),
            ports: finding.ports(),
            remote_ips: finding.remote_ips(),
            first_seen: finding.first_seen.clone(),
            last_seen: finding.last_seen.clone(),
            count: finding.count,
            sample: finding.sample,
        }
    }

    pub fn band(&self) -> SeverityBand {
        self.severity.band()
    }

    /// The finding in the GuardDuty console.
    pub fn console_url(&self) -> String {
        let region = &self.region;
        format!(
            "https://{region}.console.aws.amazon.com/guardduty/home?region={region}#/findings?macros=current&fId={}",
            self.id
        )
    }

    /// One line: `[SAMPLE] HIGH 8.0 Recon:EC2/PortProbeUnprotectedPort on i-0abc (123456789012, us-east-1)`.
    pub fn headline(&self) -> String {
        let sample = if self.sample { "[SAMPLE] " } else { "" };
        let resource = match &self.instance {
            Some(instance) => format!(" on {instance}"),
            None => String::new(),
        };
        format!(
            "{sample}{} {} {}{resource} ({}, {})",
            self.band(),
            self.severity,
            self.finding_type,
            self.account_id,
            self.region
        )
    }
}

/// What the operator did about a finding, as an alert tells it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Response {
    /// Nothing to do in AWS, and why (sample, other account, type not fixable…).
    Reported { reason: String },
    /// DryRun (or not applied): what would be done.
    Planned { summary: String },
    /// Enforce: the exposure is closed (by this pass or an earlier one).
    Closed { summary: String },
    /// The operator will not change the group, and why.
    Refused { reason: String },
    /// A change was attempted and failed.
    Failed { error: String },
    /// The finding is no longer listed: archived, or no longer selected by the policy.
    NoLongerListed,
}

/// The kind of a [`Response`], which is what the record compares: a new summary
/// text alone does not alert again.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub enum ResponseKind {
    Reported,
    Planned,
    Closed,
    Refused,
    Failed,
    NoLongerListed,
}

impl ResponseKind {
    /// The finding's exposure is still open: a fix planned, refused or failed (not
    /// closed, not merely reported). What `--fail-on exposed` and the SC-7 control read.
    pub fn leaves_exposure_open(self) -> bool {
        matches!(
            self,
            ResponseKind::Planned | ResponseKind::Refused | ResponseKind::Failed
        )
    }

    /// The response in a few words, for "changed from … to …".
    fn words(self) -> &'static str {
        match self {
            ResponseKind::Reported => "reported only",
            ResponseKind::Planned => "fix planned",
            ResponseKind::Closed => "remediated",
            ResponseKind::Refused => "not remediated",
            ResponseKind::Failed => "remediation failed",
            ResponseKind::NoLongerListed => "resolved",
        }
    }
}

impl Response {
    pub fn kind(&self) -> ResponseKind {
        match self {
            Response::Reported { .. } => ResponseKind::Reported,
            Response::Planned { .. } => ResponseKind::Planned,
            Response::Closed { .. } => ResponseKind::Closed,
            Response::Refused { .. } => ResponseKind::Refused,
            Response::Failed { .. } => ResponseKind::Failed,
            Response::NoLongerListed => ResponseKind::NoLongerListed,
        }
    }

    pub fn reported(reason: &ReportOnly) -> Response {
        Response::Reported {
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Response::Reported { reason } => write!(f, "No change in AWS: {reason}."),
            Response::Planned { summary } => write!(f, "Planned (DryRun, not applied): {summary}."),
            Response::Closed { summary } => write!(f, "Remediated: {summary}."),
            Response::Refused { reason } => write!(f, "Not remediated: {reason}."),
            Response::Failed { error } => write!(f, "Remediation failed: {error}."),
            Response::NoLongerListed => f.write_str(
                "Resolved: the finding is no longer listed (archived, or no longer selected by the policy).",
            ),
        }
    }
}

/// Why this alert is sent now.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum AlertEvent {
    /// First seen by this channel.
    Opened,
    /// The severity rose since the last alert.
    Escalated { from: Severity },
    /// The operator's response changed (planned → closed, closed → failed, …).
    Updated { from: ResponseKind },
    /// The finding is no longer listed; the last alert about it.
    Resolved,
}

/// One message to one channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// The channel's name in the policy.
    pub channel: String,
    pub event: AlertEvent,
    pub finding: FindingSummary,
    pub response: Response,
    /// The record was full: once this alert is delivered, the channel's entry of this
    /// (lower-severity) finding goes to make room.
    #[serde(skip)]
    pub evicts: Option<FindingId>,
}

impl Alert {
    /// A subject line: `GuardDuty HIGH 8.0 Recon:EC2/PortProbeUnprotectedPort on i-… — remediated`.
    pub fn subject(&self) -> String {
        let what = match (&self.event, &self.response) {
            (AlertEvent::Resolved, _) => "resolved",
            (_, Response::Reported { .. }) => "reported",
            (_, Response::Planned { .. }) => "fix planned",
            (_, Response::Closed { .. }) => "remediated",
            (_, Response::Refused { .. }) => "needs a person",
            (_, Response::Failed { .. }) => "remediation failed",
            (_, Response::NoLongerListed) => "resolved",
        };
        let escalated = match self.event {
            AlertEvent::Escalated { from } => format!(" (severity up from {from})"),
            _ => String::new(),
        };
        format!("GuardDuty {}{escalated} — {what}", self.finding.headline())
    }

    /// The whole alert as plain text, one fact per line (Email, the fallback text of
    /// chat messages, ticket descriptions). Empty facts are left out.
    pub fn text(&self) -> String {
        let f = &self.finding;
        let mut lines = vec![self.subject(), String::new()];
        if !f.title.is_empty() {
            lines.push(f.title.clone());
        }
        lines.push(format!("Severity: {} ({})", f.band(), f.severity));
        lines.push(format!("Type: {}", f.finding_type));
        lines.push(format!("Finding: {}", f.id));
        lines.push(format!("Account: {}  Region: {}", f.account_id, f.region));
        if let Some(instance) = &f.instance {
            lines.push(format!("Instance: {instance}"));
        }
        if !f.security_groups.is_empty() {
            lines.push(format!("Security groups: {}", f.security_groups.join(", ")));
        }
        if !f.ports.is_empty() {
            let ports: Vec<String> = f.ports.iter().map(u16::to_string).collect();
            lines.push(format!("Ports: {}", ports.join(", ")));
        }
        if !f.remote_ips.is_empty() {
            let ips: Vec<String> = f.remote_ips.iter().map(IpAddr::to_string).collect();
            lines.push(format!("Remote IPs: {}", ips.join(", ")));
        }
        match (&f.first_seen, &f.last_seen) {
            (Some(first), Some(last)) => lines.push(format!("Seen: {first} to {last}")),
            (Some(first), None) => lines.push(format!("First seen: {first}")),
            (None, Some(last)) => lines.push(format!("Last seen: {last}")),
            (None, None) => {}
        }
        if let Some(count) = f.count {
            lines.push(format!("Count: {count}"));
        }
        if f.sample {
            lines.push("Sample finding: nothing in AWS is changed for it.".into());
        }
        lines.push(String::new());
        lines.push(self.response.to_string());
        lines.push(String::new());
        lines.push(format!("Console: {}", f.console_url()));
        lines.join("\n")
    }

    /// What changed, as a note on the issue or incident a service already holds
    /// about the finding (Jira comments, ServiceNow work notes): the change, the
    /// operator's response now, and where to look.
    pub fn change_note(&self) -> String {
        let finding = &self.finding;
        let change = match self.event {
            AlertEvent::Opened => "GuardDuty reports this finding again.".to_string(),
            AlertEvent::Escalated { from } => format!(
                "Severity rose from {from} to {} ({}).",
                finding.severity,
                finding.band()
            ),
            AlertEvent::Updated { from } => format!(
                "The operator's response changed from {} to {}.",
                from.words(),
                self.response.kind().words()
            ),
            AlertEvent::Resolved => "The finding is resolved.".to_string(),
        };
        let mut lines = vec![change, String::new(), self.response.to_string()];
        if let Response::Refused { .. } | Response::Failed { .. } = self.response {
            lines.push("A person needs to look at the security group.".to_string());
        }
        lines.push(String::new());
        lines.push(format!("Finding: {}", finding.id));
        lines.push(format!("Console: {}", finding.console_url()));
        lines.join("\n")
    }
}

/// A glob over finding types: `*` matches any run of characters, `?` one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypePattern(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypePatternError {
    #[error("a finding type pattern cannot be empty: use * for every type")]
    Empty,
    #[error(
        "{0:?} is not a finding type pattern: use the characters of finding types (letters, digits, \
         : / . _ ! & -) and the wildcards * and ?, such as UnauthorizedAccess:*"
    )]
    Invalid(String),
}

impl TypePattern {
    pub fn parse(text: &str) -> Result<TypePattern, TypePatternError> {
        if text.is_empty() {
            return Err(TypePatternError::Empty);
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || ":/._!&-*?".contains(c);
        if text.len() > 256 || !text.chars().all(allowed) {
            return Err(TypePatternError::Invalid(text.to_string()));
        }
        Ok(TypePattern(text.to_string()))
    }

    pub fn matches(&self, finding_type: &str) -> bool {
        glob_matches(self.0.as_bytes(), finding_type.as_bytes())
    }
}

impl fmt::Display for TypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Iterative glob matching with one backtrack point: linear in practice, no recursion.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Which findings a channel hears about.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub channel: String,
    pub min_severity: Severity,
    /// Empty: every type.
    pub finding_types: Vec<TypePattern>,
}

impl Route {
    pub fn hears(&self, finding: &FindingSummary) -> bool {
        finding.severity >= self.min_severity
            && (self.finding_types.is_empty()
                || self
                    .finding_types
                    .iter()
                    .any(|p| p.matches(&finding.finding_type)))
    }
}

/// What one channel was last told about one finding.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivered {
    pub channel: String,
    pub finding: FindingId,
    #[serde(rename = "type")]
    pub finding_type: String,
    /// The highest severity alerted.
    pub severity: f64,
    pub response: ResponseKind,
    /// When the channel was first told (RFC 3339); the oldest low-severity entries
    /// make room first when the record is full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The finding's account and region, so that it is resolved only when its
    /// region's findings were all read (`None`: recorded before policies covered
    /// several regions: the policy's first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// What every channel was told, keyed by channel and finding: the memory that makes
/// alerts exactly-once. Kept on the resource's status by the controller and in
/// `--state FILE` by the command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertRecord {
    entries: BTreeMap<(String, FindingId), Delivered>,
}

impl AlertRecord {
    pub fn from_entries(entries: impl IntoIterator<Item = Delivered>) -> AlertRecord {
        AlertRecord {
            entries: entries
                .into_iter()
                .map(|d| ((d.channel.clone(), d.finding.clone()), d))
                .collect(),
        }
    }

    /// Sorted by channel, then finding.
    pub fn entries(&self) -> impl Iterator<Item = &Delivered> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, channel: &str, finding: &FindingId) -> Option<&Delivered> {
        self.entries.get(&(channel.to_string(), finding.clone()))
    }

    /// Takes note of an alert delivered `now`: a resolved finding is forgotten, and
    /// the entry an alert made room for goes.
    pub fn delivered(&mut self, alert: &Alert, now: Timestamp) {
        if let Some(evicted) = &alert.evicts {
            self.entries
                .remove(&(alert.channel.clone(), evicted.clone()));
        }
        let key = (alert.channel.clone(), alert.finding.id.clone());
        if alert.event == AlertEvent::Resolved {
            self.entries.remove(&key);
            return;
        }
        let (severity, since) = match self.entries.get(&key) {
            Some(before) => (
                before.severity.max(alert.finding.severity.value()),
                before.since.clone(),
            ),
            None => (alert.finding.severity.value(), Some(now.to_string())),
        };
        self.entries.insert(
            key,
            Delivered {
                channel: alert.channel.clone(),
                finding: alert.finding.id.clone(),
                finding_type: alert.finding.finding_type.clone(),
                severity,
                response: alert.response.kind(),
                since,
                account: Some(alert.finding.account_id.clone()),
                region: Some(alert.finding.region.clone()),
            },
        );
    }

    /// Forgets the channels no longer in the policy.
    pub fn retain_channels(&mut self, routes: &[Route]) {
        self.entries
            .retain(|(channel, _), _| routes.iter().any(|r| &r.channel == channel));
    }
}

/// A finding of this pass and what the operator did about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub finding: FindingSummary,
    pub response: Response,
}

/// The pass's context for alerts about findings no longer listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The regions whose open findings the pass holds, every one: a recorded finding
    /// of such a region that the pass does not hold is resolved. Empty when the
    /// findings could not be read, or the pass was about a few findings (an event).
    pub complete: BTreeSet<String>,
    /// The account and region of a recorded finding that has none (recorded before
    /// policies covered several regions).
    pub account_id: String,
    pub region: String,
}

impl Listing {
    /// Every finding of `region` was read.
    pub fn complete_in(region: &str, account_id: &str) -> Listing {
        Listing {
            complete: BTreeSet::from([region.to_string()]),
            account_id: account_id.to_string(),
            region: region.to_string(),
        }
    }

    /// Is the recorded finding no longer open, if the pass does not hold it?
    fn settles(&self, recorded: &Delivered) -> bool {
        self.complete
            .contains(recorded.region.as_deref().unwrap_or(&self.region))
    }
}

/// The alerts of one pass, and what was held back.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertPlan {
    /// Per channel in route order, the highest severity first.
    pub alerts: Vec<Alert>,
    /// Alerts held back for a later pass because of the per-pass limit of a channel
    /// (they go out on the next passes, highest severity first). Per channel name.
    pub deferred: BTreeMap<String, usize>,
    /// New findings not alerted because the record is full of findings at least as
    /// severe: due alerts withheld, which NotificationsDelivered reports. Per channel.
    pub withheld: BTreeMap<String, usize>,
}

/// The limits of one pass's alerting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertLimits {
    /// At most this many alerts per channel in one pass (chat and pagers rate-limit;
    /// the rest go out on the next passes, highest severity first).
    pub per_channel: usize,
    /// The most entries the record may hold: past it, a new finding takes the place
    /// of the channel's oldest entry of lower severity, or is withheld.
    pub record_capacity: usize,
}

/// Decides every alert of a pass: for each route, each finding it hears about that is
/// new to the channel, more severe than last alerted, or whose response changed; and
/// for each finding the channel was told about that is no longer listed, a resolve.
pub fn plan_alerts(
    routes: &[Route],
    seen: &[Seen],
    record: &AlertRecord,
    listing: &Listing,
    limits: AlertLimits,
) -> AlertPlan {
    let mut plan = AlertPlan::default();
    let listed: BTreeMap<&FindingId, &Seen> = seen.iter().map(|s| (&s.finding.id, s)).collect();
    // Entries of findings no longer listed go with their resolve: they make room.
    let resolving = record
        .entries()
        .filter(|d| listing.settles(d) && !listed.contains_key(&d.finding))
        .count();
    let mut free = (limits.record_capacity + resolving).saturating_sub(record.len());
    // Listed entries that may make room for a more severe new finding: lowest
    // severity first, then the oldest.
    let mut evictable: Vec<&Delivered> = record
        .entries()
        .filter(|d| listed.contains_key(&d.finding))
        .collect();
    evictable.sort_by(|a, b| {
        a.severity
            .total_cmp(&b.severity)
            .then_with(|| a.since.cmp(&b.since))
            .then_with(|| (&a.channel, &a.finding).cmp(&(&b.channel, &b.finding)))
    });
    let mut evicted: Vec<(String, FindingId)> = Vec::new();
    for route in routes {
        let mut due: Vec<Alert> = Vec::new();
        let mut deferred = 0;
        for s in seen.iter().filter(|s| route.hears(&s.finding)) {
            let event = match record.get(&route.channel, &s.finding.id) {
                None => AlertEvent::Opened,
                Some(before) if s.finding.severity.value() > before.severity => {
                    AlertEvent::Escalated {
                        from: Severity::of_finding(before.severity).unwrap_or(Severity::MIN),
                    }
                }
                Some(before) if s.response.kind() != before.response => AlertEvent::Updated {
                    from: before.response,
                },
                Some(_) => continue,
            };
            due.push(Alert {
                channel: route.channel.clone(),
                event,
                finding: s.finding.clone(),
                response: s.response.clone(),
                evicts: None,
            });
        }
        for before in record.entries().filter(|d| {
            d.channel == route.channel && listing.settles(d) && !listed.contains_key(&d.finding)
        }) {
            due.push(Alert {
                channel: route.channel.clone(),
                event: AlertEvent::Resolved,
                finding: FindingSummary {
                    id: before.finding.clone(),
                    finding_type: before.finding_type.clone(),
                    title: String::new(),
                    severity: Severity::of_finding(before.severity).unwrap_or(Severity::MIN),
                    account_id: before
                        .account
                        .clone()
                        .unwrap_or_else(|| listing.account_id.clone()),
                    region: before
                        .region
                        .clone()
                        .unwrap_or_else(|| listing.region.clone()),
                    instance: None,
                    security_groups: Vec::new(),
                    ports: Vec::new(),
                    remote_ips: Vec::new(),
                    first_seen: None,
                    last_seen: None,
                    count: None,
                    sample: false,
                },
                response: Response::NoLongerListed,
                evicts: None,
            });
        }
        // Highest severity first; then by finding id, so the order is deterministic.
        due.sort_by(|a, b| {
            b.finding
                .severity
                .cmp(&a.finding.severity)
                .then_with(|| a.finding.id.cmp(&b.finding.id))
        });
        let mut sent = 0;
        let mut withheld = 0;
        for mut alert in due {
            let needs_entry = alert.event == AlertEvent::Opened;
            if sent >= limits.per_channel {
                deferred += 1;
                continue;
            }
            if needs_entry && free == 0 {
                // The channel's oldest entry of lower severity makes room; none: the
                // alert is withheld, which the status says.
                let severity = alert.finding.severity.value();
                let victim = evictable.iter().position(|d| {
                    d.channel == route.channel
                        && d.severity < severity
                        && !evicted.contains(&(d.channel.clone(), d.finding.clone()))
                });
                match victim {
                    Some(at) => {
                        let victim = evictable.remove(at);
                        evicted.push((victim.channel.clone(), victim.finding.clone()));
                        alert.evicts = Some(victim.finding.clone());
                    }
                    None => {
                        withheld += 1;
                        continue;
                    }
                }
            } else if needs_entry {
                free -= 1;
            }
            sent += 1;
            plan.alerts.push(alert);
        }
        if deferred > 0 {
            plan.deferred.insert(route.channel.clone(), deferred);
        }
        if withheld > 0 {
            plan.withheld.insert(route.channel.clone(), withheld);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const LIMITS: AlertLimits = AlertLimits {
        per_channel: 50,
        record_capacity: 1000,
    };

    fn id(n: u8) -> FindingId {
        FindingId::parse(&format!("{n:032x}")).unwrap()
    }

    fn summary(n: u8, severity: f64, finding_type: &str) -> FindingSummary {
        let mut finding = Finding::probe(&format!("{n:032x}"), "i-0123456789abcdef0", &[22]);
        finding.severity = Severity::of_finding(severity).unwrap();
        finding.finding_type = finding_type.to_string();
        FindingSummary::of(&finding)
    }

    fn seen(n: u8, severity: f64, response: Response) -> Seen {
        Seen {
            finding: summary(n, severity, "Recon:EC2/PortProbeUnprotectedPort"),
            response,
        }
    }

    fn planned() -> Response {
        Response::Planned {
            summary: "revoke tcp/22 from 0.0.0.0/0 in sg-1".into(),
        }
    }

    fn closed() -> Response {
        Response::Closed {
            summary: "revoked tcp/22 from 0.0.0.0/0 in sg-1".into(),
        }
    }

    fn route(channel: &str, min: f64, types: &[&str]) -> Route {
        Route {
            channel: channel.to_string(),
            min_severity: Severity::threshold(min).unwrap(),
            finding_types: types
                .iter()
                .map(|t| TypePattern::parse(t).unwrap())
                .collect(),
        }
    }

    fn listing() -> Listing {
        Listing::complete_in("us-east-1", "123456789012")
    }

    /// Plans and delivers every alert, as a pass whose channels all work.
    fn pass(routes: &[Route], seen: &[Seen], record: &mut AlertRecord) -> Vec<Alert> {
        let plan = plan_alerts(routes, seen, record, &listing(), LIMITS);
        for alert in &plan.alerts {
            record.delivered(alert, Timestamp(1_800_000_000));
        }
        plan.alerts
    }

    fn events(alerts: &[Alert]) -> Vec<(String, FindingId, AlertEvent)> {
        alerts
            .iter()
            .map(|a| (a.channel.clone(), a.finding.id.clone(), a.event))
            .collect()
    }

    #[test]
    fn type_patterns_match_with_star_and_question_mark() {
        let p = |text| TypePattern::parse(text).unwrap();
        assert!(p("UnauthorizedAccess:*").matches("UnauthorizedAccess:EC2/SSHBruteForce"));
        assert!(!p("UnauthorizedAccess:*").matches("Recon:EC2/PortProbeUnprotectedPort"));
        assert!(p("*:EC2/*BruteForce").matches("UnauthorizedAccess:EC2/RDPBruteForce"));
        assert!(
            p("Recon:EC2/PortProbe?MRUnprotectedPort")
                .matches("Recon:EC2/PortProbeEMRUnprotectedPort")
        );
        assert!(p("*").matches(""));
        assert!(p("a*b*c").matches("aXbYbZc"));
        assert!(!p("a*b*c").matches("aXbYbZ"));
        assert!(
            !p("Recon:EC2/PortProbeUnprotectedPort").matches("Recon:EC2/PortProbeUnprotectedPorts")
        );
        assert_eq!(TypePattern::parse(""), Err(TypePatternError::Empty));
        assert!(matches!(
            TypePattern::parse("Recon EC2"),
            Err(TypePatternError::Invalid(_))
        ));
    }

    #[test]
    fn channels_hear_only_findings_at_or_above_their_severity_and_of_their_types() {
        let routes = [
            route("oncall", 7.0, &[]),
            route("chat", 1.0, &["UnauthorizedAccess:*"]),
        ];
        let findings = [
            seen(1, 8.0, planned()),
            seen(2, 5.0, planned()),
            Seen {
                finding: summary(3, 2.0, "UnauthorizedAccess:EC2/SSHBruteForce"),
                response: planned(),
            },
        ];
        let alerts = pass(&routes, &findings, &mut AlertRecord::default());
        assert_eq!(
            events(&alerts),
            [
                ("oncall".to_string(), id(1), AlertEvent::Opened),
                ("chat".to_string(), id(3), AlertEvent::Opened),
            ]
        );
    }

    #[test]
    fn a_quiet_second_pass_alerts_nothing() {
        let routes = [route("oncall", 1.0, &[])];
        let findings = [seen(1, 8.0, planned()), seen(2, 5.0, closed())];
        let mut record = AlertRecord::default();
        assert_eq!(pass(&routes, &findings, &mut record).len(), 2);
        assert_eq!(pass(&routes, &findings, &mut record), []);
    }

    #[test]
    fn a_rising_severity_alerts_again_and_a_falling_one_does_not() {
        let routes = [route("oncall", 1.0, &[])];
        let mut record = AlertRecord::default();
        pass(&routes, &[seen(1, 5.0, planned())], &mut record);
        let alerts = pass(&routes, &[seen(1, 8.0, planned())], &mut record);
        assert_eq!(
            events(&alerts),
            [(
                "oncall".to_string(),
                id(1),
                AlertEvent::Escalated {
                    from: Severity::of_finding(5.0).unwrap()
                }
            )]
        );
        assert_eq!(pass(&routes, &[seen(1, 6.0, planned())], &mut record), []);
        assert_eq!(pass(&routes, &[seen(1, 8.0, planned())], &mut record), []);
    }

    #[test]
    fn a_changed_response_alerts_again_but_a_new_summary_alone_does_not() {
        let routes = [route("oncall", 1.0, &[])];
        let mut record = AlertRecord::default();
        pass(&routes, &[seen(1, 8.0, planned())], &mut record);
        let other_words = Response::Planned {
            summary: "revoke tcp/22 from 0.0.0.0/0 in sg-2".into(),
        };
        assert_eq!(pass(&routes, &[seen(1, 8.0, other_words)], &mut record), []);
        let alerts = pass(&routes, &[seen(1, 8.0, closed())], &mut record);
        assert_eq!(
            events(&alerts),
            [(
                "oncall".to_string(),
                id(1),
                AlertEvent::Updated {
                    from: ResponseKind::Planned
                }
            )]
        );
        assert_eq!(alerts[0].response, closed());
    }

    #[test]
    fn a_finding_no_longer_listed_is_resolved_once_then_forgotten() {
        let routes = [route("oncall", 1.0, &[])];
        let mut record = AlertRecord::default();
        pass(
            &routes,
            &[seen(1, 8.0, closed()), seen(2, 4.0, planned())],
            &mut record,
        );
        let alerts = pass(&routes, &[seen(2, 4.0, planned())], &mut record);
        assert_eq!(
            events(&alerts),
            [("oncall".to_string(), id(1), AlertEvent::Resolved)]
        );
        let resolved = &alerts[0];
        assert_eq!(resolved.response, Response::NoLongerListed);
        assert_eq!(
            resolved.finding.finding_type,
            "Recon:EC2/PortProbeUnprotectedPort"
        );
        assert_eq!(resolved.finding.severity.value(), 8.0);
        assert_eq!(resolved.finding.region, "us-east-1");
        assert!(record.get("oncall", &id(1)).is_none());
        assert_eq!(pass(&routes, &[seen(2, 4.0, planned())], &mut record), []);
    }

    #[test]
    fn nothing_is_resolved_when_the_findings_could_not_be_read() {
        let routes = [route("oncall", 1.0, &[])];
        let mut record = AlertRecord::default();
        pass(&routes, &[seen(1, 8.0, planned())], &mut record);
        let unread = Listing {
            complete: Default::default(),
            ..listing()
        };
        let plan = plan_alerts(&routes, &[], &record, &unread, LIMITS);
        assert_eq!(plan.alerts, []);
    }

    #[test]
    fn a_finding_is_resolved_only_when_its_own_region_was_read() {
        let routes = [route("oncall", 1.0, &[])];
        let mut record = AlertRecord::default();
        let mut west = seen(2, 8.0, planned());
        west.finding.region = "eu-west-1".into();
        pass(&routes, &[seen(1, 8.0, planned()), west], &mut record);
        // Only us-east-1 was read this pass, and neither finding is listed.
        let plan = plan_alerts(&routes, &[], &record, &listing(), LIMITS);
        let resolved: Vec<_> = plan
            .alerts
            .iter()
            .map(|a| (a.finding.id.to_string(), a.finding.region.clone()))
            .collect();
        assert_eq!(
            resolved,
            [(summary(1, 8.0, "x").id.to_string(), "us-east-1".into())]
        );
        assert_eq!(plan.alerts[0].event, AlertEvent::Resolved);
    }

    #[test]
    fn an_alert_that_was_not_delivered_is_planned_again_next_pass() {
        let routes = [route("oncall", 1.0, &[]), route("chat", 1.0, &[])];
        let findings = [seen(1, 8.0, planned())];
        let mut record = AlertRecord::default();
        let plan = plan_alerts(&routes, &findings, &record, &listing(), LIMITS);
        // Only the chat channel's delivery succeeded.
        for alert in plan.alerts.iter().filter(|a| a.channel == "chat") {
            record.delivered(alert, Timestamp(1_800_000_000));
        }
        let again = pass(&routes, &findings, &mut record);
        assert_eq!(
            events(&again),
            [("oncall".to_string(), id(1), AlertEvent::Opened)]
        );
    }

    #[test]
    fn a_channel_gets_at_most_its_per_pass_limit_highest_severity_first() {
        let routes = [route("oncall", 1.0, &[])];
        let findings: Vec<Seen> = (1..=5)
            .map(|n| seen(n, f64::from(n) + 2.0, planned()))
            .collect();
        let limits = AlertLimits {
            per_channel: 2,
            ..LIMITS
        };
        let plan = plan_alerts(
            &routes,
            &findings,
            &AlertRecord::default(),
            &listing(),
            limits,
        );
        let ids: Vec<_> = plan.alerts.iter().map(|a| a.finding.id.clone()).collect();
        assert_eq!(ids, [id(5), id(4)]);
        assert_eq!(plan.deferred.get("oncall"), Some(&3));
    }

    #[test]
    fn a_full_record_withholds_a_finding_no_more_severe_than_any_entry_and_says_so() {
        let routes = [route("oncall", 1.0, &[])];
        let mut record = AlertRecord::default();
        pass(&routes, &[seen(1, 9.0, planned())], &mut record);
        let limits = AlertLimits {
            record_capacity: 1,
            ..LIMITS
        };
        let plan = plan_alerts(
            &routes,
            &[seen(1, 9.0, closed()), seen(2, 5.0, planned())],
            &record,
            &listing(),
            limits,
        );
        assert_eq!(
            events(&plan.alerts),
            [(
                "oncall".to_string(),
                id(1),
                AlertEvent::Updated {
                    from: ResponseKind::Planned
                }
            )]
        );
        assert_eq!(plan.withheld.get("oncall"), Some(&1));
        assert!(plan.deferred.is_empty(), "withheld, not deferred");
    }

    #[test]
    fn a_full_record_never_withholds_a_more_severe_finding_the_oldest_low_one_makes_room() {
        let routes = [route("oncall", 1.0, &[])];
        let mut record = AlertRecord::default();
        pass(
            &routes,
            &[seen(1, 3.0, planned()), seen(2, 3.0, planned())],
            &mut record,
        );
        let limits = AlertLimits {
            record_capacity: 2,
            ..LIMITS
        };
        let listed = [
            seen(1, 3.0, planned()),
            seen(2, 3.0, planned()),
            seen(3, 9.5, planned()),
        ];
        let plan = plan_alerts(&routes, &listed, &record, &listing(), limits);
        assert_eq!(
            events(&plan.alerts),
            [("oncall".to_string(), id(3), AlertEvent::Opened)]
        );
        assert_eq!(
            plan.alerts[0].evicts,
            Some(id(1)),
            "same severity: the first in order"
        );
        assert!(plan.withheld.is_empty());
        for alert in &plan.alerts {
            record.delivered(alert, Timestamp(1_800_000_100));
        }
        assert_eq!(record.len(), 2);
        assert!(record.get("oncall", &id(3)).is_some());
        assert!(record.get("oncall", &id(1)).is_none());
        // A resolve due makes room as well.
        let plan = plan_alerts(
            &routes,
            &[seen(3, 9.5, planned()), seen(4, 4.0, planned())],
            &record,
            &listing(),
            limits,
        );
        assert!(plan.withheld.is_empty(), "{plan:?}");
        assert_eq!(plan.alerts.len(), 2);
    }

    #[test]
    fn channels_removed_from_the_policy_are_forgotten() {
        let mut record = AlertRecord::default();
        pass(
            &[route("oncall", 1.0, &[]), route("chat", 1.0, &[])],
            &[seen(1, 8.0, planned())],
            &mut record,
        );
        record.retain_channels(&[route("chat", 1.0, &[])]);
        assert_eq!(record.len(), 1);
        assert!(record.get("chat", &id(1)).is_some());
    }

    #[test]
    fn the_text_of_an_alert_states_every_fact_and_what_was_done() {
        let mut finding = Finding::probe("a1b2c3d4e5f60718293a4b5c6d7e8f90", "i-0abc", &[22, 3389]);
        finding.sample = true;
        finding.count = Some(14);
        finding.first_seen = Some("2026-11-28T10:00:00Z".into());
        finding.last_seen = Some("2026-11-29T04:00:00Z".into());
        let alert = Alert {
            channel: "mail".into(),
            event: AlertEvent::Opened,
            finding: FindingSummary::of(&finding),
            response: Response::reported(&ReportOnly::Sample),
            evicts: None,
        };
        let text = alert.text();
        for fact in [
            "[SAMPLE] MEDIUM 5.0 Recon:EC2/PortProbeUnprotectedPort on i-0abc (123456789012",
            "Severity: MEDIUM (5.0)",
            "Finding: a1b2c3d4e5f60718293a4b5c6d7e8f90",
            "Ports: 22, 3389",
            "Seen: 2026-11-28T10:00:00Z to 2026-11-29T04:00:00Z",
            "Count: 14",
            "Sample finding: nothing in AWS is changed for it.",
            "No change in AWS: sample finding: never changes AWS.",
            "Console: https://us-east-1.console.aws.amazon.com/guardduty/home?region=us-east-1#/findings?macros=current&fId=a1b2c3d4e5f60718293a4b5c6d7e8f90",
        ] {
            assert!(text.contains(fact), "{fact:?} missing from:\n{text}");
        }
        assert!(
            alert.subject().ends_with("— reported"),
            "{}",
            alert.subject()
        );
    }

    #[test]
    fn a_change_note_tells_what_changed_the_response_now_and_where_to_look() {
        let alert = |event, response| Alert {
            channel: "tickets".into(),
            event,
            finding: summary(1, 8.0, "Recon:EC2/PortProbeUnprotectedPort"),
            response,
            evicts: None,
        };
        let updated = alert(
            AlertEvent::Updated {
                from: ResponseKind::Planned,
            },
            closed(),
        );
        assert_eq!(
            updated.change_note(),
            [
                "The operator's response changed from fix planned to remediated.",
                "",
                "Remediated: revoked tcp/22 from 0.0.0.0/0 in sg-1.",
                "",
                "Finding: 00000000000000000000000000000001",
                "Console: https://us-east-1.console.aws.amazon.com/guardduty/home?region=us-east-1\
                 #/findings?macros=current&fId=00000000000000000000000000000001",
            ]
            .join("\n")
        );

        let escalated = alert(
            AlertEvent::Escalated {
                from: Severity::of_finding(5.0).unwrap(),
            },
            Response::Refused {
                reason: "the group is shared".into(),
            },
        );
        let note = escalated.change_note();
        assert!(
            note.starts_with(
                "Severity rose from 5.0 to 8.0 (HIGH).\n\nNot remediated: the group is \
                 shared.\nA person needs to look at the security group.\n"
            ),
            "{note}"
        );
        assert!(
            alert(AlertEvent::Opened, planned())
                .change_note()
                .starts_with("GuardDuty reports this finding again.\n")
        );
        assert!(
            alert(AlertEvent::Resolved, Response::NoLongerListed)
                .change_note()
                .starts_with("The finding is resolved.\n")
        );
    }

    fn arb_response() -> impl Strategy<Value = Response> {
        prop_oneof![
            Just(planned()),
            Just(closed()),
            Just(Response::Failed { error: "x".into() })
        ]
    }

    proptest! {
        /// Exactly once: after every planned alert is delivered, the same pass plans
        /// nothing more, whatever the findings, routes and earlier record.
        #[test]
        fn delivered_alerts_are_never_planned_again_for_the_same_findings(
            first in prop::collection::vec((0u8..12, 1.0f64..10.0, arb_response()), 0..12),
            second in prop::collection::vec((0u8..12, 1.0f64..10.0, arb_response()), 0..12),
            min in 1.0f64..10.0,
        ) {
            let routes = [route("oncall", min, &[]), route("all", 1.0, &[])];
            let dedup = |items: Vec<(u8, f64, Response)>| {
                let mut map = BTreeMap::new();
                for (n, s, r) in items {
                    map.insert(n, seen(n, s, r));
                }
                map.into_values().collect::<Vec<_>>()
            };
            let (first, second) = (dedup(first), dedup(second));
            let mut record = AlertRecord::default();
            pass(&routes, &first, &mut record);
            pass(&routes, &second, &mut record);
            prop_assert_eq!(pass(&routes, &second, &mut record), vec![]);
            // Every listed finding a channel hears about is in its record.
            for route in &routes {
                for s in second.iter().filter(|s| route.hears(&s.finding)) {
                    let entry = record.get(&route.channel, &s.finding.id);
                    prop_assert!(entry.is_some());
                    prop_assert_eq!(entry.unwrap().response, s.response.kind());
                }
            }
        }
    }
}
