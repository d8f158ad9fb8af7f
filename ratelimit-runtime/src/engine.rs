//! The decision for one request: rules -> keys -> store -> 429 or a [`Pass`] whose hook adds the
//! headers after the handler.
//!
//! Enforced rules are decided together, all charged or none. Dry-run rules (`mode = "shadow"`,
//! or every rule of a limiter built with `.shadow(true)`) are decided as a second decision once
//! the enforced ones let the request through, so that a would-be denial of a dry run never
//! keeps the enforced rules from being charged.
//!
//! Settlement after the response: the units of a rule whose `deduct_when` refuses the response
//! are given back ([`Refunds`]): in memory before the response leaves, on Redis in one round
//! trip sent after it, never delaying it.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::http::header::HeaderMap;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, Responder};
use smallvec::SmallVec;

use crate::adaptive::{AdaptiveBounds, Priority};
use crate::algorithm::{AlgorithmKind, Limit};
use crate::backend::Outcome as Answer;
use crate::clock::{UnixNanos, NANOS_PER_SEC};
use crate::decision::Decision;
use crate::headers::{
    add_concurrency_headers, add_denied_headers, add_limit_headers, add_waited_header, public_name,
    HeaderStyle, Policy, Shown,
};
use crate::info::{RateLimitInfo, Settlement};
use crate::key::scope::custom;
use crate::key::Identity;
use crate::lookup::{self, LookupFailed};
use crate::metrics::{Outcome, RuleCounters, StoreLabel};
use crate::overrides::{KeyRule, Tables as KeyTables};
use crate::quota::Quota;
use crate::response::{
    blocked, lookup_failed, shed, too_many_requests, unavailable, unsupported_limit,
};
use crate::rule::{Mode, QuotaSource, Rule, Tier};
use crate::slots::{AdaptiveSlot, Held, HoldingBody, Slot, SlotAnswer};
use crate::state::{penalty_strikes, State};
use crate::store::{Check, Verdict};
use crate::unsupported::{self, UnsupportedLimit};

/// An allowed request: carries what its headers will say until the response exists, and the
/// slots of its concurrency limits until the response has been sent.
#[derive(Debug)]
#[must_use = "a Pass adds the rate-limit headers to the response"]
pub struct Pass {
    headers: Option<Shown>,
    style: HeaderStyle,
    /// The tightest concurrency limit that sends headers: (limit, slots left).
    concurrency: Option<(u32, u32)>,
    /// How long the request waited for its turn.
    waited: Duration,
    slots: Vec<Slot>,
    /// The charges the response may give back (rules with `deduct_when`).
    refunds: Option<Box<Refunds>>,
}

/// What the lookups of one rule answered for a request: the key it counts, and its tier when a
/// lookup chooses it (`None` also where a per-client entry decides without it). `skip`: a dry
/// run's lookup failed, and the rule is left out (a dry run never refuses).
pub(crate) struct Looked<'q> {
    identity: Identity<'q>,
    tier: Option<Tier>,
    skip: bool,
}

/// Charges of one request that its response may give back.
struct Refunds {
    state: Arc<State>,
    charges: SmallVec<[Charge; 2]>,
    /// What the handler settled for (`RateLimitInfo::settle`), for charges a `cost`
    /// function reserved.
    settlement: Option<Settlement>,
}

/// One rule's charge: the rule (its `deduct_when`, its metrics), the check charged, where and
/// when.
struct Charge {
    rule: Rule,
    tier: &'static str,
    check: Check,
    store: StoreLabel,
    charged_at: UnixNanos,
}

impl std::fmt::Debug for Refunds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refunds")
            .field("charges", &self.charges.len())
            .finish()
    }
}

/// Where a [`DefaultLimits`](crate::DefaultLimits) middleware collects the handler's decision,
/// so that one hook writes the headers of every limit.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeferredHeaders(pub(crate) Option<Shown>);

/// The rules of one decision, their tiers and their checks: one per rule, in order, then the
/// probe of each rule name's penalty (`penalized` says whose).
#[derive(Default)]
pub(crate) struct Batch<'r> {
    pub(crate) rules: SmallVec<[(&'r Rule, &'static str); 4]>,
    pub(crate) checks: SmallVec<[Check; 4]>,
    /// For each penalty probe (the checks after the rules' own), the index of its rule.
    pub(crate) penalized: SmallVec<[usize; 1]>,
}

/// What a batch came to.
pub(crate) enum Decided {
    Verdict(Verdict),
    /// A rule of the batch is one this limiter cannot decide: nothing was decided.
    Refused(UnsupportedLimit),
    /// Fail-open while the store is down: allowed, nothing known.
    Unlimited,
    /// Fail-closed while the store is down: 503 for this many seconds.
    Unavailable(u64),
}

impl State {
    /// Decides `rules` for `req` (see [`RateLimiter::check`](crate::RateLimiter::check)).
    pub(crate) async fn check(
        self: &Arc<Self>,
        req: &HttpRequest,
        rules: &[Rule],
    ) -> Result<Pass, HttpResponse> {
        let rules = self.overrides.apply(rules);
        // Async tier and key functions first: what they answer names the budgets.
        let looked = match rules.iter().any(Rule::looks_up) {
            false => SmallVec::new(),
            true => match self.look_up(req, &rules).await {
                Ok(looked) => looked,
                Err(failed) => return Err(lookup_failed(&failed)),
            },
        };
        // After the lookups, which may take a while: the decision is at the time it is made.
        let now = self.clock.now();
        let [concurrent, enforced, shadow] = match self.batches(req, &rules, &looked) {
            Ok(batches) => batches,
            Err((blocked, tier)) => return Err(self.refuse_blocked(blocked, tier)),
        };
        let mut pass = Pass {
            headers: None,
            style: self.header_style,
            concurrency: None,
            waited: Duration::ZERO,
            slots: Vec::new(),
            refunds: None,
        };
        // Slots first: a request refused for its rates gives them back (with `pass`).
        self.take_slots(req, &concurrent, now, &mut pass).await?;
        let mut info = None;
        if !enforced.checks.is_empty() {
            match self.decide_on(&enforced, now, now, Mode::Enforce).await {
                (Decided::Verdict(verdict), store) if verdict.allowed => {
                    // A turn reserved later than now (`max_wait`) is waited for here.
                    let turn = verdict
                        .decisions
                        .iter()
                        .map(|d| d.retry_at)
                        .fold(now, u64::max);
                    if turn > now {
                        pass.waited = Duration::from_nanos(turn - now);
                        tokio::time::sleep(pass.waited).await;
                    }
                    let shown = self.shown(&enforced, &verdict, turn);
                    info = shown_info(&enforced, &verdict, turn, self)
                        .map(|i| i.waited_for(pass.waited));
                    pass.headers = Some(shown).filter(|s| !s.policies.is_empty());
                    self.keep_refunds(&mut pass, &enforced, store, turn);
                }
                (Decided::Verdict(verdict), _) => {
                    let verdict = self.penalize(&enforced, verdict, now).await;
                    return Err(self.refuse(req, &enforced, &verdict, now));
                }
                (Decided::Refused(refused), _) => return Err(unsupported_limit(&refused)),
                (Decided::Unlimited, _) => return Ok(pass),
                (Decided::Unavailable(secs), _) => return Err(unavailable(secs)),
            }
        }
        if !shadow.checks.is_empty() {
            let started = self.clock.now();
            // A dry run this limiter cannot decide is skipped (and logged): it never refuses.
            if let (Decided::Verdict(verdict), store) =
                self.decide_on(&shadow, now, started, Mode::Shadow).await
            {
                let verdict = if verdict.allowed {
                    self.keep_refunds(&mut pass, &shadow, store, now);
                    verdict
                } else {
                    self.penalize(&shadow, verdict, now).await
                };
                self.log_shadow_denial(&shadow, &verdict, now);
                if info.is_none() {
                    info = most_restrictive(shadow.own(&verdict.decisions))
                        .map(|d| RateLimitInfo::new(*d, now));
                }
            }
        }
        // An adaptive limit times the handler and its response, not the rate decisions and the
        // waits for a turn before it.
        if !pass.slots.is_empty() {
            let started = self.clock.now();
            pass.slots
                .iter_mut()
                .for_each(|slot| slot.admitted_at(started));
        }
        // A handler with only concurrency limits reads those.
        if let Some(info) = info.or_else(|| pass.concurrency_info(now)) {
            let settlement = pass.refunds.as_ref().and_then(|r| r.settlement.clone());
            req.extensions_mut()
                .insert(info.settled_through(settlement));
        }
        Ok(pass)
    }

    /// The verdict of a refused request as its client is to see it, once the penalties of
    /// `batch`'s rules are settled: a rule whose client serves a penalty refuses until it ends;
    /// a rule that refused counts a strike, and its strike too many begins the penalty.
    async fn penalize(&self, batch: &Batch<'_>, mut verdict: Verdict, now: UnixNanos) -> Verdict {
        let own = batch.rules.len();
        for (j, &at) in batch.penalized.iter().enumerate() {
            let (rule, tier) = batch.rules[at];
            let Some(penalty) = rule.penalty else {
                continue;
            };
            let probe = &batch.checks[own + j];
            let serving = &verdict.decisions[own + j];
            let mine = |i: &usize| batch.rules[*i].0.name == rule.name;
            let ends = if !serving.allowed {
                Some(serving.retry_at)
            } else if (0..own).filter(mine).any(|i| !verdict.decisions[i].allowed) {
                self.strike(probe, penalty, rule, tier, now).await
            } else {
                None
            };
            let Some(ends) = ends else {
                continue;
            };
            for i in (0..own).filter(mine) {
                let decision = &mut verdict.decisions[i];
                // A decision the blocked-keys cache did not look at holds no limit: the check's.
                if decision.limit == 0 {
                    decision.limit = batch.checks[i].reported_limit();
                }
                decision.allowed = false;
                decision.remaining = 0;
                decision.retry_at = decision.retry_at.max(ends);
                decision.reset_at = decision.reset_at.max(ends);
            }
        }
        verdict
    }

    /// Counts a refusal of `rule` against its `penalty` (the client's strikes: a sliding log of
    /// `penalty.limit()` per period); the strike that fills them begins the penalty, by
    /// charging its `probe`. When the client is serving a penalty now, when it ends.
    async fn strike(
        &self,
        probe: &Check,
        penalty: Quota,
        rule: &Rule,
        tier: &'static str,
        now: UnixNanos,
    ) -> Option<UnixNanos> {
        let strikes = penalty_strikes(probe, penalty);
        let struck = self.decide_alone(strikes, now).await?;
        if struck.allowed && struck.remaining > 0 {
            return None;
        }
        // The strike too many (or, concurrently, one of them): the first to charge the probe
        // begins the penalty; the others find it begun.
        let begun = self
            .decide_alone(
                Check {
                    probe: false,
                    ..*probe
                },
                now,
            )
            .await?;
        let ends = if begun.allowed {
            self.metrics
                .with_rule(&rule.name, tier, RuleCounters::count_penalty);
            tracing::info!(
                rule = %rule.name,
                strikes = penalty.limit(),
                secs = penalty.period_secs(),
                "rate limiter: a client refused too often serves a penalty: every request of the rule is refused until it ends"
            );
            begun.reset_at
        } else {
            begun.retry_at
        };
        // Until it ends, the probe refuses where refusals are cached, without a round trip.
        self.backend.remember_refused(probe, ends, now);
        Some(ends)
    }

    /// Decides one check on the backend, charged if allowed: the decision, unless the store
    /// decided nothing (fail-open, fail-closed).
    async fn decide_alone(&self, check: Check, now: UnixNanos) -> Option<Decision> {
        let (answer, _) = self.backend.decide(&self.store, &[check], now, false).await;
        match answer {
            Answer::Decided(verdict) => verdict.decisions.first().copied(),
            Answer::Unlimited | Answer::Unavailable(_) => None,
        }
    }

    /// Takes a slot of each concurrency limit in `batch` into `pass`; the response to send
    /// when one has none left (the slots taken go back with `pass`).
    async fn take_slots(
        &self,
        req: &HttpRequest,
        batch: &Batch<'_>,
        now: UnixNanos,
        pass: &mut Pass,
    ) -> Result<(), HttpResponse> {
        for (&(rule, tier), check) in batch.rules.iter().zip(&batch.checks) {
            if let QuotaSource::Adaptive(bounds) = rule.quota {
                if !self.take_adaptive(req, rule, tier, check, bounds, pass) {
                    return Err(shed());
                }
                continue;
            }
            let limit = check.limit.quota.limit();
            let started = self.clock.now();
            let (answer, store) = self.backend.take_slot(&self.store, check, limit, now).await;
            self.observe_latency(store, started);
            let outcome = match answer {
                SlotAnswer::Taken(..) | SlotAnswer::Unlimited => Outcome::Allowed,
                // A limiter-wide dry run lets it through.
                SlotAnswer::Full(_) if self.shadow => Outcome::ShadowDenied,
                SlotAnswer::Full(_) | SlotAnswer::Unavailable(_) => Outcome::Denied,
            };
            // A slot is the unit; fail-open lets a request through without one.
            let units = u32::from(matches!(answer, SlotAnswer::Taken(..)));
            self.metrics.count(rule, tier, outcome, store, units);
            match answer {
                SlotAnswer::Taken(held, in_flight) => {
                    let counters = self.metrics.counters(&rule.name, tier);
                    pass.slots
                        .push(Slot::new(held, Arc::clone(&self.store), counters));
                    let left = limit.saturating_sub(in_flight);
                    if rule.send_x_headers && pass.concurrency.is_none_or(|(_, l)| left < l) {
                        pass.concurrency = Some((limit, left));
                    }
                }
                SlotAnswer::Unlimited => {}
                SlotAnswer::Full(in_flight) if self.shadow => {
                    if self
                        .metrics
                        .with_rule(&rule.name, tier, |c| c.shadow_log_due(now))
                    {
                        tracing::info!(
                            rule = %rule.name,
                            limit,
                            in_flight,
                            "concurrency limit would deny this request (shadow mode: let through)"
                        );
                    }
                }
                SlotAnswer::Full(in_flight) => {
                    tracing::debug!(rule = %rule.name, limit, in_flight, "concurrency limit reached");
                    return Err(self.refuse_concurrency(req, rule, limit, now));
                }
                SlotAnswer::Unavailable(secs) => return Err(unavailable(secs)),
            }
        }
        Ok(())
    }
    /// A slot of the adaptive limit `rule` (bounds `bounds`) for `req`; false when the limit
    /// sheds it (503). In process memory whatever the store: the limit protects this server.
    fn take_adaptive(
        &self,
        req: &HttpRequest,
        rule: &Rule,
        tier: &'static str,
        check: &Check,
        bounds: AdaptiveBounds,
        pass: &mut Pass,
    ) -> bool {
        let now = self.clock.now();
        let prioritized = rule.priority.is_some();
        let limit = self
            .adaptive
            .get(check.key, &rule.name, bounds, prioritized, now);
        let priority = rule.priority.map_or(Priority::Normal, |of| of(req));
        let (outcome, units, in_flight) = match limit.try_take(priority, prioritized) {
            Ok(in_flight) => (Outcome::Allowed, 1, in_flight),
            // A dry run lets it through, holding a slot all the same: the controller then sees
            // the load it would have shed.
            Err(_) if self.shadow => (Outcome::ShadowDenied, 0, limit.force_take()),
            Err(in_force) => {
                self.metrics
                    .count(rule, tier, Outcome::Shed, StoreLabel::Memory, 0);
                self.metrics
                    .with_rule(&rule.name, tier, |c| c.shed(priority));
                tracing::debug!(rule = %rule.name, limit = in_force, priority = priority.name(), "adaptive concurrency limit: shed");
                return false;
            }
        };
        self.metrics
            .count(rule, tier, outcome, StoreLabel::Memory, units);
        let counters = self.metrics.counters(&rule.name, tier);
        counters.adaptive();
        let held = AdaptiveSlot::new(limit, now, in_flight, Arc::clone(&self.clock));
        pass.slots.push(Slot::new(
            Held::Adaptive(held),
            Arc::clone(&self.store),
            counters,
        ));
        true
    }

    /// What the async tier and key functions of `rules` answer for `req`, rule by rule (`None`
    /// for a rule without any, or that does not apply): the key counted, then the tier looked
    /// up with it, unless a per-client entry decides for that key. A failed lookup of an
    /// enforced rule fails the request; a dry run's is logged and the rule left out. See
    /// [`lookup`](crate::lookup).
    async fn look_up<'q>(
        &self,
        req: &'q HttpRequest,
        rules: &[Rule],
    ) -> Result<SmallVec<[Option<Looked<'q>>; 4]>, LookupFailed> {
        let mut looked = SmallVec::with_capacity(rules.len());
        let keyed = self.overrides.key_tables();
        for rule in rules {
            if !rule.looks_up()
                || !rule.applies_to(req)
                || rule.exempt.is_some_and(|exempt| exempt(req))
            {
                looked.push(None);
                continue;
            }
            match self.look_up_rule(req, rule, keyed.as_deref()).await {
                Ok(answered) => looked.push(Some(answered)),
                Err(_) if self.shadow || rule.mode == Mode::Shadow => {
                    looked.push(Some(Looked {
                        identity: Identity::Unknown,
                        tier: None,
                        skip: true,
                    }));
                }
                Err(failed) => return Err(failed),
            }
        }
        Ok(looked)
    }

    /// The lookups of one rule for `req`.
    async fn look_up_rule<'q>(
        &self,
        req: &'q HttpRequest,
        rule: &Rule,
        keyed: Option<&KeyTables>,
    ) -> Result<Looked<'q>, LookupFailed> {
        let mut identity = rule.scope.identify(req, &self.client_ip);
        if let Some((key, _)) = rule.scope.lookup() {
            match identity.name().map(Cow::into_owned) {
                Some(name) => {
                    let answer = self
                        .lookups
                        .keys
                        .get((key.function)(), &rule.name, &name, &*self.clock, || {
                            lookup::later((key.choose)(req, Some(name.clone())))
                        })
                        .await?;
                    identity =
                        custom(answer).unwrap_or_else(|| Identity::anonymous(req, &self.client_ip));
                }
                // A request without the key the lookup is asked (or with one that is not
                // UTF-8) is counted per address.
                None if matches!(identity, Identity::Header(_)) => {
                    identity = Identity::anonymous(req, &self.client_ip);
                }
                None => {}
            }
        }
        // A per-client entry (a rate, unlimited, blocked) decides without the tier.
        let entry = keyed.and_then(|tables| tables.key_rule(rule, &identity));
        let tier = match (rule.quota.lookup(), entry) {
            (Some(chooser), None) => {
                let key = identity.name().map(Cow::into_owned).unwrap_or_default();
                Some(self.look_up_tier(chooser, &rule.name, &key).await?)
            }
            _ => None,
        };
        Ok(Looked {
            identity,
            tier,
            skip: false,
        })
    }

    /// The checks of `req` under `rules`, in three batches: concurrency limits, enforced
    /// rates, dry-run rates. Exempt rules, rules of other methods and rules a per-client entry
    /// makes `"unlimited"` for this client are left out; a rate rule's per-client rate replaces
    /// its limits; `looked` holds what lookups answered. `Err`: an enforced rule's per-client
    /// entry blocks this client (the rule and its tier).
    fn batches<'r>(
        &self,
        req: &HttpRequest,
        rules: &'r [Rule],
        looked: &[Option<Looked<'_>>],
    ) -> Result<[Batch<'r>; 3], (&'r Rule, &'static str)> {
        let mut batches: [Batch<'r>; 3] = Default::default();
        // The penalty probes of each batch: (rule index, probe), one per rule name.
        let mut probes: [SmallVec<[(usize, Check); 1]>; 3] = Default::default();
        // Per-client entries, when any is in force, and the rule names one decided.
        let keyed = self.overrides.key_tables();
        let mut by_key: SmallVec<[&str; 2]> = SmallVec::new();
        for (i, rule) in rules.iter().enumerate() {
            if !rule.applies_to(req) || rule.exempt.is_some_and(|exempt| exempt(req)) {
                continue;
            }
            let looked = looked.get(i).and_then(Option::as_ref);
            if looked.is_some_and(|l| l.skip) {
                continue;
            }
            let identity = match looked {
                Some(looked) => looked.identity.clone(),
                None => rule.scope.identify(req, &self.client_ip),
            };
            // `None`: a tier lookup not asked, since a per-client entry decides (below).
            let chosen = match looked.and_then(|l| l.tier) {
                Some(tier) => Some(rule.tier_limit(tier)),
                None => rule.tier_for(req),
            };
            let tier = chosen.map_or("", |(_, tier)| tier);
            let batch = if rule.quota.is_concurrency() {
                0
            } else if self.shadow || rule.mode == Mode::Shadow {
                2
            } else {
                1
            };
            let mut limits: SmallVec<[Limit; 1]> =
                chosen.map(|(limit, _)| limit).into_iter().collect();
            if let Some(entry) = keyed.as_deref().and_then(|t| t.key_rule(rule, &identity)) {
                // The first rate rule of a name stands for all of them.
                if by_key.contains(&rule.name.as_ref()) {
                    continue;
                }
                by_key.push(rule.name.as_ref());
                match entry {
                    KeyRule::Unlimited => continue,
                    KeyRule::Blocked if batch == 2 => {
                        let now = self.clock.now();
                        if self
                            .metrics
                            .with_rule(&rule.name, tier, |c| c.shadow_log_due(now))
                        {
                            tracing::info!(rule = %rule.name, "a per-client override blocks this client (shadow mode: let through)");
                        }
                        continue;
                    }
                    KeyRule::Blocked => return Err((rule, tier)),
                    KeyRule::Rate(quotas) => {
                        limits = quotas.iter().map(|&quota| rule.limit_of(quota)).collect();
                    }
                }
            }
            if limits.is_empty() {
                continue;
            }
            for limit in limits {
                let mut check = self.check_for(rule, limit, &identity);
                // A cost chosen per request: the units it reserves.
                if let Some(cost_of) = rule.cost_fn {
                    check.cost = cost_of(req);
                }
                batches[batch].checks.push(check);
                batches[batch].rules.push((rule, tier));
            }
            if let Some(penalty) = rule.penalty {
                let named = &batches[batch].rules;
                if !probes[batch]
                    .iter()
                    .any(|&(at, _)| named[at].0.name == rule.name)
                {
                    let probe = self.penalty_probe(rule, penalty, &identity);
                    // The index of the rule's last check: a rule of that name.
                    probes[batch].push((named.len() - 1, probe));
                }
            }
        }
        for (batch, probes) in batches.iter_mut().zip(probes) {
            for (at, probe) in probes {
                batch.checks.push(probe);
                batch.penalized.push(at);
            }
        }
        Ok(batches)
    }

    /// Decides `batch` on the backend and counts what it came to; `started` is when the
    /// decision began, on the limiter's clock (the time it took is measured from there). A
    /// batch holding a limit this limiter cannot decide is refused whole, never decided
    /// elsewhere.
    pub(crate) async fn decide(
        &self,
        batch: &Batch<'_>,
        now: UnixNanos,
        started: UnixNanos,
        mode: Mode,
    ) -> Decided {
        self.decide_on(batch, now, started, mode).await.0
    }

    /// [`decide`](Self::decide), and which store decided.
    async fn decide_on(
        &self,
        batch: &Batch<'_>,
        now: UnixNanos,
        started: UnixNanos,
        mode: Mode,
    ) -> (Decided, StoreLabel) {
        if let Some(refused) = self.refusal(batch) {
            return (Decided::Refused(refused), StoreLabel::Memory);
        }
        // A soft limit reads the remaining count, which a lease would understate; a penalty is
        // decided where it is kept.
        let leasable =
            batch.penalized.is_empty() && batch.rules.iter().all(|(rule, _)| rule.soft.is_none());
        let (answer, store) = self
            .backend
            .decide(&self.store, &batch.checks, now, leasable)
            .await;
        self.observe_latency(store, started);
        let decided = match answer {
            Answer::Decided(verdict) => Decided::Verdict(verdict),
            Answer::Unlimited => Decided::Unlimited,
            Answer::Unavailable(secs) => Decided::Unavailable(secs),
        };
        self.count(batch, &decided, store, mode);
        (decided, store)
    }

    /// Keeps in `pass` the charges of `batch` (allowed, charged by `store` at `charged_at`)
    /// that a rule's `deduct_when` may give back once the response exists.
    fn keep_refunds(
        self: &Arc<Self>,
        pass: &mut Pass,
        batch: &Batch<'_>,
        store: StoreLabel,
        charged_at: UnixNanos,
    ) {
        let charges = batch
            .rules
            .iter()
            .zip(&batch.checks)
            .filter(|((rule, _), _)| rule.deduct_when.is_some() || rule.cost_fn.is_some());
        for (&(rule, tier), check) in charges {
            let refunds = pass.refunds.get_or_insert_with(|| {
                Box::new(Refunds {
                    state: Arc::clone(self),
                    charges: SmallVec::new(),
                    settlement: None,
                })
            });
            if rule.cost_fn.is_some() && refunds.settlement.is_none() {
                refunds.settlement = Some(Settlement::new());
            }
            refunds.charges.push(Charge {
                rule: rule.clone(),
                tier,
                check: *check,
                store,
                charged_at,
            });
        }
    }

    /// The first limit of `batch` this limiter cannot decide (known only now: a quota chosen
    /// per request, a `check_key` limit, default limits the start-up checks could not see),
    /// logged once per rule and tier, and counted as a refused Redis decision.
    fn refusal(&self, batch: &Batch<'_>) -> Option<UnsupportedLimit> {
        let on_redis = self.backend.is_shared();
        for (&(rule, tier), check) in batch.rules.iter().zip(&batch.checks) {
            let Err(refused) = unsupported::check(rule, &check.limit, on_redis) else {
                continue;
            };
            self.backend.count_refused();
            if self
                .metrics
                .with_rule(&rule.name, tier, RuleCounters::first_refusal)
            {
                tracing::error!(
                    "rate limiter: {refused}; requests under it are answered 500 (a dry run lets them through)"
                );
            }
            return Some(refused);
        }
        None
    }

    /// Times a decision that began at `started`: one more clock read, only with metrics on.
    fn observe_latency(&self, store: StoreLabel, started: UnixNanos) {
        if self.metrics.enabled() {
            let elapsed = self.clock.now().saturating_sub(started);
            self.metrics
                .observe_latency(store, Duration::from_nanos(elapsed));
        }
    }

    /// Counts each rule's outcome, once per request: a rule of several limits
    /// (`"200/day;50/hour"`) is one decision, refused when any of its limits refused, degraded
    /// when any passed its soft limit; its units are what its limits were charged, summed. A
    /// denied request counts against the rules that refused it; the others, not charged,
    /// count nothing.
    fn count(&self, batch: &Batch<'_>, decided: &Decided, store: StoreLabel, mode: Mode) {
        if !self.metrics.enabled() {
            return;
        }
        // One per rule name and tier, in order.
        let mut counted: SmallVec<[(&Rule, &str, Counted); 4]> = SmallVec::new();
        for (i, &(rule, tier)) in batch.rules.iter().enumerate() {
            let outcome = self.outcome_of(batch, i, decided, mode);
            match counted
                .iter_mut()
                .find(|(r, t, _)| r.name == rule.name && *t == tier)
            {
                Some((_, _, merged)) => *merged = worse(*merged, outcome),
                None => counted.push((rule, tier, outcome)),
            }
        }
        for (rule, tier, outcome) in counted {
            if let Some((outcome, units)) = outcome {
                self.metrics.count(rule, tier, outcome, store, units);
            }
        }
    }

    /// What the `i`th limit of a batch came to, and the units it spent; `None` when it allowed
    /// a request another limit refused, or nothing was decided.
    fn outcome_of(&self, batch: &Batch<'_>, i: usize, decided: &Decided, mode: Mode) -> Counted {
        let (rule, cost) = (batch.rules[i].0, batch.checks[i].cost);
        match decided {
            Decided::Verdict(verdict) => {
                let decision = &verdict.decisions[i];
                // A client serving the rule's penalty is refused by the rule.
                let allowed = decision.allowed && !batch.serving_penalty(rule, verdict);
                match (verdict.allowed, allowed, mode) {
                    (true, _, _) if self.above_soft(rule, decision) => {
                        Some((Outcome::Degraded, cost))
                    }
                    (true, _, _) => Some((Outcome::Allowed, cost)),
                    (false, false, Mode::Enforce) => Some((Outcome::Denied, 0)),
                    (false, false, Mode::Shadow) => Some((Outcome::ShadowDenied, 0)),
                    (false, true, _) => None,
                }
            }
            Decided::Unlimited => Some((Outcome::Allowed, 0)),
            Decided::Unavailable(_) if mode == Mode::Shadow => Some((Outcome::ShadowDenied, 0)),
            Decided::Unavailable(_) => Some((Outcome::Denied, 0)),
            // Nothing was decided: counted as a refused decision, not an outcome.
            Decided::Refused(_) => None,
        }
    }

    /// Whether `decision` spent past `rule`'s soft limit. A soft limit at or above the limit
    /// (possible only with a per-request quota, checked here) is ignored, with a warning.
    fn above_soft(&self, rule: &Rule, decision: &Decision) -> bool {
        let Some(soft) = rule.soft else {
            return false;
        };
        if soft.get() >= decision.limit {
            if self
                .metrics
                .with_rule(&rule.name, "", RuleCounters::first_warning)
            {
                tracing::warn!(
                    "rate limiter: rule `{}` has a soft limit of {} but a limit of {} for this request; the soft limit is ignored where it is not below the limit",
                    rule.name, soft, decision.limit
                );
            }
            return false;
        }
        decision.limit - decision.remaining > soft.get()
    }

    /// What the headers of an allowed request show: its enforced rules that send headers.
    fn shown(&self, batch: &Batch<'_>, verdict: &Verdict, now: UnixNanos) -> Shown {
        let policies = batch
            .rules
            .iter()
            .zip(&batch.checks)
            .zip(&verdict.decisions)
            .filter(|(((rule, _), _), _)| rule.send_x_headers)
            .map(|(((rule, _), check), decision)| {
                policy(rule, check, decision, now, stacked(batch, rule))
            })
            .collect();
        Shown { now, policies }
    }

    /// The response to a request `batch` refused: the refusing rule's (the one whose budget
    /// comes back last) `over_limit` or 429, with its headers.
    fn refuse(
        &self,
        req: &HttpRequest,
        batch: &Batch<'_>,
        verdict: &Verdict,
        now: UnixNanos,
    ) -> HttpResponse {
        let at = (0..batch.rules.len())
            .filter(|&i| !verdict.decisions[i].allowed)
            .max_by_key(|&i| verdict.decisions[i].retry_at)
            .unwrap_or(0);
        let (rule, check, decision) =
            (batch.rules[at].0, &batch.checks[at], &verdict.decisions[at]);
        let info = RateLimitInfo::new(*decision, now);
        tracing::debug!(
            rule = %rule.name,
            retry_after_secs = info.retry_after_secs(),
            "rate limit exceeded"
        );
        req.extensions_mut().insert(info.clone());
        let window = check.limit.quota.period_secs();
        let detail = || {
            format!(
                "Too many requests: {} per {window} s allowed; retry in {} s",
                info.limit(),
                info.retry_after_secs()
            )
        };
        let refusing = policy(rule, check, decision, now, stacked(batch, rule));
        let mut response = match rule.over_limit {
            Some(respond) => respond(req, &info),
            None => too_many_requests(&info, detail, Some(&refusing.name()), self.denied_body),
        };
        let shown = Shown {
            now,
            policies: [refusing].into_iter().collect(),
        };
        add_denied_headers(
            response.headers_mut(),
            &info,
            &shown,
            self.header_style,
            rule.send_x_headers,
        );
        response
    }

    /// The response to a request of a client a per-client override of `rule` blocks: 403
    /// (an operator's decision, not a spent budget: retrying will not help, so no
    /// `Retry-After`), the store not asked.
    fn refuse_blocked(&self, rule: &Rule, tier: &'static str) -> HttpResponse {
        self.metrics
            .count(rule, tier, Outcome::Denied, StoreLabel::Memory, 0);
        tracing::debug!(rule = %rule.name, "a per-client override blocks this client");
        blocked(&rule.name)
    }

    /// The response to a request refused by the concurrency limit `rule` of `limit`: 429 with
    /// `Retry-After: 1` (slots come back as requests end, not at a known instant).
    fn refuse_concurrency(
        &self,
        req: &HttpRequest,
        rule: &Rule,
        limit: u32,
        now: UnixNanos,
    ) -> HttpResponse {
        let in_a_second = now.saturating_add(NANOS_PER_SEC);
        let decision = Decision {
            allowed: false,
            limit,
            remaining: 0,
            reset_at: in_a_second,
            retry_at: in_a_second,
        };
        let info = RateLimitInfo::new(decision, now);
        req.extensions_mut().insert(info.clone());
        let detail =
            || format!("Too many requests in flight: at most {limit} at once; retry in 1 s");
        let mut response = match rule.over_limit {
            Some(respond) => respond(req, &info),
            // A concurrency limit is no quota policy of the `RateLimit` fields.
            None => too_many_requests(&info, detail, None, self.denied_body),
        };
        let headers = response.headers_mut();
        add_denied_headers(headers, &info, &Shown::default(), self.header_style, false);
        if rule.send_x_headers {
            add_concurrency_headers(headers, limit, 0);
        }
        response
    }

    /// Logs the rules of a dry run that would have refused the request, each at most once a
    /// second.
    fn log_shadow_denial(&self, batch: &Batch<'_>, verdict: &Verdict, now: UnixNanos) {
        if verdict.allowed {
            return;
        }
        for (&(rule, tier), decision) in batch.rules.iter().zip(&verdict.decisions) {
            if decision.allowed
                || !self
                    .metrics
                    .with_rule(&rule.name, tier, |c| c.shadow_log_due(now))
            {
                continue;
            }
            tracing::info!(
                rule = %rule.name,
                retry_after_secs = RateLimitInfo::new(*decision, now).retry_after_secs(),
                "rate limit would deny this request (shadow mode: let through)"
            );
        }
    }
}

/// The info a handler reads: the most restrictive enforced decision, and whether any rule
/// passed it above its soft limit.
fn shown_info(
    batch: &Batch<'_>,
    verdict: &Verdict,
    now: UnixNanos,
    inner: &State,
) -> Option<RateLimitInfo> {
    let degraded = batch
        .rules
        .iter()
        .zip(&verdict.decisions)
        .any(|((rule, _), decision)| inner.above_soft(rule, decision));
    most_restrictive(batch.own(&verdict.decisions))
        .map(|d| RateLimitInfo::new(*d, now).degraded_if(degraded))
}

impl Batch<'_> {
    /// Whether `verdict` says the client serves `rule`'s penalty (its probe refused).
    fn serving_penalty(&self, rule: &Rule, verdict: &Verdict) -> bool {
        let own = self.rules.len();
        self.penalized.iter().enumerate().any(|(j, &at)| {
            self.rules[at].0.name == rule.name
                && verdict.decisions.get(own + j).is_some_and(|d| !d.allowed)
        })
    }

    /// The decisions of the rules' own checks, without the penalty probes.
    pub(crate) fn own<'d>(&self, decisions: &'d [Decision]) -> &'d [Decision] {
        &decisions[..self.rules.len().min(decisions.len())]
    }
}

fn most_restrictive(decisions: &[Decision]) -> Option<&Decision> {
    decisions
        .iter()
        .reduce(|a, b| if b.is_more_restrictive_than(a) { b } else { a })
}

fn policy(
    rule: &Rule,
    check: &Check,
    decision: &Decision,
    now: UnixNanos,
    stacked: bool,
) -> Policy {
    Policy {
        rule: rule.name.clone(),
        quota: check.limit.quota.limit(),
        window_secs: check.limit.quota.period_secs(),
        decision: *decision,
        more_at: more_at(check, decision, now),
        stacked,
    }
}

/// Whether another limit of `batch` goes by the public name of `rule` (stacked limits of one
/// handler): its policy is then named with its window, on every response alike.
fn stacked(batch: &Batch<'_>, rule: &Rule) -> bool {
    // Most requests have one limit: no names to compare.
    if batch.rules.len() < 2 {
        return false;
    }
    let name = public_name(&rule.name);
    batch
        .rules
        .iter()
        .filter(|(other, _)| public_name(&other.name) == name)
        .nth(1)
        .is_some()
}

/// When the budget of `check` next holds more than `decision` left (draft-11's `t`): for a
/// refusal, when the request would pass; for a fixed window, its end; for a bucket or GCRA,
/// when the next unit comes back (one every `period / limit`, the last at `reset_at`; at most
/// one interval away), or `now` when it is whole; for a sliding window or log, `reset_at` (when the budget is whole:
/// some units may come back earlier).
fn more_at(check: &Check, decision: &Decision, now: UnixNanos) -> UnixNanos {
    if !decision.allowed {
        return decision.retry_at.max(now);
    }
    match check.algorithm {
        AlgorithmKind::TokenBucket | AlgorithmKind::LeakyBucket | AlgorithmKind::Gcra => {
            let capacity = check.limit.capacity.get();
            let Some(missing) = capacity.checked_sub(decision.remaining).filter(|&m| m > 0) else {
                return now;
            };
            let period = u128::from(check.limit.quota.period_secs()) * u128::from(NANOS_PER_SEC);
            let interval = period.div_ceil(u128::from(check.limit.quota.limit().max(1)));
            let later = interval.saturating_mul(u128::from(missing - 1));
            let at = u128::from(decision.reset_at).saturating_sub(later);
            let at = u64::try_from(at).unwrap_or(u64::MAX);
            // A bucket that is not whole gets a unit back within one interval. A decision
            // whose `remaining` is not the bucket's own (made from a lease: the units held
            // here, or Redis's count with them) would put the next unit before now or after
            // that: it is then one interval away.
            let next = now.saturating_add(u64::try_from(interval).unwrap_or(u64::MAX));
            if at <= now {
                next
            } else {
                at.min(next)
            }
        }
        _ => decision.reset_at.max(now),
    }
}

impl Pass {
    /// The info of a request whose only limits are concurrency limits: slots left of the
    /// tightest.
    fn concurrency_info(&self, now: UnixNanos) -> Option<RateLimitInfo> {
        let (limit, left) = self.concurrency?;
        let decision = Decision {
            allowed: true,
            limit,
            remaining: left,
            reset_at: now,
            retry_at: now,
        };
        Some(RateLimitInfo::new(decision, now))
    }

    /// The handler's output as a response, with the limit headers added.
    pub fn respond<R: Responder>(mut self, output: R, req: &HttpRequest) -> HttpResponse
    where
        R::Body: MessageBody + 'static,
    {
        // The handler ran: its latency is what an adaptive limit learns from (an extractor's
        // error, answered by `finish` alone, is not).
        self.slots.iter_mut().for_each(Slot::served);
        self.finish(output.respond_to(req).map_into_boxed_body(), req)
    }

    /// The after-response hook: adds the limit headers to `response` unless the handler set
    /// them, or hands them to an enclosing [`DefaultLimits`](crate::DefaultLimits) hook.
    pub fn finish(mut self, mut response: HttpResponse, req: &HttpRequest) -> HttpResponse {
        if let Some(refunds) = self.refunds.take() {
            refunds.settle(&response);
        }
        let headers = response.headers_mut();
        if let Some((limit, left)) = self.concurrency {
            add_concurrency_headers(headers, limit, left);
        }
        if !self.waited.is_zero() {
            add_waited_header(headers, self.waited);
        }
        if let Some(shown) = self.headers {
            match req.extensions_mut().get_mut::<DeferredHeaders>() {
                Some(deferred) => deferred.0 = Some(shown.merge(deferred.0.take())),
                None => add_limit_headers(headers, &shown, self.style),
            }
        }
        if self.slots.is_empty() {
            return response;
        }
        let slots = self.slots;
        response.map_body(|_, body| BoxBody::new(HoldingBody::new(body, slots)))
    }

    /// The one header hook when a middleware wraps the handler: the middleware's and the
    /// handler's limits together, never over a header the handler set.
    pub(crate) fn finish_deferred(mut self, headers: &mut HeaderMap, handler: Option<Shown>) {
        // The service behind the middleware answered.
        self.slots.iter_mut().for_each(Slot::served);
        let shown = match (self.headers, handler) {
            (Some(mine), handler) => Some(mine.merge(handler)),
            (None, handler) => handler,
        };
        if let Some(shown) = shown {
            add_limit_headers(headers, &shown, self.style);
        }
    }
}

impl Refunds {
    /// Gives back the charges whose rule's `deduct_when` refuses `response`, and what the
    /// handler did not spend of what a `cost` function reserved: in memory at once, on Redis
    /// in a task of its own (the response does not wait for it).
    fn settle(self: Box<Self>, response: &HttpResponse) {
        let Refunds {
            state,
            charges,
            settlement,
        } = *self;
        let settled = settlement.as_ref().and_then(Settlement::settled);
        let back: SmallVec<[Charge; 2]> = charges
            .into_iter()
            .filter_map(|mut charge| {
                let reserved = charge.check.cost;
                let back = if charge
                    .rule
                    .deduct_when
                    .is_some_and(|counts| !counts(response))
                {
                    reserved
                } else if charge.rule.cost_fn.is_some() {
                    settled.map_or(0, |used| reserved.saturating_sub(used))
                } else {
                    0
                };
                charge.check.cost = back;
                (back > 0).then_some(charge)
            })
            .collect();
        if back.is_empty() {
            return;
        }
        if !state.backend.is_shared() {
            let now = state.clock.now();
            for charge in &back {
                state
                    .store
                    .refund_now(std::slice::from_ref(&charge.check), charge.charged_at, now);
                charge.counted(&state);
            }
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!("rate limiter: no runtime to give units back on; they stay spent");
            return;
        };
        runtime.spawn(async move {
            let now = state.clock.now();
            for charge in &back {
                state
                    .backend
                    .refund(
                        &state.store,
                        std::slice::from_ref(&charge.check),
                        charge.store,
                        charge.charged_at,
                        now,
                    )
                    .await;
                charge.counted(&state);
            }
        });
    }
}

impl Charge {
    /// Counts the charge given back: `outcome="refunded"`, and its units.
    fn counted(&self, state: &State) {
        state.metrics.count(
            &self.rule,
            self.tier,
            Outcome::Refunded,
            self.store,
            self.check.cost,
        );
    }
}

/// What one limit of a request came to and the units it spent; `None`: nothing to count.
type Counted = Option<(Outcome, u32)>;

/// The outcome of a rule whose limits came to `a` and `b`: a refusal over a degraded pass over
/// a pass, with the units both were charged.
fn worse(a: Counted, b: Counted) -> Counted {
    let rank = |o: &Counted| match o {
        Some((Outcome::Denied | Outcome::ShadowDenied | Outcome::Shed, _)) => 3,
        Some((Outcome::Degraded, _)) => 2,
        Some((Outcome::Allowed | Outcome::Refunded, _)) => 1,
        None => 0,
    };
    let units = |o: &Counted| o.map_or(0, |(_, units)| units);
    let outcome = if rank(&b) > rank(&a) { b } else { a };
    outcome.map(|(outcome, _)| (outcome, units(&a).saturating_add(units(&b))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = NANOS_PER_SEC;

    /// A token bucket of 3 per 60 s (a unit back every 20 s).
    fn bucket() -> Check {
        Check {
            key: 1,
            group: 0,
            algorithm: AlgorithmKind::TokenBucket,
            limit: Limit::new(Quota::from_parts(3, 60).unwrap()),
            cost: 1,
            max_wait: 0,
            probe: false,
        }
    }

    fn allowed(remaining: u32, reset_in: u64) -> Decision {
        Decision {
            allowed: true,
            limit: 3,
            remaining,
            reset_at: 100 * SEC + reset_in,
            retry_at: 100 * SEC,
        }
    }

    #[test]
    fn more_is_available_when_the_next_unit_is_back() {
        let now = 100 * SEC;
        // Whole: now. One spent (back in 20 s): 20 s. Two spent, 35 s to whole: 15 s.
        assert_eq!(more_at(&bucket(), &allowed(3, 0), now), now);
        assert_eq!(
            more_at(&bucket(), &allowed(2, 20 * SEC), now),
            now + 20 * SEC
        );
        assert_eq!(
            more_at(&bucket(), &allowed(1, 35 * SEC), now),
            now + 15 * SEC
        );
        // From a lease, `remaining` is what this process holds (1) with the grant's reset (5 s
        // away), or Redis's count with the lease's units (2, whole in 55 s): at most one
        // interval either way.
        assert_eq!(
            more_at(&bucket(), &allowed(1, 5 * SEC), now),
            now + 20 * SEC
        );
        assert_eq!(
            more_at(&bucket(), &allowed(2, 55 * SEC), now),
            now + 20 * SEC
        );
        // Refused: when it would pass.
        let refused = Decision {
            allowed: false,
            retry_at: now + 7 * SEC,
            ..allowed(0, 60 * SEC)
        };
        assert_eq!(more_at(&bucket(), &refused, now), now + 7 * SEC);
    }
}
