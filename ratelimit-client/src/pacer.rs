//! Pacing before the 429: per origin, what the server last said about the budget, shared by
//! every request of a client, so that the request that would be refused is held until the reset
//! instead of being sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::stats::Counters;
use crate::{Budget, Origin, RateLimitStatus, Stats};

/// The round trip assumed before one was measured.
const FIRST_ROUND_TRIP: Duration = Duration::from_millis(50);
/// Bounds of the time a request waits for news from requests in flight: short enough to react
/// quickly, long enough not to spin.
const MIN_POLL: Duration = Duration::from_millis(1);
const MAX_POLL: Duration = Duration::from_secs(1);
/// A response whose reset is no later than this after the end of a window that is already
/// over describes that old window (it was in flight across the reset): it is not news.
const STALE_MARGIN: Duration = Duration::from_millis(500);

/// Rate-limit knowledge per origin, shared by every clone (an `Arc` inside).
///
/// For each request, [`Pacer::admit`] says whether to send now or when to ask again, and
/// [`Pacer::observe`] records what the response said. The pacer keeps a local count of the
/// remaining budget and takes one unit for each request it lets go, so that many concurrent
/// requests never send more than the server said it would take; when the count is spent it
/// holds requests until the reset the server announced. Time is always passed in, so tests run
/// on a made-up clock.
#[derive(Debug, Clone, Default)]
pub struct Pacer {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    origins: Mutex<HashMap<Origin, OriginState>>,
    counters: Counters,
}

/// What the pacer answers a request.
#[derive(Debug)]
pub enum Admission {
    /// Send now, and hand the permit back to [`Pacer::observe`] with the response.
    Go(Permit),
    /// Do not send yet: ask again at this instant.
    Wait(Instant),
}

/// A request let through by the [`Pacer`]. Dropping it without [`Pacer::observe`] (the request
/// failed or was abandoned) frees its place among the requests in flight; the unit of budget it
/// took stays spent, since the server may have counted it.
#[derive(Debug)]
pub struct Permit {
    shared: Arc<Shared>,
    origin: Origin,
    sent_at: Instant,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(state) = lock(&self.shared.origins).get_mut(&self.origin) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
    }
}

/// Our running count of one origin's budget.
#[derive(Debug, Clone, Copy)]
struct Estimate {
    limit: Option<u64>,
    remaining: u64,
    reset_at: Option<Instant>,
    /// Whether the whole `limit` is back at `reset_at` (see [`Budget::whole_at_reset`]).
    whole_at_reset: bool,
}

#[derive(Debug, Default)]
struct OriginState {
    /// `None` until a response describes the budget.
    estimate: Option<Estimate>,
    /// Responses carry no budget: nothing to pace by.
    silent: bool,
    /// The reset of the last window that ended, to recognise late news of it.
    window_end: Option<Instant>,
    /// A `Retry-After` holds every request to the origin until then.
    blocked_until: Option<Instant>,
    in_flight: u32,
    round_trip: Option<Duration>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent between statements, so a panic elsewhere leaves it usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pacer {
    /// A pacer that knows nothing yet.
    pub fn new() -> Pacer {
        Pacer::default()
    }

    /// Whether a request to `origin` may be sent at `now`; when it may, one unit of the budget
    /// is taken for it.
    pub fn admit(&self, origin: &Origin, now: Instant) -> Admission {
        let mut origins = lock(&self.shared.origins);
        let state = origins.entry(origin.clone()).or_default();
        if let Some(until) = state.hold(now) {
            return Admission::Wait(until);
        }
        state.take_unit();
        drop(origins);
        self.shared.counters.sent();
        Admission::Go(Permit {
            shared: Arc::clone(&self.shared),
            origin: origin.clone(),
            sent_at: now,
        })
    }

    /// Records the response to a request let through by [`Pacer::admit`], received at `now`.
    pub fn observe(&self, permit: Permit, now: Instant, status: u16, report: &RateLimitStatus) {
        if status == 429 {
            self.shared.counters.rate_limited();
        }
        let mut origins = lock(&self.shared.origins);
        let state = origins.entry(permit.origin.clone()).or_default();
        state.measure(now.saturating_duration_since(permit.sent_at));
        // The permit leaves the requests in flight before the news is weighed.
        state.in_flight = state.in_flight.saturating_sub(1);
        std::mem::forget(permit);
        state.learn(now, status, report);
    }

    /// What the requests through this pacer did so far.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.shared.counters
    }
}

impl OriginState {
    /// When to ask again, or `None` to send now.
    fn hold(&mut self, now: Instant) -> Option<Instant> {
        if let Some(until) = self.blocked_until.filter(|until| *until > now) {
            return Some(until);
        }
        self.blocked_until = None;
        self.refill_after_reset(now);
        let news_due = now + self.poll();
        match self.estimate {
            Some(estimate) if estimate.remaining > 0 => None,
            // Spent: requests in flight may yet tell of an earlier reset; else wait for the
            // reset, or, if the server never said when, send one request to find out.
            Some(estimate) => match (self.in_flight, estimate.reset_at) {
                (0, reset_at) => reset_at,
                (_, Some(reset_at)) => Some(reset_at.min(news_due)),
                (_, None) => Some(news_due),
            },
            // Nothing known: one request goes first and the others wait for its answer, so that
            // a crowd of requests never runs into a budget nobody has seen.
            None if self.silent || self.in_flight == 0 => None,
            None => Some(news_due),
        }
    }

    fn take_unit(&mut self) {
        self.in_flight += 1;
        if let Some(estimate) = &mut self.estimate {
            estimate.remaining = estimate.remaining.saturating_sub(1);
        }
    }

    /// Once the announced reset has passed, the whole budget is back, or, after an IETF reset
    /// (draft-11: more of it, maybe one unit), an unknown part of it: one request goes first and
    /// its answer tells.
    fn refill_after_reset(&mut self, now: Instant) {
        let Some(estimate) = self.estimate else {
            return;
        };
        let Some(reset_at) = estimate.reset_at.filter(|at| *at <= now) else {
            return;
        };
        self.window_end = Some(reset_at);
        // Requests in flight across the reset may count in the new window: keep room for them.
        let in_flight = u64::from(self.in_flight);
        let limit = estimate.limit.filter(|_| estimate.whole_at_reset);
        self.estimate = limit.map(|limit| Estimate {
            limit: Some(limit),
            remaining: limit.saturating_sub(in_flight),
            reset_at: None,
            whole_at_reset: true,
        });
    }

    fn poll(&self) -> Duration {
        self.round_trip
            .unwrap_or(FIRST_ROUND_TRIP)
            .clamp(MIN_POLL, MAX_POLL)
    }

    fn measure(&mut self, sample: Duration) {
        // A moving average: one slow response does not make every wait long.
        self.round_trip = Some(match self.round_trip {
            Some(average) => (average * 7 + sample) / 8,
            None => sample,
        });
    }

    fn learn(&mut self, now: Instant, status: u16, report: &RateLimitStatus) {
        let refused = status == 429;
        if let Some(delay) = report.retry_after.filter(|_| refused || status == 503) {
            let until = now + delay;
            self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
        }
        match report.budget {
            Some(budget) => self.learn_budget(now, budget),
            None if self.estimate.is_none() && !refused => self.silent = true,
            None => {}
        }
        if refused {
            self.spend_all(now, report.retry_after);
        }
    }

    fn learn_budget(&mut self, now: Instant, budget: Budget) {
        let reset_at = budget.reset.map(|reset| now + reset);
        if let (Some(end), Some(at)) = (self.window_end, reset_at) {
            if at <= end + STALE_MARGIN {
                return;
            }
        }
        self.silent = false;
        self.estimate = Some(match self.estimate {
            // The server's count includes every request of ours it has seen, and ours includes
            // every request we sent: the smaller one is right whichever order the requests in
            // flight reach the server in. Subtracting the requests in flight instead would count
            // twice those the server has already seen.
            Some(ours) => Estimate {
                limit: budget.limit.or(ours.limit),
                remaining: ours.remaining.min(budget.remaining),
                reset_at: later(ours.reset_at, reset_at),
                whole_at_reset: budget.whole_at_reset,
            },
            // First news: requests sent before it was known may not be in the server's count.
            None => Estimate {
                limit: budget.limit,
                remaining: budget.remaining.saturating_sub(u64::from(self.in_flight)),
                reset_at,
                whole_at_reset: budget.whole_at_reset,
            },
        });
    }

    /// A 429: whatever the headers said, nothing is left until the reset or `Retry-After`.
    fn spend_all(&mut self, now: Instant, retry_after: Option<Duration>) {
        let retry_at = retry_after.map(|delay| now + delay);
        let estimate = self.estimate.get_or_insert(Estimate {
            limit: None,
            remaining: 0,
            reset_at: None,
            whole_at_reset: true,
        });
        estimate.remaining = 0;
        estimate.reset_at = estimate.reset_at.or(retry_at);
    }
}

fn later(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin::new("http", "127.0.0.1", Some(8080))
    }

    fn report(limit: Option<u64>, remaining: u64, reset_secs: u64) -> RateLimitStatus {
        RateLimitStatus {
            budget: Some(Budget {
                whole_at_reset: true,
                limit,
                remaining,
                reset: Some(Duration::from_secs(reset_secs)),
            }),
            retry_after: None,
        }
    }

    fn go(pacer: &Pacer, now: Instant) -> Permit {
        match pacer.admit(&origin(), now) {
            Admission::Go(permit) => permit,
            Admission::Wait(until) => panic!("held until {:?}", until - now),
        }
    }

    fn held(pacer: &Pacer, now: Instant) -> Duration {
        match pacer.admit(&origin(), now) {
            Admission::Go(_) => panic!("sent, expected to be held"),
            Admission::Wait(until) => until - now,
        }
    }

    #[test]
    fn after_an_ietf_reset_one_request_goes_first() {
        // A spent token bucket of 3 per 60 s under draft-11: `t` says one unit is back in
        // 20 s, not three.
        let pacer = Pacer::new();
        let t0 = Instant::now();
        let probe = go(&pacer, t0);
        let mut spent = report(Some(3), 0, 20);
        if let Some(budget) = &mut spent.budget {
            budget.whole_at_reset = false;
        }
        pacer.observe(probe, t0, 200, &spent);
        let after = t0 + Duration::from_secs(20);
        let first = go(&pacer, after);
        assert!(
            held(&pacer, after) <= MAX_POLL,
            "the others wait for its answer"
        );
        // Its answer says what is there: one unit, now spent.
        pacer.observe(first, after, 200, &report(Some(3), 0, 20));
        assert!(held(&pacer, after) >= Duration::from_secs(19));

        // X-RateLimit-Reset is the whole budget: all three go at once.
        let pacer = Pacer::new();
        let probe = go(&pacer, t0);
        pacer.observe(probe, t0, 200, &report(Some(3), 0, 20));
        for _ in 0..3 {
            go(&pacer, after);
        }
    }

    #[test]
    fn the_first_request_goes_alone_then_the_budget_is_shared_out() {
        let pacer = Pacer::new();
        let t0 = Instant::now();
        let probe = go(&pacer, t0);
        assert_eq!(
            held(&pacer, t0),
            FIRST_ROUND_TRIP,
            "waits for the first answer"
        );
        pacer.observe(probe, t0, 200, &report(Some(10), 3, 10));
        let permits: Vec<_> = (0..3).map(|_| go(&pacer, t0)).collect();
        assert!(
            held(&pacer, t0) <= MAX_POLL,
            "spent: waits for news of those in flight"
        );
        for permit in permits {
            pacer.observe(permit, t0, 200, &report(Some(10), 0, 10));
        }
        assert_eq!(
            held(&pacer, t0),
            Duration::from_secs(10),
            "held until the reset"
        );
    }

    #[test]
    fn after_the_reset_the_whole_limit_goes_and_no_more() {
        let pacer = Pacer::new();
        let t0 = Instant::now();
        pacer.observe(go(&pacer, t0), t0, 200, &report(Some(4), 0, 5));
        let t1 = t0 + Duration::from_secs(5);
        let permits: Vec<_> = (0..4).map(|_| go(&pacer, t1)).collect();
        assert!(
            held(&pacer, t1) < Duration::from_secs(1),
            "a fifth waits for news"
        );
        drop(permits);
        // Spent, nothing in flight, no reset known for the new window: one goes to find out.
        let _probe = go(&pacer, t1);
        assert!(held(&pacer, t1) <= MAX_POLL);
    }

    #[test]
    fn answers_out_of_order_never_overspend_nor_underspend() {
        // Four requests in flight answered in reverse order of admission: the local count is
        // exact, neither the stale 9 nor a double subtraction moves it.
        let pacer = Pacer::new();
        let t0 = Instant::now();
        pacer.observe(go(&pacer, t0), t0, 200, &report(Some(10), 9, 10));
        let permits: Vec<_> = (0..4).map(|_| go(&pacer, t0)).collect();
        for (permit, remaining) in permits.into_iter().zip([5, 6, 7, 8]) {
            pacer.observe(permit, t0, 200, &report(Some(10), remaining, 10));
        }
        let sent: Vec<_> = (0..5).map(|_| go(&pacer, t0)).collect();
        assert_eq!(sent.len(), 5, "exactly the five left");
        for permit in sent {
            pacer.observe(permit, t0, 200, &report(Some(10), 0, 10));
        }
        assert_eq!(held(&pacer, t0), Duration::from_secs(10));
    }

    #[test]
    fn other_clients_spending_lowers_the_count() {
        let pacer = Pacer::new();
        let t0 = Instant::now();
        pacer.observe(go(&pacer, t0), t0, 200, &report(Some(10), 9, 10));
        pacer.observe(go(&pacer, t0), t0, 200, &report(Some(10), 1, 10));
        pacer.observe(go(&pacer, t0), t0, 200, &report(Some(10), 0, 10));
        assert_eq!(held(&pacer, t0), Duration::from_secs(10));
    }

    #[test]
    fn retry_after_holds_every_request_to_the_origin() {
        let pacer = Pacer::new();
        let t0 = Instant::now();
        let refused = RateLimitStatus {
            budget: None,
            retry_after: Some(Duration::from_secs(3)),
        };
        pacer.observe(go(&pacer, t0), t0, 429, &refused);
        assert_eq!(held(&pacer, t0), Duration::from_secs(3));
        assert_eq!(
            held(&pacer, t0 + Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        go(&pacer, t0 + Duration::from_secs(3));
        let other = Origin::new("http", "127.0.0.1", Some(9090));
        assert!(
            matches!(pacer.admit(&other, t0), Admission::Go(_)),
            "per origin"
        );
        assert_eq!(pacer.stats().rate_limited, 1);
    }

    #[test]
    fn a_429_spends_the_budget_whatever_the_headers_say() {
        let pacer = Pacer::new();
        let t0 = Instant::now();
        pacer.observe(go(&pacer, t0), t0, 429, &report(Some(10), 4, 7));
        assert_eq!(held(&pacer, t0), Duration::from_secs(7));
    }

    #[test]
    fn a_server_without_headers_is_not_paced() {
        let pacer = Pacer::new();
        let t0 = Instant::now();
        pacer.observe(go(&pacer, t0), t0, 200, &RateLimitStatus::default());
        let crowd: Vec<_> = (0..100).map(|_| go(&pacer, t0)).collect();
        assert_eq!(crowd.len(), 100);
        assert_eq!(pacer.stats().sent, 101);
    }

    #[test]
    fn a_spent_budget_without_a_reset_is_probed_one_request_at_a_time() {
        let pacer = Pacer::new();
        let t0 = Instant::now();
        let spent = RateLimitStatus {
            budget: Some(Budget {
                whole_at_reset: true,
                limit: None,
                remaining: 0,
                reset: None,
            }),
            retry_after: None,
        };
        pacer.observe(go(&pacer, t0), t0, 200, &spent);
        let probe = go(&pacer, t0);
        assert!(held(&pacer, t0) <= MAX_POLL);
        drop(probe);
        go(&pacer, t0);
    }

    #[test]
    fn late_news_of_an_old_window_is_ignored() {
        let pacer = Pacer::new();
        let t0 = Instant::now();
        pacer.observe(go(&pacer, t0), t0, 200, &report(Some(3), 2, 10));
        let late = go(&pacer, t0);
        let t1 = t0 + Duration::from_secs(10);
        let fresh = go(&pacer, t1);
        // The old window's answer comes back after its reset, saying "nothing left until the
        // reset", which the rounding of whole seconds puts a little after it.
        let old_news = RateLimitStatus {
            budget: Some(Budget {
                whole_at_reset: true,
                limit: Some(3),
                remaining: 0,
                reset: Some(Duration::from_millis(400)),
            }),
            retry_after: None,
        };
        pacer.observe(late, t1, 200, &old_news);
        go(&pacer, t1);
        drop(fresh);
    }

    #[test]
    fn an_abandoned_request_frees_its_place_in_flight() {
        let pacer = Pacer::new();
        let t0 = Instant::now();
        let probe = go(&pacer, t0);
        held(&pacer, t0);
        drop(probe);
        go(&pacer, t0);
    }
}
