//! Client-side pacing of AWS calls: a token bucket that books each call a send time,
//! so the operator never trips EC2's own throttling (per account and region, a
//! bucket for mutating security-group calls and one for filtered describes).
//!
//! Pure: the caller passes `now`, a monotonic [`Duration`] since an origin of its
//! choosing, and sleeps for the wait it is given. The bucket is a GCRA (generic cell
//! rate algorithm) in whole nanoseconds: it keeps the time at which the bucket would
//! be full again, so reservations are exact, first come first served, and a
//! reservation made while others wait is booked behind them rather than racing them.

use std::fmt;
use std::time::Duration;

/// How many calls a bucket lets through at once, and how fast it refills.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Calls an idle bucket lets through at once (at least 1).
    pub burst: u32,
    /// Tokens added per second (finite, above 0).
    pub per_second: f64,
}

/// EC2's bucket for mutating security-group calls (AuthorizeSecurityGroupIngress,
/// RevokeSecurityGroupIngress, CreateTags, DeleteTags): 50 at once, 5 a second.
pub const MUTATING: Rate = Rate {
    burst: 50,
    per_second: 5.0,
};

/// EC2's bucket for filtered describes (DescribeInstances, DescribeSecurityGroups,
/// DescribeSecurityGroupRules, DescribeNetworkInterfaces,
/// GetManagedPrefixListEntries): 100 at once, 20 a second.
pub const DESCRIBE: Rate = Rate {
    burst: 100,
    per_second: 20.0,
};

/// Why a [`Rate`] cannot pace anything.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateError {
    #[error("a rate's burst must be at least 1 call")]
    NoBurst,
    #[error("a rate's refill must be a finite number of calls per second above 0, not {0}")]
    NoRefill(f64),
}

impl Rate {
    /// The rate itself when it can pace calls: `burst` at least 1, `per_second`
    /// finite and above 0.
    pub fn validate(self) -> Result<Rate, RateError> {
        if self.burst == 0 {
            return Err(RateError::NoBurst);
        }
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return Err(RateError::NoRefill(self.per_second));
        }
        Ok(self)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at once, {} per second", self.burst, self.per_second)
    }
}

/// A token bucket that books tokens ahead: [`TokenBucket::reserve`] takes one and
/// says how long the caller must wait before sending. A new bucket is full.
///
/// Over any window of `w` seconds it grants at most `burst + per_second * w` calls,
/// and an idle bucket refills to `burst` and no further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    /// Nanoseconds between two tokens: 1 / per_second, rounded up (so the bucket
    /// never refills faster than asked), at least 1.
    interval: u128,
    /// Nanoseconds for an empty bucket to fill: `burst` intervals.
    capacity: u128,
    /// When the bucket is full again, every booked token repaid (nanoseconds since
    /// the origin); at or before `now`, the bucket is full.
    full_at: u128,
    /// The latest `now` seen: an earlier one is read as this one, so grants never
    /// go back in time.
    latest: u128,
}

impl TokenBucket {
    /// A full bucket of `rate`, or why the rate cannot pace anything.
    pub fn new(rate: Rate) -> Result<TokenBucket, RateError> {
        let rate = rate.validate()?;
        // `as` saturates: a tiny rate gives the longest interval there is.
        let interval = ((1e9 / rate.per_second).ceil() as u128).max(1);
        Ok(TokenBucket {
            interval,
            capacity: interval.saturating_mul(u128::from(rate.burst)),
            full_at: 0,
            latest: 0,
        })
    }

    /// Books one token for a call made at `now` and returns how long the caller
    /// must wait before sending it (zero when a token is there). Calls booked at
    /// the same instant get increasing waits, one interval apart, in booking order.
    pub fn reserve(&mut self, now: Duration) -> Duration {
        let asked = now.as_nanos();
        self.latest = self.latest.max(asked);
        let now = self.latest;
        // The bucket never holds more than `burst`: time it spent full is not saved.
        self.full_at = self.full_at.max(now).saturating_add(self.interval);
        // The call may go once what is still owed, this token included, fits in the
        // bucket: `full_at` at most `burst` intervals after the send.
        let send_at = now.max(self.full_at.saturating_sub(self.capacity));
        nanos(send_at - asked)
    }

    /// How many calls could go at `now` without waiting (nothing is booked).
    pub fn available(&self, now: Duration) -> u32 {
        let now = self.latest.max(now.as_nanos());
        let owed = self.full_at.saturating_sub(now);
        let free = self.capacity.saturating_sub(owed) / self.interval;
        u32::try_from(free).unwrap_or(u32::MAX)
    }
}

/// A duration of `n` nanoseconds, the longest one there is when `n` is larger.
fn nanos(n: u128) -> Duration {
    const PER_SECOND: u128 = 1_000_000_000;
    match u64::try_from(n / PER_SECOND) {
        // The remainder is below a billion, so it fits.
        Ok(seconds) => Duration::new(seconds, (n % PER_SECOND) as u32),
        Err(_) => Duration::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn bucket(rate: Rate) -> TokenBucket {
        TokenBucket::new(rate).expect("a valid rate")
    }

    #[test]
    fn a_full_mutating_bucket_lets_fifty_calls_go_and_the_fifty_first_waits_200_ms() {
        let mut b = bucket(MUTATING);
        for _ in 0..50 {
            assert_eq!(b.reserve(Duration::ZERO), Duration::ZERO);
        }
        assert_eq!(b.reserve(Duration::ZERO), 200 * MS);
    }

    #[test]
    fn calls_booked_at_once_wait_one_interval_longer_each_in_booking_order() {
        let mut b = bucket(DESCRIBE);
        let waits: Vec<Duration> = (0..104).map(|_| b.reserve(Duration::ZERO)).collect();
        assert!(waits[..100].iter().all(Duration::is_zero));
        assert_eq!(waits[100..], [50 * MS, 100 * MS, 150 * MS, 200 * MS]);
    }

    #[test]
    fn a_booked_wait_counts_down_as_time_passes() {
        let mut b = bucket(Rate {
            burst: 1,
            per_second: 5.0,
        });
        assert_eq!(b.reserve(Duration::ZERO), Duration::ZERO);
        // The next token is due at 200 ms: asked at 150 ms, 50 ms to go.
        assert_eq!(b.reserve(150 * MS), 50 * MS);
        // And the one after at 400 ms, booked behind it.
        assert_eq!(b.reserve(150 * MS), 250 * MS);
    }

    #[test]
    fn an_earlier_now_than_one_seen_is_read_as_the_latest() {
        let mut b = bucket(Rate {
            burst: 1,
            per_second: 1.0,
        });
        assert_eq!(b.reserve(Duration::from_secs(10)), Duration::ZERO);
        // Asked "at 5 s", after a call at 10 s: the next token comes at 11 s, 6 s on.
        assert_eq!(b.reserve(Duration::from_secs(5)), Duration::from_secs(6));
    }

    #[test]
    fn a_rate_that_cannot_pace_is_refused_with_the_reason() {
        assert_eq!(
            TokenBucket::new(Rate {
                burst: 0,
                per_second: 5.0
            }),
            Err(RateError::NoBurst)
        );
        for per_second in [0.0, -1.0, f64::INFINITY] {
            assert_eq!(
                TokenBucket::new(Rate {
                    burst: 50,
                    per_second
                }),
                Err(RateError::NoRefill(per_second))
            );
        }
        let nan = TokenBucket::new(Rate {
            burst: 50,
            per_second: f64::NAN,
        });
        assert!(matches!(nan, Err(RateError::NoRefill(r)) if r.is_nan()));
        assert_eq!(
            RateError::NoRefill(0.0).to_string(),
            "a rate's refill must be a finite number of calls per second above 0, not 0"
        );
    }

    #[test]
    fn extreme_rates_saturate_instead_of_overflowing() {
        let mut slow = bucket(Rate {
            burst: u32::MAX,
            per_second: f64::MIN_POSITIVE,
        });
        assert_eq!(slow.reserve(Duration::MAX), Duration::ZERO);
        let mut fast = bucket(Rate {
            burst: 1,
            per_second: f64::MAX,
        });
        assert_eq!(fast.reserve(Duration::ZERO), Duration::ZERO);
        // At most one call a nanosecond.
        assert_eq!(fast.reserve(Duration::ZERO), Duration::from_nanos(1));
    }

    #[test]
    fn the_default_rates_are_ec2s() {
        assert_eq!(MUTATING.to_string(), "50 at once, 5 per second");
        assert_eq!(DESCRIBE.to_string(), "100 at once, 20 per second");
        assert_eq!(MUTATING.validate(), Ok(MUTATING));
        assert_eq!(DESCRIBE.validate(), Ok(DESCRIBE));
    }

    fn arb_rate() -> impl Strategy<Value = Rate> {
        (
            1u32..60,
            prop_oneof![0.5f64..50.0, Just(5.0), Just(20.0), Just(3.0)],
        )
            .prop_map(|(burst, per_second)| Rate { burst, per_second })
    }

    /// The most calls granted in any window `[t, t + w]`, against the bound
    /// `burst + per_second * w`: the largest excess over the bound (at most 0 when
    /// the bound holds). The fullest windows start and end at a grant.
    fn worst_excess(rate: Rate, grants: &[Duration]) -> f64 {
        let mut sorted = grants.to_vec();
        sorted.sort();
        let mut worst = f64::NEG_INFINITY;
        for (i, start) in sorted.iter().enumerate() {
            for (j, end) in sorted.iter().enumerate().skip(i) {
                let w = (*end - *start).as_secs_f64();
                let calls = (j - i + 1) as f64;
                worst = worst.max(calls - (f64::from(rate.burst) + rate.per_second * w));
            }
        }
        worst
    }

    fn grants(rate: Rate, times: &[Duration]) -> Vec<Duration> {
        let mut b = bucket(rate);
        times.iter().map(|&t| t + b.reserve(t)).collect()
    }

    proptest! {
        /// Over any sequence of reservation times, no window `[t, t + w]` holds more
        /// than `burst + per_second * w` granted calls.
        #[test]
        fn no_window_is_granted_more_than_the_burst_and_the_refill(
            rate in arb_rate(),
            gaps in prop::collection::vec(
                prop_oneof![Just(0u64), 0u64..400, 0u64..5_000], 1..160),
        ) {
            let times: Vec<Duration> = gaps
                .iter()
                .scan(Duration::ZERO, |t, gap| {
                    *t += Duration::from_millis(*gap);
                    Some(*t)
                })
                .collect();
            let grants = grants(rate, &times);
            prop_assert!(worst_excess(rate, &grants) <= 1e-9);
            // First come, first served: grants keep the booking order, and none is
            // before its reservation.
            prop_assert!(grants.windows(2).all(|g| g[0] <= g[1]));
            prop_assert!(grants.iter().zip(&times).all(|(g, t)| g >= t));
        }

        /// The bound holds even when callers report times out of order.
        #[test]
        fn times_out_of_order_never_let_more_calls_through(
            rate in arb_rate(),
            times in prop::collection::vec(0u64..30_000, 1..120),
        ) {
            let times: Vec<Duration> = times.into_iter().map(Duration::from_millis).collect();
            prop_assert!(worst_excess(rate, &grants(rate, &times)) <= 1e-9);
        }

        /// However it was used, a bucket left idle long enough holds exactly `burst`
        /// tokens: that many calls go at once, the next waits one interval.
        #[test]
        fn an_idle_bucket_refills_to_the_burst_and_no_further(
            rate in arb_rate(),
            gaps in prop::collection::vec(0u64..2_000, 0..120),
            idle_beyond_full in 0u64..100_000,
        ) {
            let mut b = bucket(rate);
            let mut now = Duration::ZERO;
            for gap in gaps {
                now += Duration::from_millis(gap);
                b.reserve(now);
            }
            // Long enough to repay every booked token, and then some.
            let refill = Duration::from_secs_f64(f64::from(rate.burst) / rate.per_second);
            let pending = Duration::from_secs_f64((160.0 + 1.0) / rate.per_second);
            now += pending + refill + Duration::from_millis(idle_beyond_full);
            prop_assert_eq!(b.available(now), rate.burst);
            for _ in 0..rate.burst {
                prop_assert_eq!(b.reserve(now), Duration::ZERO);
            }
            prop_assert_eq!(b.available(now), 0);
            let interval = Duration::from_nanos((1e9 / rate.per_second).ceil() as u64);
            prop_assert_eq!(b.reserve(now), interval);
        }
    }
}
