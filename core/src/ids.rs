//! Identifiers of AWS resources, checked once where they enter the program.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind} (expected {expected})")]
pub struct IdError {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Accepts the AWS prefix followed by lower-case hexadecimal digits.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                let ok = value
                    .strip_prefix($prefix)
                    .is_some_and(|rest| !rest.is_empty() && rest.len() <= 32
                        && rest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
                if ok {
                    Ok(Self(value.to_string()))
                } else {
                    Err(IdError {
                        kind: $kind,
                        value: value.to_string(),
                        expected: concat!($prefix, " and hexadecimal digits"),
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// `sg-…`
    SecurityGroupId, "sg-", "security group id"
);
prefixed_id!(
    /// `sgr-…`
    RuleId, "sgr-", "security group rule id"
);
prefixed_id!(
    /// `i-…`
    InstanceId, "i-", "instance id"
);

/// A GuardDuty finding id (32 hex digits in practice; any short word of letters
/// and digits is accepted, since the id is opaque).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String")]
pub struct FindingId(String);

impl TryFrom<String> for FindingId {
    type Error = IdError;

    fn try_from(value: String) -> Result<Self, IdError> {
        FindingId::parse(&value)
    }
}

impl FindingId {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let ok = !value.is_empty()
            && value.len() <= 300
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(value.to_string()))
        } else {
            Err(IdError {
                kind: "finding id",
                value: value.to_string(),
                expected: "letters and digits",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first eight characters, for tables meant for people.
    pub fn short(&self) -> &str {
        self.0.get(..8).unwrap_or(&self.0)
    }
}

impl fmt::Display for FindingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_their_aws_prefix_and_hex_digits() {
        assert!(SecurityGroupId::parse("sg-0123456789abcdef0").is_ok());
        assert!(RuleId::parse("sgr-0abc").is_ok());
        assert!(InstanceId::parse("i-99999999").is_ok());
        let err = SecurityGroupId::parse("GeneratedFindingSecurityId").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"GeneratedFindingSecurityId\" is not a valid security group id (expected sg- and hexadecimal digits)"
        );
        assert!(SecurityGroupId::parse("sg-").is_err());
        assert!(SecurityGroupId::parse("sg-XYZ").is_err());
    }

    #[test]
    fn finding_ids_are_opaque_words() {
        assert!(FindingId::parse("60baffd3f9042e38640f2300d5c5a631").is_ok());
        assert!(FindingId::parse("").is_err());
        assert!(FindingId::parse("a b").is_err());
        assert_eq!(
            FindingId::parse("60baffd3f9042e38").unwrap().short(),
            "60baffd3"
        );
    }
}
