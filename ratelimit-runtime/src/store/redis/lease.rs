//! The Redis side of leases (`lease.lua`): one call decides a request and takes units of its
//! budgets for this process to spend later, handing back what an earlier lease left.
//!
//! The local side, which spends leased units and decides what to ask for, is
//! `crate::leases`.

use std::sync::LazyLock;

use redis::Script;
use smallvec::SmallVec;

use super::reply::{flag, integers};
use super::wire::{exact_check, key_of, shift, write_limit};
use super::{RedisStore, TimeSource};
use crate::clock::UnixNanos;
use crate::decision::Decision;
use crate::store::exact::gcra_in_nanos;
use crate::store::{Check, StoreError, Verdict};

static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("common.lua"),
        include_str!("lease.lua")
    ))
});

/// A token bucket's, leaky bucket's or GCRA's lease takes at most this share (1/32) of what the
/// budget has left after the request, so that the units a process holds, and could strand by
/// dying, stay a small part of what remains, and shrink to nothing (the exact path) as the
/// budget runs out.
pub const LEASE_SHARE: u32 = 32;

/// A fixed window's lease takes at most this share (1/4) of what the window has left after the
/// request: its units die with the window, so a larger share can never admit more than the
/// limit, and a budget of a few hundred is leased in a few dozen calls. Leases still shrink to
/// nothing as the window runs out, so that no process holds units another is refused for.
pub const WINDOW_LEASE_SHARE: u32 = 4;

/// What one check asks of a lease call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseAsk {
    /// The check; its cost is spent by the request now (0 for a refill ahead of time).
    pub check: Check,
    /// Units wanted beyond the cost, for later.
    pub want: u32,
    /// Units of an earlier lease handed back, unspent.
    pub back: u32,
    /// When those were leased, on the store's clock (µs).
    pub leased_at_us: u64,
    /// The fixed window (its end, in seconds on the store's clock) they were leased in.
    pub leased_in: u64,
}

/// What a lease call gave one check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// Units leased beyond the request's cost (0 when the request was denied).
    pub units: u32,
    /// The instant of the call on the store's clock (µs): hand-backs decay from there.
    pub at_us: u64,
    /// The fixed window the units belong to (its end, in seconds on the store's clock).
    pub window: u64,
}

/// The answer of a lease call: the request's verdict and what each check leased.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseAnswer {
    /// The request's verdict; remaining counts what the store has left beside every lease.
    pub verdict: Verdict,
    /// One per check, in order.
    pub grants: SmallVec<[Grant; 4]>,
    /// Whether the units handed back went back (not on a Cluster).
    pub handed_back: bool,
}

impl RedisStore {
    /// Decides `asks` (all charged or none) and leases what each wants within its share, in one
    /// call; units handed back return to their budgets whatever the outcome. On a Cluster they
    /// do not: its client may send a call again after a lost reply, and a hand-back counted
    /// twice would admit more than the limit (a decision or a lease counted twice only admits
    /// less).
    pub async fn lease(
        &self,
        asks: &[LeaseAsk],
        now: UnixNanos,
    ) -> Result<LeaseAnswer, StoreError> {
        for ask in asks {
            exact_check(&ask.check)?;
            if !can_lease(&ask.check) {
                return Err(StoreError::unsupported(format!(
                    "{} cannot be leased",
                    ask.check.algorithm
                )));
            }
        }
        if self.is_cluster()
            && asks
                .windows(2)
                .any(|w| w[0].check.group != w[1].check.group)
        {
            return Err(StoreError::unsupported(
                "the limits of one lease call must share a budget name",
            ));
        }
        let server_time = self.options().time == TimeSource::Server;
        let hand_back = !self.is_cluster();
        let mut command = redis::cmd("EVALSHA");
        command.arg(LEASE.get_hash()).arg(asks.len());
        for ask in asks {
            command.arg(key_of(&self.options().prefix, &ask.check));
        }
        command
            .arg(if server_time { "server" } else { "client" })
            .arg(now / 1_000)
            .arg(LEASE_SHARE)
            .arg(WINDOW_LEASE_SHARE);
        for ask in asks {
            write_limit(&mut command, &ask.check);
            command
                .arg(ask.want)
                .arg(if hand_back { ask.back } else { 0 })
                .arg(ask.leased_at_us)
                .arg(ask.leased_in);
        }
        let mut answer = read(self.eval(&LEASE, command).await?, asks, now, server_time)?;
        answer.handed_back = hand_back;
        Ok(answer)
    }
}

/// Whether `check` can be leased: its algorithm allows it, in the arithmetic `lease.lua` has
/// (GCRA above 10,000 per second is decided per request, in nanoseconds).
pub fn can_lease(check: &Check) -> bool {
    check.algorithm.can_lease()
        && !(check.algorithm == crate::algorithm::AlgorithmKind::Gcra
            && gcra_in_nanos(&check.limit))
}

/// The answer of a lease call's `reply` to `asks`.
pub(super) fn read(
    reply: redis::Value,
    asks: &[LeaseAsk],
    now: UnixNanos,
    server_time: bool,
) -> Result<LeaseAnswer, StoreError> {
    parse(&integers(&reply)?, asks, now, server_time)
}

/// `[now, outcome, per check: allowed, charged, remaining, reset, retry]`, times in µs.
fn parse(
    reply: &[i64],
    asks: &[LeaseAsk],
    now: UnixNanos,
    server_time: bool,
) -> Result<LeaseAnswer, StoreError> {
    let garbage = || StoreError::new(format!("Redis answered an unexpected lease: {reply:?}"));
    if reply.len() != 2 + 5 * asks.len() || !matches!(reply[1], 0 | 1) {
        return Err(garbage());
    }
    let whole = |v: i64| u64::try_from(v).map_err(|_| garbage());
    let at_us = whole(reply[0])?;
    let at = |t: i64| {
        whole(t).map(|t| {
            let t = t.saturating_mul(1_000);
            if server_time {
                shift(t, at_us.saturating_mul(1_000), now)
            } else {
                t
            }
        })
    };
    let allowed = reply[1] == 1;
    let mut answer = LeaseAnswer::default();
    for (v, ask) in reply[2..].chunks_exact(5).zip(asks) {
        let charged = u32::try_from(v[1]).map_err(|_| garbage())?;
        // When all pass, each is charged its cost and at most the units it wants beyond; when
        // any is refused, none is charged. Units charged otherwise would be spent here as
        // admissions the script never made.
        let (cost, want) = (u64::from(ask.check.cost), u64::from(ask.want));
        let as_charged = if allowed {
            (cost..=cost + want).contains(&u64::from(charged))
        } else {
            charged == 0
        };
        if !as_charged {
            return Err(garbage());
        }
        answer.verdict.decisions.push(Decision {
            allowed: flag(v[0]).ok_or_else(garbage)?,
            limit: ask.check.reported_limit(),
            remaining: u32::try_from(v[2]).map_err(|_| garbage())?,
            reset_at: at(v[3])?,
            retry_at: at(v[4])?,
        });
        answer.grants.push(Grant {
            units: charged.saturating_sub(ask.check.cost),
            at_us,
            window: whole(v[3])? / 1_000_000,
        });
    }
    // The outcome is every check's flag together.
    if answer.verdict.decisions.iter().any(|d| !d.allowed) == allowed {
        return Err(garbage());
    }
    answer.verdict.allowed = allowed;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::{AlgorithmKind, Limit};
    use crate::quota::Quota;

    fn ask(cost: u32) -> LeaseAsk {
        LeaseAsk {
            check: Check {
                key: 1,
                group: 2,
                algorithm: AlgorithmKind::FixedWindow,
                limit: Limit::new(Quota::from_parts(100, 60).unwrap()),
                cost,
                max_wait: 0,
                probe: false,
            },
            want: 10,
            back: 0,
            leased_at_us: 0,
            leased_in: 0,
        }
    }

    #[test]
    fn a_grant_is_what_was_charged_beyond_the_cost() {
        let reply = [5_000_000, 1, 1, 11, 89, 60_000_000, 5_000_000];
        let answer = parse(&reply, &[ask(1)], 5_000_000_000, false).unwrap();
        assert!(answer.verdict.allowed);
        assert_eq!(answer.grants[0].units, 10);
        assert_eq!(answer.grants[0].window, 60);
        assert_eq!(answer.verdict.decisions[0].remaining, 89);
        assert_eq!(answer.verdict.decisions[0].reset_at, 60_000_000_000);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse(&[1, 1], &[ask(1)], 0, false).is_err(), "too short");
        let allowed_without_charge = [5, 1, 1, 0, 89, 60, 5];
        assert!(parse(&allowed_without_charge, &[ask(1)], 0, false).is_err());
        let not_an_outcome = [5, 2, 1, 1, 89, 60, 5];
        assert!(parse(&not_an_outcome, &[ask(1)], 0, false).is_err());
    }
}
