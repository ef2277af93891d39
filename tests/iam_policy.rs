//! The published IAM policy (deploy/iam-policy.json) allows exactly what the code
//! calls: every AWS operation found in the adapters' source is in it, and nothing
//! else is (least privilege).

use std::collections::BTreeSet;
use std::path::Path;

/// Operations AWS allows without a policy statement.
const ALWAYS_ALLOWED: [&str; 1] = ["sts:GetCallerIdentity"];
/// Actions the calls need beyond their own name: authorize with TagSpecifications
/// also needs CreateTags on the new rules.
const IMPLIED: [&str; 1] = ["ec2:CreateTags"];

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
const ADAPTERS: [(&str, &str, &str); 5] = [
    ("src/aws/ec2.rs", "ec2", "client"),
    ("src/aws/guardduty.rs", "guardduty", "client"),
    ("src/aws/clients.rs", "sts", "sts"),
    ("src/notify/email.rs", "ses", "client"),
    ("src/notify/sms.rs", "sns", "client"),
];

fn called() -> BTreeSet<String> {
    ADAPTERS
        .iter()
        .flat_map(|(path, service, receiver)| operations_in(Path::new(path), service, receiver))
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
