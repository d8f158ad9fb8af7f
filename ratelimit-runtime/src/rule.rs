//! [`Rule`]: one limit as the attribute or the middleware states it.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::hash::Hasher;
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse};

use crate::adaptive::{AdaptiveBounds, Priority};
use crate::algorithm::{AlgorithmKind, Limit};
use crate::info::RateLimitInfo;
use crate::key::fingerprint::write_str;
use crate::key::Scope;
use crate::lookup::{Choice, Chooser};
use crate::quota::Quota;

/// Where a rule's quota comes from.
#[derive(Clone, Copy, Debug)]
pub enum QuotaSource {
    /// The same quota for every request.
    Fixed(Quota),
    /// A quota chosen per request (tiers: free, pro, enterprise).
    PerRequest(fn(&HttpRequest) -> Tier),
    /// A tier function as the attribute wraps it: of the request, or an async lookup of the
    /// client's key whose answers the limiter caches (see [`lookup`](crate::lookup)).
    Chosen(Chooser<Tier>),
    /// Not a rate but a concurrency limit: at most this many requests in flight at once.
    InFlight(NonZeroU32),
    /// A concurrency limit that follows the latency of the requests it admits, within these
    /// bounds (`concurrency = "adaptive"`, see [`adaptive`](crate::adaptive)); per process.
    Adaptive(AdaptiveBounds),
}

impl QuotaSource {
    /// The quota when it is the same for every request. A concurrency limit of `n` has the
    /// quota `n` per second: it keeps limits of different sizes apart in the store's keys.
    pub(crate) const fn fixed(self) -> Option<Quota> {
        match self {
            QuotaSource::Fixed(quota) => Some(quota),
            QuotaSource::InFlight(n) => Some(Quota::new(n, NonZeroU32::MIN)),
            QuotaSource::Adaptive(bounds) => Some(adaptive_quota(bounds)),
            QuotaSource::PerRequest(_) | QuotaSource::Chosen(_) => None,
        }
    }

    /// Whether this counts requests in flight rather than a rate.
    pub(crate) const fn is_concurrency(self) -> bool {
        matches!(self, QuotaSource::InFlight(_) | QuotaSource::Adaptive(_))
    }

    /// What tells the functions of two sources apart (`None` for a fixed quota): rules of one
    /// name with different tier functions keep different states.
    pub(crate) fn chooser_id(self) -> Option<Result<usize, std::any::TypeId>> {
        match self {
            QuotaSource::PerRequest(choose) => Some(Ok(choose as usize)),
            QuotaSource::Chosen(chooser) => Some(Err((chooser.function)())),
            QuotaSource::Fixed(_) | QuotaSource::InFlight(_) | QuotaSource::Adaptive(_) => None,
        }
    }

    /// The tier lookup of this source, if it is one.
    pub(crate) fn lookup(self) -> Option<Chooser<Tier>> {
        match self {
            QuotaSource::Chosen(chooser) if chooser.looks_up => Some(chooser),
            _ => None,
        }
    }
}

/// The quota standing for an adaptive limit in the store's keys: its maximum per second.
const fn adaptive_quota(bounds: AdaptiveBounds) -> Quota {
    match NonZeroU32::new(bounds.max) {
        Some(max) => Quota::new(max, NonZeroU32::MIN),
        None => Quota::new(NonZeroU32::MIN, NonZeroU32::MIN),
    }
}

/// A quota chosen per request, and the name of its tier (the `tier` label of the metrics).
///
/// A `limit = path::to::fn` function returns a `Tier`, or a bare [`Quota`] for an unnamed
/// tier; so does an async one (`async fn(String) -> Tier`, see [`lookup`](crate::lookup)):
///
/// ```
/// use actix_web::HttpRequest;
/// use ratelimit_runtime::{Quota, Tier};
///
/// fn tier_of(req: &HttpRequest) -> Tier {
///     match req.headers().get("X-API-Key").map(|k| k.as_bytes()) {
///         Some(key) if key.starts_with(b"pro_") => Tier::new("pro", Quota::from_parts(1_000, 3_600).unwrap()),
///         _ => Tier::new("free", Quota::from_parts(100, 3_600).unwrap()),
///     }
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tier {
    /// The tier's name, a label of the metrics: keep it to a handful of fixed names.
    pub name: &'static str,
    /// The tier's quota.
    pub quota: Quota,
}

impl Tier {
    /// A named tier.
    pub const fn new(name: &'static str, quota: Quota) -> Tier {
        Tier { name, quota }
    }
}

impl From<Quota> for Tier {
    /// An unnamed tier: its decisions carry no `tier` label.
    fn from(quota: Quota) -> Tier {
        Tier::new("", quota)
    }
}

/// Whether a rule refuses requests or only reports what it would refuse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Requests over the limit get 429. The default.
    #[default]
    Enforce,
    /// A dry run: the limit is decided and charged as usual, but a request it would refuse is
    /// let through, logged (at most once a second per rule) and counted as `shadow_denied`.
    Shadow,
}

/// Builds the response to a denied request (the decorator's `over_limit`).
pub type OverLimitFn = fn(&HttpRequest, &RateLimitInfo) -> HttpResponse;

/// One limit: a quota, an algorithm, a scope and the options around them.
///
/// The `#[ratelimit]` attribute builds these at compile time; [`DefaultLimits`] builds them at
/// start-up.
///
/// [`DefaultLimits`]: crate::DefaultLimits
#[derive(Clone, Debug)]
pub struct Rule {
    /// The name whose budget the rule spends: the handler's path, or a `shared` name.
    pub name: Cow<'static, str>,
    /// The quota.
    pub quota: QuotaSource,
    /// The algorithm.
    pub algorithm: AlgorithmKind,
    /// Capacity for algorithms that have one; the quota's limit when `None`.
    pub burst: Option<NonZeroU32>,
    /// Who the budget is per.
    pub scope: Scope,
    /// What one request spends.
    pub cost: NonZeroU32,
    /// Requests for which it returns true skip this rule.
    pub exempt: Option<fn(&HttpRequest) -> bool>,
    /// Whether allowed responses carry `X-RateLimit-*` headers for this rule.
    pub send_x_headers: bool,
    /// The response to a request this rule denies; a JSON 429 when `None`.
    pub over_limit: Option<OverLimitFn>,
    /// Above this much spent, a request still passes but is
    /// [`degraded`](RateLimitInfo::degraded). Below the rule's limit.
    pub soft: Option<NonZeroU32>,
    /// Enforced, or a dry run.
    pub mode: Mode,
    /// A refused request whose turn comes within this long waits for it, its turn reserved, and
    /// is then served (nginx's `delay`); `None` refuses at once. For the algorithms that
    /// [can reserve](AlgorithmKind::can_reserve) a turn; ignored by the others.
    pub max_wait: Option<Duration>,
    /// The request methods the rule applies to, in capitals (`"POST"`); requests of other
    /// methods skip it, uncounted. Empty: every method.
    pub methods: &'static [&'static str],
    /// Only responses it accepts are charged (Flask-Limiter's `deduct_when`): the units are
    /// charged before the handler, as always, and given back after the response when it
    /// returns false. A failed login counts; a successful one does not.
    pub deduct_when: Option<fn(&HttpResponse) -> bool>,
    /// The units a request reserves, chosen per request (`cost = fn`) instead of
    /// [`cost`](Self::cost); the handler may [settle](RateLimitInfo::settle) for fewer.
    pub cost_fn: Option<fn(&HttpRequest) -> u32>,
    /// A client this rule refuses `penalty.limit()` times within `penalty.period()` is refused
    /// every request of the rule for the next `penalty.period()` (`penalty = "3/10 minutes"`):
    /// a client hammering a spent limit is kept out longer. Kept in the store, so fleet-wide
    /// on Redis; [`peek`](crate::RateLimiter::peek) sees it, [`reset`](crate::RateLimiter::reset)
    /// lifts it.
    pub penalty: Option<Quota>,
    /// The priority of a request under an adaptive concurrency limit (`priority = fn`): as the
    /// limit tightens, sheddable requests are shed first and critical ones last. `None`: every
    /// request is [`Normal`](Priority::Normal), and any free slot serves it.
    pub priority: Option<fn(&HttpRequest) -> Priority>,
    /// What the limiter deciding the rule keeps of it at hand. Not a stable API.
    #[doc(hidden)]
    pub limiter_cache: LimiterCache,
}

impl Rule {
    /// A rule with the defaults of the attribute: per client address, fixed window, cost 1,
    /// headers on.
    pub const fn new(name: &'static str, quota: QuotaSource) -> Rule {
        Rule {
            name: Cow::Borrowed(name),
            quota,
            algorithm: AlgorithmKind::FixedWindow,
            burst: None,
            scope: Scope::Ip,
            cost: NonZeroU32::MIN,
            exempt: None,
            send_x_headers: true,
            over_limit: None,
            soft: None,
            mode: Mode::Enforce,
            max_wait: None,
            methods: &[],
            deduct_when: None,
            cost_fn: None,
            penalty: None,
            priority: None,
            limiter_cache: LimiterCache::new(),
        }
    }

    /// Whether the rule applies to `req`: its method is one of [`methods`](Self::methods), or
    /// the rule lists none.
    pub fn applies_to(&self, req: &HttpRequest) -> bool {
        self.methods.is_empty() || self.methods.contains(&req.method().as_str())
    }

    /// The limit that applies to `req`; `None` when an async lookup chooses it (the limiter
    /// asks it, with the client's key, before deciding).
    pub fn limit_for(&self, req: &HttpRequest) -> Option<Limit> {
        self.tier_for(req).map(|(limit, _)| limit)
    }

    /// The limit that applies to `req` and the name of its tier (empty for a fixed quota);
    /// `None` for a tier an async lookup chooses.
    pub(crate) fn tier_for(&self, req: &HttpRequest) -> Option<(Limit, &'static str)> {
        let tier = match self.quota {
            QuotaSource::Fixed(quota) => Tier::from(quota),
            QuotaSource::InFlight(n) => Tier::from(Quota::new(n, NonZeroU32::MIN)),
            QuotaSource::Adaptive(bounds) => Tier::from(adaptive_quota(bounds)),
            QuotaSource::PerRequest(choose) => choose(req),
            QuotaSource::Chosen(chooser) => match (chooser.choose)(req, None) {
                Choice::Now(tier) => tier,
                Choice::Later(_) => return None,
            },
        };
        Some(self.tier_limit(tier))
    }

    /// The limit of `tier` under this rule, and its name.
    pub(crate) fn tier_limit(&self, tier: Tier) -> (Limit, &'static str) {
        (self.limit_of(tier.quota), tier.name)
    }

    /// Whether deciding the rule may await a lookup (an async tier or key function).
    pub(crate) fn looks_up(&self) -> bool {
        self.quota.lookup().is_some() || self.scope.lookup().is_some()
    }

    /// The `max_wait` of a check of this rule, in nanoseconds; 0 where the algorithm cannot
    /// reserve a turn.
    pub(crate) fn max_wait_nanos(&self) -> u64 {
        match self.max_wait {
            Some(wait) if self.algorithm.can_reserve() => {
                u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX)
            }
            _ => 0,
        }
    }

    /// Writes what identifies this rule's budget under `limit`: its name, scope and algorithm, and the limit.
    pub(crate) fn write_budget(&self, h: &mut impl Hasher, prefix: &str, limit: &Limit) {
        write_str(h, prefix);
        write_str(h, &self.name);
        match &self.scope {
            Scope::Ip => h.write_u8(1),
            Scope::Global => h.write_u8(2),
            Scope::Header(name) => {
                h.write_u8(3);
                write_str(h, name);
            }
            // A function's address differs between processes: the rule's name tells custom keys
            // apart (the attribute appends the function's path to it).
            Scope::Custom(_) | Scope::Chosen { .. } => h.write_u8(4),
        }
        write_str(h, self.algorithm.name());
        if self.algorithm == AlgorithmKind::FixedWindow {
            // The fixed window's state on Redis in its second format (one integer): keys of
            // the first are never read as such, they expire with their window.
            h.write_u8(2);
        }
        h.write(&limit.quota.limit().to_le_bytes());
        h.write(&limit.quota.period_secs().to_le_bytes());
        h.write(&limit.capacity.get().to_le_bytes());
    }

    /// The limit of `quota` with this rule's capacity.
    pub(crate) fn limit_of(&self, quota: Quota) -> Limit {
        match self.burst {
            Some(capacity) => Limit::with_capacity(quota, capacity),
            None => self.algorithm.default_limit(quota),
        }
    }
}

/// Where the first limiter to decide a rule keeps what it needs of the rule at hand (its
/// counters), so that the rule's decisions find it without a lookup: most programs have one
/// limiter. What it holds is the limiter's business. Not a stable API.
#[doc(hidden)]
#[derive(Default)]
pub struct LimiterCache(OnceLock<(u64, Arc<dyn Any + Send + Sync>)>);

impl LimiterCache {
    /// An empty cache.
    pub const fn new() -> LimiterCache {
        LimiterCache(OnceLock::new())
    }

    /// What the limiter `owner` keeps here, if it is the one that does.
    pub(crate) fn get<T: Any>(&self, owner: u64) -> Option<&T> {
        self.0
            .get()
            .filter(|(id, _)| *id == owner)
            .and_then(|(_, kept)| kept.downcast_ref())
    }

    /// Keeps `value` for the limiter `owner`, unless another limiter keeps something already.
    pub(crate) fn keep<T: Any + Send + Sync>(&self, owner: u64, value: Arc<T>) {
        let _ = self.0.set((owner, value));
    }

    /// Whether no limiter keeps anything here yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.get().is_none()
    }
}

impl Clone for LimiterCache {
    /// Empty: a copy of a rule may be renamed.
    fn clone(&self) -> LimiterCache {
        LimiterCache::new()
    }
}

impl fmt::Debug for LimiterCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LimiterCache")
    }
}
