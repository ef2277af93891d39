//! GuardDuty adapter: detector discovery, ListFindings with criteria and
//! pagination (in full, or only what was updated since a time), GetFindings in
//! batches of 50 (concurrently), ArchiveFindings, UpdateFindingsFeedback, and the
//! translation of SDK findings into domain findings.

use std::net::IpAddr;

use aws_sdk_guardduty::Client;
use aws_sdk_guardduty::types::{Condition, FindingCriteria};
use futures_util::{StreamExt, TryStreamExt, stream};

use super::{CONCURRENCY, aws_error};
use crate::domain::finding::{Action, Direction, Finding, InstanceRef};
use crate::domain::ids::{FindingId, InstanceId};
use crate::domain::known::Read;
use crate::domain::policy::Policy;
use crate::domain::severity::Severity;
use crate::ports::{FindingsError, FindingsSource};

/// GuardDuty's limit for ids per page, GetFindings and ArchiveFindings.
pub const BATCH: usize = 50;

#[derive(Debug, Clone)]
pub struct GuardDuty {
    client: Client,
    /// Security Hub in the same region, for `spec.securityHub.updateFindings`.
    hub: Option<aws_sdk_securityhub::Client>,
}

/// BatchUpdateFindings takes at most 100 findings a call.
const HUB_BATCH: usize = 100;

impl GuardDuty {
    pub fn new(client: Client) -> Self {
        GuardDuty { client, hub: None }
    }

    /// The same adapter, updating Security Hub's copies of findings through `hub`.
    pub fn with_security_hub(mut self, hub: aws_sdk_securityhub::Client) -> Self {
        self.hub = Some(hub);
        self
    }

    async fn list_ids(
        &self,
        detector: &str,
        policy: &Policy,
        read: Read,
    ) -> Result<Vec<String>, FindingsError> {
        let criteria = criteria(policy, read);
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_findings()
                .detector_id(detector)
                .finding_criteria(criteria.clone())
                .max_results(BATCH as i32)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| FindingsError::ListFindings {
                    detector: detector.to_string(),
                    source: aws_error(e),
                })?;
            ids.extend(page.finding_ids().iter().cloned());
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(ids)
    }

    async fn get_batch(
        &self,
        detector: &str,
        ids: Vec<String>,
    ) -> Result<Vec<Finding>, FindingsError> {
        let count = ids.len();
        let output = self
            .client
            .get_findings()
            .detector_id(detector)
            .set_finding_ids(Some(ids))
            .send()
            .await
            .map_err(|e| FindingsError::GetFindings {
                detector: detector.to_string(),
                count,
                source: aws_error(e),
            })?;
        Ok(output.findings().iter().filter_map(to_domain).collect())
    }
}

/// The server-side part of the policy's selection. GuardDuty's severity criterion
/// takes whole numbers, so a fractional threshold is rounded down here and
/// applied exactly by [`Policy::selects`] afterwards. An incremental read asks for
/// what was updated since (`updatedAt` in epoch milliseconds), archived findings
/// included, so that the caller learns which are no longer open.
fn criteria(policy: &Policy, read: Read) -> FindingCriteria {
    let mut criteria = FindingCriteria::builder().criterion(
        "severity",
        Condition::builder()
            .greater_than_or_equal(policy.min_severity.value().floor() as i64)
            .build(),
    );
    criteria = match read {
        Read::Full => criteria.criterion(
            "service.archived",
            Condition::builder().equals("false").build(),
        ),
        Read::UpdatedSince(since) => criteria.criterion(
            "updatedAt",
            Condition::builder()
                .greater_than_or_equal(since.0.saturating_mul(1000))
                .build(),
        ),
    };
    if !policy.finding_types.is_empty() {
        criteria = criteria.criterion(
            "type",
            Condition::builder()
                .set_equals(Some(policy.finding_types.clone()))
                .build(),
        );
    }
    criteria.build()
}

impl FindingsSource for GuardDuty {
    async fn detector(&self, configured: Option<&str>) -> Result<String, FindingsError> {
        if let Some(id) = configured {
            return Ok(id.to_string());
        }
        let output = self
            .client
            .list_detectors()
            .send()
            .await
            .map_err(|e| FindingsError::ListDetectors(aws_error(e)))?;
        // One detector per account and region: the first is the only one.
        output
            .detector_ids()
            .first()
            .cloned()
            .ok_or(FindingsError::NoDetector)
    }

    async fn findings(
        &self,
        detector: &str,
        policy: &Policy,
        read: Read,
    ) -> Result<Vec<Finding>, FindingsError> {
        let ids = self.list_ids(detector, policy, read).await?;
        let batches: Vec<Vec<String>> = ids.chunks(BATCH).map(<[String]>::to_vec).collect();
        let pages: Vec<Vec<Finding>> = stream::iter(batches)
            .map(|batch| self.get_batch(detector, batch))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(pages.into_iter().flatten().collect())
    }

    async fn resolve_in_security_hub(
        &self,
        resolved: &[crate::ports::HubResolution],
    ) -> Result<(), FindingsError> {
        use aws_sdk_securityhub::types::{
            AwsSecurityFindingIdentifier, NoteUpdate, WorkflowStatus, WorkflowUpdate,
        };
        let Some(hub) = &self.hub else {
            return Err(FindingsError::SecurityHub {
                count: resolved.len(),
                source: crate::ports::AwsError {
                    code: None,
                    message: "no Security Hub client was set up".into(),
                },
            });
        };
        // One call per note: BatchUpdateFindings gives every finding of a call the
        // same note.
        let mut by_note: std::collections::BTreeMap<&str, Vec<&crate::ports::HubResolution>> =
            Default::default();
        for resolution in resolved {
            by_note
                .entry(&resolution.note)
                .or_default()
                .push(resolution);
        }
        for (note, findings) in by_note {
            for batch in findings.chunks(HUB_BATCH) {
                let identifiers = batch
                    .iter()
                    .map(|r| {
                        AwsSecurityFindingIdentifier::builder()
                            .id(&r.arn)
                            .product_arn(guardduty_product_arn(&r.region))
                            .build()
                    })
                    .collect();
                let failed = |source| FindingsError::SecurityHub {
                    count: batch.len(),
                    source,
                };
                let output = hub
                    .batch_update_findings()
                    .set_finding_identifiers(Some(identifiers))
                    .workflow(
                        WorkflowUpdate::builder()
                            .status(WorkflowStatus::Resolved)
                            .build(),
                    )
                    .note(
                        NoteUpdate::builder()
                            .text(crate::notify::http::cut(note, 512))
                            .updated_by("guardduty-operator")
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| failed(aws_error(e)))?;
                if let Some(unprocessed) = output.unprocessed_findings().first() {
                    return Err(failed(crate::ports::AwsError {
                        code: unprocessed.error_code().map(str::to_string),
                        message: format!(
                            "{} of {} findings not updated, first {}: {}",
                            output.unprocessed_findings().len(),
                            batch.len(),
                            unprocessed
                                .finding_identifier()
                                .and_then(|f| f.id())
                                .unwrap_or("(unknown)"),
                            unprocessed.error_message().unwrap_or("no message")
                        ),
                    }));
                }
            }
        }
        Ok(())
    }

    async fn feedback(&self, detector: &str, ids: &[FindingId]) -> Result<(), FindingsError> {
        for batch in ids.chunks(BATCH) {
            self.client
                .update_findings_feedback()
                .detector_id(detector)
                .set_finding_ids(Some(
                    batch.iter().map(|id| id.as_str().to_string()).collect(),
                ))
                .feedback(aws_sdk_guardduty::types::Feedback::Useful)
                .comments("remediated by guardduty-operator")
                .send()
                .await
                .map_err(|e| FindingsError::Feedback {
                    detector: detector.to_string(),
                    count: batch.len(),
                    source: aws_error(e),
                })?;
        }
        Ok(())
    }

    async fn archive(&self, detector: &str, ids: &[FindingId]) -> Result<(), FindingsError> {
        for batch in ids.chunks(BATCH) {
            self.client
                .archive_findings()
                .detector_id(detector)
                .set_finding_ids(Some(
                    batch.iter().map(|id| id.as_str().to_string()).collect(),
                ))
                .send()
                .await
                .map_err(|e| FindingsError::Archive {
                    detector: detector.to_string(),
                    count: batch.len(),
                    source: aws_error(e),
                })?;
        }
        Ok(())
    }
}

/// GuardDuty's product in Security Hub, in `region`'s partition.
pub fn guardduty_product_arn(region: &str) -> String {
    format!(
        "arn:{}:securityhub:{region}::product/aws/guardduty",
        crate::domain::policy::partition(region)
    )
}

/// Translates one SDK finding; a finding without a usable id or severity is
/// logged and left out rather than failing the pass.
fn to_domain(finding: &aws_sdk_guardduty::types::Finding) -> Option<Finding> {
    let raw_id = finding.id().unwrap_or_default();
    let Ok(id) = FindingId::parse(raw_id) else {
        tracing::warn!(id = raw_id, "skipping a finding with an unusable id");
        return None;
    };
    let Some(severity) = finding.severity().and_then(Severity::of_finding) else {
        tracing::warn!(%id, "skipping a finding without a severity");
        return None;
    };
    let service = finding.service();
    let action = service.and_then(|s| s.action());
    Some(Finding {
        id,
        finding_type: finding.r#type().unwrap_or_default().to_string(),
        severity,
        account_id: finding.account_id().unwrap_or_default().to_string(),
        region: finding.region().unwrap_or_default().to_string(),
        title: finding.title().unwrap_or_default().to_string(),
        sample: service.is_some_and(is_sample),
        archived: service.and_then(|s| s.archived()).unwrap_or(false),
        count: service.and_then(|s| s.count()).map(i64::from),
        first_seen: service
            .and_then(|s| s.event_first_seen())
            .map(str::to_string),
        last_seen: service
            .and_then(|s| s.event_last_seen())
            .map(str::to_string),
        updated_at: finding.updated_at().map(str::to_string),
        arn: finding.arn().map(str::to_string),
        instance: instance(finding),
        action: action
            .map(to_action)
            .unwrap_or(Action::Other { action_type: None }),
    })
}

/// `service.additionalInfo` reaches the API as `{"value": "<JSON text>"}`; the
/// sample flag is inside that text.
fn is_sample(service: &aws_sdk_guardduty::types::Service) -> bool {
    service
        .additional_info()
        .and_then(|info| info.value())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|value| match value.get("sample")? {
            serde_json::Value::Bool(b) => Some(*b),
            serde_json::Value::String(s) => Some(s.eq_ignore_ascii_case("true")),
            _ => None,
        })
        .unwrap_or(false)
}

fn instance(finding: &aws_sdk_guardduty::types::Finding) -> Option<InstanceRef> {
    let details = finding.resource()?.instance_details()?;
    let id = InstanceId::parse(details.instance_id()?).ok()?;
    let mut security_groups: Vec<String> = details
        .network_interfaces()
        .iter()
        .flat_map(|eni| eni.security_groups())
        .filter_map(|g| g.group_id().map(str::to_string))
        .collect();
    security_groups.sort();
    security_groups.dedup();
    Some(InstanceRef {
        id,
        security_groups,
    })
}

fn remote_ip(details: Option<&aws_sdk_guardduty::types::RemoteIpDetails>) -> Option<IpAddr> {
    let details = details?;
    details
        .ip_address_v4()
        .or(details.ip_address_v6())
        .and_then(|text| text.parse().ok())
}

fn port(number: Option<i32>) -> Option<u16> {
    number.and_then(|p| u16::try_from(p).ok())
}

fn to_action(action: &aws_sdk_guardduty::types::Action) -> Action {
    if let Some(probe) = action.port_probe_action() {
        let details = probe.port_probe_details();
        return Action::PortProbe {
            ports: details
                .iter()
                .filter_map(|d| port(d.local_port_details().and_then(|l| l.port())))
                .collect(),
            remote_ips: details
                .iter()
                .filter_map(|d| remote_ip(d.remote_ip_details()))
                .collect(),
        };
    }
    if let Some(connection) = action.network_connection_action() {
        return Action::NetworkConnection {
            direction: match connection.connection_direction() {
                Some(d) if d.eq_ignore_ascii_case("INBOUND") => Direction::Inbound,
                Some(d) if d.eq_ignore_ascii_case("OUTBOUND") => Direction::Outbound,
                _ => Direction::Unknown,
            },
            protocol: connection.protocol().map(str::to_string),
            local_port: port(connection.local_port_details().and_then(|l| l.port())),
            remote_ip: remote_ip(connection.remote_ip_details()),
        };
    }
    Action::Other {
        action_type: action.action_type().map(str::to_string),
    }
}
