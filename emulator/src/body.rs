//! Reading request input (JSON bodies and query strings) field by field, so that every
//! malformed or out-of-range value becomes a `BadRequestException` naming the field.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// GuardDuty's wording for invalid input, followed by what exactly was wrong.
pub(crate) fn invalid_input(detail: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!(
        "The request is rejected because an invalid or out-of-range value is specified as an input parameter: {detail}"
    ))
}

/// A request's JSON object body. An empty body reads as `{}`; `null` members as absent.
#[derive(Debug, Default)]
pub(crate) struct RequestBody {
    object: Map<String, Value>,
}

impl RequestBody {
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(object)) => Ok(Self { object }),
            Ok(_) => Err(invalid_input("the request body must be a JSON object")),
            Err(error) => Err(invalid_input(format!(
                "the request body is not valid JSON ({error})"
            ))),
        }
    }

    pub(crate) fn get(&self, field: &str) -> Option<&Value> {
        self.object.get(field).filter(|value| !value.is_null())
    }

    pub(crate) fn integer(&self, field: &str) -> Result<Option<i64>, ApiError> {
        self.get(field)
            .map(|value| {
                value
                    .as_i64()
                    .ok_or_else(|| invalid_input(format!("{field} must be an integer")))
            })
            .transpose()
    }

    pub(crate) fn boolean(&self, field: &str) -> Result<Option<bool>, ApiError> {
        self.get(field)
            .map(|value| {
                value
                    .as_bool()
                    .ok_or_else(|| invalid_input(format!("{field} must be a boolean")))
            })
            .transpose()
    }

    pub(crate) fn string(&self, field: &str) -> Result<Option<&str>, ApiError> {
        self.get(field)
            .map(|value| {
                value
                    .as_str()
                    .ok_or_else(|| invalid_input(format!("{field} must be a string")))
            })
            .transpose()
    }

    pub(crate) fn string_list(&self, field: &str) -> Result<Option<Vec<String>>, ApiError> {
        self.get(field)
            .map(|value| string_list(value, field))
            .transpose()
    }

    /// A required list of strings holding at most `max` entries.
    pub(crate) fn bounded_string_list(
        &self,
        field: &str,
        max: usize,
    ) -> Result<Vec<String>, ApiError> {
        let list = self
            .string_list(field)?
            .ok_or_else(|| invalid_input(format!("{field} is required")))?;
        if list.len() > max {
            return Err(invalid_input(format!(
                "{field} holds {} entries, at most {max} are allowed",
                list.len()
            )));
        }
        Ok(list)
    }

    pub(crate) fn object(&self, field: &str) -> Result<Option<&Map<String, Value>>, ApiError> {
        self.get(field)
            .map(|value| {
                value
                    .as_object()
                    .ok_or_else(|| invalid_input(format!("{field} must be a JSON object")))
            })
            .transpose()
    }
}

/// A JSON array of strings, or a 400 naming `field`.
pub(crate) fn string_list(value: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    let not_a_list = || invalid_input(format!("{field} must be a list of strings"));
    value
        .as_array()
        .ok_or_else(not_a_list)?
        .iter()
        .map(|item| item.as_str().map(str::to_owned).ok_or_else(not_a_list))
        .collect()
}

/// `maxResults` (or another page size) checked against `1..=max`, `default` when absent.
pub(crate) fn page_size(
    requested: Option<i64>,
    field: &str,
    max: usize,
    default: usize,
) -> Result<usize, ApiError> {
    let Some(requested) = requested else {
        return Ok(default);
    };
    usize::try_from(requested)
        .ok()
        .filter(|size| (1..=max).contains(size))
        .ok_or_else(|| {
            invalid_input(format!(
                "{field} must be between 1 and {max}, got {requested}"
            ))
        })
}

/// A query-string parameter parsed as an integer.
pub(crate) fn query_integer(raw: Option<&String>, field: &str) -> Result<Option<i64>, ApiError> {
    raw.map(|text| {
        text.parse::<i64>()
            .map_err(|_| invalid_input(format!("{field} must be an integer, got {text:?}")))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_body_reads_as_an_empty_object() {
        let body = RequestBody::parse(b"  ").expect("empty body");
        assert_eq!(body.integer("maxResults"), Ok(None));
    }

    #[test]
    fn a_value_of_the_wrong_type_is_rejected_naming_the_field() {
        let body = RequestBody::parse(br#"{"maxResults":"ten"}"#).expect("json");
        let error = body.integer("maxResults").expect_err("not an integer");
        assert!(error.message().contains("maxResults"), "{error}");
    }

    #[test]
    fn page_sizes_outside_the_range_are_rejected() {
        assert_eq!(page_size(None, "maxResults", 50, 50), Ok(50));
        assert_eq!(page_size(Some(50), "maxResults", 50, 50), Ok(50));
        assert!(page_size(Some(0), "maxResults", 50, 50).is_err());
        assert!(page_size(Some(51), "maxResults", 50, 50).is_err());
        assert!(page_size(Some(-1), "maxResults", 50, 50).is_err());
    }
}
