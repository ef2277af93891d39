//! Pacing of the operator's own EC2 calls, so a pass over a thousand groups never
//! trips EC2's throttling on its own: per account and region ([`Pacers`]), one
//! [`Pacer`] with a bucket for mutating security-group calls and one for filtered
//! describes, sized like EC2's ([`PaceConfig`], from the environment). The bucket
//! itself is pure and lives in the core ([`crate::domain::pace`]); this module reads
//! the clock and sleeps.
//!
//! ```text
//!  Pacers ─ (account, region) ─> Arc<Pacer> ─ mutating() / describe() ─> token, then the call
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::pace::{DESCRIBE, MUTATING, Rate, RateError, TokenBucket};

/// Calls an idle account-region may make at once through the mutating bucket
/// (AuthorizeSecurityGroupIngress, RevokeSecurityGroupIngress, CreateTags,
/// DeleteTags); default 50.
pub const MUTATING_BURST_ENV: &str = "GDO_EC2_MUTATING_BURST";
/// Mutating calls per second once the burst is spent; default 5.
pub const MUTATING_PER_SECOND_ENV: &str = "GDO_EC2_MUTATING_PER_SECOND";
/// Describes an idle account-region may make at once (DescribeInstances,
/// DescribeSecurityGroups, DescribeSecurityGroupRules, DescribeNetworkInterfaces,
/// GetManagedPrefixListEntries); default 100.
pub const DESCRIBE_BURST_ENV: &str = "GDO_EC2_DESCRIBE_BURST";
/// Describes per second once the burst is spent; default 20.
pub const DESCRIBE_PER_SECOND_ENV: &str = "GDO_EC2_DESCRIBE_PER_SECOND";

const BURST_RANGE: (u32, u32) = (1, 10_000);
const BURST_ALLOWED: &str = "a whole number of calls from 1 to 10000";
const PER_SECOND_RANGE: (f64, f64) = (0.01, 10_000.0);
const PER_SECOND_ALLOWED: &str = "a number of calls per second from 0.01 to 10000";

/// The sizes of the two buckets of every account-region.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaceConfig {
    pub mutating: Rate,
    pub describe: Rate,
}

impl Default for PaceConfig {
    /// EC2's own bucket sizes.
    fn default() -> Self {
        PaceConfig {
            mutating: MUTATING,
            describe: DESCRIBE,
        }
    }
}

/// A pacing variable that is set to something outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to read {variable}: {value:?} is not {allowed}")]
pub struct PaceConfigError {
    pub variable: &'static str,
    pub value: String,
    pub allowed: &'static str,
}

impl PaceConfigError {
    /// For metric labels and event reasons.
    pub fn category(&self) -> &'static str {
        "configuration"
    }
}

impl PaceConfig {
    /// The bucket sizes from [`MUTATING_BURST_ENV`], [`MUTATING_PER_SECOND_ENV`],
    /// [`DESCRIBE_BURST_ENV`] and [`DESCRIBE_PER_SECOND_ENV`]; EC2's defaults for
    /// those unset (or empty).
    pub fn from_env() -> Result<PaceConfig, PaceConfigError> {
        PaceConfig::from_lookup(|name| {
            std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
        })
    }

    /// [`PaceConfig::from_env`] over any source of variables: `lookup` gives a
    /// variable's value, `None` when it is unset.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<PaceConfig, PaceConfigError> {
        let rate = |burst_env, per_second_env, default: Rate| {
            Ok::<_, PaceConfigError>(Rate {
                burst: parse_burst(burst_env, lookup(burst_env).as_deref())?
                    .unwrap_or(default.burst),
                per_second: parse_per_second(per_second_env, lookup(per_second_env).as_deref())?
                    .unwrap_or(default.per_second),
            })
        };
        Ok(PaceConfig {
            mutating: rate(MUTATING_BURST_ENV, MUTATING_PER_SECOND_ENV, MUTATING)?,
            describe: rate(DESCRIBE_BURST_ENV, DESCRIBE_PER_SECOND_ENV, DESCRIBE)?,
        })
    }
}

/// The value of a variable, `None` when unset or blank.
fn set(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

fn parse_burst(
    variable: &'static str,
    value: Option<&str>,
) -> Result<Option<u32>, PaceConfigError> {
    let Some(value) = set(value) else {
        return Ok(None);
    };
    match value.parse::<u32>() {
        Ok(burst) if (BURST_RANGE.0..=BURST_RANGE.1).contains(&burst) => Ok(Some(burst)),
        _ => Err(PaceConfigError {
            variable,
            value: value.to_string(),
            allowed: BURST_ALLOWED,
        }),
    }
}

fn parse_per_second(
    variable: &'static str,
    value: Option<&str>,
) -> Result<Option<f64>, PaceConfigError> {
    let Some(value) = set(value) else {
        return Ok(None);
    };
    // NaN and infinity fail the range check.
    match value.parse::<f64>() {
        Ok(rate) if (PER_SECOND_RANGE.0..=PER_SECOND_RANGE.1).contains(&rate) => Ok(Some(rate)),
        _ => Err(PaceConfigError {
            variable,
            value: value.to_string(),
            allowed: PER_SECOND_ALLOWED,
        }),
    }
}

/// The two buckets of one account-region, and how long its calls were told to wait.
#[derive(Debug)]
pub struct Pacer {
    /// The instant the buckets' time counts from.
    origin: Instant,
    state: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    mutating: TokenBucket,
    describe: TokenBucket,
    waited: Duration,
}

/// The tokens of a pacer's two buckets: how many calls of each kind could go now
/// without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tokens {
    pub mutating: u32,
    pub describe: u32,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Mutating,
    Describe,
}

impl Pacer {
    /// Full buckets of the configured sizes, or why a size cannot pace anything.
    pub fn new(config: PaceConfig) -> Result<Pacer, RateError> {
        Ok(Pacer::of(
            TokenBucket::new(config.mutating)?,
            TokenBucket::new(config.describe)?,
        ))
    }

    fn of(mutating: TokenBucket, describe: TokenBucket) -> Pacer {
        Pacer {
            origin: Instant::now(),
            state: Mutex::new(Buckets {
                mutating,
                describe,
                waited: Duration::ZERO,
            }),
        }
    }

    /// Waits for a token of the mutating bucket: call right before sending an
    /// AuthorizeSecurityGroupIngress, RevokeSecurityGroupIngress, CreateTags or
    /// DeleteTags.
    pub async fn mutating(&self) {
        self.take(Kind::Mutating).await;
    }

    /// Waits for a token of the describe bucket: call right before sending a
    /// DescribeInstances, DescribeSecurityGroups, DescribeSecurityGroupRules,
    /// DescribeNetworkInterfaces or GetManagedPrefixListEntries (each page).
    pub async fn describe(&self) {
        self.take(Kind::Describe).await;
    }

    /// How long, in all, calls were told to wait for a token (both buckets).
    pub fn waited(&self) -> Duration {
        self.lock().waited
    }

    /// The tokens the buckets hold now (for metrics and tests).
    pub fn available(&self) -> Tokens {
        let buckets = self.lock();
        let since = Instant::now().duration_since(self.origin);
        Tokens {
            mutating: buckets.mutating.available(since),
            describe: buckets.describe.available(since),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Buckets> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Books a token under the lock, then sleeps without it until the token is due.
    /// A caller dropped while it sleeps leaves its token spent: the bucket only
    /// ever runs slower for it, never faster.
    async fn take(&self, kind: Kind) {
        let (now, wait) = {
            let mut buckets = self.lock();
            let now = Instant::now();
            let since = now.duration_since(self.origin);
            let wait = match kind {
                Kind::Mutating => buckets.mutating.reserve(since),
                Kind::Describe => buckets.describe.reserve(since),
            };
            buckets.waited = buckets.waited.saturating_add(wait);
            (now, wait)
        };
        if wait.is_zero() {
            return;
        }
        match now.checked_add(wait) {
            Some(due) => tokio::time::sleep_until(due).await,
            // Beyond what an instant can hold: tokio caps it.
            None => tokio::time::sleep(wait).await,
        }
    }
}

/// An account id and a region.
pub type AccountRegion = (String, String);

/// The pacers of every account-region, so all EC2 clients of one account and region
/// share their buckets. Cheap to clone: the clones share the pacers.
#[derive(Debug, Clone)]
pub struct Pacers {
    /// Full buckets of the configured sizes, copied for each new account-region.
    mutating: TokenBucket,
    describe: TokenBucket,
    pacers: Arc<Mutex<BTreeMap<AccountRegion, Arc<Pacer>>>>,
}

impl Pacers {
    /// No pacers yet; each account-region gets full buckets of `config`'s sizes on
    /// first use. Fails when a size cannot pace anything.
    pub fn new(config: PaceConfig) -> Result<Pacers, RateError> {
        Ok(Pacers {
            mutating: TokenBucket::new(config.mutating)?,
            describe: TokenBucket::new(config.describe)?,
            pacers: Arc::default(),
        })
    }

    /// The pacer of `account_id` in `region`, made on first use; the same one for
    /// every caller with the same pair.
    pub fn for_account_region(&self, account_id: &str, region: &str) -> Arc<Pacer> {
        let mut pacers = self.pacers.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            pacers
                .entry((account_id.to_string(), region.to_string()))
                .or_insert_with(|| {
                    Arc::new(Pacer::of(self.mutating.clone(), self.describe.clone()))
                }),
        )
    }

    /// How long calls waited for a token, by (account id, region).
    pub fn waited(&self) -> BTreeMap<AccountRegion, Duration> {
        self.pacers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(key, pacer)| (key.clone(), pacer.waited()))
            .collect()
    }
}

/// Paces the pages of one paginated describe: a describe token right before each
/// page is asked for (an SDK paginator sends a page's request only then), and no
/// token once a page has no next token (the paginator ends there, nothing is sent).
/// Without a pacer, pages are passed through.
#[derive(Debug)]
pub struct PacedPages<'a> {
    pacer: Option<&'a Pacer>,
    ended: bool,
}

impl<'a> PacedPages<'a> {
    pub fn new(pacer: Option<&'a Pacer>) -> Self {
        PacedPages {
            pacer,
            ended: false,
        }
    }

    /// The next page, `page` being the paginator's `next()`; `next_token` reads a
    /// page's token (`…Output::next_token`). `None` when the pages are over: after
    /// a page without a next token or an error, as the paginator itself ends.
    pub async fn next<T, E>(
        &mut self,
        page: impl Future<Output = Option<Result<T, E>>>,
        next_token: impl Fn(&T) -> Option<&str>,
    ) -> Option<Result<T, E>> {
        if self.ended {
            return None;
        }
        if let Some(pacer) = self.pacer {
            pacer.describe().await;
        }
        let page = page.await;
        self.ended = match &page {
            Some(Ok(page)) => next_token(page).is_none_or(str::is_empty),
            Some(Err(_)) | None => true,
        };
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn pacer() -> Arc<Pacer> {
        Arc::new(Pacer::new(PaceConfig::default()).expect("EC2's rates"))
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    /// The largest number of `times` in any window of `w` seconds, less
    /// `burst + per_second * w`: at most 0 when the bound holds.
    fn worst_excess(rate: Rate, times: &[Duration]) -> f64 {
        let mut sorted = times.to_vec();
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

    #[tokio::test(start_paused = true)]
    async fn fifty_mutating_calls_go_at_once_and_the_fifty_first_waits_200_ms() {
        let pacer = pacer();
        let start = Instant::now();
        for _ in 0..50 {
            pacer.mutating().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert_eq!(pacer.waited(), Duration::ZERO);
        assert_eq!(
            pacer.available(),
            Tokens {
                mutating: 0,
                describe: 100
            }
        );
        pacer.mutating().await;
        assert_eq!(start.elapsed(), 200 * MS);
        assert_eq!(pacer.waited(), 200 * MS);
        // An idle second later: five tokens back.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(pacer.available().mutating, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_thousand_mutating_calls_take_190_seconds_of_virtual_time() {
        let pacer = pacer();
        let start = Instant::now();
        for _ in 0..1000 {
            pacer.mutating().await;
        }
        // (1000 - 50) / 5 s: the burst, then one every 200 ms.
        assert_eq!(start.elapsed(), Duration::from_secs(190));
    }

    #[tokio::test(start_paused = true)]
    async fn describes_and_mutating_calls_do_not_share_a_bucket() {
        let pacer = pacer();
        let start = Instant::now();
        for _ in 0..50 {
            pacer.mutating().await;
        }
        for _ in 0..100 {
            pacer.describe().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        pacer.describe().await;
        assert_eq!(start.elapsed(), 50 * MS);
        // 50 ms refilled a quarter of a mutating token: the next is due at 200 ms.
        pacer.mutating().await;
        assert_eq!(start.elapsed(), 200 * MS);
        assert_eq!(pacer.waited(), 50 * MS + 150 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn two_account_regions_do_not_share_buckets_and_one_shares_its_own() {
        let pacers = Pacers::new(PaceConfig::default()).expect("EC2's rates");
        let start = Instant::now();
        let home = pacers.for_account_region("111122223333", "eu-west-1");
        for _ in 0..50 {
            home.mutating().await;
        }
        for (account, region) in [("111122223333", "us-east-1"), ("444455556666", "eu-west-1")] {
            let other = pacers.for_account_region(account, region);
            for _ in 0..50 {
                other.mutating().await;
            }
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        // Another client of the same account-region, through a clone of the registry.
        let again = pacers
            .clone()
            .for_account_region("111122223333", "eu-west-1");
        assert!(Arc::ptr_eq(&home, &again));
        again.mutating().await;
        assert_eq!(start.elapsed(), 200 * MS);
        let waited = pacers.waited();
        assert_eq!(waited.len(), 3);
        assert_eq!(
            waited[&("111122223333".to_string(), "eu-west-1".to_string())],
            200 * MS
        );
        assert_eq!(
            waited[&("444455556666".to_string(), "eu-west-1".to_string())],
            Duration::ZERO
        );
    }

    #[tokio::test(start_paused = true)]
    async fn many_tasks_at_once_keep_the_bound_and_are_served_in_turn() {
        let pacer = pacer();
        let start = Instant::now();
        let tasks: Vec<_> = (0..300)
            .map(|_| {
                let pacer = Arc::clone(&pacer);
                tokio::spawn(async move {
                    pacer.mutating().await;
                    start.elapsed()
                })
            })
            .collect();
        let mut sent = Vec::new();
        for task in tasks {
            sent.push(task.await.expect("the task ran"));
        }
        assert_eq!(sent.iter().filter(|t| t.is_zero()).count(), 50);
        assert!(worst_excess(MUTATING, &sent) <= 1e-9);
        // Every task booked at once: one token each, 200 ms apart, none left over.
        let mut sorted = sent.clone();
        sorted.sort();
        let expected: Vec<Duration> = (0..300u32)
            .map(|n| 200 * MS * n.saturating_sub(49))
            .collect();
        assert_eq!(sorted, expected);
        assert_eq!(*sorted.last().unwrap(), Duration::from_secs(50));
    }

    #[tokio::test(start_paused = true)]
    async fn each_page_takes_a_describe_token_and_the_last_page_takes_no_more() {
        let pacer = Pacer::new(PaceConfig {
            mutating: MUTATING,
            describe: Rate {
                burst: 1,
                per_second: 1.0,
            },
        })
        .expect("a valid rate");
        let mut pages = vec![Some("b"), Some("c"), None].into_iter();
        let mut asked = 0;
        let mut paced = PacedPages::new(Some(&pacer));
        let start = Instant::now();
        let mut sent = Vec::new();
        while let Some(page) = paced
            .next(
                async {
                    asked += 1;
                    pages.next().map(Ok::<_, ()>)
                },
                |token: &Option<&str>| *token,
            )
            .await
        {
            sent.push((page.expect("a page"), start.elapsed()));
        }
        assert_eq!(
            sent,
            [
                (Some("b"), Duration::ZERO),
                (Some("c"), Duration::from_secs(1)),
                (None, Duration::from_secs(2)),
            ]
        );
        // No fourth request, and no token for one.
        assert_eq!(asked, 3);
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(pacer.waited(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_page_ends_the_pages_and_no_pacer_passes_them_through() {
        let mut paced = PacedPages::new(None);
        let failed = paced
            .next(async { Some(Err::<&str, _>("throttled")) }, |_| {
                Some("more")
            })
            .await;
        assert_eq!(failed, Some(Err("throttled")));
        let after = paced
            .next(async { Some(Ok::<_, &str>("page")) }, |_| Some("more"))
            .await;
        assert_eq!(after, None);
    }

    #[test]
    fn nothing_set_is_ec2s_own_bucket_sizes() {
        assert_eq!(PaceConfig::from_lookup(env(&[])), Ok(PaceConfig::default()));
        assert_eq!(PaceConfig::default().mutating, MUTATING);
        assert_eq!(PaceConfig::default().describe, DESCRIBE);
        // Blank is unset: a chart may render an empty value.
        let blank = env(&[(MUTATING_BURST_ENV, " "), (DESCRIBE_PER_SECOND_ENV, "")]);
        assert_eq!(PaceConfig::from_lookup(blank), Ok(PaceConfig::default()));
    }

    #[test]
    fn each_variable_sets_its_own_bucket_size() {
        let config = PaceConfig::from_lookup(env(&[
            (MUTATING_BURST_ENV, "20"),
            (MUTATING_PER_SECOND_ENV, "2.5"),
            (DESCRIBE_BURST_ENV, " 40 "),
            (DESCRIBE_PER_SECOND_ENV, "8"),
        ]));
        assert_eq!(
            config,
            Ok(PaceConfig {
                mutating: Rate {
                    burst: 20,
                    per_second: 2.5
                },
                describe: Rate {
                    burst: 40,
                    per_second: 8.0
                },
            })
        );
        let only_one = PaceConfig::from_lookup(env(&[(DESCRIBE_PER_SECOND_ENV, "10")]));
        assert_eq!(
            only_one,
            Ok(PaceConfig {
                mutating: MUTATING,
                describe: Rate {
                    burst: 100,
                    per_second: 10.0
                },
            })
        );
        assert!(Pacers::new(only_one.unwrap()).is_ok());
    }

    #[test]
    fn a_bad_value_names_the_variable_and_the_allowed_range() {
        for bad in ["0", "-1", "10001", "5.5", "fifty"] {
            assert_eq!(
                PaceConfig::from_lookup(env(&[(MUTATING_BURST_ENV, bad)])),
                Err(PaceConfigError {
                    variable: MUTATING_BURST_ENV,
                    value: bad.to_string(),
                    allowed: BURST_ALLOWED,
                }),
                "{bad}"
            );
        }
        for bad in ["0", "0.001", "-5", "10000.5", "NaN", "inf", "5/s"] {
            assert_eq!(
                PaceConfig::from_lookup(env(&[(DESCRIBE_PER_SECOND_ENV, bad)])),
                Err(PaceConfigError {
                    variable: DESCRIBE_PER_SECOND_ENV,
                    value: bad.to_string(),
                    allowed: PER_SECOND_ALLOWED,
                }),
                "{bad}"
            );
        }
        let error = PaceConfig::from_lookup(env(&[(MUTATING_PER_SECOND_ENV, "0")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "failed to read GDO_EC2_MUTATING_PER_SECOND: \"0\" is not a number of calls per \
             second from 0.01 to 10000"
        );
        assert_eq!(error.category(), "configuration");
    }

    #[test]
    fn a_rate_that_cannot_pace_is_refused_by_the_pacers() {
        let config = PaceConfig {
            mutating: Rate {
                burst: 0,
                per_second: 5.0,
            },
            describe: DESCRIBE,
        };
        assert_eq!(Pacers::new(config).err(), Some(RateError::NoBurst));
        assert_eq!(Pacer::new(config).err(), Some(RateError::NoBurst));
    }
}
