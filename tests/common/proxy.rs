//! A fault-injecting HTTP proxy on 127.0.0.1 in front of a real service (moto): it
//! forwards every request unchanged and answers with the service's response, except
//! where a scripted fault matches the call: answer with an error instead (throttling,
//! 5xx, any AWS error) a number of times, or hold the request unanswered so the test
//! can kill the client between two calls. It records every call by name, in order.
//!
//! A call's name is its EC2 `Action` (query protocol, in the form body) or, for a
//! REST service, `METHOD /path`.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// What the proxy does to a matching call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this instead of forwarding.
    Answer { status: u16, body: String },
    /// Never answer (the call is not forwarded): the client waits until killed.
    Hold,
}

impl Fault {
    /// An EC2 error answer in the query protocol's XML shape.
    pub fn ec2_error(status: u16, code: &str, message: &str) -> Fault {
        Fault::Answer {
            status,
            body: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
                 <Code>{code}</Code><Message>{message}</Message></Error></Errors>\
                 <RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
            ),
        }
    }

    /// EC2's throttling answer.
    pub fn throttled() -> Fault {
        Fault::ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.")
    }
}

/// A fault for the calls named `call`: the `skip` first calls of that name pass (or
/// meet another rule), then the next `times` get the fault (`usize::MAX`: every one).
#[derive(Debug, Clone)]
struct Rule {
    call: String,
    skip: usize,
    times: usize,
    fault: Fault,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    calls: Vec<String>,
    held: usize,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    pub url: String,
    state: Arc<Mutex<State>>,
    held: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy forwarding to `upstream` (such as moto's URL).
    pub async fn start(upstream: &str) -> Proxy {
        let state = Arc::new(Mutex::new(State::default()));
        let held = Arc::new(tokio::sync::Notify::new());
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap();
        let upstream = upstream.trim_end_matches('/').to_string();
        let (shared, notify) = (state.clone(), held.clone());
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (state, notify, client, upstream) = (
                    shared.clone(),
                    notify.clone(),
                    client.clone(),
                    upstream.clone(),
                );
                async move {
                    forward(
                        &state, &notify, &client, &upstream, method, uri, headers, body,
                    )
                    .await
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Proxy {
            url,
            state,
            held,
            task,
        }
    }

    /// After `skip` calls named `call` pass, the next `times` get `fault`.
    pub fn fault(&self, call: &str, skip: usize, times: usize, fault: Fault) -> &Proxy {
        self.state.lock().unwrap().rules.push(Rule {
            call: call.to_string(),
            skip,
            times,
            fault,
        });
        self
    }

    /// Every call so far, by name, in order (held and faulted ones included).
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// How many calls named `call` were made.
    pub fn count(&self, call: &str) -> usize {
        self.calls().iter().filter(|c| *c == call).count()
    }

    /// Waits (at most `limit`) until a call is being held.
    pub async fn until_held(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.held.notified();
            if self.state.lock().unwrap().held > 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "no call was held within {limit:?}; calls so far: {:?}",
                    self.calls()
                );
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The call's name: the query protocol's `Action`, else `METHOD /path`.
fn call_name(method: &Method, uri: &Uri, body: &[u8]) -> String {
    let form = uri.query().map(str::as_bytes).into_iter().chain([body]);
    for text in form {
        for pair in text.split(|b| *b == b'&') {
            if let Some(action) = pair.strip_prefix(b"Action=") {
                return String::from_utf8_lossy(action).into_owned();
            }
        }
    }
    format!("{method} {}", uri.path())
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    state: &Mutex<State>,
    held: &tokio::sync::Notify,
    client: &reqwest::Client,
    upstream: &str,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let name = call_name(&method, &uri, &body);
    let fault = {
        let mut state = state.lock().unwrap();
        state.calls.push(name.clone());
        // This call's ordinal among the calls of its name, from 1.
        let n = state.calls.iter().filter(|c| **c == name).count();
        let fault = state
            .rules
            .iter()
            .find(|rule| rule.call == name && n > rule.skip && n - rule.skip <= rule.times)
            .map(|rule| rule.fault.clone());
        if matches!(fault, Some(Fault::Hold)) {
            state.held += 1;
        }
        fault
    };
    match fault {
        Some(Fault::Hold) => {
            held.notify_waiters();
            std::future::pending::<()>().await;
            unreachable!()
        }
        Some(Fault::Answer { status, body }) => (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "text/xml")],
            body,
        )
            .into_response(),
        None => {
            let path = uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            let mut request = client.request(method, format!("{upstream}{path}"));
            for (name, value) in &headers {
                if name != "host" && name != "content-length" {
                    request = request.header(name, value);
                }
            }
            match request.body(body).send().await {
                Ok(response) => {
                    let status = response.status();
                    let mut out_headers = HeaderMap::new();
                    for (name, value) in response.headers() {
                        if name != "content-length" && name != "transfer-encoding" {
                            out_headers.insert(name.clone(), value.clone());
                        }
                    }
                    let bytes = response.bytes().await.unwrap_or_default();
                    (status, out_headers, bytes).into_response()
                }
                Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
            }
        }
    }
}
