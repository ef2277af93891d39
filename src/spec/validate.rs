//! Validation of a spec into the planner's [`Policy`]: every rule, every problem at
//! once, each with its field's path and how to fix it.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use super::duration::parse_go_duration;
use super::notifications::{ValidNotification, check_notifications};
use super::resource::GuardDutyPolicySpec;
use super::{
    INTERVAL_BOUNDS, MAX_DETECTOR_ID_CHARS, MAX_FINDING_TYPES, MAX_INTERVAL,
    MAX_RULES_PER_GROUP_LIMIT, MAX_TAG_KEY_CHARS, MAX_TRUSTED_CIDRS, MIN_INTERVAL,
};
use crate::domain::address_space::overlaps_ipv4_mapped;
use crate::domain::alert::Route;
use crate::domain::cidr::{Cidr, CidrError};
use crate::domain::compliance::{self, FrameworkState};
use crate::domain::outcome::PassReport;
use crate::domain::policy::{
    DEFAULT_EXEMPT_TAG, DEFAULT_MAX_NETWORK_INTERFACES, DEFAULT_MAX_RULES_PER_GROUP, Policy,
    TrustedRanges, TrustedRangesError,
};
use crate::domain::watch::MAX_OWNER;

/// A spec that passed every check: what a pass and the controller work from.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSpec {
    pub policy: Policy,
    /// The regions, in order; empty: the AWS SDK's region.
    pub regions: Vec<String>,
    /// `None`: discovered with ListDetectors.
    pub detector_id: Option<String>,
    pub interval: Duration,
    /// How often every open finding is listed again (the controller, `watch`).
    pub full_resync_interval: Duration,
    /// The alert channels, each with its route.
    pub notifications: Vec<ValidNotification>,
}

impl ValidSpec {
    /// Each control of the compliance catalogue, judged on these settings and on a
    /// pass's report (pure): what `status.compliance` and `report` show.
    /// `alert_failed`: an alert of that pass was not delivered.
    pub fn compliance(&self, report: &PassReport, alert_failed: bool) -> Vec<FrameworkState> {
        let routes: Vec<Route> = self.notifications.iter().map(|n| n.route.clone()).collect();
        let policy = &self.policy;
        let facts = compliance::facts_of(&compliance::FactInputs {
            mode: policy.mode,
            archive_remediated: policy.archive_remediated,
            security_hub_updates: policy.security_hub_updates,
            min_severity: policy.min_severity,
            all_finding_types: policy.finding_types.is_empty(),
            interval_seconds: self.interval.as_secs(),
            channels: &routes,
            findings_read: report.findings_read(),
            alert_failed,
            open_exposure: compliance::exposure_remains(report),
        });
        compliance::evaluate(compliance::catalogue(), &facts)
    }
}

/// One problem of a spec: where it is and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The path of the field, such as `spec.trustedCidrs[1]`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every problem of a spec, in field order; Display writes one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSpec {
    pub errors: Vec<FieldError>,
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidSpec {}

/// Collects every problem of a spec, so that a user fixes them all in one round.
#[derive(Default)]
pub(crate) struct Problems(Vec<FieldError>);

impl Problems {
    pub(crate) fn push(&mut self, field: impl Into<String>, message: impl fmt::Display) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.to_string(),
        });
    }

    /// The value, or `None` with the error recorded against `field`.
    pub(crate) fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.push(field, message)).ok()
    }

    pub(crate) fn count(&self) -> usize {
        self.0.len()
    }
}

impl GuardDutyPolicySpec {
    /// Checks every rule of the spec and builds the planner's [`Policy`]; on failure,
    /// reports all the problems found, not just the first.
    pub fn validate(&self, owner: &PolicyOwner) -> Result<ValidSpec, InvalidSpec> {
        let mut problems = Problems::default();
        let remediation = &self.remediation;
        let owner = problems.check("metadata.name", check_owner(owner));
        let region = problems.check("spec.region", check_region(self.region.as_deref()));
        let regions = check_regions(&self.regions, &mut problems);
        let regions = match (region, regions) {
            (Some(Some(_)), Some(listed)) if !listed.is_empty() => {
                problems.push(
                    "spec.regions",
                    "give either region or regions, not both: regions lists every region, \
                     region is the one-region shorthand",
                );
                None
            }
            (Some(region), Some(listed)) if listed.is_empty() => Some(region.into_iter().collect()),
            (Some(_), Some(listed)) => Some(listed),
            _ => None,
        };
        let detector_id = problems.check(
            "spec.detectorId",
            check_detector_id(self.detector_id.as_deref()),
        );
        if let (Some(Some(_)), Some(regions)) = (&detector_id, &regions)
            && regions.len() > 1
        {
            problems.push(
                "spec.detectorId",
                "detectorId names one region's detector: leave it empty when regions lists \
                 several, and the operator finds each region's detector",
            );
        }
        let member_accounts = self
            .member_accounts
            .as_ref()
            .map(|m| check_member_accounts(m, &mut problems));
        let trusted = check_trusted_cidrs(&self.trusted_cidrs, &mut problems);
        let min_severity = problems.check(
            "spec.findings.minSeverity",
            self.findings
                .min_severity
                .to_severity()
                .map_err(|err| err.to_string()),
        );
        let finding_types = check_finding_types(&self.findings.types, &mut problems);
        let exempt_tag = problems.check(
            "spec.remediation.exemptTag",
            check_tag_key(&remediation.exempt_tag),
        );
        let max_rules_per_group = problems.check(
            "spec.remediation.maxRulesPerGroup",
            check_max_rules(remediation.max_rules_per_group),
        );
        let public_ports = check_ports(
            "spec.remediation.publicPorts",
            &remediation.public_ports,
            &mut problems,
        );
        let ports = check_ports("spec.remediation.ports", &remediation.ports, &mut problems);
        if let (Some(public), Some(ports)) = (&public_ports, &ports)
            && let Some(port) = ports.iter().find(|p| public.contains(p))
        {
            problems.push(
                "spec.remediation.ports",
                format!(
                    "port {port} is also in remediation.publicPorts, whose ports are never \
                     remediated: remove it from one of the two lists"
                ),
            );
        }
        let max_network_interfaces = problems.check(
            "spec.remediation.maxNetworkInterfaces",
            check_max_interfaces(remediation.max_network_interfaces),
        );
        let notifications = check_notifications(&self.notifications, &mut problems);
        let interval = problems.check("spec.interval", check_interval(&self.interval));
        let full_resync_interval = match &self.full_resync_interval {
            Some(text) => {
                problems.check("spec.fullResyncInterval", check_full_resync(text, interval))
            }
            None => interval.map(|i| i.max(super::DEFAULT_FULL_RESYNC)),
        };

        // Every check records a problem exactly when it gives no value.
        let assemble = || {
            Some(ValidSpec {
                policy: Policy {
                    owner: owner?,
                    trusted: trusted?,
                    min_severity: min_severity?,
                    finding_types: finding_types?,
                    mode: remediation.mode.into(),
                    exempt_tag: exempt_tag?,
                    archive_remediated: remediation.archive_remediated,
                    max_rules_per_group: max_rules_per_group?,
                    revoke: remediation.revoke.into(),
                    public_ports: public_ports?,
                    ports: ports?,
                    max_network_interfaces: max_network_interfaces?,
                    all_traffic_rules: remediation.all_traffic_rules.into(),
                    member_accounts: match member_accounts {
                        None => None,
                        Some(checked) => Some(checked?),
                    },
                    finding_feedback: remediation.finding_feedback,
                    security_hub_updates: self
                        .security_hub
                        .as_ref()
                        .is_some_and(|hub| hub.update_findings),
                },
                regions: regions?,
                detector_id: detector_id?,
                interval: interval?,
                full_resync_interval: full_resync_interval?,
                notifications: notifications?,
            })
        };
        match assemble() {
            Some(valid) if problems.0.is_empty() => Ok(valid),
            _ => Err(InvalidSpec { errors: problems.0 }),
        }
    }
}

/// The policy a spec belongs to: its namespace and name, which the operator writes
/// on every rule it adds and every group it watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOwner {
    pub namespace: String,
    pub name: String,
}

impl PolicyOwner {
    /// A policy file without a namespace belongs to `default`, as `kubectl apply`
    /// would put it.
    pub fn new(namespace: Option<&str>, name: &str) -> PolicyOwner {
        PolicyOwner {
            namespace: namespace
                .filter(|n| !n.is_empty())
                .unwrap_or("default")
                .to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for PolicyOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `namespace/name` must fit in the watch tag's key.
fn check_owner(owner: &PolicyOwner) -> Result<String, String> {
    let text = owner.to_string();
    let name_ok = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !name_ok(&owner.name) || !name_ok(&owner.namespace) {
        return Err(format!(
            "{text:?} is not a namespace/name of Kubernetes: use lower-case letters, digits, \
             '-' and '.', such as security/web"
        ));
    }
    if text.len() > MAX_OWNER {
        return Err(format!(
            "the policy's namespace/name {text:?} is {} characters long: it is written into an \
             AWS tag key (guardduty-operator/watch/<namespace>/<name>, at most 128 characters), \
             so it can be at most {MAX_OWNER}; use a shorter name",
            text.len()
        ));
    }
    Ok(text)
}

fn check_ports(field: &str, ports: &[u16], problems: &mut Problems) -> Option<BTreeSet<u16>> {
    let before = problems.count();
    if ports.len() > 100 {
        problems.push(
            field,
            format!("{} ports are listed, at most 100 are allowed", ports.len()),
        );
    }
    if ports.contains(&0) {
        problems.push(
            field,
            "port 0 is not a port a finding can name: use 1 to 65535",
        );
    }
    (problems.count() == before).then(|| ports.iter().copied().collect())
}

fn check_max_interfaces(max: u32) -> Result<usize, String> {
    match usize::try_from(max) {
        Ok(max @ 1..=100_000) => Ok(max),
        _ => Err(format!(
            "{max} is out of range: give the most network interfaces a changed group may be \
             used by, from 1 to 100000 (default {DEFAULT_MAX_NETWORK_INTERFACES})"
        )),
    }
}

/// An empty region counts as absent.
fn check_region(region: Option<&str>) -> Result<Option<String>, String> {
    match region {
        None | Some("") => Ok(None),
        Some(region) if is_region_code(region) => Ok(Some(region.to_string())),
        Some(region) => Err(format!(
            "{region:?} is not an AWS region code: write one such as us-east-1 or eu-west-2, \
             or leave region out to use the AWS SDK's region"
        )),
    }
}

/// `spec.regions`: region codes, none twice, at most [`MAX_REGIONS`].
fn check_regions(regions: &[String], problems: &mut Problems) -> Option<Vec<String>> {
    let before = problems.count();
    if regions.len() > super::MAX_REGIONS {
        problems.push(
            "spec.regions",
            format!(
                "{} regions are listed, at most {} are allowed",
                regions.len(),
                super::MAX_REGIONS
            ),
        );
    }
    for (i, region) in regions.iter().enumerate() {
        if !is_region_code(region) {
            problems.push(
                format!("spec.regions[{i}]"),
                format!("{region:?} is not an AWS region code: write one such as us-east-1"),
            );
        } else if regions[..i].contains(region) {
            problems.push(
                format!("spec.regions[{i}]"),
                format!("{region} is listed twice: list each region once"),
            );
        }
    }
    (problems.count() == before).then(|| regions.to_vec())
}

/// `spec.memberAccounts`: an IAM role name, an optional external id, 12-digit accounts.
fn check_member_accounts(
    spec: &super::resource::MemberAccountsSpec,
    problems: &mut Problems,
) -> Option<crate::domain::policy::MemberAccounts> {
    let before = problems.count();
    let role_ok = |b: u8| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b);
    if spec.role_name.is_empty()
        || spec.role_name.len() > 64
        || !spec.role_name.bytes().all(role_ok)
    {
        problems.push(
            "spec.memberAccounts.roleName",
            format!(
                "{:?} is not an IAM role name: 1 to 64 letters, digits and +=,.@_- (the name, \
                 not the ARN: the operator assumes arn:aws:iam::<account>:role/<roleName>)",
                spec.role_name
            ),
        );
    }
    let external_ok = |b: u8| b.is_ascii_alphanumeric() || b"+=,.@:/_-".contains(&b);
    if !spec.external_id.is_empty()
        && (spec.external_id.len() < 2
            || spec.external_id.len() > 1224
            || !spec.external_id.bytes().all(external_ok))
    {
        problems.push(
            "spec.memberAccounts.externalId",
            "the external id must be 2 to 1224 letters, digits and +=,.@:/_-, or empty",
        );
    }
    if spec.accounts.len() > super::MAX_MEMBER_ACCOUNTS {
        problems.push(
            "spec.memberAccounts.accounts",
            format!(
                "{} accounts are listed, at most {} are allowed: leave the list empty to \
                 remediate every member account",
                spec.accounts.len(),
                super::MAX_MEMBER_ACCOUNTS
            ),
        );
    }
    for (i, account) in spec.accounts.iter().enumerate() {
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            problems.push(
                format!("spec.memberAccounts.accounts[{i}]"),
                format!("{account:?} is not an AWS account id: write its 12 digits"),
            );
        }
    }
    (problems.count() == before).then(|| spec.to_domain())
}

/// `^[a-z]{2}(-[a-z]+)+-\d+$`: `us-east-1`, `us-gov-west-1`, `ap-southeast-2`.
fn is_region_code(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let lowercase = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase());
    match parts.as_slice() {
        [country, words @ .., number] if !words.is_empty() => {
            country.len() == 2
                && lowercase(country)
                && words.iter().all(|word| lowercase(word))
                && !number.is_empty()
                && number.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

/// An empty detector id counts as absent.
fn check_detector_id(detector_id: Option<&str>) -> Result<Option<String>, String> {
    match detector_id {
        None | Some("") => Ok(None),
        Some(id)
            if id.len() <= MAX_DETECTOR_ID_CHARS
                && id.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            Ok(Some(id.to_string()))
        }
        Some(id) => Err(format!(
            "{id:?} is not a GuardDuty detector id: it has 1 to {MAX_DETECTOR_ID_CHARS} letters \
             and digits, as `aws guardduty list-detectors` prints it; leave it empty to have the \
             operator find the detector"
        )),
    }
}

fn check_trusted_cidrs(texts: &[String], problems: &mut Problems) -> Option<TrustedRanges> {
    const FIELD: &str = "spec.trustedCidrs";
    let before = problems.count();
    if texts.len() > MAX_TRUSTED_CIDRS {
        problems.push(
            FIELD,
            format!(
                "{} ranges are listed, at most {MAX_TRUSTED_CIDRS} are allowed: merge \
                 neighbouring ranges into wider ones",
                texts.len()
            ),
        );
    }
    let mut ranges = Vec::with_capacity(texts.len());
    for (index, text) in texts.iter().enumerate() {
        let field = format!("{FIELD}[{index}]");
        match Cidr::parse_strict(text) {
            Ok(cidr) if cidr.is_world() => {
                problems.push(
                    field,
                    trusted_ranges_message(&TrustedRangesError::WorldRange(cidr)),
                );
            }
            Ok(cidr) if overlaps_ipv4_mapped(&cidr) => {
                problems.push(
                    field,
                    trusted_ranges_message(&TrustedRangesError::Ipv4Mapped(cidr)),
                );
            }
            Ok(cidr) => ranges.push(cidr),
            Err(err) => problems.push(field, cidr_message(&err)),
        }
    }
    if problems.count() > before {
        return None;
    }
    problems.check(
        FIELD,
        TrustedRanges::new(ranges).map_err(|err| trusted_ranges_message(&err)),
    )
}

/// The domain's message, with how to fix it where the message does not say.
fn cidr_message(err: &CidrError) -> String {
    match err {
        CidrError::MissingPrefix(_) | CidrError::BadPrefix { .. } => err.to_string(),
        CidrError::BadAddress(_) => {
            format!("{err}: write a range such as 10.0.0.0/8 or 2001:db8::/32")
        }
        CidrError::HostBitsSet { canonical, .. } => {
            format!("{err}; write {canonical}, or a longer prefix for a narrower range")
        }
    }
}

fn trusted_ranges_message(err: &TrustedRangesError) -> String {
    match err {
        TrustedRangesError::WorldRange(_) => {
            format!("{err}; list only the networks that need access, such as 10.0.0.0/8")
        }
        TrustedRangesError::Empty => {
            format!("{err}; list the networks that keep access, such as 10.0.0.0/8")
        }
        TrustedRangesError::Ipv4Mapped(_) => err.to_string(),
        TrustedRangesError::TooMuchPublicSpace { .. } => {
            format!("{err}; list only the networks that need access")
        }
    }
}

fn check_finding_types(types: &[String], problems: &mut Problems) -> Option<Vec<String>> {
    const FIELD: &str = "spec.findings.types";
    let before = problems.count();
    if types.len() > MAX_FINDING_TYPES {
        problems.push(
            FIELD,
            format!(
                "{} types are listed, at most {MAX_FINDING_TYPES} are allowed: leave the list \
                 empty to act on every type",
                types.len()
            ),
        );
    }
    for (index, finding_type) in types.iter().enumerate() {
        if !is_finding_type(finding_type) {
            problems.push(
                format!("{FIELD}[{index}]"),
                format!(
                    "{finding_type:?} is not a GuardDuty finding type: write it as \
                     ThreatPurpose:ResourceType/ThreatFamilyName, such as \
                     Recon:EC2/PortProbeUnprotectedPort"
                ),
            );
        }
    }
    (problems.count() == before).then(|| types.to_vec())
}

/// `ThreatPurpose:ResourceTypeAffected/ThreatFamilyName.DetectionMechanism!Artifact`,
/// as in `Recon:EC2/PortProbeUnprotectedPort` or `Backdoor:EC2/C&CActivity.B!DNS`.
fn is_finding_type(text: &str) -> bool {
    let Some((purpose, rest)) = text.split_once(':') else {
        return false;
    };
    let Some((resource, family)) = rest.split_once('/') else {
        return false;
    };
    !purpose.is_empty()
        && purpose.bytes().all(|b| b.is_ascii_alphabetic())
        && !resource.is_empty()
        && resource.bytes().all(|b| b.is_ascii_alphanumeric())
        && !family.is_empty()
        && family
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-!&".contains(&b))
}

fn check_tag_key(key: &str) -> Result<String, String> {
    let length = key.chars().count();
    if length == 0 {
        Err(format!(
            "the tag key is empty: give one such as {DEFAULT_EXEMPT_TAG}, or leave exemptTag out"
        ))
    } else if length > MAX_TAG_KEY_CHARS {
        Err(format!(
            "the tag key is {length} characters long: AWS allows at most {MAX_TAG_KEY_CHARS}"
        ))
    } else if key
        .get(..4)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("aws:"))
    {
        Err(format!(
            "{key:?} starts with \"aws:\", which AWS reserves for its own tags: choose another \
             key, such as {DEFAULT_EXEMPT_TAG}"
        ))
    } else {
        Ok(key.to_string())
    }
}

fn check_max_rules(rules: u32) -> Result<usize, String> {
    let in_range = (1..=MAX_RULES_PER_GROUP_LIMIT).contains(&rules);
    match usize::try_from(rules) {
        Ok(rules) if in_range => Ok(rules),
        _ => Err(format!(
            "{rules} is out of range: give the account's \"Inbound or outbound rules per \
             security group\" quota, from 1 to {MAX_RULES_PER_GROUP_LIMIT} (the AWS default is \
             {DEFAULT_MAX_RULES_PER_GROUP})"
        )),
    }
}

fn check_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_go_duration(text).ok_or_else(|| {
        format!("{text:?} is not a duration: write it like 30s, 5m or 1h30m ({INTERVAL_BOUNDS})")
    })?;
    if interval < MIN_INTERVAL {
        Err(format!(
            "{text:?} is too short: use an interval {INTERVAL_BOUNDS}"
        ))
    } else if interval > MAX_INTERVAL {
        Err(format!(
            "{text:?} is too long: use an interval {INTERVAL_BOUNDS}"
        ))
    } else {
        Ok(interval)
    }
}

/// `spec.fullResyncInterval`: from 5m to 24h, and not shorter than the interval.
fn check_full_resync(text: &str, interval: Option<Duration>) -> Result<Duration, String> {
    let resync = parse_go_duration(text).ok_or_else(|| {
        format!("{text:?} is not a duration: write it like 30m or 1h (from 5m to 24h)")
    })?;
    if resync < super::MIN_FULL_RESYNC || resync > MAX_INTERVAL {
        return Err(format!("{text:?} is out of range: use one from 5m to 24h"));
    }
    match interval {
        Some(interval) if resync < interval => Err(format!(
            "{text:?} is shorter than spec.interval: every pass would list in full; use at \
             least the interval"
        )),
        _ => Ok(resync),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::Mode;
    use crate::domain::severity::Severity;
    use crate::spec::{API_VERSION, KIND, parse_manifest};

    const MINIMAL: &str = include_str!("../../tests/fixtures/policies/minimal.yaml");
    const EXAMPLE: &str = include_str!("../../tests/fixtures/policies/example.yaml");
    /// Every field set, each on a line of its own: the base of the mutations below.
    const COMPLETE: &str = include_str!("../../tests/fixtures/policies/complete.yaml");

    /// The complete fixture with one line changed; `from` must occur exactly once,
    /// so that a mutation cannot silently miss.
    fn complete_with(from: &str, to: &str) -> String {
        assert_eq!(
            COMPLETE.matches(from).count(),
            1,
            "{from:?} must occur once in complete.yaml"
        );
        COMPLETE.replacen(from, to, 1)
    }

    /// The owner of a manifest's policy.
    fn owner(manifest: &crate::spec::PolicyManifest) -> PolicyOwner {
        PolicyOwner::new(
            manifest.metadata.namespace.as_deref(),
            &manifest.metadata.name,
        )
    }

    fn valid(yaml: &str) -> ValidSpec {
        let manifest = parse_manifest(yaml).unwrap_or_else(|err| panic!("{err}"));
        manifest
            .spec
            .validate(&owner(&manifest))
            .unwrap_or_else(|err| panic!("{err}"))
    }

    /// The validation problems of a manifest that parses, one line each.
    fn problems(yaml: &str) -> Vec<String> {
        let manifest = parse_manifest(yaml).unwrap_or_else(|err| panic!("{err}"));
        match manifest.spec.validate(&owner(&manifest)) {
            Ok(_) => Vec::new(),
            Err(invalid) => invalid.errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn parse_error(yaml: &str) -> String {
        match parse_manifest(yaml) {
            Ok(manifest) => panic!("expected an error, parsed {manifest:?}"),
            Err(err) => err.to_string(),
        }
    }

    fn cidrs(ranges: &TrustedRanges) -> Vec<String> {
        ranges.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn minimal_manifest_validates_with_the_defaults() {
        let manifest = parse_manifest(MINIMAL).unwrap();
        assert_eq!(manifest.api_version, API_VERSION);
        assert_eq!(manifest.kind, KIND);
        assert_eq!(manifest.metadata.name, "minimal");
        assert_eq!(manifest.metadata.namespace, None);
        let spec = manifest.spec.validate(&owner(&manifest)).unwrap();
        assert_eq!(
            spec,
            ValidSpec {
                policy: Policy {
                    owner: "default/minimal".into(),
                    trusted: TrustedRanges::new([Cidr::parse_strict("10.0.0.0/8").unwrap()])
                        .unwrap(),
                    min_severity: Severity::MIN,
                    finding_types: Vec::new(),
                    mode: Mode::DryRun,
                    exempt_tag: "guardduty-operator/exempt".to_string(),
                    archive_remediated: false,
                    max_rules_per_group: 60,
                    revoke: crate::domain::policy::RevokeScope::Public,
                    public_ports: [80, 443].into(),
                    ports: Default::default(),
                    max_network_interfaces: 50,
                    all_traffic_rules: crate::domain::policy::AllTrafficRules::Refuse,
                    member_accounts: None,
                    finding_feedback: false,
                    security_hub_updates: false,
                },
                regions: Vec::new(),
                detector_id: None,
                interval: Duration::from_secs(300),
                full_resync_interval: Duration::from_secs(3600),
                notifications: Vec::new(),
            }
        );
    }

    #[test]
    fn design_example_validates() {
        let manifest = parse_manifest(EXAMPLE).unwrap();
        assert_eq!(manifest.metadata.namespace.as_deref(), Some("security"));
        let spec = manifest.spec.validate(&owner(&manifest)).unwrap();
        assert_eq!(cidrs(&spec.policy.trusted), ["10.0.0.0/8", "2001:db8::/32"]);
        assert_eq!(spec.policy.min_severity.value(), 4.0);
        assert_eq!(
            spec.policy.finding_types,
            [
                "Recon:EC2/PortProbeUnprotectedPort",
                "UnauthorizedAccess:EC2/SSHBruteForce"
            ]
        );
        assert_eq!(spec.policy.mode, Mode::DryRun);
        assert_eq!(spec.regions, ["us-east-1"]);
        assert_eq!(
            spec.detector_id, None,
            "an empty detectorId counts as absent"
        );
        assert_eq!(spec.interval, Duration::from_secs(300));
        let names: Vec<_> = spec
            .notifications
            .iter()
            .map(|n| n.route.channel.as_str())
            .collect();
        assert_eq!(names, ["oncall", "secops-chat"]);
    }

    #[test]
    fn complete_fixture_sets_every_field() {
        let spec = valid(COMPLETE);
        assert_eq!(
            cidrs(&spec.policy.trusted),
            ["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32"]
        );
        assert_eq!(spec.policy.mode, Mode::Enforce);
        assert!(spec.policy.archive_remediated);
        assert_eq!(spec.policy.exempt_tag, "team.example/keep-open");
        assert_eq!(spec.policy.max_rules_per_group, 100);
        assert_eq!(
            spec.policy.revoke,
            crate::domain::policy::RevokeScope::Untrusted
        );
        assert_eq!(spec.policy.public_ports, [80, 443, 8443].into());
        assert_eq!(spec.policy.ports, [22, 3389].into());
        assert_eq!(spec.policy.max_network_interfaces, 200);
        assert_eq!(
            spec.policy.all_traffic_rules,
            crate::domain::policy::AllTrafficRules::Split
        );
        assert_eq!(spec.policy.owner, "security/prod");
        assert_eq!(spec.regions, ["eu-west-2"]);
        assert_eq!(
            spec.policy.member_accounts,
            Some(crate::domain::policy::MemberAccounts {
                role_name: "guardduty-operator-member".into(),
                external_id: Some("gdo-2f9c".into()),
                accounts: ["111111111111".to_string(), "222222222222".to_string()].into(),
            })
        );
        assert!(spec.policy.finding_feedback);
        assert!(spec.policy.security_hub_updates);
        assert_eq!(spec.full_resync_interval, Duration::from_secs(2 * 3600));
        assert_eq!(
            spec.detector_id.as_deref(),
            Some("12abc34d567e8fa901bc2d34e56789f0")
        );
        assert_eq!(spec.interval, Duration::from_secs(600));
        let kinds: Vec<_> = spec
            .notifications
            .iter()
            .map(|n| (n.route.channel.as_str(), n.channel.kind()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("oncall", "pagerDuty"),
                ("chat", "slack"),
                ("tickets", "jira"),
                ("incidents", "serviceNow"),
                ("mail", "email"),
                ("pager-sms", "sms"),
                ("topic-sms", "sms"),
            ]
        );
        let oncall = &spec.notifications[0].route;
        assert_eq!(oncall.min_severity.value(), 7.0);
        assert!(oncall.finding_types[1].matches("Recon:EC2/PortProbeUnprotectedPort"));
        assert_eq!(spec.notifications[1].route.min_severity.value(), 5.5);
    }

    #[test]
    fn ipv4_world_range_is_refused_with_its_index() {
        let yaml = complete_with("    - 192.168.0.0/16", "    - 0.0.0.0/0");
        assert_eq!(
            problems(&yaml),
            [
                "spec.trustedCidrs[1]: 0.0.0.0/0 is a world range: trusting it would leave the \
                 port open to everyone; list only the networks that need access, such as 10.0.0.0/8"
            ]
        );
    }

    #[test]
    fn ipv6_world_range_is_refused_with_its_index() {
        let yaml = complete_with("    - 2001:db8::/32", "    - \"::/0\"");
        assert_eq!(
            problems(&yaml),
            [
                "spec.trustedCidrs[2]: ::/0 is a world range: trusting it would leave the port \
                 open to everyone; list only the networks that need access, such as 10.0.0.0/8"
            ]
        );
    }

    #[test]
    fn range_with_host_bits_is_refused_with_the_network_to_write() {
        let yaml = complete_with("    - 10.0.0.0/8", "    - 10.1.2.3/8");
        assert_eq!(
            problems(&yaml),
            [
                "spec.trustedCidrs[0]: \"10.1.2.3/8\" has host bits set: the network is \
                 10.0.0.0/8; write 10.0.0.0/8, or a longer prefix for a narrower range"
            ]
        );
    }

    #[test]
    fn malformed_ranges_are_refused() {
        let yaml = complete_with("    - 192.168.0.0/16", "    - 192.168.0.300/16");
        assert_eq!(
            problems(&yaml),
            [
                "spec.trustedCidrs[1]: \"192.168.0.300/16\" is not an IPv4 or IPv6 address: \
                 write a range such as 10.0.0.0/8 or 2001:db8::/32"
            ]
        );
        let yaml = complete_with("    - 192.168.0.0/16", "    - 192.168.0.0");
        assert_eq!(
            problems(&yaml),
            [
                "spec.trustedCidrs[1]: \"192.168.0.0\" has no /prefix length (write it as e.g. \
                 10.0.0.0/8 or 2001:db8::/32)"
            ]
        );
        let yaml = complete_with("    - 192.168.0.0/16", "    - 192.168.0.0/33");
        assert_eq!(
            problems(&yaml),
            [
                "spec.trustedCidrs[1]: \"192.168.0.0/33\": the prefix length must be a number \
                 from 0 to 32"
            ]
        );
    }

    #[test]
    fn empty_trusted_cidrs_are_refused() {
        let yaml = complete_with(
            "  trustedCidrs:\n    - 10.0.0.0/8\n    - 192.168.0.0/16\n    - 2001:db8::/32\n",
            "  trustedCidrs: []\n",
        );
        assert_eq!(
            problems(&yaml),
            [
                "spec.trustedCidrs: at least one trusted range is required: the operator never \
                 closes a port to everyone; list the networks that keep access, such as 10.0.0.0/8"
            ]
        );
    }

    #[test]
    fn missing_trusted_cidrs_are_refused_with_the_field_name() {
        let yaml = complete_with(
            "  trustedCidrs:\n    - 10.0.0.0/8\n    - 192.168.0.0/16\n    - 2001:db8::/32\n",
            "",
        );
        assert_eq!(parse_error(&yaml), "spec: missing field `trustedCidrs`");
    }

    #[test]
    fn more_than_fifty_trusted_cidrs_are_refused() {
        let many: Vec<String> = (0..51).map(|i| format!("10.{i}.0.0/16")).collect();
        let yaml = complete_with(
            "    - 10.0.0.0/8\n",
            &format!("    - {}\n", many.join("\n    - ")),
        );
        assert_eq!(
            problems(&yaml),
            [
                "spec.trustedCidrs: 53 ranges are listed, at most 50 are allowed: merge \
                 neighbouring ranges into wider ones"
            ]
        );
    }

    #[test]
    fn a_world_equivalent_trusted_set_is_refused_with_the_bound() {
        let yaml = complete_with(
            "  trustedCidrs:\n    - 10.0.0.0/8\n    - 192.168.0.0/16\n    - 2001:db8::/32\n",
            "  trustedCidrs:\n    - 0.0.0.0/1\n    - 128.0.0.0/1\n",
        );
        let problems = problems(&yaml);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("spec.trustedCidrs: together the trusted IPv4 ranges hold"),
            "{problems:?}"
        );
        assert!(
            problems[0].contains("more than a /8 (16777216)"),
            "{problems:?}"
        );
        // Private space does not count: a wide private set is fine.
        let yaml = complete_with(
            "    - 192.168.0.0/16\n",
            "    - 172.16.0.0/12\n    - 100.64.0.0/10\n",
        );
        assert_eq!(super::tests::problems(&yaml), Vec::<String>::new());
    }

    #[test]
    fn an_ipv4_mapped_trusted_range_is_refused_with_its_index() {
        let yaml = complete_with("    - 2001:db8::/32", "    - \"::ffff:10.0.0.0/104\"");
        assert_eq!(
            problems(&yaml),
            [
                "spec.trustedCidrs[2]: ::ffff:10.0.0.0/104 holds IPv4-mapped IPv6 addresses \
                 (::ffff:0:0/96), which security groups never match: write the IPv4 range itself"
            ]
        );
    }

    #[test]
    fn a_port_both_remediated_and_public_and_port_zero_are_refused() {
        let yaml = complete_with("    ports: [22, 3389]", "    ports: [22, 443]");
        assert_eq!(
            problems(&yaml),
            [
                "spec.remediation.ports: port 443 is also in remediation.publicPorts, whose ports \
                 are never remediated: remove it from one of the two lists"
            ]
        );
        let yaml = complete_with("    publicPorts: [80, 443, 8443]", "    publicPorts: [0]");
        assert_eq!(
            problems(&yaml),
            [
                "spec.remediation.publicPorts: port 0 is not a port a finding can name: use 1 to \
                 65535"
            ]
        );
        let yaml = complete_with(
            "    maxNetworkInterfaces: 200",
            "    maxNetworkInterfaces: 0",
        );
        assert_eq!(
            problems(&yaml),
            [
                "spec.remediation.maxNetworkInterfaces: 0 is out of range: give the most network \
                 interfaces a changed group may be used by, from 1 to 100000 (default 50)"
            ]
        );
    }

    #[test]
    fn a_policy_name_too_long_for_the_watch_tag_is_refused() {
        let manifest = parse_manifest(COMPLETE).unwrap();
        let owner = PolicyOwner::new(Some("security"), &"n".repeat(100));
        let errors = manifest.spec.validate(&owner).unwrap_err().errors;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "metadata.name");
        assert!(
            errors[0]
                .message
                .contains("it is written into an AWS tag key"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn severity_below_one_is_refused() {
        let yaml = complete_with("minSeverity: MEDIUM", "minSeverity: 0.5");
        assert_eq!(
            problems(&yaml),
            ["spec.findings.minSeverity: 0.5 is not a severity: use a number from 1.0 to 10.0"]
        );
    }

    #[test]
    fn severity_above_ten_is_refused() {
        let yaml = complete_with("minSeverity: MEDIUM", "minSeverity: 11");
        assert_eq!(
            problems(&yaml),
            ["spec.findings.minSeverity: 11 is not a severity: use a number from 1.0 to 10.0"]
        );
    }

    #[test]
    fn unknown_severity_name_is_refused() {
        let yaml = complete_with("minSeverity: MEDIUM", "minSeverity: SEVERE");
        assert_eq!(
            problems(&yaml),
            [
                "spec.findings.minSeverity: \"SEVERE\" is not a severity: use LOW, MEDIUM, HIGH, \
                 CRITICAL or a number from 1.0 to 10.0"
            ]
        );
    }

    #[test]
    fn severity_is_a_level_a_number_or_a_number_in_quotes() {
        let threshold = |written: &str| {
            let yaml = complete_with("minSeverity: MEDIUM", &format!("minSeverity: {written}"));
            valid(&yaml).policy.min_severity.value()
        };
        assert_eq!(threshold("CRITICAL"), 9.0);
        assert_eq!(threshold("7"), 7.0);
        assert_eq!(threshold("5.5"), 5.5);
        assert_eq!(threshold("\"5.5\""), 5.5);
    }

    #[test]
    fn severity_of_the_wrong_type_says_what_is_expected() {
        let yaml = complete_with("minSeverity: MEDIUM", "minSeverity: [HIGH]");
        assert_eq!(
            parse_error(&yaml),
            "spec.findings.minSeverity: invalid type: sequence, expected a severity: LOW, \
             MEDIUM, HIGH, CRITICAL or a number from 1.0 to 10.0 at line 24, column 5"
        );
    }

    #[test]
    fn malformed_finding_type_is_refused_with_its_index() {
        let yaml = complete_with(
            "      - UnauthorizedAccess:EC2/SSHBruteForce",
            "      - SSHBruteForce",
        );
        assert_eq!(
            problems(&yaml),
            [
                "spec.findings.types[1]: \"SSHBruteForce\" is not a GuardDuty finding type: write \
                 it as ThreatPurpose:ResourceType/ThreatFamilyName, such as \
                 Recon:EC2/PortProbeUnprotectedPort"
            ]
        );
    }

    #[test]
    fn finding_types_with_mechanism_and_artifact_are_accepted() {
        for finding_type in [
            "Backdoor:EC2/C&CActivity.B!DNS",
            "CryptoCurrency:EC2/BitcoinTool.B",
            "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
            "Execution:Runtime/NewBinaryExecuted",
        ] {
            assert!(is_finding_type(finding_type), "{finding_type}");
        }
    }

    /// A second `trustedCidrs` would otherwise replace the first without a word: which
    /// networks keep access must never depend on the reader's choice.
    #[test]
    fn a_field_written_twice_is_refused_with_its_line() {
        let yaml = complete_with(
            "  trustedCidrs:\n",
            "  trustedCidrs:\n    - 192.0.2.0/24\n  trustedCidrs:\n",
        );
        let error = parse_error(&yaml);
        assert!(
            error.starts_with(
                "failed to read the manifest as YAML: duplicate mapping key: trustedCidrs"
            ),
            "{error}"
        );
        assert!(error.contains(" at line 21, column 3"), "{error}");
    }

    #[test]
    fn misspelt_mode_is_refused_with_its_path() {
        let yaml = complete_with("mode: Enforce", "mode: Enforced");
        assert_eq!(
            parse_error(&yaml),
            "spec.remediation.mode: unknown variant `Enforced`, expected one of DryRun, \
             Enforce, Off at line 29, column 11"
        );
    }

    #[test]
    fn unknown_field_is_refused_with_its_path() {
        let yaml = complete_with("  trustedCidrs:", "  trustedCIDRs:");
        assert_eq!(
            parse_error(&yaml),
            "spec: unknown field `trustedCIDRs`, expected one of region, regions, \
             memberAccounts, detectorId, trustedCidrs, findings, remediation, securityHub, \
             notifications, interval, fullResyncInterval, deletionPolicy at line 19, column 3"
        );
        let yaml = complete_with("    archiveRemediated: true", "    archive: true");
        assert_eq!(
            parse_error(&yaml),
            "spec.remediation: unknown field `archive`, expected one of mode, \
             archiveRemediated, findingFeedback, exemptTag, maxRulesPerGroup, revoke, \
             publicPorts, ports, maxNetworkInterfaces, allTrafficRules at line 30, column 5"
        );
    }

    #[test]
    fn regions_members_and_the_full_resync_are_checked_with_their_fields() {
        let without_region = COMPLETE
            .replace("  region: eu-west-2\n", "")
            .replace("  detectorId: 12abc34d567e8fa901bc2d34e56789f0\n", "");
        let with_regions = |regions: &str| {
            without_region.replace(
                "  trustedCidrs:\n",
                &format!("  regions: {regions}\n  trustedCidrs:\n"),
            )
        };
        assert_eq!(
            valid(&with_regions("[us-east-1, eu-west-1]")).regions,
            ["us-east-1", "eu-west-1"]
        );
        assert_eq!(
            problems(&with_regions("[us-east-1, us-east-1, eu-west]")),
            [
                "spec.regions[1]: us-east-1 is listed twice: list each region once",
                "spec.regions[2]: \"eu-west\" is not an AWS region code: write one such as \
                 us-east-1"
            ]
        );
        assert_eq!(
            problems(&complete_with(
                "  region: eu-west-2",
                "  region: eu-west-2\n  regions: [us-east-1]"
            )),
            [
                "spec.regions: give either region or regions, not both: regions lists every \
                 region, region is the one-region shorthand"
            ]
        );
        let several = with_regions("[us-east-1, eu-west-1]")
            .replace("  trustedCidrs:\n", "  detectorId: abc\n  trustedCidrs:\n");
        assert_eq!(
            problems(&several),
            [
                "spec.detectorId: detectorId names one region's detector: leave it empty when \
                 regions lists several, and the operator finds each region's detector"
            ]
        );
        assert_eq!(
            problems(&complete_with(
                "    roleName: guardduty-operator-member",
                "    roleName: arn:aws:iam::111111111111:role/x"
            )),
            [
                "spec.memberAccounts.roleName: \"arn:aws:iam::111111111111:role/x\" is not an IAM \
                 role name: 1 to 64 letters, digits and +=,.@_- (the name, not the ARN: the \
                 operator assumes arn:aws:iam::<account>:role/<roleName>)"
            ]
        );
        assert_eq!(
            problems(&complete_with(
                "      - \"111111111111\"",
                "      - \"1111\""
            )),
            [
                "spec.memberAccounts.accounts[0]: \"1111\" is not an AWS account id: write its 12 \
                 digits"
            ]
        );
        assert_eq!(
            problems(&complete_with(
                "  fullResyncInterval: 2h",
                "  fullResyncInterval: 5m"
            )),
            [
                "spec.fullResyncInterval: \"5m\" is shorter than spec.interval: every pass would \
                 list in full; use at least the interval"
            ]
        );
    }

    #[test]
    fn interval_in_words_is_refused() {
        let yaml = complete_with("interval: 10m", "interval: 5 minutes");
        assert_eq!(
            problems(&yaml),
            [
                "spec.interval: \"5 minutes\" is not a duration: write it like 30s, 5m or 1h30m \
                 (from 30s to 24h)"
            ]
        );
    }

    #[test]
    fn interval_shorter_than_thirty_seconds_is_refused() {
        let yaml = complete_with("interval: 10m", "interval: 10s");
        assert_eq!(
            problems(&yaml),
            ["spec.interval: \"10s\" is too short: use an interval from 30s to 24h"]
        );
    }

    #[test]
    fn interval_longer_than_a_day_is_refused() {
        let yaml = complete_with("interval: 10m", "interval: 48h");
        assert_eq!(
            problems(&yaml),
            ["spec.interval: \"48h\" is too long: use an interval from 30s to 24h"]
        );
    }

    #[test]
    fn intervals_are_read_as_go_durations() {
        let seconds = |text: &str| parse_go_duration(text).map(|d| d.as_secs_f64());
        assert_eq!(seconds("30s"), Some(30.0));
        assert_eq!(seconds("1h30m"), Some(5400.0));
        assert_eq!(seconds("1.5h"), Some(5400.0));
        assert_eq!(seconds("2m30s"), Some(150.0));
        assert_eq!(seconds("90000ms"), Some(90.0));
        assert_eq!(seconds("0"), Some(0.0));
        for bad in [
            "",
            "5",
            "m",
            "5 m",
            "-5m",
            "1.2.3s",
            "5d",
            "99999999999999999999999999999999999999999h",
        ] {
            assert_eq!(seconds(bad), None, "{bad:?}");
        }
        assert_eq!(check_interval("30s"), Ok(MIN_INTERVAL));
        assert_eq!(check_interval("24h"), Ok(MAX_INTERVAL));
    }

    #[test]
    fn reserved_exempt_tag_is_refused() {
        let yaml = complete_with("exemptTag: team.example/keep-open", "exemptTag: aws:foo");
        assert_eq!(
            problems(&yaml),
            [
                "spec.remediation.exemptTag: \"aws:foo\" starts with \"aws:\", which AWS reserves \
                 for its own tags: choose another key, such as guardduty-operator/exempt"
            ]
        );
    }

    #[test]
    fn empty_or_overlong_exempt_tag_is_refused() {
        let yaml = complete_with("exemptTag: team.example/keep-open", "exemptTag: \"\"");
        assert_eq!(
            problems(&yaml),
            [
                "spec.remediation.exemptTag: the tag key is empty: give one such as \
                 guardduty-operator/exempt, or leave exemptTag out"
            ]
        );
        let yaml = complete_with(
            "exemptTag: team.example/keep-open",
            &format!("exemptTag: {}", "k".repeat(129)),
        );
        assert_eq!(
            problems(&yaml),
            [
                "spec.remediation.exemptTag: the tag key is 129 characters long: AWS allows at \
                 most 128"
            ]
        );
    }

    #[test]
    fn zero_rules_per_group_is_refused() {
        let yaml = complete_with("maxRulesPerGroup: 100", "maxRulesPerGroup: 0");
        assert_eq!(
            problems(&yaml),
            [
                "spec.remediation.maxRulesPerGroup: 0 is out of range: give the account's \
                 \"Inbound or outbound rules per security group\" quota, from 1 to 1000 (the \
                 AWS default is 60)"
            ]
        );
    }

    #[test]
    fn malformed_region_is_refused() {
        let yaml = complete_with("region: eu-west-2", "region: eu-west");
        assert_eq!(
            problems(&yaml),
            [
                "spec.region: \"eu-west\" is not an AWS region code: write one such as us-east-1 \
                 or eu-west-2, or leave region out to use the AWS SDK's region"
            ]
        );
    }

    #[test]
    fn region_codes_of_every_partition_are_accepted() {
        for region in ["us-east-1", "us-gov-west-1", "ap-southeast-2", "cn-north-1"] {
            assert!(is_region_code(region), "{region}");
        }
        for region in [
            "",
            "us",
            "us-1",
            "US-EAST-1",
            "use-east-1",
            "us-east-",
            "us--1",
        ] {
            assert!(!is_region_code(region), "{region:?}");
        }
    }

    #[test]
    fn malformed_detector_id_is_refused() {
        let yaml = complete_with(
            "detectorId: 12abc34d567e8fa901bc2d34e56789f0",
            "detectorId: 12abc34d-567e",
        );
        assert_eq!(
            problems(&yaml),
            [
                "spec.detectorId: \"12abc34d-567e\" is not a GuardDuty detector id: it has 1 to \
                 300 letters and digits, as `aws guardduty list-detectors` prints it; leave it \
                 empty to have the operator find the detector"
            ]
        );
    }

    #[test]
    fn notification_that_is_not_an_object_is_refused_where_it_is() {
        let yaml = complete_with(
            "    - name: chat\n      minSeverity: \"5.5\"\n",
            "    - chat\n    - name: x\n      minSeverity: \"5.5\"\n",
        );
        let error = parse_error(&yaml);
        assert!(error.starts_with("spec.notifications[1]: "), "{error}");
    }

    #[test]
    fn repeated_or_malformed_channel_names_are_refused() {
        let yaml = complete_with("    - name: chat\n", "    - name: oncall\n");
        assert_eq!(
            problems(&yaml),
            [
                "spec.notifications[1].name: \"oncall\" is used by an earlier channel: names must be unique"
            ]
        );
        let yaml = complete_with("    - name: chat\n", "    - name: Chat_Room\n");
        assert_eq!(
            problems(&yaml),
            [
                "spec.notifications[1].name: \"Chat_Room\" is not a channel name: use lower-case \
              letters, digits and '-' (at most 63), such as oncall"
            ]
        );
    }

    #[test]
    fn a_channel_needs_exactly_one_block() {
        let yaml = complete_with(
            "      slack:\n",
            "      sms: {topicArn: \"arn:aws:sns:eu-west-2:123456789012:x\"}\n      slack:\n",
        );
        assert_eq!(
            problems(&yaml),
            [
                "spec.notifications[1]: each notification needs exactly one channel (email, sms, \
              slack, jira, pagerDuty or serviceNow); found sms, slack"
            ]
        );
        let yaml = complete_with(
            "      slack:\n        webhookUrlSecretRef: {name: slack, key: webhookUrl}\n",
            "",
        );
        assert_eq!(
            problems(&yaml),
            [
                "spec.notifications[1]: each notification needs exactly one channel (email, sms, \
              slack, jira, pagerDuty or serviceNow); found none"
            ]
        );
    }

    #[test]
    fn channel_routes_refuse_bad_severities_and_type_patterns() {
        let yaml = complete_with(
            "      minSeverity: \"5.5\"\n",
            "      minSeverity: SEVERE\n",
        );
        assert_eq!(
            problems(&yaml),
            [
                "spec.notifications[1].minSeverity: \"SEVERE\" is not a severity: use LOW, MEDIUM, \
              HIGH, CRITICAL or a number from 1.0 to 10.0"
            ]
        );
        let yaml = complete_with(
            "        - UnauthorizedAccess:*\n",
            "        - Unauthorized Access\n",
        );
        assert_eq!(
            problems(&yaml),
            [
                "spec.notifications[0].findingTypes[0]: \"Unauthorized Access\" is not a finding type \
              pattern: use the characters of finding types (letters, digits, : / . _ ! & -) and \
              the wildcards * and ?, such as UnauthorizedAccess:*"
            ]
        );
    }

    #[test]
    fn urls_must_be_https_or_loopback_http_without_credentials() {
        let from = "        url: https://example.atlassian.net\n";
        assert_eq!(
            problems(&complete_with(
                from,
                "        url: http://jira.example.com\n"
            )),
            [
                "spec.notifications[2].jira.url: \"http://jira.example.com\" uses plain http: use \
              https:// (plain http is allowed only to 127.0.0.1 or localhost), so credentials \
              never cross a network in clear text"
            ]
        );
        assert_eq!(
            problems(&complete_with(
                from,
                "        url: https://me:pw@example.atlassian.net\n"
            )),
            ["spec.notifications[2].jira.url: put credentials in the Secret, not in the URL"]
        );
        assert_eq!(
            problems(&complete_with(from, "        url: http://127.0.0.1:8080\n")),
            Vec::<String>::new()
        );
        assert_eq!(
            problems(&complete_with(
                from,
                "        url: https://169.254.169.254/latest/meta-data/\n"
            )),
            [
                "spec.notifications[2].jira.url: \"https://169.254.169.254/latest/meta-data/\" \
                 points at a link-local or instance-metadata address (such as 169.254.169.254): \
                 alerts are never sent there"
            ]
        );
        let events = "        eventsUrl: https://events.eu.pagerduty.com/v2/enqueue\n";
        assert_eq!(
            problems(&complete_with(events, "        eventsUrl: ftp://events\n")),
            ["spec.notifications[0].pagerDuty.eventsUrl: \"ftp://events\" is not an https:// URL"]
        );
    }

    #[test]
    fn email_addresses_and_smtp_hosts_are_checked() {
        assert_eq!(
            problems(&complete_with(
                "        from: guardduty@example.com\n",
                "        from: GuardDuty <guardduty@example.com>\n"
            )),
            [
                "spec.notifications[4].email.from: \"GuardDuty <guardduty@example.com>\" is not an \
              address such as guardduty@example.com"
            ]
        );
        assert_eq!(
            problems(&complete_with(
                "          - secops@example.com\n",
                "          - secops\n"
            )),
            [
                "spec.notifications[4].email.to[0]: \"secops\" is not an address such as secops@example.com"
            ]
        );
        assert_eq!(
            problems(&complete_with(
                "          host: smtp.example.com\n",
                "          host: smtp://smtp.example.com:25\n"
            )),
            [
                "spec.notifications[4].email.smtp.host: \"smtp://smtp.example.com:25\" is not a host \
              name: write it without scheme or port, such as smtp.example.com"
            ]
        );
    }

    #[test]
    fn sms_takes_e164_numbers_or_a_topic_arn_not_both() {
        assert_eq!(
            problems(&complete_with(
                "          - \"+15555550100\"\n",
                "          - \"555-0100\"\n"
            )),
            [
                "spec.notifications[5].sms.phoneNumbers[0]: \"555-0100\" is not in E.164 form: a + \
              and the country code, such as +15555550100"
            ]
        );
        assert_eq!(
            problems(&complete_with(
                "        topicArn: arn:aws:sns:eu-west-2:123456789012:secops-sms\n",
                "        topicArn: secops-sms\n"
            )),
            [
                "spec.notifications[6].sms.topicArn: \"secops-sms\" is not an SNS topic ARN such as \
              arn:aws:sns:us-east-1:123456789012:secops-sms"
            ]
        );
        assert_eq!(
            problems(&complete_with(
                "        topicArn: arn:aws:sns:eu-west-2:123456789012:secops-sms\n",
                "        topicArn: arn:aws:sns:eu-west-2:123456789012:secops-sms\n        phoneNumbers: [\"+15555550100\"]\n"
            )),
            [
                "spec.notifications[6].sms: give exactly one of phoneNumbers (E.164, such as \
              +15555550100) or topicArn"
            ]
        );
    }

    #[test]
    fn secret_references_are_checked() {
        assert_eq!(
            problems(&complete_with(
                "{name: slack, key: webhookUrl}",
                "{name: Slack_Hook, key: \"webhook url\"}"
            )),
            [
                "spec.notifications[1].slack.webhookUrlSecretRef.name: \"Slack_Hook\": a Secret \
                 name must be lower-case letters, digits, '-' and '.', such as slack-webhook",
                "spec.notifications[1].slack.webhookUrlSecretRef.key: \"webhook url\": a Secret \
                 key must be letters, digits, '-', '_' and '.', such as webhookUrl",
            ]
        );
        assert_eq!(
            problems(&complete_with(
                "        project: SEC\n",
                "        project: 1SEC\n"
            )),
            [
                "spec.notifications[2].jira.project: \"1SEC\" is not a project key: a letter, then \
              letters, digits or _, such as SEC"
            ]
        );
    }

    #[test]
    fn wrong_kind_is_refused_before_any_field() {
        let yaml = complete_with("kind: GuardDutyPolicy", "kind: Deployment");
        assert_eq!(
            parse_error(&yaml),
            "kind is \"Deployment\": expected kind: GuardDutyPolicy"
        );
        let yaml = complete_with("kind: GuardDutyPolicy\n", "");
        assert_eq!(
            parse_error(&yaml),
            "kind is missing: expected kind: GuardDutyPolicy"
        );
    }

    #[test]
    fn wrong_api_version_is_refused() {
        let yaml = complete_with(
            "apiVersion: guardduty.security.dev/v1alpha1",
            "apiVersion: guardduty.security.dev/v1",
        );
        assert_eq!(
            parse_error(&yaml),
            "apiVersion is \"guardduty.security.dev/v1\": expected apiVersion: \
             guardduty.security.dev/v1alpha1"
        );
    }

    #[test]
    fn two_documents_are_refused() {
        let yaml = format!("{COMPLETE}---\n{MINIMAL}");
        assert_eq!(
            parse_error(&yaml),
            "expected one GuardDutyPolicy document, found 2: put each policy in a file of its own"
        );
    }

    #[test]
    fn empty_documents_are_ignored_and_an_empty_file_is_refused() {
        let policy = parse_manifest(&format!("---\n{MINIMAL}---\n")).unwrap();
        assert_eq!(policy.metadata.name, "minimal");
        for empty in ["", "# nothing here\n", "---\n"] {
            assert_eq!(
                parse_error(empty),
                "the manifest is empty: expected one GuardDutyPolicy document",
                "{empty:?}"
            );
        }
    }

    #[test]
    fn text_that_is_not_a_manifest_is_refused() {
        assert_eq!(
            parse_error("- kind: GuardDutyPolicy\n"),
            "expected a GuardDutyPolicy manifest (a mapping with apiVersion, kind, metadata \
             and spec), found a list"
        );
        assert!(
            parse_error("spec: [unclosed\n").starts_with("failed to read the manifest as YAML: "),
        );
    }

    #[test]
    fn status_and_server_metadata_are_ignored() {
        let yaml = format!(
            "{}status:\n  observedGeneration: 3\n",
            MINIMAL.replace(
                "  name: minimal\n",
                "  name: minimal\n  uid: 0b6e7f4e\n  resourceVersion: \"42\"\n  \
                 annotations: {a: b}\n"
            )
        );
        assert_eq!(valid(&yaml).interval, Duration::from_secs(300));
    }

    #[test]
    fn several_errors_are_all_reported_at_once() {
        let yaml = COMPLETE
            .replacen("region: eu-west-2", "region: Europe", 1)
            .replacen("    - 10.0.0.0/8", "    - 0.0.0.0/0", 1)
            .replacen("    - 2001:db8::/32", "    - 2001:db8::1/32", 1)
            .replacen("minSeverity: MEDIUM", "minSeverity: SEVERE", 1)
            .replacen(
                "exemptTag: team.example/keep-open",
                "exemptTag: AWS:keep",
                1,
            )
            .replacen("interval: 10m", "interval: 10s", 1);
        let fields: Vec<String> = match parse_manifest(&yaml)
            .unwrap()
            .spec
            .validate(&PolicyOwner::new(None, "test"))
        {
            Ok(spec) => panic!("expected problems, got {spec:?}"),
            Err(invalid) => invalid.errors.into_iter().map(|e| e.field).collect(),
        };
        assert_eq!(
            fields,
            [
                "spec.region",
                "spec.trustedCidrs[0]",
                "spec.trustedCidrs[2]",
                "spec.findings.minSeverity",
                "spec.remediation.exemptTag",
                "spec.interval",
            ]
        );
    }

    #[test]
    fn invalid_spec_prints_one_problem_per_line() {
        let invalid = InvalidSpec {
            errors: vec![
                FieldError {
                    field: "spec.region".into(),
                    message: "first".into(),
                },
                FieldError {
                    field: "spec.interval".into(),
                    message: "second".into(),
                },
            ],
        };
        assert_eq!(
            invalid.to_string(),
            "spec.region: first\nspec.interval: second"
        );
    }
}
