//! Test builders for every crate's tests (feature `testing`): one good fixture per
//! domain type, changed by chained builders or struct update syntax.
//!
//! ```text
//! Policy::test().enforce().trusting(&["10.0.0.0/8"])
//! Finding::probe("f1", "i-1", &[22])
//! SecurityGroup::world_open("sg-1", Traffic::Tcp(PortRange::single(22)))
//! ```

use std::collections::BTreeMap;

use crate::finding::{Action, Finding, InstanceRef};
use crate::ids::{FindingId, InstanceId, RuleId, SecurityGroupId};
use crate::outcome::{Category, Failure, GroupOutcome, PassReport, Step, StepResult};
use crate::plan::{ChangeSet, GroupPlan, Observation, apply_change, plan};
use crate::policy::{
    AllTrafficRules, DEFAULT_EXEMPT_TAG, DEFAULT_MAX_NETWORK_INTERFACES,
    DEFAULT_MAX_RULES_PER_GROUP, DEFAULT_PUBLIC_PORTS, Mode, Policy, RevokeScope, TrustedRanges,
};
use crate::security_group::{
    Exposure, IngressRule, Instance, InstanceState, PortRange, SecurityGroup, Source, Traffic,
};
use crate::severity::Severity;

/// The owner of [`Policy::test`].
pub const TEST_OWNER: &str = "default/test";

impl Policy {
    /// A DryRun policy `default/test` trusting 10.0.0.0/8, with every other setting
    /// at its default, for tests: chain the builders below.
    pub fn test() -> Policy {
        Policy {
            owner: TEST_OWNER.to_string(),
            trusted: TrustedRanges::new(["10.0.0.0/8".parse().unwrap()]).unwrap(),
            min_severity: Severity::MIN,
            finding_types: Vec::new(),
            mode: Mode::DryRun,
            exempt_tag: DEFAULT_EXEMPT_TAG.to_string(),
            archive_remediated: false,
            max_rules_per_group: DEFAULT_MAX_RULES_PER_GROUP,
            revoke: RevokeScope::Public,
            public_ports: DEFAULT_PUBLIC_PORTS.into(),
            ports: Default::default(),
            max_network_interfaces: DEFAULT_MAX_NETWORK_INTERFACES,
            all_traffic_rules: AllTrafficRules::Refuse,
            member_accounts: None,
            finding_feedback: false,
            security_hub_updates: false,
        }
    }

    /// The same policy, owned by `owner` (`namespace/name`).
    pub fn owned_by(mut self, owner: &str) -> Policy {
        self.owner = owner.to_string();
        self
    }

    /// Revokes every untrusted source, not only public ones.
    pub fn revoking_untrusted(mut self) -> Policy {
        self.revoke = RevokeScope::Untrusted;
        self
    }

    /// Splits all-traffic rules rather than refusing them.
    pub fn splitting(mut self) -> Policy {
        self.all_traffic_rules = AllTrafficRules::Split;
        self
    }

    /// These ports serve everyone by design.
    pub fn public_ports(mut self, ports: &[u16]) -> Policy {
        self.public_ports = ports.iter().copied().collect();
        self
    }

    /// At most this many network interfaces per changed group.
    pub fn max_interfaces(mut self, max: usize) -> Policy {
        self.max_network_interfaces = max;
        self
    }

    pub fn enforce(mut self) -> Policy {
        self.mode = Mode::Enforce;
        self
    }

    pub fn off(mut self) -> Policy {
        self.mode = Mode::Off;
        self
    }

    /// Replaces the trusted ranges with these.
    pub fn trusting(mut self, ranges: &[&str]) -> Policy {
        self.trusted = TrustedRanges::new(ranges.iter().map(|r| r.parse().unwrap())).unwrap();
        self
    }

    pub fn quota(mut self, rules: usize) -> Policy {
        self.max_rules_per_group = rules;
        self
    }
}

impl Finding {
    /// A port probe of `ports` on `instance` in account 123456789012, severity 5.0,
    /// for tests: change fields with struct update syntax.
    pub fn probe(id: &str, instance: &str, ports: &[u16]) -> Finding {
        Finding {
            id: FindingId::parse(id).unwrap(),
            finding_type: "Recon:EC2/PortProbeUnprotectedPort".into(),
            severity: Severity::of_finding(5.0).unwrap(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            title: "probe".into(),
            sample: false,
            archived: false,
            count: Some(1),
            first_seen: None,
            last_seen: None,
            updated_at: None,
            arn: None,
            instance: Some(InstanceRef {
                id: InstanceId::parse(instance).unwrap(),
                security_groups: Vec::new(),
            }),
            action: Action::PortProbe {
                ports: ports.to_vec(),
                remote_ips: vec!["198.51.100.7".parse().unwrap()],
            },
        }
    }
}

impl SecurityGroup {
    /// A group `sg-…` whose only rule (`sgr-` + the same digits) admits `traffic`
    /// from 0.0.0.0/0, on one interface, for tests.
    pub fn world_open(id: &str, traffic: Traffic) -> SecurityGroup {
        SecurityGroup {
            id: SecurityGroupId::parse(id).unwrap(),
            name: id.into(),
            vpc_id: None,
            tags: BTreeMap::new(),
            ingress: vec![IngressRule {
                id: RuleId::parse(&format!("sgr-{}", &id[3..])).unwrap(),
                traffic,
                source: Source::Cidr("0.0.0.0/0".parse().unwrap()),
                description: None,
                owner: None,
            }],
            network_interfaces: Some(1),
            watches: Default::default(),
        }
    }
}

impl GroupOutcome {
    /// The group's change as the executor reports it when every step worked: a step
    /// with rules done, a step without rules not needed; AWS reported one id per
    /// authorized rule (`sgr-a0`, `sgr-a1`, … in the change's order), and the revoked
    /// rules' ids are the plan's.
    pub fn done(group: &GroupPlan, change: &ChangeSet) -> GroupOutcome {
        let authorized = (0..change.authorize.len())
            .map(|k| RuleId::parse(&format!("sgr-a{k:x}")).unwrap())
            .collect();
        let revoked = change.revoke.iter().map(|r| r.rule.clone()).collect();
        let step = |rule_ids: Vec<RuleId>| {
            if rule_ids.is_empty() {
                StepResult::NotNeeded
            } else {
                StepResult::Done {
                    rules: rule_ids.len(),
                    rule_ids,
                }
            }
        };
        GroupOutcome {
            group: group.group.clone(),
            remember: if change.watch.is_some() {
                StepResult::Done {
                    rules: 0,
                    rule_ids: Vec::new(),
                }
            } else {
                StepResult::NotNeeded
            },
            authorize: step(authorized),
            revoke: step(revoked),
        }
    }

    /// The group's change as the executor reports it when AWS refused the authorize
    /// (access denied): nothing was revoked.
    pub fn failed_authorize(group: &GroupPlan) -> GroupOutcome {
        GroupOutcome {
            group: group.group.clone(),
            remember: StepResult::NotNeeded,
            authorize: StepResult::Failed {
                category: Category::AccessDenied,
                error: "UnauthorizedOperation: not allowed".into(),
            },
            revoke: StepResult::NotRun {
                reason: "authorize failed".into(),
            },
        }
    }
}

/// An account as one pass sees it, and the reports of passes over it: the fixture of
/// the status, events and alerting tests.
#[derive(Debug, Clone)]
pub struct World {
    pub observation: Observation,
}

impl Default for World {
    /// An empty account in us-east-1.
    fn default() -> World {
        World {
            observation: Observation {
                region: "us-east-1".into(),
                ..Observation::default()
            },
        }
    }
}

impl World {
    /// Groups `sg-<k>`, each on instance `i-<k>` with port 22 open to the world and a
    /// MEDIUM finding `f<k>` probing it (k in hex, from 1).
    pub fn open_ssh(groups: usize) -> World {
        let mut world = World::default();
        for k in 1..=groups {
            world = world
                .with_open_group(&format!("{k:x}"), Traffic::Tcp(PortRange::single(22)))
                .with_finding(&format!("f{k:x}"), 5.0, &format!("i-{k:x}"));
        }
        world
    }

    /// `group` on an instance `i-<suffix of the group>`.
    pub fn with_group(mut self, group: SecurityGroup) -> World {
        let instance = Instance {
            id: InstanceId::parse(&format!("i-{}", &group.id.as_str()[3..])).unwrap(),
            state: InstanceState::Running,
            security_groups: vec![group.id.clone()],
        };
        self.observation
            .instances
            .insert(instance.id.clone(), instance);
        self.observation.groups.insert(group.id.clone(), group);
        self
    }

    /// Instance `i-<suffix>` in group `sg-<suffix>`, whose one rule opens `traffic`
    /// to the world.
    pub fn with_open_group(self, suffix: &str, traffic: Traffic) -> World {
        self.with_group(SecurityGroup::world_open(&format!("sg-{suffix}"), traffic))
    }

    /// A port-22 probe `id` of this severity on `instance`.
    pub fn with_finding(mut self, id: &str, severity: f64, instance: &str) -> World {
        self.observation.findings.push(Finding {
            severity: Severity::of_finding(severity).unwrap(),
            ..Finding::probe(id, instance, &[22])
        });
        self
    }

    /// A group converged by [`Policy::test`] earlier (it watches tcp/22 there, and
    /// its trusted rule carries its tag) whose port 22 someone opened to the world
    /// again; no finding names it.
    pub fn drifted(group: &str) -> World {
        let mut sg = SecurityGroup::world_open(group, Traffic::Tcp(PortRange::single(22)));
        sg.ingress.push(IngressRule {
            id: RuleId::parse("sgr-77").unwrap(),
            traffic: Traffic::Tcp(PortRange::single(22)),
            source: Source::Cidr("10.0.0.0/8".parse().unwrap()),
            description: Some("guardduty-operator: trusted access to tcp/22".into()),
            owner: Some(TEST_OWNER.to_string()),
        });
        sg.watches
            .insert(TEST_OWNER.to_string(), [Exposure::tcp(22)].into());
        let mut world = World::default();
        world.observation.groups.insert(sg.id.clone(), sg);
        world
    }

    /// The report of a pass of `policy` whose changes fared as `outcome` says
    /// (`None`: not carried out); applied when the policy enforces.
    pub fn report(
        &self,
        policy: &Policy,
        outcome: impl Fn(&GroupPlan, &ChangeSet) -> Option<GroupOutcome>,
    ) -> PassReport {
        let plan = plan(policy, &self.observation);
        let outcomes: Vec<GroupOutcome> = plan
            .changes()
            .filter_map(|(group, change)| outcome(group, change))
            .collect();
        let region = self.observation.region.clone();
        PassReport {
            mode: policy.mode,
            regions: vec![region.clone()],
            detectors: [(region.clone(), "d1".to_string())].into(),
            findings: self.observation.findings.clone(),
            listed: [(region, crate::known::Read::Full)].into(),
            targeted: false,
            applied: policy.mode == Mode::Enforce,
            plan: Some(plan),
            outcomes,
            archived: Vec::new(),
            feedback: Vec::new(),
            security_hub: Vec::new(),
            failures: Vec::new(),
            record: Default::default(),
            quiet: Vec::new(),
            settled: Vec::new(),
        }
    }

    /// A DryRun pass: planned, nothing applied.
    pub fn dry_run(&self) -> PassReport {
        self.report(&Policy::test(), |_, _| None)
    }

    /// An Enforce pass in which every change succeeded.
    pub fn enforced(&self) -> PassReport {
        self.enforced_failing(&[])
    }

    /// An Enforce pass in which authorizing fails in the `failing` groups.
    pub fn enforced_failing(&self, failing: &[&str]) -> PassReport {
        self.report(&Policy::test().enforce(), |group, change| {
            Some(if failing.contains(&group.group.as_str()) {
                GroupOutcome::failed_authorize(group)
            } else {
                GroupOutcome::done(group, change)
            })
        })
    }

    /// The account after `report`'s changes were made.
    pub fn after(&self, report: &PassReport) -> World {
        let mut world = self.clone();
        for (group, change) in report.plan.as_ref().unwrap().changes() {
            let sg = world.observation.groups.get_mut(&group.group).unwrap();
            let mut next = 0;
            apply_change(sg, change, || {
                next += 1;
                RuleId::parse(&format!("sgr-f{next:x}")).unwrap()
            });
        }
        world
    }
}

/// A pass that stopped at `step` with `category`, having read the findings of `world`
/// when the step comes after reading them.
pub fn failed_at(world: &World, step: Step, category: Category) -> PassReport {
    let read = !step.reads_findings();
    let region = world.observation.region.clone();
    PassReport {
        mode: Mode::DryRun,
        regions: vec![region.clone()],
        detectors: if step == Step::FindDetector {
            Default::default()
        } else {
            [(region.clone(), "d1".to_string())].into()
        },
        findings: if read {
            world.observation.findings.clone()
        } else {
            Vec::new()
        },
        listed: if read {
            [(region.clone(), crate::known::Read::Full)].into()
        } else {
            Default::default()
        },
        targeted: false,
        plan: None,
        applied: false,
        outcomes: Vec::new(),
        archived: Vec::new(),
        feedback: Vec::new(),
        security_hub: Vec::new(),
        failures: vec![Failure::new(step, category, "connection refused").in_region(&region)],
        record: Default::default(),
        quiet: Vec::new(),
        settled: Vec::new(),
    }
}
