//! Property tests of the Redis store's reading of script replies (`decide.lua`, `lease.lua`,
//! the concurrency slots' script): whatever `redis::Value` comes back, reading it never panics,
//! a reply the scripts can write means what they wrote, and any other reply is a `StoreError`,
//! never an admission.
//!
//! Each property holds its own reading of the replies, from the formats the scripts document:
//! an array of integers of the one length the call implies, flags of 0 or 1 that agree with the
//! outcome, counts that fit in `u32`, instants that are not negative.
//!
//! `PROPTEST_CASES` sets the number of cases of each property (default 5,000: a case takes
//! microseconds here).

use std::num::NonZeroU32;

use proptest::prelude::*;
use redis::{PushKind, Value, VerbatimFormat};
use smallvec::SmallVec;

use super::lease::read as read_lease;
use super::read_slot;
use super::wire::{read_reply, shift, Decide};
use super::{Grant, LeaseAnswer, LeaseAsk};
use crate::algorithm::{AlgorithmKind, Limit};
use crate::clock::UnixNanos;
use crate::decision::Decision;
use crate::quota::Quota;
use crate::store::{Check, StoreError, Verdict};

fn config() -> ProptestConfig {
    ProptestConfig {
        // Failures are reported with their shrunk input; no regressions file to keep.
        failure_persistence: None,
        // Faster than the default (ChaCha) unoptimized, for the same inputs.
        rng_algorithm: prop::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(5_000),
        )
    }
}

// ---- What the calls ask ----

fn algorithm() -> impl Strategy<Value = AlgorithmKind> {
    prop::sample::select(vec![
        AlgorithmKind::FixedWindow,
        AlgorithmKind::SlidingWindow,
        AlgorithmKind::SlidingLog,
        AlgorithmKind::TokenBucket,
        AlgorithmKind::LeakyBucket,
        AlgorithmKind::Gcra,
    ])
}

fn check() -> impl Strategy<Value = Check> {
    (
        any::<u64>(),
        algorithm(),
        1u32..1_000,
        1u32..100_000,
        1u32..2_000,
        1u32..5,
    )
        .prop_map(|(key, algorithm, limit, per, capacity, cost)| Check {
            key: key.into(),
            group: 7,
            algorithm,
            limit: Limit::with_capacity(
                Quota::from_parts(limit, per).unwrap(),
                NonZeroU32::new(capacity).unwrap(),
            ),
            cost,
            max_wait: 0,
            probe: false,
        })
}

/// The decisions of one script call, as the store keeps them: checks, instant, charge or peek.
type Batch = Vec<(Vec<Check>, UnixNanos, bool)>;

fn batch() -> impl Strategy<Value = Batch> {
    let decision = (
        prop::collection::vec(check(), 0..4),
        any::<u64>(),
        any::<bool>(),
    );
    prop::collection::vec(decision, 0..4)
}

fn decides(batch: &Batch) -> Vec<Decide<'_>> {
    batch
        .iter()
        .map(|(checks, now, charge)| Decide {
            checks,
            now: *now,
            charge: *charge,
        })
        .collect()
}

fn asks() -> impl Strategy<Value = Vec<LeaseAsk>> {
    let ask = (check(), 0u32..100, 0u32..100).prop_map(|(check, want, back)| LeaseAsk {
        check,
        want,
        back,
        leased_at_us: 0,
        leased_in: 0,
    });
    prop::collection::vec(ask, 0..4)
}

// ---- Replies ----

/// An instant in µs as the scripts write them: today's, or any that is not negative.
fn micros() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 1_700_000_000_000_000i64..1_900_000_000_000_000,
        1 => 0..=i64::MAX,
    ]
}

/// A count of `remaining`: small, or anything a `u32` holds.
fn count() -> impl Strategy<Value = i64> {
    prop_oneof![0i64..100, 0..=i64::from(u32::MAX)]
}

fn ints(values: impl IntoIterator<Item = i64>) -> Value {
    Value::Array(values.into_iter().map(Value::Int).collect())
}

/// A reply `decide.lua` can write for `shape` (the number of checks of each decision): per
/// decision, an outcome that is every flag together, or -1 and zeros for a failed decision.
/// `loose`: the outcome is drawn on its own, mostly disagreeing with the flags.
fn decide_reply(shape: Vec<usize>, loose: bool) -> impl Strategy<Value = Value> {
    let decision = move |checks: usize| {
        // Mostly passing, so that many outcomes are admissions.
        let per_check = (prop::bool::weighted(0.8), count(), micros(), micros());
        let values = prop::collection::vec(per_check, checks);
        (0..10u8, values, any::<bool>()).prop_map(move |(failed, values, coin)| {
            if failed == 0 {
                return [vec![-1], vec![0; 4 * checks]].concat();
            }
            let all = values.iter().all(|v| v.0);
            let outcome = i64::from(if loose { coin } else { all });
            let mut out = vec![outcome];
            for (allowed, remaining, reset, retry) in values {
                out.extend([i64::from(allowed), remaining, reset, retry]);
            }
            out
        })
    };
    let decisions: Vec<_> = shape.into_iter().map(decision).collect();
    (prop_oneof![Just(0i64), micros()], decisions)
        .prop_map(|(now, decisions)| ints(std::iter::once(now).chain(decisions.concat())))
}

/// A reply `lease.lua` can write for `asks`: every check charged its cost and at most what it
/// wants when all pass, nothing when any is refused. `loose`: the outcome is drawn on its own,
/// and each check charged from nothing to a little more than its cost and want, whatever the
/// outcome.
fn lease_reply(asks: &[LeaseAsk], loose: bool) -> impl Strategy<Value = Value> {
    let per_ask: Vec<_> = asks
        .iter()
        .map(|ask| {
            let (cost, want) = (ask.check.cost, ask.want);
            let charged = if loose {
                0..=cost + want + 2
            } else {
                cost..=cost + want
            };
            (
                prop::bool::weighted(0.8),
                charged,
                count(),
                micros(),
                micros(),
            )
                .prop_map(|(passes, charged, remaining, reset, retry)| {
                    (passes, i64::from(charged), remaining, reset, retry)
                })
        })
        .collect();
    (micros(), per_ask, any::<bool>()).prop_map(move |(now, checks, coin)| {
        let all = checks.iter().all(|c| c.0);
        let outcome = if loose { coin } else { all };
        let mut out = vec![now, i64::from(outcome)];
        for (passes, charged, remaining, reset, retry) in checks {
            out.extend([
                i64::from(passes),
                if outcome || loose { charged } else { 0 },
                remaining,
                reset,
                retry,
            ]);
        }
        ints(out)
    })
}

/// A reply the slot script can write: taken or not, and the slots then held.
fn slot_reply() -> impl Strategy<Value = Value> {
    (0i64..=1, count()).prop_map(|(taken, held)| ints([taken, held + taken]))
}

/// The value of one line of the protocol, as the client's parser makes it: the way to make the
/// types it keeps opaque (server errors, big numbers).
fn parsed(line: &str) -> Value {
    redis::parse_redis_value(format!("{line}\r\n").as_bytes())
        .unwrap_or_else(|e| unreachable!("`{line}` is a reply: {e}"))
}

/// Integers a well-formed reply never holds in some place: signs, flags, outcomes and counts
/// out of their ranges.
fn odd_int() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(-1i64),
        Just(2),
        Just(-2),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(i64::from(u32::MAX) + 1),
        any::<i64>(),
    ]
}

/// Any value of every type the client knows, nested.
fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        Just(Value::Okay),
        odd_int().prop_map(Value::Int),
        (-1i64..=2).prop_map(Value::Int),
        any::<Vec<u8>>().prop_map(Value::BulkString),
        (-1i64..=2).prop_map(|n| Value::BulkString(n.to_string().into_bytes())),
        "[ -~]{0,12}".prop_map(Value::SimpleString),
        (-1i64..=2).prop_map(|n| Value::SimpleString(n.to_string())),
        any::<f64>().prop_map(Value::Double),
        (-1i64..=2).prop_map(|n| Value::Double(n as f64 + 0.5)),
        any::<bool>().prop_map(Value::Boolean),
        "[0-9]{1,3}".prop_map(|text| Value::VerbatimString {
            format: VerbatimFormat::Text,
            text
        }),
        "[0-9]{1,40}".prop_map(|digits| parsed(&format!("({digits}"))),
        prop::sample::select(vec![
            "-ERR boom",
            "-NOSCRIPT No matching script",
            "-BUSY",
            "-WRONGTYPE x"
        ])
        .prop_map(parsed),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..10).prop_map(Value::Array),
            prop::collection::vec(inner.clone(), 0..10).prop_map(Value::Set),
            prop::collection::vec((inner.clone(), inner.clone()), 0..5).prop_map(Value::Map),
            (
                inner.clone(),
                prop::collection::vec((inner.clone(), inner.clone()), 0..2)
            )
                .prop_map(|(data, attributes)| Value::Attribute {
                    data: Box::new(data),
                    attributes,
                }),
            prop::collection::vec(inner, 0..5).prop_map(|data| Value::Push {
                kind: PushKind::Message,
                data,
            }),
        ]
    })
}

/// `reply` (an array of integers) with one change a broken server, proxy or script could make:
/// an element of another type that spells the same number, an integer out of its range, an
/// element too many or too few, an element nested, or the whole in another container.
fn mutated(reply: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    (
        reply,
        any::<prop::sample::Index>(),
        0..12u8,
        odd_int(),
        any_value(),
    )
        .prop_map(|(reply, at, edit, odd, other)| {
            let Value::Array(mut items) = reply else {
                return reply;
            };
            let i = at.index(items.len() + 1);
            let n = match items.get(i) {
                Some(Value::Int(n)) => *n,
                _ => 1,
            };
            let replace = |items: &mut Vec<Value>, value| match items.get_mut(i) {
                Some(item) => *item = value,
                None => items.push(value),
            };
            match edit {
                0 => replace(&mut items, Value::Double(n as f64)),
                1 => replace(&mut items, Value::BulkString(n.to_string().into_bytes())),
                2 => replace(&mut items, Value::SimpleString(n.to_string())),
                3 => replace(&mut items, Value::Boolean(n == 1)),
                4 => replace(&mut items, Value::Array(vec![Value::Int(n)])),
                5 => replace(&mut items, Value::Int(odd)),
                6 => replace(&mut items, other),
                7 if i < items.len() => drop(items.remove(i)),
                8 => items.insert(i, Value::Int(n)),
                9 => return Value::Set(items),
                10 => {
                    return Value::Attribute {
                        data: Box::new(Value::Array(items)),
                        attributes: vec![],
                    }
                }
                _ => {
                    return Value::Push {
                        kind: PushKind::Message,
                        data: items,
                    }
                }
            }
            Value::Array(items)
        })
}

/// An array of `len` integers of any value: the right shape, with no regard for ranges.
fn shaped(len: usize) -> impl Strategy<Value = Value> {
    prop::collection::vec(prop_oneof![(-2i64..3), odd_int(), micros()], len).prop_map(ints)
}

/// A reply of every kind for a call whose well-formed replies `valid` makes and have `len`
/// elements; `loose` makes replies of the right shape whose parts may disagree.
fn replies(
    valid: BoxedStrategy<Value>,
    loose: BoxedStrategy<Value>,
    len: usize,
) -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => valid.clone(),
        2 => loose,
        3 => mutated(valid),
        2 => shaped(len),
        2 => any_value(),
    ]
}

// ---- The formats, as the scripts document them ----

/// The integers of an array of integers; `None` for any other value.
fn integers(reply: &Value) -> Option<Vec<i64>> {
    match reply {
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Int(n) => Some(*n),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn flag(n: i64) -> Option<bool> {
    match n {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// An instant of the reply (µs) on the limiter's clock (ns).
fn instant(t: i64, server_now: u64, now: UnixNanos, server_time: bool) -> Option<UnixNanos> {
    let t = u64::try_from(t).ok()?.saturating_mul(1_000);
    Some(if server_time {
        shift(t, server_now, now)
    } else {
        t
    })
}

/// What a `decide.lua` reply says of each decision (`None` inside: the decision failed), or
/// `None` for a reply it cannot have written.
fn decide_meaning(
    reply: &Value,
    decisions: &[Decide<'_>],
    server_time: bool,
) -> Option<Vec<Option<Verdict>>> {
    let values = integers(reply)?;
    let (&server_now, mut rest) = values.split_first()?;
    let server_now = u64::try_from(server_now).ok()?.saturating_mul(1_000);
    let mut meaning = Vec::new();
    for decide in decisions {
        let (&outcome, after) = rest.split_first()?;
        let values = after.get(..4 * decide.checks.len())?;
        rest = &after[values.len()..];
        if outcome == -1 {
            meaning.push(None);
            continue;
        }
        let allowed = flag(outcome)?;
        let mut verdict = Verdict {
            decisions: SmallVec::new(),
            allowed,
        };
        for (v, check) in values.chunks_exact(4).zip(decide.checks) {
            let at = |t| instant(t, server_now, decide.now, server_time);
            verdict.decisions.push(Decision {
                allowed: flag(v[0])?,
                limit: check.reported_limit(),
                remaining: u32::try_from(v[1]).ok()?,
                reset_at: at(v[2])?,
                retry_at: at(v[3])?,
            });
        }
        // The outcome is every check's flag together.
        if verdict.decisions.iter().all(|d| d.allowed) != allowed {
            return None;
        }
        meaning.push(Some(verdict));
    }
    rest.is_empty().then_some(meaning)
}

/// What a `lease.lua` reply says, or `None` for a reply it cannot have written.
fn lease_meaning(
    reply: &Value,
    asks: &[LeaseAsk],
    now: UnixNanos,
    server_time: bool,
) -> Option<LeaseAnswer> {
    let values = integers(reply)?;
    if values.len() != 2 + 5 * asks.len() {
        return None;
    }
    let at_us = u64::try_from(values[0]).ok()?;
    let allowed = flag(values[1])?;
    let mut answer = LeaseAnswer::default();
    for (v, ask) in values[2..].chunks_exact(5).zip(asks) {
        let charged = u32::try_from(v[1]).ok()?;
        let (cost, want) = (ask.check.cost, ask.want);
        // All pass: each charged its cost and at most what it wants beyond; else nothing.
        let fits = if allowed {
            charged >= cost && u64::from(charged) <= u64::from(cost) + u64::from(want)
        } else {
            charged == 0
        };
        if !fits {
            return None;
        }
        let at = |t| instant(t, at_us.saturating_mul(1_000), now, server_time);
        answer.verdict.decisions.push(Decision {
            allowed: flag(v[0])?,
            limit: ask.check.reported_limit(),
            remaining: u32::try_from(v[2]).ok()?,
            reset_at: at(v[3])?,
            retry_at: at(v[4])?,
        });
        answer.grants.push(Grant {
            units: charged.saturating_sub(cost),
            at_us,
            window: u64::try_from(v[3]).ok()? / 1_000_000,
        });
    }
    if answer.verdict.decisions.iter().all(|d| d.allowed) != allowed {
        return None;
    }
    answer.verdict.allowed = allowed;
    Some(answer)
}

/// What a slot script's reply says, or `None` for a reply it cannot have written.
fn slot_meaning(reply: &Value) -> Option<Result<u32, u32>> {
    match integers(reply)?[..] {
        [taken, held] => {
            let held = u32::try_from(held).ok()?;
            Some(if flag(taken)? { Ok(held) } else { Err(held) })
        }
        _ => None,
    }
}

/// A refusal of garbage is a failure of the store (worth retrying, the failure policy
/// applies), and says no more than the reply it quotes and a sentence.
fn is_garbage_refusal(error: &StoreError, reply: &Value) -> bool {
    !error.is_unsupported()
        && !error.is_timeout()
        && error.to_string().len() <= 2 * format!("{reply:?}").len() + 256
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decide_replies_mean_what_the_script_wrote_and_garbage_is_an_error(
        (batch, reply, server_time) in batch().prop_flat_map(|batch| {
            let shape: Vec<usize> = batch.iter().map(|(checks, _, _)| checks.len()).collect();
            let len = 1 + shape.iter().map(|n| 1 + 4 * n).sum::<usize>();
            let valid = decide_reply(shape.clone(), false).boxed();
            let loose = decide_reply(shape, true).boxed();
            (Just(batch), replies(valid, loose, len), any::<bool>())
        }),
    ) {
        let decisions = decides(&batch);
        let meaning = decide_meaning(&reply, &decisions, server_time);
        match (read_reply(reply.clone(), &decisions, server_time), meaning) {
            (Ok(answers), Some(meaning)) => {
                prop_assert_eq!(answers.len(), meaning.len());
                for (answer, meant) in answers.into_iter().zip(meaning) {
                    match (answer, meant) {
                        (Ok(verdict), Some(meant)) => prop_assert_eq!(verdict, meant),
                        (Err(error), None) => prop_assert!(error.is_unsupported(), "{}", error),
                        (answer, meant) => prop_assert!(false, "{:?} for {:?}", answer, meant),
                    }
                }
            }
            (Err(error), None) => prop_assert!(is_garbage_refusal(&error, &reply), "{}", error),
            (Ok(answers), None) => prop_assert!(false, "garbage {:?} read as {:?}", reply, answers),
            (Err(error), Some(_)) => prop_assert!(false, "{:?} refused: {}", reply, error),
        }
    }

    #[test]
    fn lease_replies_mean_what_the_script_wrote_and_garbage_is_an_error(
        (asks, reply, now, server_time) in asks().prop_flat_map(|asks| {
            let len = 2 + 5 * asks.len();
            let valid = lease_reply(&asks, false).boxed();
            let loose = lease_reply(&asks, true).boxed();
            (Just(asks), replies(valid, loose, len), any::<u64>(), any::<bool>())
        }),
    ) {
        let meaning = lease_meaning(&reply, &asks, now, server_time);
        match (read_lease(reply.clone(), &asks, now, server_time), meaning) {
            (Ok(answer), Some(meant)) => prop_assert_eq!(answer, meant),
            (Err(error), None) => prop_assert!(is_garbage_refusal(&error, &reply), "{}", error),
            (Ok(answer), None) => prop_assert!(false, "garbage {:?} read as {:?}", reply, answer),
            (Err(error), Some(_)) => prop_assert!(false, "{:?} refused: {}", reply, error),
        }
    }

    #[test]
    fn slot_replies_mean_what_the_script_wrote_and_garbage_is_an_error(
        reply in replies(slot_reply().boxed(), shaped(2).boxed(), 2),
    ) {
        match (read_slot(reply.clone()), slot_meaning(&reply)) {
            (Ok(slot), Some(meant)) => prop_assert_eq!(slot, meant),
            (Err(error), None) => prop_assert!(is_garbage_refusal(&error, &reply), "{}", error),
            (Ok(slot), None) => prop_assert!(false, "garbage {:?} read as {:?}", reply, slot),
            (Err(error), Some(_)) => prop_assert!(false, "{:?} refused: {}", reply, error),
        }
    }
}
