//! `deletionPolicy: Revert` against EC2 on moto: a remediation pass, its record, and
//! the revert that puts the security groups back as they were before the pass.

use crate::common::*;
use guardduty_operator::aws::ec2::Ec2;
use guardduty_operator::domain::fixtures::TEST_OWNER;
use guardduty_operator::domain::ids::SecurityGroupId;
use guardduty_operator::domain::policy::Mode;
use guardduty_operator::domain::record::GroupRevert;
use guardduty_operator::pass::revert;
use guardduty_operator::spec::record::ChangeRecord;

const TRUSTED: [&str; 2] = ["10.0.0.0/8", "2001:db8::/32"];

fn ec2(world: &World) -> Ec2 {
    Ec2::new(aws_sdk_ec2::Client::new(&world.config))
}

/// One enforced pass over a probe of port 22, and the record it leaves.
async fn remediate(world: &World, instance: &str, groups: &[&str]) -> ChangeRecord {
    world.post(vec![port_probe(
        "f0000000000000000000000000000a01",
        5.0,
        instance,
        groups,
        &[22],
    )]);
    let (report, _) = world.pass(&policy(Mode::Enforce, &TRUSTED), true).await;
    assert!(!report.failed(), "{report:#?}");
    assert!(!report.record.is_empty(), "the pass changed the groups");
    assert!(report.record.pending.is_none(), "every step completed");
    report.record
}

#[tokio::test]
async fn revert_puts_the_group_back_as_it_was_and_a_second_revert_changes_nothing() {
    let world = World::new("af-south-1").await;
    let web = world
        .group(
            "web",
            &[
                ("tcp", 22, 22, "0.0.0.0/0"),
                ("tcp", 0, 65535, "::/0"),
                ("tcp", 443, 443, "0.0.0.0/0"),
            ],
        )
        .await;
    let instance = world.instance(&[&web]).await;
    let before = world.ingress(&web).await;

    let record = remediate(&world, &instance, &[&web]).await;
    assert_eq!(
        world.ingress(&web).await,
        [
            "tcp 0-21 ::/0 [managed]",
            "tcp 22-22 10.0.0.0/8 [managed]",
            "tcp 22-22 2001:db8::/32 [managed]",
            "tcp 23-65535 ::/0 [managed]",
            "tcp 443-443 0.0.0.0/0",
        ]
    );
    assert_eq!((record.added.len(), record.revoked.len()), (4, 2));

    let report = revert(&ec2(&world), &record, TEST_OWNER).await;
    assert!(report.completed(), "{report:#?}");
    assert_eq!(report.counts(), (2, 4, 0));
    assert_eq!(
        world.ingress(&web).await,
        before,
        "the restored rules are back untagged, the operator's rules are gone"
    );

    let again = revert(&ec2(&world), &record, TEST_OWNER).await;
    assert!(again.completed(), "{again:#?}");
    assert_eq!(again.counts(), (0, 0, 0));
    assert_eq!(world.ingress(&web).await, before);
}

#[tokio::test]
async fn revert_reports_a_deleted_group_and_still_reverts_the_others() {
    let world = World::new("il-central-1").await;
    let kept = world.group("kept", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let doomed = world.group("doomed", &[("tcp", 22, 22, "0.0.0.0/0")]).await;
    let instance = world.instance(&[&kept, &doomed]).await;
    let before = world.ingress(&kept).await;
    let record = remediate(&world, &instance, &[&kept, &doomed]).await;

    // The instance goes, then its group.
    world
        .ec2
        .terminate_instances()
        .instance_ids(&instance)
        .send()
        .await
        .expect("terminate the instance");
    world
        .ec2
        .delete_security_group()
        .group_id(&doomed)
        .send()
        .await
        .expect("delete the group");

    let report = revert(&ec2(&world), &record, TEST_OWNER).await;
    assert!(report.completed(), "{report:#?}");
    assert!(
        report.groups.contains(&GroupRevert::GroupGone {
            group: SecurityGroupId::parse(&doomed).unwrap()
        }),
        "{report:#?}"
    );
    assert_eq!(report.counts(), (1, 2, 1));
    assert_eq!(world.ingress(&kept).await, before);
}
