//! The published IAM policy (deploy/iam-policy.json) allows exactly what the code
//! calls: every AWS operation found in the adapters' source is in it, and nothing
//! else is (least privilege).

use std::collections::BTreeSet;
use std::path::Path;

/// Operations AWS allows without a policy statement.
const ALWAYS_ALLOWED: [&str; 1] = ["sts:GetCallerIdentity"];
/// Actions the calls need beyond their own name: authorize with TagSpecifications
/// also needs CreateTags on the new rules; member accounts' credentials come from
/// aws-config's AssumeRoleProvider (sts:AssumeRole, see `clients::member_config`).
const IMPLIED: [&str; 2] = ["ec2:CreateTags", "sts:AssumeRole"];

fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The SDK operations called in a source file: `client` (or `sts`) followed by a
/// `.operation()` call, across line breaks.
fn operations_in(path: &Path, service: &str, receiver: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let compact: String = text.split_whitespace().collect();
    let needle = format!("{receiver}.");
    let mut found = BTreeSet::new();
    let mut rest = compact.as_str();
    while let Some(at) = rest.find(&needle) {
        rest = &rest[at + needle.len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() && rest[name.len()..].starts_with("()") {
            found.insert(format!("{service}:{}", pascal(&name)));
        }
    }
    found
}

fn policy_actions() -> BTreeSet<String> {
    let text = std::fs::read_to_string("deploy/iam-policy.json").unwrap();
    let policy: serde_json::Value = serde_json::from_str(&text).expect("the policy is JSON");
    let mut actions = BTreeSet::new();
    for statement in policy["Statement"].as_array().expect("statements") {
        assert_eq!(statement["Effect"], "Allow");
        match &statement["Action"] {
            serde_json::Value::String(a) => {
                actions.insert(a.clone());
            }
            serde_json::Value::Array(list) => {
                actions.extend(list.iter().map(|a| a.as_str().unwrap().to_string()));
            }
            other => panic!("unexpected Action {other}"),
        }
    }
    actions
}

/// The adapters that call AWS: (source file, IAM service prefix, the receiver of
/// the SDK calls). SES v2's operations are authorized by `ses:` actions.
const ADAPTERS: [(&str, &str, &str); 7] = [
    ("src/aws/ec2.rs", "ec2", "client"),
    ("src/aws/guardduty.rs", "securityhub", "hub"),
    ("src/aws/sqs.rs", "sqs", "client"),
    ("src/aws/guardduty.rs", "guardduty", "client"),
    ("src/aws/clients.rs", "sts", "sts"),
    ("src/notify/email.rs", "ses", "client"),
    ("src/notify/sms.rs", "sns", "client"),
];

/// Operations IAM authorizes under another action's name.
const AUTHORIZED_AS: [(&str, &str); 1] = [("sqs:DeleteMessageBatch", "sqs:DeleteMessage")];

fn called() -> BTreeSet<String> {
    ADAPTERS
        .iter()
        .flat_map(|(path, service, receiver)| operations_in(Path::new(path), service, receiver))
        .map(|op| {
            AUTHORIZED_AS
                .iter()
                .find(|(called, _)| *called == op)
                .map_or(op.clone(), |(_, action)| action.to_string())
        })
        .collect()
}

#[test]
fn every_operation_the_code_calls_is_allowed() {
    let called = called();
    assert!(
        called.contains("ec2:AuthorizeSecurityGroupIngress"),
        "the scan found {called:?}"
    );
    for expected in ["guardduty:ListFindings", "ses:SendEmail", "sns:Publish"] {
        assert!(called.contains(expected), "the scan found {called:?}");
    }
    let allowed = policy_actions();
    let missing: Vec<&String> = called
        .iter()
        .filter(|op| !allowed.contains(*op) && !ALWAYS_ALLOWED.contains(&op.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/iam-policy.json lacks {missing:?}"
    );
}

#[test]
fn member_roles_are_assumed_where_the_policy_says() {
    let clients = std::fs::read_to_string("src/aws/clients.rs").unwrap();
    assert!(
        clients.contains("AssumeRoleProvider"),
        "sts:AssumeRole is allowed for the member roles the clients assume"
    );
}

#[test]
fn the_policy_allows_nothing_the_code_does_not_call() {
    let called = called();
    let extra: Vec<String> = policy_actions()
        .into_iter()
        .filter(|a| !called.contains(a) && !IMPLIED.contains(&a.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "deploy/iam-policy.json allows more than the code calls: {extra:?}"
    );
}

fn actions_of(path: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let policy: serde_json::Value = serde_json::from_str(&text).expect("the policy is JSON");
    let mut actions = BTreeSet::new();
    for statement in policy["Statement"].as_array().expect("statements") {
        match &statement["Action"] {
            serde_json::Value::String(a) => {
                actions.insert(a.clone());
            }
            serde_json::Value::Array(list) => {
                actions.extend(list.iter().map(|a| a.as_str().unwrap().to_string()));
            }
            other => panic!("unexpected Action {other}"),
        }
    }
    actions
}

#[test]
fn a_member_role_allows_exactly_the_ec2_actions_the_operator_uses() {
    let operator: BTreeSet<String> = policy_actions()
        .into_iter()
        .filter(|a| a.starts_with("ec2:"))
        .collect();
    assert_eq!(
        actions_of("deploy/member-role-permission-policy.json"),
        operator,
        "the member role (deploy/member-role-permission-policy.json) and the operator's EC2 \
         permissions must stay the same"
    );
    let trust = actions_of("deploy/member-role-trust-policy.json");
    assert_eq!(trust, BTreeSet::from(["sts:AssumeRole".to_string()]));
}

#[test]
fn the_eventbridge_rule_matches_guardduty_finding_events_and_the_queue_takes_them() {
    let text = std::fs::read_to_string("deploy/eventbridge-rule.json").unwrap();
    let pattern: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(pattern["source"], serde_json::json!(["aws.guardduty"]));
    assert_eq!(
        pattern["detail-type"],
        serde_json::json!(["GuardDuty Finding"])
    );
    assert_eq!(
        actions_of("deploy/sqs-queue-policy.json"),
        BTreeSet::from(["sqs:SendMessage".to_string()])
    );
}
