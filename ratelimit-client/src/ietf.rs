//! The IETF `RateLimit` and `RateLimit-Policy` fields of draft-ietf-httpapi-ratelimit-headers-11
//! and -10:
//!
//! ```text
//! RateLimit-Policy: "burst";q=100;w=60, "daily";q=1000;w=86400
//! RateLimit: "burst";r=0;t=30, "daily";r=700;t=5000
//! ```
//!
//! Both are Structured Field lists (RFC 9651) of items named by a string, read with `sfv`. The
//! two drafts write them alike and differ in what `t` means: the seconds until the budget is
//! whole again (draft-10), or until more than `r` is available (draft-11's effective window,
//! sooner for a bucket whose units come back one at a time). Both are read as the time until
//! more is available at the latest ([`Budget::reset`]), not as the time the whole budget is
//! back ([`Budget::whole_at_reset`] is false): once it has passed, the pacer sends one request
//! and learns the budget from its answer, so that a bucket that got one unit back is not sent
//! its whole quota.

use sfv::{BareItem, Item, List, ListEntry, Parser};

use crate::seconds::capped;
use crate::Budget;

/// The most restrictive budget among the items of the `RateLimit` field, each with the quota
/// (`q`) of the `RateLimit-Policy` item of the same name as its limit.
///
/// Each slice holds the field's lines, in order (a field may be split over several lines). A
/// field that is not a valid Structured Field list is ignored as a whole, as RFC 9651 asks; an
/// item without a non-negative integer `r` is skipped; a negative `t` is dropped.
pub fn parse_ietf(ratelimit: &[&[u8]], policy: &[&[u8]]) -> Option<Budget> {
    let policies = parse_list(policy).unwrap_or_default();
    parse_list(ratelimit)?
        .iter()
        .filter_map(item)
        .filter_map(|item| budget_of(item, &policies))
        .reduce(Budget::most_restrictive)
}

/// The lines of one field joined as RFC 9651 §4.2 says, then parsed as a list.
fn parse_list(lines: &[&[u8]]) -> Option<List> {
    if lines.is_empty() {
        return None;
    }
    let joined = lines.join(&b", "[..]);
    Parser::new(&joined).parse_list::<List>().ok()
}

fn item(entry: &ListEntry) -> Option<&Item> {
    match entry {
        ListEntry::Item(item) => Some(item),
        ListEntry::InnerList(_) => None,
    }
}

fn name(item: &Item) -> Option<&str> {
    item.bare_item.as_string().map(|name| name.as_str())
}

/// A non-negative integer parameter.
fn count(item: &Item, key: &str) -> Option<u64> {
    let (_, value) = item.params.iter().find(|(k, _)| k.as_str() == key)?;
    match value {
        BareItem::Integer(n) => u64::try_from(i64::from(*n)).ok(),
        _ => None,
    }
}

fn budget_of(item: &Item, policies: &List) -> Option<Budget> {
    let limit = name(item).and_then(|name| {
        policies
            .iter()
            .filter_map(self::item)
            .find(|policy| self::name(policy) == Some(name))
            .and_then(|policy| count(policy, "q"))
    });
    Some(Budget {
        limit,
        remaining: count(item, "r")?,
        // Structured integers have at most 15 digits: exact in f64.
        reset: count(item, "t").map(|t| capped(t as f64)),
        // draft-11's `t` is when more is available, not necessarily all of it.
        whole_at_reset: false,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::MAX_HINT;

    fn parse(ratelimit: &[&str], policy: &[&str]) -> Option<Budget> {
        let ratelimit: Vec<&[u8]> = ratelimit.iter().map(|s| s.as_bytes()).collect();
        let policy: Vec<&[u8]> = policy.iter().map(|s| s.as_bytes()).collect();
        parse_ietf(&ratelimit, &policy)
    }

    fn budget(limit: Option<u64>, remaining: u64, reset: Option<u64>) -> Option<Budget> {
        Some(Budget {
            whole_at_reset: false,
            limit,
            remaining,
            reset: reset.map(Duration::from_secs),
        })
    }

    #[test]
    fn one_policy() {
        assert_eq!(
            parse(&[r#""default";r=0;t=30"#], &[r#""default";q=100;w=60"#]),
            budget(Some(100), 0, Some(30))
        );
    }

    #[test]
    fn draft_11_and_draft_10_read_alike() {
        // A spent token bucket of 3 per 60 s, one unit back every 20 s: draft-11 says more
        // comes in 20 s, draft-10 that it is whole in 60; either is when more is there.
        let policy = [r#""bucket";q=3;w=60"#];
        assert_eq!(
            parse(&[r#""bucket";r=0;t=20"#], &policy),
            budget(Some(3), 0, Some(20))
        );
        assert_eq!(
            parse(&[r#""bucket";r=0;t=60"#], &policy),
            budget(Some(3), 0, Some(60))
        );
    }

    #[test]
    fn the_most_restrictive_of_several_policies() {
        let policy = [r#""burst";q=10;w=1, "daily";q=1000;w=86400"#];
        assert_eq!(
            parse(&[r#""burst";r=7;t=1, "daily";r=2;t=5000"#], &policy),
            budget(Some(1000), 2, Some(5000)),
            "fewest remaining"
        );
        assert_eq!(
            parse(&[r#""burst";r=0;t=1, "daily";r=0;t=5000"#], &policy),
            budget(Some(1000), 0, Some(5000)),
            "both spent: the later reset"
        );
    }

    #[test]
    fn fields_split_over_lines() {
        assert_eq!(
            parse(
                &[r#""a";r=5;t=10"#, r#""b";r=1;t=20"#],
                &[r#""a";q=50"#, r#""b";q=5"#]
            ),
            budget(Some(5), 1, Some(20))
        );
    }

    #[test]
    fn without_a_policy_the_limit_is_unknown() {
        assert_eq!(parse(&[r#""x";r=3"#], &[]), budget(None, 3, None));
        assert_eq!(
            parse(&[r#""x";r=3;t=9"#], &[r#""other";q=10"#]),
            budget(None, 3, Some(9))
        );
    }

    #[test]
    fn malformed_fields_are_ignored() {
        for bad in [
            "",
            r#""x";r=-1;t=5"#,
            r#""x";t=5"#,
            r#""x";r="3""#,
            r#""x";r=1.5"#,
            "(\"a\" \"b\");r=1",
            "\"unterminated;r=1",
            "r=1, =2",
        ] {
            assert_eq!(parse(&[bad], &[]), None, "{bad:?}");
        }
        assert_eq!(parse_ietf(&[b"\"x\";r=1\xff"], &[]), None, "non-ASCII");
        assert_eq!(parse(&[], &[r#""x";q=1"#]), None, "a policy alone");
    }

    #[test]
    fn bad_items_are_skipped_and_bad_resets_dropped() {
        assert_eq!(
            parse(&[r#""bad";t=1, "good";r=4;t=-3"#], &[]),
            budget(None, 4, None)
        );
        assert_eq!(
            parse(&[r#""x";r=999999999999999;t=999999999999999"#], &[]),
            Some(Budget {
                whole_at_reset: false,
                limit: None,
                remaining: 999_999_999_999_999,
                reset: Some(MAX_HINT),
            })
        );
    }
}
