//! A mock Kubernetes API server in the kube-rs/controller-rs style: a test states the
//! ordered requests the API server must receive (method, path, required query pairs,
//! content type, body) and what it answers (status code and JSON); a request out of
//! order, a failed check or an extra request fails the test.

use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::Value;

pub type ApiHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
/// Checks a request's JSON body.
pub type BodyCheck = Box<dyn FnOnce(&Value) + Send>;
/// A scenario being served: the handle and the bodies received, once all came.
pub type Server = tokio::task::JoinHandle<(ApiHandle, Vec<Value>)>;

/// A kube client whose every request goes to the returned handle.
pub fn mock_client() -> (kube::Client, ApiHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// One request the API server expects, and its answer.
pub struct Exchange {
    pub method: Method,
    pub path: &'static str,
    /// Query parameters that must be present (others are allowed).
    pub query: Vec<(&'static str, &'static str)>,
    /// The request's content type and a check of its JSON body; `None`: the request
    /// has neither (a GET).
    pub body: Option<(&'static str, BodyCheck)>,
    /// The status code of the answer.
    pub status: u16,
    /// The JSON the API server answers with.
    pub reply: Value,
}

impl Exchange {
    /// A GET of `path`, without body; answered 200 with `null` unless told otherwise.
    pub fn get(path: &'static str) -> Exchange {
        Exchange {
            method: Method::GET,
            path,
            query: Vec::new(),
            body: None,
            status: 200,
            reply: Value::Null,
        }
    }

    /// A request with a JSON body of `content_type`, which `check` checks; answered 200
    /// with `null` unless told otherwise.
    pub fn with_body(
        method: Method,
        path: &'static str,
        content_type: &'static str,
        check: impl FnOnce(&Value) + Send + 'static,
    ) -> Exchange {
        Exchange {
            body: Some((content_type, Box::new(check))),
            method,
            ..Exchange::get(path)
        }
    }

    /// The query parameter `key=value` must be present.
    pub fn query(mut self, key: &'static str, value: &'static str) -> Exchange {
        self.query.push((key, value));
        self
    }

    /// Answered with this status code.
    pub fn status(mut self, status: u16) -> Exchange {
        self.status = status;
        self
    }

    /// Answered with this JSON.
    pub fn reply(mut self, reply: Value) -> Exchange {
        self.reply = reply;
        self
    }
}

/// Serves `scenario` in order and hands back the handle and the bodies it received
/// (`null` for a request without body).
pub fn serve(mut handle: ApiHandle, scenario: Vec<Exchange>) -> Server {
    tokio::spawn(async move {
        let mut bodies = Vec::new();
        for (index, expected) in scenario.into_iter().enumerate() {
            let (request, send) = handle
                .next_request()
                .await
                .unwrap_or_else(|| panic!("request {index} never came"));
            assert_eq!(request.method(), expected.method, "request {index}");
            assert_eq!(request.uri().path(), expected.path, "request {index}");
            let query: Vec<(String, String)> = request
                .uri()
                .query()
                .unwrap_or_default()
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            for (key, value) in &expected.query {
                assert!(
                    query.iter().any(|(k, v)| k == key && v == value),
                    "request {index}: {key}={value} missing from {query:?}"
                );
            }
            let content_type = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .expect("read the request body");
            let body = match expected.body {
                Some((expected_type, check)) => {
                    assert_eq!(
                        content_type.as_deref(),
                        Some(expected_type),
                        "request {index}"
                    );
                    let body: Value = serde_json::from_slice(&bytes).expect("a JSON body");
                    check(&body);
                    body
                }
                None => {
                    assert!(bytes.is_empty(), "request {index} has a body");
                    Value::Null
                }
            };
            bodies.push(body);
            let reply = serde_json::to_vec(&expected.reply).unwrap();
            send.send_response(
                Response::builder()
                    .status(expected.status)
                    .body(Body::from(reply))
                    .unwrap(),
            );
        }
        (handle, bodies)
    })
}

/// Waits (bounded) for the scenario to be served.
pub async fn served(server: Server) -> (ApiHandle, Vec<Value>) {
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the scenario was not served within 5s")
        .expect("the scenario's checks passed")
}

/// Waits for the scenario to be served, then checks that nothing else arrives.
pub async fn verify(server: Server) -> Vec<Value> {
    let (mut handle, bodies) = served(server).await;
    assert_no_request(&mut handle).await;
    bodies
}

/// No request arrives within a short, bounded wait.
pub async fn assert_no_request(handle: &mut ApiHandle) {
    if let Ok(Some((request, _))) =
        tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await
    {
        panic!("unexpected request: {} {}", request.method(), request.uri());
    }
}
