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
        .map(|c| (c.name.clone(), c.type_.clone(), c.json_path.clone()))
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
        ("Last sync", "date", ".status.lastSyncTime"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    .map(|(n, t, p)| (n.to_string(), t.to_string(), p.to_string()));
    assert_eq!(columns, expected);
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
    assert_eq!(rules, 12, "every rule of src/spec.rs, and no other");
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
        manifest
            .spec
            .validate()
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
    assert!(spec.validate().is_ok());
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
    assert_accepted("/trustedCidrs/0", json!("0.0.0.0/1"));
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
    let channel = |name: &str| json!({"name": name, "minSeverity": "HIGH", "slack": {}});
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
    assert_eq!(
        notifications["items"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
    assert_eq!(notifications["items"]["required"], json!(["name"]));
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
    let chart_copy = "charts/guardduty-operator/crds/guardduty.security.dev_guarddutypolicies.yaml";
    assert!(
        std::fs::read_to_string(chart_copy).unwrap() == std::fs::read_to_string(CRD_FILE).unwrap(),
        "{chart_copy} differs from {CRD_FILE}: copy it (cp {CRD_FILE} {chart_copy})"
    );
}
