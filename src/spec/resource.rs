//! The spec of a `GuardDutyPolicy` and the CRD it derives (`CustomResource` +
//! `KubeSchema`): field names are the public API (rename none), doc comments are the
//! user documentation `kubectl explain gdp.spec` shows, and every check of
//! [`GuardDutyPolicySpec::validate`] that CEL can express is a validation rule.

use std::fmt;

use kube::{CustomResource, CustomResourceExt as _, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::notifications::NotificationSpec;
use super::status::GuardDutyPolicyStatus;
use super::{DEFAULT_INTERVAL, MAX_FINDING_TYPES, MAX_TRUSTED_CIDRS, record};
use crate::domain::policy::{
    AllTrafficRules, DEFAULT_EXEMPT_TAG, DEFAULT_MAX_NETWORK_INTERFACES,
    DEFAULT_MAX_RULES_PER_GROUP, DEFAULT_PUBLIC_PORTS, Mode, RevokeScope,
};
use crate::domain::severity::{Severity, SeverityError};

/// What a GuardDutyPolicy asks for: which Amazon GuardDuty findings to act on, which
/// networks keep access to the EC2 instances they concern, and how far the operator
/// may go in closing what a finding exposed. Only `trustedCidrs` is required.
// clippy reads the printer columns' repeated `type_ = …` as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "guardduty.security.dev",
    version = "v1alpha1",
    kind = "GuardDutyPolicy",
    plural = "guarddutypolicies",
    shortname = "gdp",
    category = "guardduty",
    namespaced,
    status = "GuardDutyPolicyStatus",
    derive = "PartialEq",
    doc = "A GuardDutyPolicy: which Amazon GuardDuty findings the operator acts on, the \
           networks that keep access, and how far it may go in closing what a finding exposed.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether the last pass completed and every security group converged"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.remediation.mode",
        description = "DryRun, Enforce or Off"
    ),
    printcolumn(
        name = "Findings",
        type_ = "integer",
        json_path = ".status.findings.total",
        description = "Findings the policy selects"
    ),
    printcolumn(
        name = "Open",
        type_ = "integer",
        json_path = ".status.securityGroups.pending",
        description = "Security groups not yet converged"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        description = "Why Ready is what it is",
        priority = "1"
    ),
    printcolumn(
        name = "Region",
        type_ = "string",
        json_path = ".spec.region",
        description = "The one region (spec.region)",
        priority = "1"
    ),
    printcolumn(
        name = "Regions",
        type_ = "string",
        json_path = ".spec.regions",
        description = "The regions (spec.regions)",
        priority = "1"
    ),
    printcolumn(
        name = "Channels",
        type_ = "string",
        json_path = ".spec.notifications[*].name",
        description = "The alert channels",
        priority = "1"
    ),
    printcolumn(
        name = "Last sync",
        type_ = "date",
        json_path = ".status.lastSyncTime",
        description = "When findings were last read"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(
    validation = Rule::new("!has(self.region) || self.region == '' || !has(self.regions) || size(self.regions) == 0")
        .message("give either region or regions, not both: regions lists every region, region is the one-region shorthand")
        .field_path(".regions"),
    validation = Rule::new("!has(self.detectorId) || self.detectorId == '' || !has(self.regions) || size(self.regions) <= 1")
        .message("detectorId names one region's detector: leave it empty when regions lists several, and the operator finds each region's detector")
        .field_path(".detectorId")
)]
pub struct GuardDutyPolicySpec {
    /// The AWS region whose GuardDuty findings and EC2 security groups are managed,
    /// such as `us-east-1`. When absent or empty, the operator uses the region of its
    /// AWS configuration (`AWS_REGION`, the AWS profile, or the instance metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new(r"self == '' || self.matches('^[a-z]{2}(-[a-z]+)+-[0-9]+$')")
        .message("region must be an AWS region code such as us-east-1 or eu-west-2, or empty to use the AWS SDK's region"))]
    pub region: Option<String>,

    /// The AWS regions to manage, each with its own GuardDuty detector, passes running
    /// concurrently per region: 1 to 32 region codes, no repeats, such as
    /// `[us-east-1, eu-west-1]`. `region` is the one-region shorthand: give one of the
    /// two.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 32)))]
    #[x_kube(
        validation = Rule::new(r"self.all(r, r.matches('^[a-z]{2}(-[a-z]+)+-[0-9]+$'))")
            .message("each of regions must be an AWS region code such as us-east-1 or eu-west-2"),
        validation = Rule::new("self.all(x, self.exists_one(y, y == x))")
            .message("regions must not list a region twice")
    )]
    pub regions: Vec<String>,

    /// Remediate the findings of member accounts (in a GuardDuty administrator
    /// account) by assuming a role in each: `arn:aws:iam::<account>:role/<roleName>`.
    /// Without it, member findings are alerted and reported, never remediated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_accounts: Option<MemberAccountsSpec>,

    /// The GuardDuty detector to read findings from: 1 to 300 letters and digits, as
    /// `aws guardduty list-detectors` prints it. When absent or empty, the operator
    /// finds the region's detector itself (ListDetectors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 300))]
    #[x_kube(validation = Rule::new(r"self.matches('^[A-Za-z0-9]*$')")
        .message("detectorId must be letters and digits only, as `aws guardduty list-detectors` prints it, or empty to have the operator find the detector"))]
    pub detector_id: Option<String>,

    /// The networks that keep access when the operator closes a port a finding
    /// exposed: 1 to 50 IPv4 or IPv6 CIDR blocks written with their network address,
    /// such as `10.0.0.0/8` or `2001:db8::/32`. A world range (`0.0.0.0/0`, `::/0`)
    /// is refused; a range inside another listed range adds nothing.
    #[schemars(schema_with = "trusted_cidrs_schema")]
    pub trusted_cidrs: Vec<String>,

    /// Which findings the operator acts on. Default: every finding.
    #[serde(default)]
    pub findings: FindingsSpec,

    /// What the operator may change in AWS, and what it leaves alone.
    /// Default: plan and report only (`mode: DryRun`).
    #[serde(default)]
    pub remediation: RemediationSpec,

    /// What Security Hub is told. Default: nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_hub: Option<SecurityHubSpec>,

    /// Where alerts about findings and what the operator did go: at most 32
    /// channels, each with a unique `name`, a `minSeverity`, optional `findingTypes`
    /// and exactly one of `email`, `sms`, `slack`, `jira`, `pagerDuty` or `serviceNow`.
    /// A finding is alerted once per channel, again when its severity rises or the
    /// operator's response changes, and resolved when it is no longer listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(x, self.exists_one(y, y.name == x.name))")
        .message("notification channel names must be unique"))]
    pub notifications: Vec<NotificationSpec>,

    /// How often the operator checks GuardDuty for findings, as a duration such as
    /// `30s`, `5m` or `1h30m`: from 30s to 24h. Default `5m`.
    #[serde(default = "default_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new(format!("self.matches('{INTERVAL_PATTERN}')"))
            .message("interval must be a duration such as 30s, 5m or 1h30m"),
        validation = Rule::new(format!(
            "!self.matches('{INTERVAL_PATTERN}') || \
             (duration(self) >= duration('30s') && duration(self) <= duration('24h'))"
        ))
        .message("interval must be from 30s to 24h")
    )]
    pub interval: String,

    /// How often the controller lists every open finding again, rather than only
    /// those updated since its last pass: a duration from 5m to 24h, not shorter than
    /// `interval`. Default `1h`, or `interval` when that is longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new(format!("self.matches('{INTERVAL_PATTERN}')"))
            .message("fullResyncInterval must be a duration such as 30m or 1h"),
        validation = Rule::new(format!(
            "!self.matches('{INTERVAL_PATTERN}') || \
             (duration(self) >= duration('5m') && duration(self) <= duration('24h'))"
        ))
        .message("fullResyncInterval must be from 5m to 24h")
    )]
    pub full_resync_interval: Option<String>,

    /// What happens in AWS when this policy is deleted: `Retain` (the default) leaves
    /// the security groups as they are; `Revert` removes the rules the operator added
    /// and restores the rules it revoked, from its record in the status.
    #[serde(default)]
    pub deletion_policy: record::DeletionPolicy,
}

/// A Go duration, as CEL's `duration()` reads it: numbers, each with a unit.
const INTERVAL_PATTERN: &str = "^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// `spec.trustedCidrs`: every item a CIDR with its network address, none a world
/// range nor so wide that it must hold more public space than the bound (the bound
/// over the union of the ranges is checked by the operator, which CEL cannot do), 1 to
/// [`MAX_TRUSTED_CIDRS`] of them. Each item rule guards against a value that is not
/// a CIDR, so a bad value gets one message, not an evaluation error. IPv4-mapped IPv6
/// ranges are not CIDRs to the API server's CEL.
fn trusted_cidrs_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_TRUSTED_CIDRS,
        "items": {
            "type": "string",
            // The longest IPv6 CIDR: 39 characters of address, then `/128`.
            "maxLength": 43,
            "x-kubernetes-validations": [
                {
                    "rule": "isCIDR(self)",
                    "message": "each trusted range must be an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or 2001:db8::/32"
                },
                {
                    "rule": "!isCIDR(self) || cidr(self).prefixLength() != 0",
                    "message": "a world range (0.0.0.0/0, ::/0) cannot be trusted: it would leave the port open to everyone"
                },
                {
                    "rule": "!isCIDR(self) || cidr(self) == cidr(self).masked()",
                    "message": "a trusted range must be written with its network address, such as 10.0.0.0/8 rather than 10.1.2.3/8"
                },
                {
                    "rule": "!isCIDR(self) || cidr(self).prefixLength() == 0 || cidr(self).prefixLength() >= (cidr(self).ip().family() == 4 ? 4 : 7)",
                    "message": "a trusted range this wide (an IPv4 /3 or wider, an IPv6 /6 or wider) holds more public space than a /8 (IPv4) or a /16 (IPv6): list only the networks that need access"
                }
            ]
        }
    })
}

/// `spec.findings.types`: at most [`MAX_FINDING_TYPES`] GuardDuty finding types.
fn finding_types_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": MAX_FINDING_TYPES,
        "items": {
            "type": "string",
            "maxLength": 256,
            "x-kubernetes-validations": [{
                "rule": "self.matches('^[A-Za-z]+:[A-Za-z0-9]+/[A-Za-z0-9._!&-]+$')",
                "message": "each finding type must be written as ThreatPurpose:ResourceType/ThreatFamilyName, such as Recon:EC2/PortProbeUnprotectedPort"
            }]
        }
    })
}

/// Which GuardDuty findings the operator acts on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, KubeSchema)]
// Defaults per field rather than `#[serde(default)]` on the struct: the schema
// derive needs them there.
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FindingsSpec {
    /// The lowest severity acted on: a GuardDuty severity level (`LOW`, `MEDIUM`,
    /// `HIGH` or `CRITICAL`, which start at 1.0, 4.0, 7.0 and 9.0) or a number from
    /// 1.0 to 10.0. Default `LOW`: every finding. In a cluster, write a number with a
    /// fraction in quotes (`"5.5"`): the field is an int-or-string there.
    #[serde(default)]
    pub min_severity: SeverityThreshold,

    /// The finding types acted on, such as `Recon:EC2/PortProbeUnprotectedPort` or
    /// `UnauthorizedAccess:EC2/SSHBruteForce` (at most 50). Empty or absent means
    /// every type: the ones the operator can fix are fixed, the others are reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "finding_types_schema")]
    pub types: Vec<String>,
}

/// A severity threshold as written in a manifest: a level name or a number.
///
/// In the CRD it is an int-or-string (the only number-or-string shape a structural
/// schema allows): a whole number, a level name or a number in quotes; a number with
/// a fraction is written in quotes there (`"5.5"`). One CEL rule checks the range.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SeverityThreshold {
    /// A number from 1.0 to 10.0, such as `7` or `5.5`.
    Number(f64),
    /// `LOW`, `MEDIUM`, `HIGH`, `CRITICAL`, or a number in quotes such as `"5.5"`.
    Text(String),
}

impl Default for SeverityThreshold {
    fn default() -> Self {
        SeverityThreshold::Text("LOW".to_string())
    }
}

/// Written out rather than derived as untagged, so that a value of the wrong type is
/// reported at `spec.findings.minSeverity` itself, with what is expected there.
impl<'de> Deserialize<'de> for SeverityThreshold {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ThresholdVisitor;

        impl serde::de::Visitor<'_> for ThresholdVisitor {
            type Value = SeverityThreshold;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a severity: LOW, MEDIUM, HIGH, CRITICAL or a number from 1.0 to 10.0")
            }

            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
                Ok(SeverityThreshold::Number(value))
            }

            // Whole numbers far outside 1..=10 lose precision here, and are refused anyway.
            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
                Ok(SeverityThreshold::Number(value as f64))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
                Ok(SeverityThreshold::Number(value as f64))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
                Ok(SeverityThreshold::Text(value.to_string()))
            }
        }

        deserializer.deserialize_any(ThresholdVisitor)
    }
}

impl JsonSchema for SeverityThreshold {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SeverityThreshold".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            // A default stands for an absent value; `null` is not a threshold.
            "nullable": false,
            "maxLength": 16,
            "x-kubernetes-validations": [{
                "rule": SEVERITY_RULE,
                "message": "minSeverity must be LOW, MEDIUM, HIGH, CRITICAL or a number from 1.0 to 10.0"
            }]
        })
    }
}

/// A level name, or a number from 1.0 to 10.0 (written as a number or in quotes).
/// `string(self)` reads both sides of the int-or-string alike, without `type()`.
const SEVERITY_RULE: &str = "string(self) in ['LOW', 'MEDIUM', 'HIGH', 'CRITICAL'] || \
    (string(self).matches('^[0-9]+([.][0-9]+)?$') && \
    double(string(self)) >= 1.0 && double(string(self)) <= 10.0)";

impl SeverityThreshold {
    /// The lowest severity this threshold lets through.
    pub fn to_severity(&self) -> Result<Severity, SeverityError> {
        match self {
            SeverityThreshold::Number(value) => Severity::threshold(*value),
            SeverityThreshold::Text(text) => Severity::parse_threshold(text),
        }
    }
}

/// What the operator may change in AWS, and what it leaves alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.ports) || !has(self.publicPorts) || self.ports.all(p, !(p in self.publicPorts))")
    .message("a port is in both ports and publicPorts: publicPorts are never remediated, so remove it from one of the two"))]
pub struct RemediationSpec {
    /// `DryRun` (the default): plan the fixes and report them, change nothing in AWS.
    /// `Enforce`: apply the fixes to the security groups. `Off`: report findings only.
    #[serde(default)]
    pub mode: RemediationMode,

    /// Archive a finding in GuardDuty once the exposure it reported is closed, so it
    /// leaves the list of current findings. Default `false`.
    #[serde(default)]
    pub archive_remediated: bool,

    /// Tell GuardDuty a finding was useful (UpdateFindingsFeedback, `USEFUL`) once the
    /// operator closes what it reported. Default `false`.
    #[serde(default)]
    pub finding_feedback: bool,

    /// Security groups that carry a tag with this key (whatever its value) are never
    /// changed. An AWS tag key: 1 to 128 characters, not starting with `aws:`.
    /// Default `guardduty-operator/exempt`.
    #[serde(default = "default_exempt_tag")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("!self.lowerAscii().startsWith('aws:')")
        .message("exemptTag must not start with aws:, which AWS reserves for its own tags"))]
    pub exempt_tag: String,

    /// The most inbound rules a security group may hold per address family (IPv4 and
    /// IPv6 count apart): the account's "Inbound or outbound rules per security group"
    /// quota in Service Quotas, from 1 to 1000. Default 60, the AWS default. A group
    /// that cannot be fixed within it is reported, not changed half-way.
    #[serde(default = "default_max_rules_per_group")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000")
        .message("maxRulesPerGroup must be from 1 to 1000: the account's inbound rules per security group quota (AWS default 60)"))]
    pub max_rules_per_group: u32,

    /// Which sources of a rule that opens a finding's port are revoked. `Public` (the
    /// default): only sources that hold a globally reachable address (the Internet);
    /// private ranges (RFC 1918, 100.64.0.0/10, link-local, documentation ranges,
    /// fc00::/7, …, as IANA's special-purpose registries mark them) stay, so a peered
    /// VPC or a health checker keeps its access. `Untrusted`: every source outside
    /// `trustedCidrs`. Either way, trusted ranges keep their access.
    #[serde(default)]
    pub revoke: RevokeMode,

    /// Ports that serve everyone by design, such as a web server's: a finding on them
    /// is reported and alerted, never remediated. Default `[80, 443]`; `[]` remediates
    /// every port.
    #[serde(default = "default_public_ports")]
    #[schemars(length(max = 100))]
    pub public_ports: Vec<u16>,

    /// When set, only these ports are remediated (findings on other ports are
    /// reported). Default: every port not in `publicPorts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub ports: Vec<u16>,

    /// The most network interfaces a security group may be used by for the operator
    /// to change it: a change reaches every one of them. A group used by more is
    /// refused, with the count. From 1 to 100000. Default 50.
    #[serde(default = "default_max_network_interfaces")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100000")
        .message("maxNetworkInterfaces must be from 1 to 100000"))]
    pub max_network_interfaces: u32,

    /// What happens to a rule that allows all traffic (every protocol) from a revoked
    /// source on a finding's port. `Refuse` (the default): the group is left as it is
    /// and reported, for a person to split the rule. `Split`: the rule is replaced by
    /// tcp, udp and icmp rules that keep every other port's access from that source;
    /// other IP protocols from it (GRE, ESP, …) are dropped, and the plan says so.
    #[serde(default)]
    pub all_traffic_rules: AllTrafficRulesMode,
}

/// `spec.remediation.revoke`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum RevokeMode {
    /// Only sources with a globally reachable address (the default).
    #[default]
    Public,
    /// Every source outside the trusted ranges.
    Untrusted,
}

/// `spec.remediation.allTrafficRules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum AllTrafficRulesMode {
    /// Leave the group as it is and say why (the default).
    #[default]
    Refuse,
    /// Replace the rule by tcp, udp and icmp rules that keep every other port.
    Split,
}

impl From<RevokeMode> for RevokeScope {
    fn from(mode: RevokeMode) -> RevokeScope {
        match mode {
            RevokeMode::Public => RevokeScope::Public,
            RevokeMode::Untrusted => RevokeScope::Untrusted,
        }
    }
}

impl From<AllTrafficRulesMode> for AllTrafficRules {
    fn from(mode: AllTrafficRulesMode) -> AllTrafficRules {
        match mode {
            AllTrafficRulesMode::Refuse => AllTrafficRules::Refuse,
            AllTrafficRulesMode::Split => AllTrafficRules::Split,
        }
    }
}

fn default_public_ports() -> Vec<u16> {
    DEFAULT_PUBLIC_PORTS.to_vec()
}

fn default_max_network_interfaces() -> u32 {
    // A small constant of the domain: it fits any integer type.
    DEFAULT_MAX_NETWORK_INTERFACES as u32
}

/// What the operator may change in AWS: the manifest's `remediation.mode`, mapped
/// to the planner's [`Mode`] by [`GuardDutyPolicySpec::validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum RemediationMode {
    /// Plan and report, change nothing (the default).
    #[default]
    DryRun,
    /// Apply the plan.
    Enforce,
    /// Report findings only; plan nothing.
    Off,
}

impl From<RemediationMode> for Mode {
    fn from(mode: RemediationMode) -> Mode {
        match mode {
            RemediationMode::DryRun => Mode::DryRun,
            RemediationMode::Enforce => Mode::Enforce,
            RemediationMode::Off => Mode::Off,
        }
    }
}

impl Default for RemediationSpec {
    fn default() -> Self {
        RemediationSpec {
            mode: RemediationMode::default(),
            archive_remediated: false,
            finding_feedback: false,
            exempt_tag: default_exempt_tag(),
            max_rules_per_group: default_max_rules_per_group(),
            revoke: RevokeMode::default(),
            public_ports: default_public_ports(),
            ports: Vec::new(),
            max_network_interfaces: default_max_network_interfaces(),
            all_traffic_rules: AllTrafficRulesMode::default(),
        }
    }
}

fn default_exempt_tag() -> String {
    DEFAULT_EXEMPT_TAG.to_string()
}

fn default_max_rules_per_group() -> u32 {
    // The domain's default is a small constant: it fits any integer type.
    DEFAULT_MAX_RULES_PER_GROUP as u32
}

/// The `GuardDutyPolicy` CustomResourceDefinition as YAML: what `guardduty-operator crd`
/// prints and `crds/` holds.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    // A one-line description or CEL rule stays on one line (not folded at 80
    // characters); one of several lines is written as a literal block.
    let options = serde_saphyr::ser_options! { folded_wrap_chars: 4096 };
    let yaml = serde_saphyr::to_string_with_options(&GuardDutyPolicy::crd(), options)?;
    Ok(format!("{CRD_HEADER}{yaml}"))
}

/// The first lines of the generated CRD file.
pub const CRD_HEADER: &str =
    "# Generated by `guardduty-operator crd` from src/spec/resource.rs: do not edit.\n";

fn default_interval() -> String {
    DEFAULT_INTERVAL.to_string()
}

/// Security Hub, where GuardDuty findings are copied when it is enabled.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityHubSpec {
    /// Mark a remediated finding's Security Hub copy RESOLVED, with a note naming the
    /// change (BatchUpdateFindings, by the finding's ARN and GuardDuty's product ARN).
    /// Default `false`.
    #[serde(default)]
    pub update_findings: bool,
}

/// Member accounts of a GuardDuty administrator account, and the role to assume in
/// each to remediate its findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberAccountsSpec {
    /// The name of the role in every member account, such as
    /// `guardduty-operator-member` (see deploy/member-role-trust-policy.json): 1 to 64
    /// letters, digits and `+=,.@_-`.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new(r"self.matches('^[A-Za-z0-9+=,.@_-]+$')")
        .message("roleName must be an IAM role name: 1 to 64 letters, digits and +=,.@_-"))]
    pub role_name: String,

    /// The external id the role's trust policy requires (sts:ExternalId), if any:
    /// 2 to 1224 letters, digits and `+=,.@:/_-`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1224))]
    #[x_kube(validation = Rule::new(r"self == '' || self.matches('^[A-Za-z0-9+=,.@:/_-]{2,}$')")
        .message("externalId must be 2 to 1224 letters, digits and +=,.@:/_-, or empty"))]
    pub external_id: String,

    /// The only member accounts remediated (12-digit account ids); empty: every member
    /// account. Findings of the others are alerted and reported as not allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(max = 12)))]
    #[x_kube(validation = Rule::new(r"self.all(a, a.matches('^[0-9]{12}$'))")
        .message("each of accounts must be a 12-digit AWS account id"))]
    pub accounts: Vec<String>,
}

impl MemberAccountsSpec {
    /// As the pass uses it, unchecked (a revert reads the spec raw).
    pub fn to_domain(&self) -> crate::domain::policy::MemberAccounts {
        crate::domain::policy::MemberAccounts {
            role_name: self.role_name.clone(),
            external_id: (!self.external_id.is_empty()).then(|| self.external_id.clone()),
            accounts: self.accounts.iter().cloned().collect(),
        }
    }
}
