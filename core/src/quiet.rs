//! The quiet pass (pure): when a long-running operator (the controller, `watch`) may
//! skip reading EC2 in full because nothing the plan depends on can have changed.
//!
//! ```text
//!  a pass whose plan left every group as it is (converged, exempt, gone), reading no
//!  prefix list ─> Settled { policy, observation, digests }
//!  next pass: same policy, same open findings (nothing new or updated listed), no
//!  intent pending ─> read the groups' digests (one tag-filtered describe for the
//!  watched groups, ids for the rest) and the findings' instances (their groups now)
//!  ─> equal ─> plan the remembered observation
//!  ─> differ ─> the full read
//! ```
//!
//! A digest is what DescribeSecurityGroups returns of a group: its ingress, as
//! (traffic, source) pairs, and its tags. It holds everything a settled plan read of
//! the group except rule ids, rule tags and descriptions; together with the open
//! findings, the instances' groups and the policy it decides the plan. The instances
//! are read again because a group attached to one since would let the world in
//! unseen: a quiet pass would then say a finding is closed while a public source
//! admits its port. What a digest cannot see: rule tags, and prefix-list entries (a
//! scope that read any is never settled); the next full listing
//! (`fullResyncInterval`), which always reads everything, sees them.

use std::collections::{BTreeMap, BTreeSet};

use crate::finding::Finding;
use crate::ids::{InstanceId, SecurityGroupId};
use crate::plan::{Observation, Plan, Verdict};
use crate::policy::{Mode, Policy};
use crate::security_group::{Exposure, Instance, SecurityGroup, Source, Traffic};

/// A group as DescribeSecurityGroups shows it: ingress (sorted, without repeats),
/// tags, and the watches its tags hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDigest {
    pub ingress: Vec<(Traffic, Source)>,
    pub tags: BTreeMap<String, String>,
    pub watches: BTreeMap<String, BTreeSet<Exposure>>,
}

impl GroupDigest {
    pub fn new(
        ingress: impl IntoIterator<Item = (Traffic, Source)>,
        tags: BTreeMap<String, String>,
        watches: BTreeMap<String, BTreeSet<Exposure>>,
    ) -> GroupDigest {
        let ingress: BTreeSet<(Traffic, Source)> = ingress.into_iter().collect();
        GroupDigest {
            ingress: ingress.into_iter().collect(),
            tags,
            watches,
        }
    }

    /// The digest of a group read in full.
    pub fn of(group: &SecurityGroup) -> GroupDigest {
        GroupDigest::new(
            group
                .ingress
                .iter()
                .map(|r| (r.traffic.clone(), r.source.clone())),
            group.tags.clone(),
            group.watches.clone(),
        )
    }
}

/// One account-region a pass left settled: what it observed, under which policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Settled {
    pub policy: Policy,
    pub observation: Observation,
    /// The digest of every group observed.
    pub digests: BTreeMap<SecurityGroupId, GroupDigest>,
}

impl Settled {
    /// The scope `observation` and `plan` describe, if the plan leaves every group
    /// as it is and nothing was read that a digest cannot see (prefix lists).
    pub fn of(policy: &Policy, observation: &Observation, plan: &Plan) -> Option<Settled> {
        let settled = policy.mode != Mode::Off
            && observation.prefix_lists.is_empty()
            && plan.groups.iter().all(|g| {
                matches!(
                    g.verdict,
                    Verdict::Converged | Verdict::Exempt | Verdict::NotFound
                )
            });
        settled.then(|| Settled {
            policy: policy.clone(),
            observation: observation.clone(),
            digests: observation
                .groups
                .iter()
                .map(|(id, g)| (id.clone(), GroupDigest::of(g)))
                .collect(),
        })
    }

    /// May the next pass be quiet before reading EC2: the same policy and the same
    /// open findings?
    pub fn may_hold(&self, policy: &Policy, findings: &[Finding]) -> bool {
        self.policy == *policy && self.observation.findings == findings
    }

    /// The groups observed that the policy does not watch: the digest read names them
    /// by id (the watched ones come by their tag).
    pub fn unwatched(&self) -> Vec<SecurityGroupId> {
        self.observation
            .groups
            .values()
            .filter(|g| !g.watches.contains_key(&self.policy.owner))
            .map(|g| g.id.clone())
            .collect()
    }

    /// Does the scope still hold, given the digests read now (every group the policy
    /// watches, and the unwatched ones) and the findings' instances as they are now?
    /// Any group new, gone or different, or an instance in other groups, says no.
    pub fn holds(
        &self,
        digests: &BTreeMap<SecurityGroupId, GroupDigest>,
        instances: &BTreeMap<InstanceId, Instance>,
    ) -> bool {
        self.digests == *digests && self.observation.instances == *instances
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::Finding;
    use crate::ids::InstanceId;
    use crate::plan::plan;
    use crate::security_group::{Instance, InstanceState, PortRange};

    fn observed(group: SecurityGroup) -> Observation {
        Observation {
            account_id: None,
            region: "us-east-1".into(),
            findings: vec![Finding::probe("f1", "i-1", &[22])],
            instances: [(
                InstanceId::parse("i-1").unwrap(),
                Instance {
                    id: InstanceId::parse("i-1").unwrap(),
                    state: InstanceState::Running,
                    security_groups: vec![group.id.clone()],
                },
            )]
            .into(),
            groups: [(group.id.clone(), group)].into(),
            prefix_lists: BTreeMap::new(),
        }
    }

    fn converged(policy: &Policy) -> SecurityGroup {
        let mut group = SecurityGroup::world_open("sg-1", Traffic::Tcp(PortRange::single(22)));
        group.ingress[0].source = Source::Cidr("10.0.0.0/8".parse().unwrap());
        group
            .watches
            .insert(policy.owner.clone(), [Exposure::tcp(22)].into());
        group
    }

    fn policy() -> Policy {
        Policy::test().enforce().trusting(&["10.0.0.0/8"])
    }

    #[test]
    fn a_converged_scope_is_settled_and_holds_while_its_groups_do() {
        let policy = policy();
        let observation = observed(converged(&policy));
        let settled = Settled::of(&policy, &observation, &plan(&policy, &observation)).unwrap();
        assert!(settled.may_hold(&policy, &observation.findings));
        assert!(settled.unwatched().is_empty());
        let same: BTreeMap<_, _> = observation
            .groups
            .values()
            .map(|g| (g.id.clone(), GroupDigest::of(g)))
            .collect();
        assert!(settled.holds(&same, &observation.instances));
        let mut moved = observation.instances.clone();
        for instance in moved.values_mut() {
            instance
                .security_groups
                .push(SecurityGroupId::parse("sg-2").unwrap());
        }
        assert!(!settled.holds(&same, &moved), "an instance in a new group");
    }

    #[test]
    fn drift_a_new_group_or_a_gone_one_breaks_it() {
        let policy = policy();
        let observation = observed(converged(&policy));
        let settled = Settled::of(&policy, &observation, &plan(&policy, &observation)).unwrap();
        let mut drifted = converged(&policy);
        drifted.ingress[0].source = Source::Cidr("0.0.0.0/0".parse().unwrap());
        let id = drifted.id.clone();
        assert!(!settled.holds(
            &[(id.clone(), GroupDigest::of(&drifted))].into(),
            &observation.instances
        ));
        let mut retagged = converged(&policy);
        retagged
            .tags
            .insert("guardduty-operator/exempt".into(), String::new());
        assert!(!settled.holds(
            &[(id.clone(), GroupDigest::of(&retagged))].into(),
            &observation.instances
        ));
        let mut rewatched = converged(&policy);
        rewatched
            .watches
            .insert(policy.owner.clone(), BTreeSet::new());
        assert!(!settled.holds(
            &[(id.clone(), GroupDigest::of(&rewatched))].into(),
            &observation.instances
        ));
        assert!(
            !settled.holds(&BTreeMap::new(), &observation.instances),
            "gone"
        );
        let other = SecurityGroup::world_open("sg-2", Traffic::Tcp(PortRange::single(22)));
        let mut more: BTreeMap<_, _> = [(id, GroupDigest::of(&converged(&policy)))].into();
        more.insert(other.id.clone(), GroupDigest::of(&other));
        assert!(
            !settled.holds(&more, &observation.instances),
            "a new watched group"
        );
    }

    #[test]
    fn a_plan_that_changes_or_refuses_or_a_prefix_list_read_is_not_settled() {
        let policy = policy();
        let open = SecurityGroup::world_open("sg-1", Traffic::Tcp(PortRange::single(22)));
        let observation = observed(open);
        assert!(Settled::of(&policy, &observation, &plan(&policy, &observation)).is_none());
        let mut with_list = observed(converged(&policy));
        with_list.prefix_lists.insert(
            "pl-1".into(),
            crate::plan::PrefixListEntries::Read(Vec::new()),
        );
        assert!(Settled::of(&policy, &with_list, &plan(&policy, &with_list)).is_none());
        let off = Policy {
            mode: Mode::Off,
            ..policy.clone()
        };
        let observation = observed(converged(&policy));
        assert!(Settled::of(&off, &observation, &plan(&off, &observation)).is_none());
    }

    #[test]
    fn another_policy_or_other_findings_cannot_hold() {
        let policy = policy();
        let observation = observed(converged(&policy));
        let settled = Settled::of(&policy, &observation, &plan(&policy, &observation)).unwrap();
        let wider = policy.clone().trusting(&["10.0.0.0/8", "192.168.0.0/16"]);
        assert!(!settled.may_hold(&wider, &observation.findings));
        let more = vec![
            Finding::probe("f1", "i-1", &[22]),
            Finding::probe("f2", "i-1", &[22]),
        ];
        assert!(!settled.may_hold(&policy, &more));
    }
}
