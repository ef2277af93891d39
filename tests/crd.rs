//! The `GuardDutyPolicy` CustomResourceDefinition: the committed YAML in `crds/`
//! matches the code, the names and printer columns are the ones users type and see,
//! and every CEL rule refuses what it should, with its message, and lets good values
//! through. The rules are evaluated with kube's `cel` feature (kube-cel), on the CRD's
//! own schema, after the schema's defaults are applied, as the API server does.

use std::path::PathBuf;

use guardduty_operator::spec::{self, GuardDutyPolicy, GuardDutyPolicySpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt as _;
use kube::core::cel::{ErrorKind, Validator, compile_schema, estimate_rule_cost};
use serde_json::{Value, json};

const CRD_FILE: &str = "crds/guardduty.security.dev_guarddutypolicies.yaml";
const COMPLETE: &str = include_str!("fixtures/policies/complete.yaml");

fn crd() -> CustomResourceDefinition {
    GuardDutyPolicy::crd()
}

/// The openAPIV3Schema of the only version.
fn schema() -> Value {
    let crd = crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the CRD has a schema");
    serde_json::to_value(schema).unwrap()
}

/// The complete fixture (every field set) as the object `kubectl apply` sends.
fn complete() -> Value {
    serde_json::to_value(parse(COMPLETE)).unwrap()
}

fn parse(yaml: &str) -> spec::PolicyManifest {
    spec::parse_manifest(yaml).unwrap_or_else(|err| panic!("{err}"))
}

/// The CEL failures of an object, as `field: message`; an error that is not a plain
/// `false` (a rule that does not compile or fails to evaluate) names its kind.
fn refusals(object: &Value) -> Vec<String> {
    match Validator::new().validate(&schema(), object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|error| match &error.kind {
                ErrorKind::ValidationFailure => format!("{}: {}", error.field_path, error.message),
                other => format!("{}: {other:?}: {}", error.field_path, error.message),
            })
            .collect(),
    }
}

/// The complete fixture with `spec` + `pointer` set to `value`.
fn with(pointer: &str, value: Value) -> Value {
    let mut object = complete();
    *object
        .pointer_mut(&format!("/spec{pointer}"))
        .unwrap_or_else(|| panic!("no field /spec{pointer} in the fixture")) = value;
    object
}

/// Asserts that `value` at `pointer` is refused with exactly `message` at `field`.
fn assert_refused(pointer: &str, value: Value, field: &str, message: &str) {
    assert_eq!(
        refusals(&with(pointer, value.clone())),
        [format!("{field}: {message}")],
        "{pointer} = {value}"
    );
}

fn assert_accepted(pointer: &str, value: Value) {
    assert_eq!(
        refusals(&with(pointer, value.clone())),
        Vec::<String>::new(),
        "{pointer} = {value}"
    );
}

#[test]
fn committed_crd_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(CRD_FILE);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = spec::crd_yaml().unwrap();
    assert!(
        committed == generated,
        "{CRD_FILE} is missing or stale: run `cargo run -- crd > {CRD_FILE}` and commit it"
    );
}

/// What `kubectl apply` reads from the file is what the code built: no string of a
/// description or a CEL rule turned into a number or a boolean by the writer.
#[test]
fn committed_crd_reads_back_as_the_code_built_it() {
    let yaml = spec::crd_yaml().unwrap();
    let read: Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(read, serde_json::to_value(crd()).unwrap());
}

/// Kubernetes reads YAML as 1.1 (sigs.k8s.io/yaml), where an unquoted `Off`, `on`,
/// `yes` or `n` is a boolean: the enum of `spec.remediation.mode` once held `false`
/// that way. Every such string in the file is quoted.
#[test]
fn committed_crd_has_no_string_a_yaml_1_1_reader_takes_for_a_boolean() {
    const YAML_1_1_BOOLEANS: [&str; 22] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
    ];
    let yaml = spec::crd_yaml().unwrap();
    for (number, line) in yaml.lines().enumerate() {
        let scalar = line
            .trim_start()
            .trim_start_matches("- ")
            .rsplit(": ")
            .next()
            .unwrap_or_default()
            .trim();
        assert!(
            !YAML_1_1_BOOLEANS.contains(&scalar) || scalar == "true" || scalar == "false",
            "line {}: {line:?} is a boolean to a YAML 1.1 reader; quote it",
            number + 1
        );
    }
}

#[test]
fn crd_subcommand_prints_the_committed_file() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_guardduty-operator"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        spec::crd_yaml().unwrap()
    );
}

#[test]
fn crd_names_the_resource_users_type() {
    let crd = crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("guarddutypolicies.guardduty.security.dev")
    );
    assert_eq!(crd.spec.group, "guardduty.security.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "GuardDutyPolicy");
    assert_eq!(crd.spec.names.plural, "guarddutypolicies");
    assert_eq!(crd.spec.names.short_names, Some(vec!["gdp".to_string()]));
    let [version] = crd.spec.versions.as_slice() else {
        panic!("expected one version, found {:?}", crd.spec.versions);
    };
    assert_eq!(version.name, "v1alpha1");
    assert!(version.served && version.storage);
    let subresources = version.subresources.as_ref().expect("subresources");
    assert!(subresources.status.is_some(), "status subresource");
    assert!(subresources.scale.is_none());
}

#[test]
fn printer_columns_answer_is_it_fine() {
    let crd = crd();
    let columns: Vec<(String, String, String)> = crd.spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .expect("printer columns")
        .iter()
        .map(|c| {
            let wide = if c.priority == Some(1) { " (wide)" } else { "" };
            (
                format!("{}{wide}", c.name),
                c.type_.clone(),
                c.json_path.clone(),
            )
        })
        .collect();
    let expected = [
        (
            "Ready",
            "string",
            r#".status.conditions[?(@.type=="Ready")].status"#,
        ),
        ("Mode", "string", ".spec.remediation.mode"),
        ("Findings", "integer", ".status.findings.total"),
        ("Open", "integer", ".status.securityGroups.pending"),
        (
            "Reason (wide)",
            "string",
            r#".status.conditions[?(@.type=="Ready")].reason"#,
        ),
        ("Region (wide)", "string", ".spec.region"),
        ("Regions (wide)", "string", ".spec.regions"),
        ("Channels (wide)", "string", ".spec.notifications[*].name"),
        ("Last sync", "date", ".status.lastSyncTime"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    .map(|(n, t, p)| (n.to_string(), t.to_string(), p.to_string()));
    assert_eq!(columns, expected);
    assert_eq!(
        crd.spec.names.categories,
        Some(vec!["guardduty".to_string()]),
        "kubectl get guardduty lists the policies"
    );
}

#[test]
fn conditions_are_a_list_map_keyed_by_type_and_actions_are_bounded() {
    let schema = schema();
    let status = &schema["properties"]["status"]["properties"];
    assert_eq!(status["conditions"]["x-kubernetes-list-type"], "map");
    assert_eq!(
        status["conditions"]["x-kubernetes-list-map-keys"],
        json!(["type"])
    );
    assert_eq!(status["recentActions"]["maxItems"], 50);
    for field in [
        "observedGeneration",
        "lastSyncTime",
        "findings",
        "securityGroups",
    ] {
        assert!(status.get(field).is_some(), "status.{field}");
    }
}

#[test]
fn mode_is_an_enum_defaulting_to_dry_run() {
    let schema = schema();
    let remediation = &schema["properties"]["spec"]["properties"]["remediation"];
    let mode = &remediation["properties"]["mode"];
    assert_eq!(mode["enum"], json!(["DryRun", "Enforce", "Off"]));
    assert_eq!(mode["default"], "DryRun");
    assert_eq!(remediation["default"]["mode"], "DryRun");
}

#[test]
fn every_rule_compiles_and_fits_the_cost_budget() {
    let schema = schema();
    let compiled = compile_schema(&schema);
    let mut rules = 0;
    let mut problems = Vec::new();
    visit_rules(&schema, &compiled, &mut |rule, node| {
        rules += 1;
        for warning in estimate_rule_cost(rule, node) {
            problems.push(format!("{rule}: {}", warning.message));
        }
    });
    assert_eq!(problems, Vec::<String>::new());
    assert_eq!(rules, 48, "every rule of src/spec/, and no other");
    let mut errors = Vec::new();
    collect_compilation_errors(&compiled, &mut errors);
    assert_eq!(errors, Vec::<String>::new());
}

/// Calls `visit` with every rule and the compiled schema node it sits on.
fn visit_rules(
    schema: &Value,
    node: &kube::core::cel::CompiledSchema,
    visit: &mut dyn FnMut(&str, &kube::core::cel::CompiledSchema),
) {
    if let Some(rules) = schema["x-kubernetes-validations"].as_array() {
        for rule in rules {
            visit(rule["rule"].as_str().unwrap(), node);
        }
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            visit_rules(property, &node.properties[name], visit);
        }
    }
    if let (Some(items), Some(compiled)) = (schema.get("items"), node.items.as_deref()) {
        visit_rules(items, compiled, visit);
    }
}

fn collect_compilation_errors(node: &kube::core::cel::CompiledSchema, errors: &mut Vec<String>) {
    errors.extend(node.compilation_errors().iter().map(|e| e.to_string()));
    for child in node.properties.values() {
        collect_compilation_errors(child, errors);
    }
    if let Some(items) = &node.items {
        collect_compilation_errors(items, errors);
    }
}

#[test]
fn the_examples_and_fixtures_pass_every_rule() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "examples/policy.yaml",
        "examples/demo-policy.yaml",
        "tests/fixtures/policies/complete.yaml",
        "tests/fixtures/policies/example.yaml",
        "tests/fixtures/policies/minimal.yaml",
    ] {
        let yaml = std::fs::read_to_string(root.join(file)).unwrap();
        let manifest = parse(&yaml);
        let owner = spec::PolicyOwner::new(
            manifest.metadata.namespace.as_deref(),
            &manifest.metadata.name,
        );
        manifest
            .spec
            .validate(&owner)
            .unwrap_or_else(|err| panic!("{file}: {err}"));
        let object = serde_json::to_value(&manifest).unwrap();
        assert_eq!(refusals(&object), Vec::<String>::new(), "{file}");
    }
}

#[test]
fn a_spec_reads_the_same_as_the_custom_resource() {
    let manifest = parse(COMPLETE);
    let resource: GuardDutyPolicy = serde_json::from_value(complete()).unwrap();
    assert_eq!(resource.spec, manifest.spec);
    assert_eq!(resource.status, None);
    let spec: GuardDutyPolicySpec = serde_json::from_value(complete()["spec"].clone()).unwrap();
    assert!(
        spec.validate(&spec::PolicyOwner::new(None, "complete"))
            .is_ok()
    );
}

// One test per rule: a bad value refused with the rule's message, good values pass.

#[test]
fn trusted_cidr_that_is_not_a_cidr_is_refused() {
    let message = "each trusted range must be an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or \
                   2001:db8::/32";
    for bad in [
        "192.168.0.300/16",
        "192.168.0.0",
        "10.0.0.0/33",
        "ten/8",
        "",
    ] {
        assert_refused(
            "/trustedCidrs/1",
            json!(bad),
            "spec.trustedCidrs[1]",
            message,
        );
    }
    for good in ["192.168.0.0/16", "10.0.0.0/32", "2001:db8::/32", "fd00::/8"] {
        assert_accepted("/trustedCidrs/1", json!(good));
    }
}

#[test]
fn world_ranges_are_refused_in_both_families() {
    let message = "a world range (0.0.0.0/0, ::/0) cannot be trusted: it would leave the port \
                   open to everyone";
    for world in ["0.0.0.0/0", "::/0"] {
        assert_refused(
            "/trustedCidrs/0",
            json!(world),
            "spec.trustedCidrs[0]",
            message,
        );
    }
    assert_accepted("/trustedCidrs/0", json!("10.0.0.0/8"));
}

#[test]
fn a_trusted_range_too_wide_for_the_public_bound_is_refused() {
    let message = "a trusted range this wide (an IPv4 /3 or wider, an IPv6 /6 or wider) holds \
                   more public space than a /8 (IPv4) or a /16 (IPv6): list only the networks \
                   that need access";
    for wide in ["0.0.0.0/1", "128.0.0.0/1", "32.0.0.0/3", "2000::/3", "::/6"] {
        assert_refused(
            "/trustedCidrs/0",
            json!(wide),
            "spec.trustedCidrs[0]",
            message,
        );
    }
    // As wide as CEL can tell apart; the operator checks the union's public space.
    for fine in ["240.0.0.0/4", "fc00::/7", "11.0.0.0/8"] {
        assert_accepted("/trustedCidrs/0", json!(fine));
    }
}

#[test]
fn a_port_both_remediated_and_public_is_refused() {
    assert_refused(
        "/remediation/ports",
        json!([22, 443]),
        "spec.remediation",
        "a port is in both ports and publicPorts: publicPorts are never remediated, so remove \
         it from one of the two",
    );
    assert_accepted("/remediation/ports", json!([22, 3389, 5432]));
}

#[test]
fn network_interfaces_outside_one_to_a_hundred_thousand_are_refused() {
    for bad in [0, 100_001] {
        assert_refused(
            "/remediation/maxNetworkInterfaces",
            json!(bad),
            "spec.remediation.maxNetworkInterfaces",
            "maxNetworkInterfaces must be from 1 to 100000",
        );
    }
    for good in [1, 50, 100_000] {
        assert_accepted("/remediation/maxNetworkInterfaces", json!(good));
    }
}

#[test]
fn trusted_cidr_with_host_bits_is_refused() {
    assert_refused(
        "/trustedCidrs/0",
        json!("10.1.2.3/8"),
        "spec.trustedCidrs[0]",
        "a trusted range must be written with its network address, such as 10.0.0.0/8 rather \
         than 10.1.2.3/8",
    );
    assert_refused(
        "/trustedCidrs/2",
        json!("2001:db8::1/32"),
        "spec.trustedCidrs[2]",
        "a trusted range must be written with its network address, such as 10.0.0.0/8 rather \
         than 10.1.2.3/8",
    );
}

#[test]
fn trusted_cidrs_are_one_to_fifty_in_the_schema() {
    let schema = schema();
    let trusted = &schema["properties"]["spec"]["properties"]["trustedCidrs"];
    assert_eq!(trusted["minItems"], 1);
    assert_eq!(trusted["maxItems"], 50);
    assert_eq!(
        schema["properties"]["spec"]["required"],
        json!(["trustedCidrs"])
    );
}

#[test]
fn severity_outside_one_to_ten_or_unknown_name_is_refused() {
    let message = "minSeverity must be LOW, MEDIUM, HIGH, CRITICAL or a number from 1.0 to 10.0";
    for bad in [
        json!(0),
        json!(11),
        json!("SEVERE"),
        json!("0.5"),
        json!("10.5"),
        json!(""),
    ] {
        assert_refused(
            "/findings/minSeverity",
            bad,
            "spec.findings.minSeverity",
            message,
        );
    }
    for good in [
        json!("LOW"),
        json!("CRITICAL"),
        json!(1),
        json!(10),
        json!(7),
        json!("5.5"),
        json!("10"),
    ] {
        assert_accepted("/findings/minSeverity", good);
    }
}

#[test]
fn severity_is_an_int_or_string_in_the_schema() {
    let schema = schema();
    let severity =
        &schema["properties"]["spec"]["properties"]["findings"]["properties"]["minSeverity"];
    assert_eq!(severity["x-kubernetes-int-or-string"], true);
    assert_eq!(severity["nullable"], false);
    assert_eq!(severity["default"], "LOW");
}

#[test]
fn malformed_finding_type_is_refused() {
    assert_refused(
        "/findings/types/1",
        json!("SSHBruteForce"),
        "spec.findings.types[1]",
        "each finding type must be written as ThreatPurpose:ResourceType/ThreatFamilyName, such \
         as Recon:EC2/PortProbeUnprotectedPort",
    );
    assert_accepted("/findings/types/1", json!("Backdoor:EC2/C&CActivity.B!DNS"));
}

#[test]
fn rules_per_group_outside_one_to_a_thousand_are_refused() {
    let message = "maxRulesPerGroup must be from 1 to 1000: the account's inbound rules per \
                   security group quota (AWS default 60)";
    for bad in [0, 1001] {
        assert_refused(
            "/remediation/maxRulesPerGroup",
            json!(bad),
            "spec.remediation.maxRulesPerGroup",
            message,
        );
    }
    for good in [1, 60, 1000] {
        assert_accepted("/remediation/maxRulesPerGroup", json!(good));
    }
}

#[test]
fn interval_that_is_not_a_duration_is_refused() {
    for bad in ["5 minutes", "5", "5d", "-5m", ""] {
        assert_refused(
            "/interval",
            json!(bad),
            "spec.interval",
            "interval must be a duration such as 30s, 5m or 1h30m",
        );
    }
}

#[test]
fn interval_outside_thirty_seconds_to_a_day_is_refused() {
    for bad in ["10s", "29s", "48h", "24h1s"] {
        assert_refused(
            "/interval",
            json!(bad),
            "spec.interval",
            "interval must be from 30s to 24h",
        );
    }
    for good in ["30s", "5m", "1h30m", "1.5h", "90000ms", "24h"] {
        assert_accepted("/interval", json!(good));
    }
}

#[test]
fn duplicate_notification_names_are_refused() {
    let channel = |name: &str| {
        json!({"name": name, "minSeverity": "HIGH",
               "slack": {"webhookUrlSecretRef": {"name": "slack", "key": "webhookUrl"}}})
    };
    assert_refused(
        "/notifications",
        json!([channel("oncall"), channel("chat"), channel("oncall")]),
        "spec.notifications",
        "notification channel names must be unique",
    );
    assert_accepted(
        "/notifications",
        json!([channel("oncall"), channel("chat")]),
    );
    let schema = schema();
    let notifications = &schema["properties"]["spec"]["properties"]["notifications"];
    assert_eq!(notifications["maxItems"], 32);
    assert_eq!(notifications["items"]["required"], json!(["name"]));
}

#[test]
fn a_notification_needs_exactly_one_channel_block() {
    let message = "each notification needs exactly one channel: email, sms, slack, jira, pagerDuty or serviceNow";
    let slack = json!({"webhookUrlSecretRef": {"name": "slack", "key": "webhookUrl"}});
    let sms = json!({"topicArn": "arn:aws:sns:eu-west-2:123456789012:secops-sms"});
    assert_refused(
        "/notifications/1",
        json!({"name": "chat"}),
        "spec.notifications[1]",
        message,
    );
    assert_refused(
        "/notifications/1",
        json!({"name": "chat", "slack": slack, "sms": sms}),
        "spec.notifications[1]",
        message,
    );
    assert_accepted("/notifications/1", json!({"name": "chat", "sms": sms}));
}

#[test]
fn malformed_notification_name_is_refused() {
    let message = "a notification name must be lower-case letters, digits and '-', such as oncall";
    for bad in ["On-Call", "-oncall", "oncall-", "on call", "on_call"] {
        assert_refused(
            "/notifications/0/name",
            json!(bad),
            "spec.notifications[0].name",
            message,
        );
    }
    for good in ["oncall", "secops-chat", "p1"] {
        assert_accepted("/notifications/0/name", json!(good));
    }
}

#[test]
fn notification_severity_and_type_patterns_are_checked() {
    assert_refused(
        "/notifications/0/minSeverity",
        json!("SEVERE"),
        "spec.notifications[0].minSeverity",
        "minSeverity must be LOW, MEDIUM, HIGH, CRITICAL or a number from 1.0 to 10.0",
    );
    let message = "each finding type pattern must be a finding type with * or ? wildcards, such \
                   as UnauthorizedAccess:*";
    for bad in ["Unauthorized Access:*", "", "Recon:EC2/[a-z]"] {
        assert_refused(
            "/notifications/0/findingTypes/0",
            json!(bad),
            "spec.notifications[0].findingTypes[0]",
            message,
        );
    }
    for good in [
        "*",
        "UnauthorizedAccess:*",
        "*:EC2/*BruteForce",
        "Recon:EC2/PortProbe?MR*",
    ] {
        assert_accepted("/notifications/0/findingTypes/0", json!(good));
    }
}

#[test]
fn channel_urls_must_be_https_or_loopback_http() {
    let cases = [
        (
            "/notifications/0/pagerDuty/eventsUrl",
            "spec.notifications[0].pagerDuty.eventsUrl",
            "eventsUrl must be an https:// URL (http:// only to 127.0.0.1 or localhost)",
        ),
        (
            "/notifications/2/jira/url",
            "spec.notifications[2].jira.url",
            "jira.url must be an https:// URL such as https://example.atlassian.net (http:// only \
             to 127.0.0.1 or localhost)",
        ),
        (
            "/notifications/3/serviceNow/instanceUrl",
            "spec.notifications[3].serviceNow.instanceUrl",
            "serviceNow.instanceUrl must be an https:// URL such as \
             https://example.service-now.com (http:// only to 127.0.0.1 or localhost)",
        ),
    ];
    for (pointer, field, message) in cases {
        for bad in [
            "http://example.com",
            "http://localhost.example.com/x",
            "ftp://example.com",
            "example.com",
            "https://",
        ] {
            assert_refused(pointer, json!(bad), field, message);
        }
        for good in [
            "https://example.com",
            "https://example.com:8443/path",
            "http://127.0.0.1:8080",
            "http://localhost/v2/enqueue",
            "http://[::1]:9000/",
        ] {
            assert_accepted(pointer, json!(good));
        }
        for bad in [
            "https://169.254.169.254/latest/meta-data/",
            "https://[fd00:ec2::254]/",
            "https://[FE80::1]/",
            "https://instance-data/latest",
            "https://instance-data.ec2.internal:443/",
            "https://Metadata.Google.Internal/computeMetadata/v1/",
        ] {
            assert_refused(
                pointer,
                json!(bad),
                field,
                "a channel URL must not point at a link-local or instance-metadata address \
                 such as 169.254.169.254",
            );
        }
        for good in [
            "https://instance-data-store.example.com",
            "https://metadata.example.com/x",
        ] {
            assert_accepted(pointer, json!(good));
        }
    }
}

#[test]
fn jira_project_must_be_a_project_key() {
    let message =
        "jira.project must be a project key such as SEC: a letter, then letters, digits or _";
    for bad in ["1SEC", "SEC-1", "S EC"] {
        assert_refused(
            "/notifications/2/jira/project",
            json!(bad),
            "spec.notifications[2].jira.project",
            message,
        );
    }
    assert_accepted("/notifications/2/jira/project", json!("SEC_OPS2"));
}

#[test]
fn email_addresses_and_smtp_host_are_checked() {
    for bad in [
        "guardduty",
        "GuardDuty <g@example.com>",
        "a@b",
        "a,b@example.com",
    ] {
        assert_refused(
            "/notifications/4/email/from",
            json!(bad),
            "spec.notifications[4].email.from",
            "email.from must be an address such as guardduty@example.com",
        );
        assert_refused(
            "/notifications/4/email/to/0",
            json!(bad),
            "spec.notifications[4].email.to[0]",
            "each email.to entry must be an address such as secops@example.com",
        );
    }
    assert_accepted(
        "/notifications/4/email/from",
        json!("alerts+gd@mail.example.co.uk"),
    );
    for bad in [
        "smtp://smtp.example.com",
        "smtp.example.com/25",
        "smtp example",
    ] {
        assert_refused(
            "/notifications/4/email/smtp/host",
            json!(bad),
            "spec.notifications[4].email.smtp.host",
            "smtp.host must be a host name or address such as smtp.example.com, without scheme or port",
        );
    }
    assert_accepted("/notifications/4/email/smtp/host", json!("10.0.0.25"));
}

#[test]
fn sms_needs_e164_numbers_or_a_topic_arn() {
    assert_refused(
        "/notifications/5/sms",
        json!({}),
        "spec.notifications[5].sms",
        "sms needs exactly one of phoneNumbers or topicArn",
    );
    assert_refused(
        "/notifications/5/sms",
        json!({"phoneNumbers": ["+15555550100"],
               "topicArn": "arn:aws:sns:eu-west-2:123456789012:secops-sms"}),
        "spec.notifications[5].sms",
        "sms needs exactly one of phoneNumbers or topicArn",
    );
    for bad in [
        "5555550100",
        "+05555550100",
        "+1 555 555 0100",
        "+1234567890123456",
    ] {
        assert_refused(
            "/notifications/5/sms/phoneNumbers/0",
            json!(bad),
            "spec.notifications[5].sms.phoneNumbers[0]",
            "each phone number must be in E.164 form, such as +15555550100",
        );
    }
    for bad in [
        "secops-sms",
        "arn:aws:sqs:eu-west-2:123456789012:q",
        "arn:aws:sns:eu-west-2:1234:x",
    ] {
        assert_refused(
            "/notifications/6/sms/topicArn",
            json!(bad),
            "spec.notifications[6].sms.topicArn",
            "topicArn must be an SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:secops-sms",
        );
    }
    assert_accepted(
        "/notifications/6/sms/topicArn",
        json!("arn:aws-us-gov:sns:us-gov-west-1:123456789012:alerts.fifo"),
    );
}

#[test]
fn secret_references_name_a_secret_and_a_key() {
    let name_message =
        "a Secret name must be lower-case letters, digits, '-' and '.', such as slack-webhook";
    let key_message = "a Secret key must be letters, digits, '-', '_' and '.', such as webhookUrl";
    for (pointer, field) in [
        (
            "/notifications/1/slack/webhookUrlSecretRef/name",
            "spec.notifications[1].slack.webhookUrlSecretRef.name",
        ),
        (
            "/notifications/0/pagerDuty/routingKeySecretRef/name",
            "spec.notifications[0].pagerDuty.routingKeySecretRef.name",
        ),
        (
            "/notifications/2/jira/credentialsSecretRef/name",
            "spec.notifications[2].jira.credentialsSecretRef.name",
        ),
        (
            "/notifications/3/serviceNow/credentialsSecretRef/name",
            "spec.notifications[3].serviceNow.credentialsSecretRef.name",
        ),
        (
            "/notifications/4/email/smtp/credentialsSecretRef/name",
            "spec.notifications[4].email.smtp.credentialsSecretRef.name",
        ),
    ] {
        assert_refused(pointer, json!("Slack_Hook"), field, name_message);
        assert_accepted(pointer, json!("slack-hook.v2"));
    }
    for (pointer, field) in [
        (
            "/notifications/1/slack/webhookUrlSecretRef/key",
            "spec.notifications[1].slack.webhookUrlSecretRef.key",
        ),
        (
            "/notifications/0/pagerDuty/routingKeySecretRef/key",
            "spec.notifications[0].pagerDuty.routingKeySecretRef.key",
        ),
    ] {
        assert_refused(pointer, json!("webhook url"), field, key_message);
        assert_accepted(pointer, json!("webhook_URL.v2"));
    }
}

#[test]
fn reserved_exempt_tag_is_refused_in_any_case() {
    let message = "exemptTag must not start with aws:, which AWS reserves for its own tags";
    for bad in ["aws:foo", "AWS:keep"] {
        assert_refused(
            "/remediation/exemptTag",
            json!(bad),
            "spec.remediation.exemptTag",
            message,
        );
    }
    assert_accepted("/remediation/exemptTag", json!("team/aws:x"));
}

#[test]
fn malformed_region_is_refused_and_empty_means_the_sdk_region() {
    assert_refused(
        "/region",
        json!("eu-west"),
        "spec.region",
        "region must be an AWS region code such as us-east-1 or eu-west-2, or empty to use the \
         AWS SDK's region",
    );
    for good in ["", "us-gov-west-1", "ap-southeast-2"] {
        assert_accepted("/region", json!(good));
    }
}

#[test]
fn malformed_detector_id_is_refused_and_empty_means_discover() {
    assert_refused(
        "/detectorId",
        json!("12abc34d-567e"),
        "spec.detectorId",
        "detectorId must be letters and digits only, as `aws guardduty list-detectors` prints \
         it, or empty to have the operator find the detector",
    );
    assert_accepted("/detectorId", json!(""));
}

#[test]
fn the_chart_ships_the_same_crd_as_crds() {
    let chart_copy =
        "charts/guardduty-operator/files/guardduty.security.dev_guarddutypolicies.yaml";
    assert!(
        std::fs::read_to_string(chart_copy).unwrap() == std::fs::read_to_string(CRD_FILE).unwrap(),
        "{chart_copy} differs from {CRD_FILE}: copy it (cp {CRD_FILE} {chart_copy})"
    );
}

/// The complete fixture with `region` out and `regions` set.
fn with_regions(regions: Value) -> Value {
    let mut object = complete();
    let spec = object["spec"].as_object_mut().unwrap();
    spec.remove("region");
    spec.remove("detectorId");
    spec.insert("regions".into(), regions);
    object
}

#[test]
fn regions_are_region_codes_listed_once_and_exclusive_with_region() {
    assert_eq!(
        refusals(&with_regions(json!(["us-east-1", "eu-west-1"]))),
        Vec::<String>::new()
    );
    assert_eq!(
        refusals(&with_regions(json!(["us-east-1", "us-east-1"]))),
        ["spec.regions: regions must not list a region twice"]
    );
    assert_eq!(
        refusals(&with_regions(json!(["us-east"]))),
        ["spec.regions: each of regions must be an AWS region code such as us-east-1 or eu-west-2"]
    );
    let mut both = with_regions(json!(["eu-west-1"]));
    both["spec"]["region"] = json!("us-east-1");
    assert_eq!(
        refusals(&both),
        [
            "spec.regions: give either region or regions, not both: regions lists every region, \
          region is the one-region shorthand"
        ]
    );
    let mut detector = with_regions(json!(["us-east-1", "eu-west-1"]));
    detector["spec"]["detectorId"] = json!("12abc34d567e8fa901bc2d34e56789f0");
    assert_eq!(
        refusals(&detector),
        [
            "spec.detectorId: detectorId names one region's detector: leave it empty when regions \
          lists several, and the operator finds each region's detector"
        ]
    );
}

#[test]
fn member_accounts_name_a_role_and_twelve_digit_accounts() {
    assert_refused(
        "/memberAccounts/roleName",
        json!("arn:aws:iam::1:role/x"),
        "spec.memberAccounts.roleName",
        "roleName must be an IAM role name: 1 to 64 letters, digits and +=,.@_-",
    );
    assert_refused(
        "/memberAccounts/accounts/0",
        json!("12345"),
        "spec.memberAccounts.accounts",
        "each of accounts must be a 12-digit AWS account id",
    );
    assert_refused(
        "/memberAccounts/externalId",
        json!("a b"),
        "spec.memberAccounts.externalId",
        "externalId must be 2 to 1224 letters, digits and +=,.@:/_-, or empty",
    );
    assert_accepted(
        "/memberAccounts/roleName",
        json!("guardduty-operator-member"),
    );
    assert_accepted("/memberAccounts/externalId", json!(""));
}

#[test]
fn the_full_resync_interval_is_a_duration_from_five_minutes_to_a_day() {
    for bad in ["1m", "25h"] {
        assert_refused(
            "/fullResyncInterval",
            json!(bad),
            "spec.fullResyncInterval",
            "fullResyncInterval must be from 5m to 24h",
        );
    }
    assert_refused(
        "/fullResyncInterval",
        json!("hourly"),
        "spec.fullResyncInterval",
        "fullResyncInterval must be a duration such as 30m or 1h",
    );
    assert_accepted("/fullResyncInterval", json!("30m"));
}
