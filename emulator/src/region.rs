//! The Region a request is addressed to. GuardDuty is a regional service: each Region
//! has its own endpoint, and the SDK signs every request for that Region. The emulator
//! serves every Region on one endpoint, so it reads the Region from the SigV4 signature,
//! the `Authorization` header's credential scope
//! (`AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/guardduty/aws4_request, ...`). A
//! request without a signature the emulator can read is answered for
//! [`DEFAULT_REGION`]. The signature itself is not checked.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

/// The Region of a request whose signature names none, and of a finding without `region`.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The Region a request is signed for ([`DEFAULT_REGION`] when it cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignedRegion(pub(crate) String);

impl SignedRegion {
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let region = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(region_of_authorization)
            .unwrap_or(DEFAULT_REGION);
        Self(region.to_owned())
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SignedRegion {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.headers))
    }
}

/// The Region in a SigV4 `Authorization` header, if it has a well-formed credential scope.
fn region_of_authorization(authorization: &str) -> Option<&str> {
    let (_, rest) = authorization.split_once("Credential=")?;
    let scope = rest.split([',', ' ']).next()?;
    region_of_scope(scope)
}

/// `AKID/DATE/REGION/SERVICE/aws4_request` → `REGION`.
fn region_of_scope(scope: &str) -> Option<&str> {
    let mut from_the_end = scope.rsplit('/');
    let (Some("aws4_request"), Some(_service), Some(region), Some(_date), Some(_key)) = (
        from_the_end.next(),
        from_the_end.next(),
        from_the_end.next(),
        from_the_end.next(),
        from_the_end.next(),
    ) else {
        return None;
    };
    let well_formed = !region.is_empty()
        && region
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
    well_formed.then_some(region)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn region_for(authorization: Option<&str>) -> String {
        let mut headers = HeaderMap::new();
        if let Some(authorization) = authorization {
            headers.insert(
                AUTHORIZATION,
                HeaderValue::from_str(authorization).expect("a header value"),
            );
        }
        SignedRegion::of(&headers).0
    }

    #[test]
    fn the_region_is_read_from_the_credential_scope() {
        let header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240610/eu-west-1/guardduty/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc123";
        assert_eq!(region_for(Some(header)), "eu-west-1");
        let without_spaces = "AWS4-HMAC-SHA256 Credential=AKID/20240610/ap-southeast-2/guardduty/aws4_request,SignedHeaders=host,Signature=0";
        assert_eq!(region_for(Some(without_spaces)), "ap-southeast-2");
    }

    #[test]
    fn a_request_without_a_readable_scope_is_in_the_default_region() {
        for header in [
            None,
            Some("Bearer token"),
            Some("AWS4-HMAC-SHA256 Credential=AKID/20240610/guardduty/aws4_request"),
            Some("AWS4-HMAC-SHA256 Credential=AKID/20240610//guardduty/aws4_request"),
            Some("AWS4-HMAC-SHA256 Credential=AKID/20240610/eu west/guardduty/aws4_request"),
            Some("AWS4-HMAC-SHA256 Credential=AKID/20240610/eu-west-1/guardduty/aws4"),
        ] {
            assert_eq!(region_for(header), DEFAULT_REGION, "{header:?}");
        }
    }
}
