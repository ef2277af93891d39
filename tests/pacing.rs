//! The EC2 adapter's pacing on moto: every request the SDK sends takes exactly one
//! token of its kind (mutating or describe), pages and one-by-one fallbacks included,
//! through a pass and two reverts.

use std::sync::Arc;

use crate::common::*;
use guardduty_operator::aws::pace::{PaceConfig, Pacer, Tokens};
use guardduty_operator::domain::pace::Rate;
use guardduty_operator::domain::policy::{Mode, Policy};
use guardduty_operator::domain::time::Timestamp;
use guardduty_operator::pass::{PassOptions, revert_everywhere, run_pass};
use guardduty_operator::ports::NoJournal;

/// Buckets that never refill within a test: what is taken stays taken.
const NEVER: Rate = Rate {
    burst: 100_000,
    per_second: 1e-9,
};

fn spent(pacer: &Pacer) -> (u64, u64) {
    let Tokens { mutating, describe } = pacer.available();
    (
        u64::from(NEVER.burst - mutating),
        u64::from(NEVER.burst - describe),
    )
}

/// The EC2 requests sent, (mutating, describe).
fn sent(calls: &std::collections::BTreeMap<String, u64>) -> (u64, u64) {
    let mut mutating = 0;
    let mut describe = 0;
    for (op, n) in calls {
        let Some(name) = op.strip_prefix("EC2.") else {
            continue;
        };
        match name {
            "AuthorizeSecurityGroupIngress"
            | "RevokeSecurityGroupIngress"
            | "CreateTags"
            | "DeleteTags" => mutating += n,
            "DescribeInstances"
            | "DescribeSecurityGroups"
            | "DescribeSecurityGroupRules"
            | "DescribeNetworkInterfaces"
            | "GetManagedPrefixListEntries" => describe += n,
            other => panic!("an EC2 operation the buckets do not know: {other}"),
        }
    }
    (mutating, describe)
}

#[tokio::test]
async fn every_ec2_request_of_a_pass_and_a_revert_takes_one_token_of_its_kind() {
    let owner = "default/pacing";
    let world = World::owned("ca-west-1", owner).await;
    let mut groups = Vec::new();
    for n in 0..3 {
        groups.push(
            world
                .group(
                    &format!("paced{n}"),
                    &[("tcp", 22, 22, "0.0.0.0/0"), ("tcp", 0, 65535, "::/0")],
                )
                .await,
        );
    }
    let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    let instance = world.instance(&refs).await;
    world.post(vec![port_probe(
        "f0000000000000000000000000000a01",
        5.0,
        &instance,
        &refs,
        &[22],
    )]);
    let pacer = Arc::new(
        Pacer::new(PaceConfig {
            mutating: NEVER,
            describe: NEVER,
        })
        .unwrap(),
    );
    let aws = WorldAws::of(&[&world]).paced(pacer.clone());
    let policy = Policy {
        owner: owner.into(),
        ..policy(Mode::Enforce, &["10.0.0.0/8", "2001:db8::/32"])
    };
    let regions = vec![world.region.clone()];
    let report = run_pass(
        &aws,
        &policy,
        &PassOptions {
            regions: regions.clone(),
            apply: true,
            now: Timestamp(1_800_000_000),
            ..PassOptions::default()
        },
        &NoJournal,
    )
    .await;
    assert!(!report.failed(), "{report:#?}");
    let after_pass = aws.counter.snapshot();
    let (mutating, describe) = sent(&after_pass);
    assert!(mutating > 0 && describe > 0, "{after_pass:?}");
    assert_eq!(spent(&pacer), (mutating, describe));

    let reverted = revert_everywhere(&aws, &report.record, owner, &regions, None).await;
    assert!(reverted.completed(), "{reverted:#?}");
    // Again: nothing left to do, but it describes.
    let again = revert_everywhere(&aws, &report.record, owner, &regions, None).await;
    assert!(again.completed(), "{again:#?}");
    assert_eq!(spent(&pacer), sent(&aws.counter.snapshot()));
    assert_eq!(pacer.waited(), std::time::Duration::ZERO);
}
