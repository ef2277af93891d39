//! The integration tests, one binary (one link): each module a topic. Those that need
//! AWS talk to the moto server `scripts/test.sh` starts (`GDO_MOTO_URL`) and to the
//! GuardDuty emulator run in process; the Kubernetes API is a mock server.

mod common;

mod alerting;
mod cli;
mod controller;
mod crd;
mod faults;
mod finding_json;
mod iam_policy;
mod leader;
mod notify_email;
mod notify_jira;
mod notify_pagerduty;
mod notify_servicenow;
mod notify_slack;
mod notify_sms;
mod pacing;
mod realtime;
mod remediation;
mod report_html;
mod report_ocsf;
mod revert;
mod safety;
