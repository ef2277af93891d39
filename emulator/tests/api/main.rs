//! The emulator driven by the real `aws-sdk-guardduty` client over HTTP, as the operator
//! drives GuardDuty. One test binary, so the SDK is linked once.

mod common;

mod binary;
mod detectors;
mod findings_lifecycle;
mod get_findings;
mod list_findings;
mod regions;
