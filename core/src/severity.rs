//! GuardDuty severities: the number a finding carries and the band people speak of.

use std::cmp::Ordering;
use std::fmt;

/// A finding's severity, a finite number (GuardDuty uses 1.0 to 10.0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Severity(f64);

/// The bands of the GuardDuty documentation: Low 1.0–3.9, Medium 4.0–6.9,
/// High 7.0–8.9, Critical 9.0–10.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeverityBand {
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SeverityError {
    #[error("{0} is not a severity: use a number from 1.0 to 10.0")]
    OutOfRange(f64),
    #[error(
        "{0:?} is not a severity: use LOW, MEDIUM, HIGH, CRITICAL or a number from 1.0 to 10.0"
    )]
    Unknown(String),
}

impl Severity {
    pub const MIN: Severity = Severity(1.0);

    /// A threshold as a policy writes it: 1.0 to 10.0.
    pub fn threshold(value: f64) -> Result<Severity, SeverityError> {
        if value.is_finite() && (1.0..=10.0).contains(&value) {
            Ok(Severity(value))
        } else {
            Err(SeverityError::OutOfRange(value))
        }
    }

    /// A threshold given as a band name (`HIGH`) or a number in text (`7.5`).
    pub fn parse_threshold(text: &str) -> Result<Severity, SeverityError> {
        match text {
            "LOW" => Ok(SeverityBand::Low.floor()),
            "MEDIUM" => Ok(SeverityBand::Medium.floor()),
            "HIGH" => Ok(SeverityBand::High.floor()),
            "CRITICAL" => Ok(SeverityBand::Critical.floor()),
            other => match other.trim().parse::<f64>() {
                Ok(value) => Severity::threshold(value),
                Err(_) => Err(SeverityError::Unknown(other.to_string())),
            },
        }
    }

    /// What a finding reports; any finite number is kept as is.
    pub fn of_finding(value: f64) -> Option<Severity> {
        value.is_finite().then_some(Severity(value))
    }

    pub fn value(self) -> f64 {
        self.0
    }

    pub fn band(self) -> SeverityBand {
        match self.0 {
            v if v >= 9.0 => SeverityBand::Critical,
            v if v >= 7.0 => SeverityBand::High,
            v if v >= 4.0 => SeverityBand::Medium,
            _ => SeverityBand::Low,
        }
    }
}

impl Eq for Severity {}

impl Ord for Severity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl PartialOrd for Severity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}", self.0)
    }
}

impl serde::Serialize for Severity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0)
    }
}

impl SeverityBand {
    /// The lowest severity in the band.
    pub fn floor(self) -> Severity {
        Severity(match self {
            SeverityBand::Low => 1.0,
            SeverityBand::Medium => 4.0,
            SeverityBand::High => 7.0,
            SeverityBand::Critical => 9.0,
        })
    }
}

impl fmt::Display for SeverityBand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SeverityBand::Low => "LOW",
            SeverityBand::Medium => "MEDIUM",
            SeverityBand::High => "HIGH",
            SeverityBand::Critical => "CRITICAL",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_follow_the_guardduty_documentation() {
        let band = |v| Severity::of_finding(v).unwrap().band();
        assert_eq!(band(1.0), SeverityBand::Low);
        assert_eq!(band(3.9), SeverityBand::Low);
        assert_eq!(band(4.0), SeverityBand::Medium);
        assert_eq!(band(6.9), SeverityBand::Medium);
        assert_eq!(band(7.0), SeverityBand::High);
        assert_eq!(band(8.9), SeverityBand::High);
        assert_eq!(band(9.0), SeverityBand::Critical);
        assert_eq!(band(10.0), SeverityBand::Critical);
    }

    #[test]
    fn thresholds_take_a_band_name_or_a_number_in_range() {
        assert_eq!(Severity::parse_threshold("HIGH").unwrap().value(), 7.0);
        assert_eq!(Severity::parse_threshold("5.5").unwrap().value(), 5.5);
        assert_eq!(
            Severity::parse_threshold("0.5"),
            Err(SeverityError::OutOfRange(0.5))
        );
        assert_eq!(
            Severity::threshold(10.5),
            Err(SeverityError::OutOfRange(10.5))
        );
        assert!(matches!(
            Severity::parse_threshold("high"),
            Err(SeverityError::Unknown(_))
        ));
        assert!(Severity::threshold(f64::NAN).is_err());
    }
}
