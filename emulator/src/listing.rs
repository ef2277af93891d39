//! Paging through `ListFindings` results. The first page of a query computes the
//! matching findings, in order, once, and keeps that list as a snapshot; `nextToken` names
//! the snapshot and an offset into it. Later pages are slices of the snapshot, so paging
//! over 10,000 findings costs one filter-and-sort, and a write between pages neither
//! repeats nor skips an id. A first page reuses the previous snapshot of the same query
//! while no finding has changed since.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::error::ApiError;

/// How many snapshots are kept; a token naming a forgotten one is rejected.
const KEPT_SNAPSHOTS: usize = 256;
const TOKEN_PREFIX: &str = "gde1";

/// Positions (into the store's insertion-ordered findings) of one query's matches.
pub(crate) type Matches = Arc<Vec<usize>>;

#[derive(Debug)]
struct Snapshot {
    query: String,
    generation: u64,
    matches: Matches,
}

/// Where a page starts: a snapshot and an offset into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    snapshot: u64,
    offset: usize,
}

impl Cursor {
    pub(crate) fn encode(self) -> String {
        format!("{TOKEN_PREFIX}-{:x}-{:x}", self.snapshot, self.offset)
    }

    pub(crate) fn decode(token: &str) -> Result<Self, ApiError> {
        let mut parts = token.split('-');
        let (Some(TOKEN_PREFIX), Some(snapshot), Some(offset), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ApiError::invalid_next_token());
        };
        let snapshot =
            u64::from_str_radix(snapshot, 16).map_err(|_| ApiError::invalid_next_token())?;
        let offset =
            usize::from_str_radix(offset, 16).map_err(|_| ApiError::invalid_next_token())?;
        Ok(Self { snapshot, offset })
    }
}

/// One page of ids' positions and the token for the next page, if any.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) positions: Vec<usize>,
    pub(crate) next_token: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Listings {
    next_snapshot: u64,
    snapshots: BTreeMap<u64, Snapshot>,
    latest_by_query: HashMap<String, u64>,
}

impl Listings {
    /// The first page of `query`: reuses a snapshot taken at `generation`, or takes one.
    pub(crate) fn first_page(
        &mut self,
        query: &str,
        generation: u64,
        page_size: usize,
        compute: impl FnOnce() -> Vec<usize>,
    ) -> Page {
        let reusable = self.latest_by_query.get(query).copied().filter(|id| {
            self.snapshots
                .get(id)
                .is_some_and(|snapshot| snapshot.generation == generation)
        });
        let snapshot = match reusable {
            Some(id) => id,
            None => self.remember(query, generation, compute()),
        };
        self.page(
            Cursor {
                snapshot,
                offset: 0,
            },
            page_size,
        )
    }

    /// A later page: the token must come from a first page of the same query.
    pub(crate) fn next_page(
        &self,
        query: &str,
        token: &str,
        page_size: usize,
    ) -> Result<Page, ApiError> {
        let cursor = Cursor::decode(token)?;
        let valid = self
            .snapshots
            .get(&cursor.snapshot)
            .is_some_and(|snapshot| {
                snapshot.query == query && cursor.offset <= snapshot.matches.len()
            });
        if !valid {
            return Err(ApiError::invalid_next_token());
        }
        Ok(self.page(cursor, page_size))
    }

    fn remember(&mut self, query: &str, generation: u64, matches: Vec<usize>) -> u64 {
        let id = self.next_snapshot;
        self.next_snapshot += 1;
        let snapshot = Snapshot {
            query: query.to_owned(),
            generation,
            matches: Arc::new(matches),
        };
        self.snapshots.insert(id, snapshot);
        self.latest_by_query.insert(query.to_owned(), id);
        while self.snapshots.len() > KEPT_SNAPSHOTS {
            self.forget_oldest();
        }
        id
    }

    fn forget_oldest(&mut self) {
        let Some((_, evicted)) = self.snapshots.pop_first() else {
            return;
        };
        let latest_is_gone = self
            .latest_by_query
            .get(&evicted.query)
            .is_some_and(|latest| !self.snapshots.contains_key(latest));
        if latest_is_gone {
            self.latest_by_query.remove(&evicted.query);
        }
    }

    fn page(&self, cursor: Cursor, page_size: usize) -> Page {
        let Some(snapshot) = self.snapshots.get(&cursor.snapshot) else {
            return Page {
                positions: Vec::new(),
                next_token: None,
            };
        };
        let end = snapshot
            .matches
            .len()
            .min(cursor.offset.saturating_add(page_size));
        let positions = snapshot.matches[cursor.offset..end].to_vec();
        let next_token = (end < snapshot.matches.len()).then(|| {
            Cursor {
                snapshot: cursor.snapshot,
                offset: end,
            }
            .encode()
        });
        Page {
            positions,
            next_token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_every_match_once_and_the_last_has_no_token() {
        let mut listings = Listings::default();
        let first = listings.first_page("q", 0, 50, || (0..120).collect());
        assert_eq!(first.positions.len(), 50);
        let token = first.next_token.expect("more");
        let second = listings.next_page("q", &token, 50).expect("valid token");
        let third = listings
            .next_page("q", &second.next_token.expect("more"), 50)
            .expect("valid token");
        assert_eq!(third.positions, (100..120).collect::<Vec<_>>());
        assert_eq!(third.next_token, None);
    }

    #[test]
    fn a_token_is_rejected_for_another_query_or_when_malformed() {
        let mut listings = Listings::default();
        let token = listings
            .first_page("q", 0, 1, || vec![1, 2])
            .next_token
            .expect("more");
        assert!(listings.next_page("other", &token, 1).is_err());
        for token in ["", "gde1", "gde1-0", "gde1-zz-1", "gde1-0-99", "xyz1-0-1"] {
            assert!(listings.next_page("q", token, 1).is_err(), "{token}");
        }
    }

    #[test]
    fn a_first_page_reuses_the_snapshot_until_the_generation_changes() {
        let mut listings = Listings::default();
        listings.first_page("q", 0, 1, || vec![1, 2]);
        let reused = listings.first_page("q", 0, 5, || unreachable!("the snapshot is current"));
        assert_eq!(reused.positions, [1, 2]);
        let recomputed = listings.first_page("q", 1, 5, || vec![3]);
        assert_eq!(recomputed.positions, [3]);
    }
}
