//! A local emulator of the Amazon GuardDuty API, speaking GuardDuty's REST-JSON wire
//! protocol so that the real `aws-sdk-guardduty` client, pointed at it by endpoint URL,
//! can list, read, archive and count findings, for tests and demos.
//!
//! ```text
//!  aws-sdk-guardduty ──HTTP──▶ router ──▶ api (one handler per operation)
//!                                 │          │ parse + validate input (body, criteria)
//!  tests / scripts ──▶ control ───┤          ▼
//!   (/_emulator/...)              └──▶ Store (behind a Mutex)
//!                                        findings as GuardDuty JSON, detectors,
//!                                        ListFindings snapshots, request counts
//! ```
//!
//! Findings are kept as GuardDuty's JSON (`serde_json::Value`) and filtered by dotted
//! field paths, as GuardDuty does; no typed model of a finding exists here, so a parsing
//! mistake elsewhere cannot hide behind a mirror image of itself.
//!
//! # Regions, detectors, accounts
//!
//! One emulator serves every Region, each as GuardDuty serves its own:
//!
//! - A request is answered for the Region its SigV4 signature names, the credential scope
//!   of its `Authorization` header (`Credential=AKID/DATE/REGION/guardduty/aws4_request`),
//!   which the SDK takes from its configured Region; a request without a readable one is
//!   answered for [`DEFAULT_REGION`] (`us-east-1`). The signature is not verified.
//! - A finding belongs to the detector its `service.detectorId` names in the Region its
//!   `region` names (`us-east-1` when the posted finding has none). That detector exists,
//!   in that Region only, from the moment a finding names it.
//! - A Region without any detector has one default detector,
//!   [`default_detector_id`]`(region)`: [`DEFAULT_DETECTOR_ID`] in `us-east-1`, and in
//!   every other Region an id derived from the Region's name, the same in every run.
//!   `CreateDetector` creates a detector in the Region of the request.
//! - Every operation on a detector (GetDetector, ListFindings, GetFindings,
//!   Archive/UnarchiveFindings, UpdateFindingsFeedback, CreateSampleFindings,
//!   GetFindingsStatistics) reaches only that Region's detectors; a detector of another
//!   Region is refused as GuardDuty refuses any detector the caller does not own (HTTP 400
//!   `BadRequestException`, "...the input detectorId is not owned by the current account.").
//! - Nothing filters by account: a finding whose `accountId` is a member account's is
//!   served by the detector it names, as a delegated administrator's detector serves its
//!   members' findings.
//!
//! A test picks the Region of its calls with the SDK's Region
//! (`aws_config::defaults(..).region(Region::new("eu-west-1"))`), and posts findings whose
//! `region` is that Region.
//!
//! # Criteria and replacement
//!
//! `FindingCriteria` compares `updatedAt` (an ISO-8601 string in the finding) with the
//! epoch milliseconds GuardDuty's wire format uses (`greaterThanOrEqual`, `greaterThan`,
//! `lessThan`, `lessThanOrEqual`, and the deprecated 32-bit `gte`/`gt`/`lt`/`lte`). A finding
//! posted again with the same id replaces the old one in place, and the next ListFindings
//! filters the replacement. `UpdateFindingsFeedback` sets `service.userFeedback` and is
//! recorded per finding, with its comments: read it with [`Emulator::feedback`] or
//! `GET /_emulator/findings/{findingId}/feedback`.
#![forbid(unsafe_code)]

mod api;
mod body;
mod control;
mod criteria;
mod detectors;
mod error;
mod ids;
mod ingest;
mod listing;
mod region;
mod samples;
mod statistics;
mod store;
mod time;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use control::parse_findings_document;
pub use detectors::{DEFAULT_DETECTOR_ID, default_detector_id};
pub use error::ApiError;
pub use region::DEFAULT_REGION;

use region::SignedRegion;
use store::Store;

/// Which requests the emulator logs to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RequestLog {
    /// Nothing (the default: tests stay quiet).
    #[default]
    Off,
    /// Requests answered with an error status.
    Errors,
    /// Every request.
    All,
}

/// A handle to one emulated GuardDuty; clones share the same state.
#[derive(Debug, Clone)]
pub struct Emulator {
    store: Arc<Mutex<Store>>,
    request_log: RequestLog,
}

impl Default for Emulator {
    fn default() -> Self {
        Self::new()
    }
}

impl Emulator {
    /// An emulator with no findings and a default detector in every Region.
    pub fn new() -> Self {
        Self {
            store: Arc::new(Mutex::new(Store::new(time::now_ms()))),
            request_log: RequestLog::Off,
        }
    }

    /// Logs requests to stderr as chosen.
    #[must_use]
    pub fn with_request_log(mut self, request_log: RequestLog) -> Self {
        self.request_log = request_log;
        self
    }

    /// Stores findings in the JSON shape GetFindings returns; a finding whose id exists
    /// replaces it in place. Each goes to the detector its `service.detectorId` names in the
    /// Region its `region` names (`us-east-1` when absent). All or nothing: returns how many
    /// were stored, or why none were.
    pub fn upsert_findings(&self, findings: Vec<Value>) -> Result<usize, String> {
        self.lock().upsert(findings, time::now_ms())
    }

    /// The finding with this id, whatever its Region, as stored (and as GetFindings returns it).
    pub fn finding(&self, id: &str) -> Option<Value> {
        self.lock().finding(id).cloned()
    }

    /// Every stored finding, every Region's, in insertion order.
    pub fn findings(&self) -> Vec<Value> {
        self.lock().all_findings().to_vec()
    }

    /// The ids ListDetectors returns in [`DEFAULT_REGION`] (`us-east-1`).
    pub fn detector_ids(&self) -> Vec<String> {
        self.detector_ids_in(DEFAULT_REGION)
    }

    /// The ids ListDetectors returns in `region`.
    pub fn detector_ids_in(&self, region: &str) -> Vec<String> {
        self.lock().detectors.ids(region)
    }

    /// The detector ids of every Region that holds a detector other than its default one,
    /// and of [`DEFAULT_REGION`] always.
    pub fn detectors_by_region(&self) -> BTreeMap<String, Vec<String>> {
        let store = self.lock();
        let mut regions = store.detectors.regions();
        if !regions.iter().any(|region| region == DEFAULT_REGION) {
            regions.push(DEFAULT_REGION.to_owned());
        }
        regions
            .into_iter()
            .map(|region| {
                let ids = store.detectors.ids(&region);
                (region, ids)
            })
            .collect()
    }

    /// The feedback given on the finding with this id with UpdateFindingsFeedback, as
    /// `GET /_emulator/findings/{findingId}/feedback` answers it:
    /// `{"findingId", "feedback", "comments", "submissions": [...]}` (see that route). `None`
    /// when the emulator holds no such finding.
    pub fn feedback(&self, finding_id: &str) -> Option<Value> {
        let store = self.lock();
        store.finding(finding_id)?;
        Some(control::feedback_document(
            finding_id,
            store.feedback(finding_id),
        ))
    }

    /// How many times each operation (`"ListFindings"`, `"GetFindings"`, ...) was called,
    /// failed calls included.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.lock().request_counts()
    }

    /// The HTTP routes: GuardDuty's operations and the `/_emulator/` control routes.
    pub fn router(&self) -> Router {
        Router::new()
            .merge(api::routes())
            .merge(control::routes())
            .fallback(unknown_operation)
            .method_not_allowed_fallback(unknown_operation)
            .layer(middleware::from_fn_with_state(self.clone(), tag_and_log))
            .with_state(self.clone())
    }

    /// Binds `addr` and serves this emulator in a tokio task until shut down or dropped.
    pub async fn spawn(&self, addr: &str) -> std::io::Result<RunningEmulator> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_requested) = oneshot::channel::<()>();
        let router = self.router();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = shutdown_requested.await;
                })
                .await
        });
        Ok(RunningEmulator {
            emulator: self.clone(),
            url: format!("http://{}", connectable(addr)),
            addr,
            shutdown: Some(shutdown),
            server: Some(server),
        })
    }

    /// Makes the next `times` calls of `operation` (e.g. `"ListFindings"`) answer
    /// HTTP 500 `InternalServerErrorException`, to exercise a client's retries.
    pub fn fail_next(&self, operation: &str, times: u32) {
        self.lock().inject_failures(operation, times);
    }

    /// Locks the state and counts a call of `operation` (which may fail, if injected).
    pub(crate) fn begin(&self, operation: &str) -> Result<MutexGuard<'_, Store>, ApiError> {
        let mut store = self.lock();
        store.count_request(operation)?;
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fresh emulator served on `addr` (`"127.0.0.1:0"` picks a free port).
pub async fn spawn(addr: &str) -> std::io::Result<RunningEmulator> {
    Emulator::new().spawn(addr).await
}

/// An emulator being served; stops serving when dropped or shut down.
#[derive(Debug)]
pub struct RunningEmulator {
    /// The state being served.
    pub emulator: Emulator,
    /// Where to point the SDK: `http://127.0.0.1:PORT`.
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningEmulator {
    /// Stops accepting connections and waits for the server task to finish.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.server.take() {
            Some(server) => server.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }

    /// Serves until the server task ends (it ends on shutdown or a fatal I/O error).
    pub async fn wait(mut self) -> std::io::Result<()> {
        match self.server.take() {
            Some(server) => server.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The address a client can connect to: an unspecified bind address means loopback.
fn connectable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

async fn unknown_operation(method: Method, uri: Uri) -> ApiError {
    ApiError::unknown_operation(method.as_str(), uri.path())
}

/// Adds the `x-amzn-RequestId` header AWS sends, and logs the request if asked to.
async fn tag_and_log(State(emulator): State<Emulator>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let region = SignedRegion::of(request.headers());
    let mut response = next.run(request).await;
    let request_id = ids::uuid();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-RequestId", value);
    }
    let status = response.status();
    let log = match emulator.request_log {
        RequestLog::Off => false,
        RequestLog::Errors => !status.is_success(),
        RequestLog::All => true,
    };
    if log {
        eprintln!(
            "guardduty-emulator: {} {method} {path} -> {} ({request_id})",
            region.as_str(),
            status.as_u16()
        );
    }
    response
}
