//! Runtime overrides: an operator changes a rule's limit without a rebuild, through the API or
//! a file (`RATELIMIT_OVERRIDES`) that is watched and reloaded when it changes.
//!
//! Per-client entries (`[keys."<rule>"]` in the file, [`set_key_override`] through the API) say
//! what one client key of a rule gets instead: another rate, `"unlimited"` (the rule is skipped
//! for it) or `"blocked"` (answered 403 without asking the store). They take precedence over
//! the rule's own override, and the API's over the file's.
//!
//! [`set_key_override`]: crate::RateLimiter::set_key_override
//!
//! An override replaces every quota of the rule it names (a handler with `"100/hour;10/second"`
//! given `"20/minute"` then has that one limit); algorithm, scope, cost and the other options
//! stay. Overrides set through the API take precedence over the file's.
//!
//! An override the limiter cannot decide (a `sliding_log` above its maximum, or on Redis a
//! limit its script cannot keep exact) is refused like a bad rate: the limit in force stays.
//!
//! **State already counted.** A quota is part of the key its state is kept under, so an
//! override counts in a budget of its own: clients start under the new limit with a whole
//! budget, and what they spent under the old one is left to expire. Clearing the override
//! before that brings the old state back. (Reading old state under a new quota would be wrong
//! for the buckets, whose state is scaled by the quota.)

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::catalogue;
use crate::key::{ClientIp, Identity, Scope};
use crate::quota::Quota;
use crate::rate::RateError;
use crate::rule::{QuotaSource, Rule};
use crate::unsupported::{self, UnsupportedLimit};

#[cfg(feature = "overrides-file")]
pub(crate) mod file;

/// An override refused; the rule keeps the limit it had.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverrideError {
    /// No rule has this name.
    UnknownRule {
        /// The name given.
        rule: String,
        /// The names of every known rule.
        known: Vec<String>,
    },
    /// A request of the rule costs more than the new limit can ever hold: it would refuse
    /// every request.
    CostTooHigh {
        /// The rule.
        rule: String,
        /// What one of its requests costs.
        cost: u32,
        /// The most the new limit holds at once.
        capacity: u32,
    },
    /// The rate string does not parse.
    InvalidRate {
        /// The rule it was for.
        rule: String,
        /// Why.
        error: RateError,
    },
    /// The new limit is one the limiter cannot decide (a `sliding_log` above its maximum, or on
    /// Redis a limit its script cannot keep exact); the error says why and what to do instead.
    UnsupportedLimit(UnsupportedLimit),
    /// A per-client entry names a key its rule cannot have: not an IP address for a rule
    /// counted per client address, any key for a rule counting everyone together, an empty key.
    InvalidKey {
        /// The rule.
        rule: String,
        /// The key given.
        key: String,
        /// Why.
        why: &'static str,
    },
    /// More per-client entries than a limiter holds ([`MAX_KEY_OVERRIDES`], the file's and the
    /// API's each).
    TooManyKeys {
        /// The most a table holds.
        max: usize,
    },
    /// The overrides file cannot be read or parsed, or the limiter has none.
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

impl fmt::Display for OverrideError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OverrideError::UnknownRule { rule, known } => write!(
                f,
                "no rate-limit rule is called `{rule}`; known rules: {}",
                known.join(", ")
            ),
            OverrideError::CostTooHigh {
                rule,
                cost,
                capacity,
            } => write!(
                f,
                "a request of rule `{rule}` costs {cost}, more than the override's limit can ever hold ({capacity}): it would refuse every request"
            ),
            OverrideError::InvalidRate { rule, error } => {
                write!(f, "invalid rate for rule `{rule}`: {error}")
            }
            OverrideError::UnsupportedLimit(e) => e.fmt(f),
            OverrideError::InvalidKey { rule, key, why } => {
                write!(f, "invalid client key `{key}` for rule `{rule}`: {why}")
            }
            OverrideError::TooManyKeys { max } => write!(
                f,
                "too many per-client overrides: at most {max} (clear some, or give the clients a tier of their own)"
            ),
            OverrideError::File { path, message } => {
                write!(f, "rate-limit overrides file {}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for OverrideError {}

pub(crate) type Table = HashMap<String, Vec<Quota>>;

/// The most per-client entries one table holds (the file's, the API's): each stays in memory
/// and a client's requests look theirs up.
pub const MAX_KEY_OVERRIDES: usize = 10_000;

/// What one client key of a rule gets instead of the rule's limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum KeyRule {
    /// These quotas, in a budget of their own.
    Rate(Vec<Quota>),
    /// No limit from this rule.
    Unlimited,
    /// Every request refused (403), the store not asked.
    Blocked,
}

/// Rule name -> client key (as `peek` and `reset` name it, addresses grouped) -> its entry.
pub(crate) type KeyTable = HashMap<String, HashMap<String, KeyRule>>;

/// Rule name -> the file's per-client entries for it as written (key, setting), the rule not
/// known when the file was read: checked when it first decides a request.
pub(crate) type PendingKeys = HashMap<String, Vec<(String, String)>>;

/// The overrides in force: the API's, then the file's; and the file's entries for rules not
/// known when it was read, checked against their rule when it first decides a request.
#[derive(Clone, Default)]
pub(crate) struct Tables {
    api: Table,
    pub(crate) file: Table,
    pub(crate) pending: Table,
    api_keys: KeyTable,
    pub(crate) file_keys: KeyTable,
    pub(crate) pending_keys: PendingKeys,
}

impl Tables {
    fn is_empty(&self) -> bool {
        self.api.is_empty()
            && self.file.is_empty()
            && self.pending.is_empty()
            && self.pending_keys.is_empty()
            && !self.has_keys()
    }

    fn has_keys(&self) -> bool {
        !self.api_keys.is_empty() || !self.file_keys.is_empty()
    }

    /// The per-client entry of `rule` for the client `identity`, if any: the API's, then the
    /// file's.
    pub(crate) fn key_rule(&self, rule: &Rule, identity: &Identity<'_>) -> Option<&KeyRule> {
        let name = rule.name.as_ref();
        let (api, file) = (self.api_keys.get(name), self.file_keys.get(name));
        if (api.is_none() && file.is_none()) || !is_rate(rule) {
            return None;
        }
        self.key_rule_named(name, &identity.name()?)
    }

    /// The per-client entry of `rule` for `key` as an operator names it (already normal).
    pub(crate) fn key_rule_named(&self, rule: &str, key: &str) -> Option<&KeyRule> {
        let api = self.api_keys.get(rule).and_then(|keys| keys.get(key));
        api.or_else(|| self.file_keys.get(rule).and_then(|keys| keys.get(key)))
    }
}

/// `rules` (those of one name) under a per-client rate: its quotas replace the rate rules'.
pub(crate) fn under_key_rate(rules: &[Rule], quotas: &[Quota]) -> Vec<Rule> {
    let mut under: Vec<Rule> = rules.iter().filter(|r| !is_rate(r)).cloned().collect();
    if let Some(first) = rules.iter().find(|r| is_rate(r)) {
        under.extend(quotas.iter().map(|&quota| Rule {
            quota: QuotaSource::Fixed(quota),
            ..first.clone()
        }));
    }
    under
}

/// The number of entries of `table`.
pub(crate) fn key_count(table: &KeyTable) -> usize {
    table.values().map(HashMap::len).sum()
}

/// The overrides of one limiter.
#[derive(Default)]
pub(crate) struct Overrides {
    /// False until a first override: the hot path then reads one flag.
    active: AtomicBool,
    tables: ArcSwap<Tables>,
    writing: Mutex<()>,
    /// The overrides file, watched.
    #[cfg(feature = "overrides-file")]
    pub(crate) file: Option<file::File>,
    /// Whether the limiter is on Redis: overrides must then be limits Redis decides exactly.
    on_redis: bool,
    /// Whether any per-client entry is in force: requests then look theirs up.
    keys_active: AtomicBool,
    /// How the limiter groups client addresses, so that an entry's address names the group a
    /// request counts in.
    pub(crate) client_ip: ClientIp,
}

impl Overrides {
    pub(crate) fn new(on_redis: bool) -> Overrides {
        Overrides {
            on_redis,
            ..Overrides::default()
        }
    }

    /// The tables, when a per-client entry is in force (one flag read otherwise).
    pub(crate) fn key_tables(&self) -> Option<Arc<Tables>> {
        self.keys_active
            .load(Ordering::Relaxed)
            .then(|| self.tables.load_full())
    }

    /// The per-client entry of `rule` for `key` as `peek` and `reset` take it.
    pub(crate) fn key_rule_for(&self, rule: &str, key: &str) -> Option<KeyRule> {
        let tables = self.key_tables()?;
        let rules = rate_rules_named(rule, std::iter::empty());
        let key = normal_key(&rules, rule, key, &self.client_ip).ok()?;
        tables.key_rule_named(rule, &key).cloned()
    }

    /// The overrides file's path, if there is one.
    pub(crate) fn file_path(&self) -> Option<&Path> {
        #[cfg(feature = "overrides-file")]
        if let Some(file) = &self.file {
            return Some(&file.path);
        }
        None
    }

    /// `rules` with their overrides applied; borrowed as they are when none applies.
    pub(crate) fn apply<'r>(&self, rules: &'r [Rule]) -> Cow<'r, [Rule]> {
        if !self.active.load(Ordering::Relaxed) {
            return Cow::Borrowed(rules);
        }
        let mut tables = self.tables.load();
        // Rates only: a concurrency limit of the same handler stays as it is.
        if rules.iter().any(|r| {
            let name = r.name.as_ref();
            is_rate(r)
                && (tables.pending.contains_key(name) || tables.pending_keys.contains_key(name))
        }) {
            self.adopt_pending(rules);
            tables = self.tables.load();
        }
        let lookup = |r: &Rule| {
            let name = r.name.as_ref();
            is_rate(r)
                .then(|| tables.api.get(name).or_else(|| tables.file.get(name)))
                .flatten()
        };
        if !rules.iter().any(|r| lookup(r).is_some()) {
            return Cow::Borrowed(rules);
        }
        let mut applied: Vec<Rule> = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let Some(quotas) = lookup(rule) else {
                applied.push(rule.clone());
                continue;
            };
            // The first rate rule of a name stands for all of them.
            if rules[..i]
                .iter()
                .all(|r| r.name != rule.name || !is_rate(r))
            {
                applied.extend(quotas.iter().map(|&quota| Rule {
                    quota: QuotaSource::Fixed(quota),
                    ..rule.clone()
                }));
            }
        }
        Cow::Owned(applied)
    }

    /// The file's entries for `rules`, which were not known when the file was read: checked
    /// now that a request decides under them. One the rule cannot take (a log above its
    /// maximum, a limit Redis cannot keep exact, a cost above its capacity) is refused with an
    /// error naming it, and the rule's own limit stays in force.
    #[cold]
    fn adopt_pending(&self, rules: &[Rule]) {
        self.update(|tables| {
            for rule in rules {
                let name = rule.name.as_ref();
                // The rules of that name at hand (those of `RateLimiter::check` need not be in
                // the catalogue) and the program's.
                let at_hand = rules.iter().filter(|r| r.name == rule.name).cloned();
                let named = rate_rules_named(name, at_hand);
                if let Some(entries) = tables.pending_keys.remove(name) {
                    self.adopt_keys(tables, name, &named, entries);
                }
                let Some(quotas) = tables.pending.remove(name) else {
                    continue;
                };
                match check_rules(name, &named, &quotas, self.on_redis) {
                    Ok(()) => {
                        tracing::info!(rule = name, "rate limiter: overrides file entry in force");
                        tables.file.insert(name.to_owned(), quotas);
                    }
                    Err(e) => tracing::error!(
                        file = %self.file_path().unwrap_or(Path::new("")).display(),
                        "rate limiter: the overrides file's entry is refused: {e}; the rule's own limit stays"
                    ),
                }
            }
        });
    }

    /// The file's per-client `entries` of the rule `name` (its rate rules `named`), now known:
    /// each one it can take is put in force, each other refused with an error naming it (that
    /// client keeps the rule's limit).
    fn adopt_keys(
        &self,
        tables: &mut Tables,
        name: &str,
        named: &[Rule],
        entries: Vec<(String, String)>,
    ) {
        for (key, setting) in entries {
            let checked = normal_key(named, name, &key, &self.client_ip).and_then(|key| {
                let entry = key_setting(&setting, |rate| {
                    let quotas = parse_rate(name, rate)?;
                    check_rules(name, named, &quotas, self.on_redis)?;
                    Ok(quotas)
                })?;
                Ok((key, entry))
            });
            match checked {
                Ok((key, entry)) => {
                    tables
                        .file_keys
                        .entry(name.to_owned())
                        .or_default()
                        .insert(key, entry);
                }
                Err(e) => tracing::error!(
                    file = %self.file_path().unwrap_or(Path::new("")).display(),
                    "rate limiter: the overrides file's per-client entry is refused: {e}; the client keeps the rule's limit"
                ),
            }
        }
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut Tables)) {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut tables = (**self.tables.load()).clone();
        change(&mut tables);
        let active = !tables.is_empty();
        let keys_active = tables.has_keys();
        self.tables.store(Arc::new(tables));
        self.active.store(active, Ordering::Relaxed);
        self.keys_active.store(keys_active, Ordering::Relaxed);
    }
}

/// The quotas of `rate` for a known `rule`, each able to hold one of its requests and each one
/// the limiter (on Redis when `on_redis`) decides.
pub(crate) fn validate(
    rule: &str,
    rate: &str,
    on_redis: bool,
) -> Result<Vec<Quota>, OverrideError> {
    let rules = rate_rules_named(rule, std::iter::empty());
    if rules.is_empty() {
        return Err(OverrideError::UnknownRule {
            rule: rule.to_owned(),
            known: catalogue::names().into_iter().collect(),
        });
    }
    let quotas = parse_rate(rule, rate)?;
    check_rules(rule, &rules, &quotas, on_redis)?;
    Ok(quotas)
}

/// The quotas of `rate`, written for the rule `rule`: parsed, not yet checked against it.
pub(crate) fn parse_rate(rule: &str, rate: &str) -> Result<Vec<Quota>, OverrideError> {
    Quota::parse_many(rate).map_err(|error| OverrideError::InvalidRate {
        rule: rule.to_owned(),
        error,
    })
}

/// The entry `setting` (a rate, `"unlimited"` or `"blocked"`) for the client `key` of the
/// known rule `rule`, and the key as requests name it (an address grouped as the limiter
/// groups them).
pub(crate) fn validate_key(
    rule: &str,
    key: &str,
    setting: &str,
    on_redis: bool,
    client_ip: &ClientIp,
) -> Result<(String, KeyRule), OverrideError> {
    let rules = rate_rules_named(rule, std::iter::empty());
    if rules.is_empty() {
        return Err(OverrideError::UnknownRule {
            rule: rule.to_owned(),
            known: catalogue::names().into_iter().collect(),
        });
    }
    let key = normal_key(&rules, rule, key, client_ip)?;
    let entry = key_setting(setting, |rate| validate(rule, rate, on_redis))?;
    Ok((key, entry))
}

/// A per-client entry's setting: `"unlimited"`, `"blocked"` (any case), or a rate, which
/// `rate` checks.
pub(crate) fn key_setting(
    setting: &str,
    rate: impl FnOnce(&str) -> Result<Vec<Quota>, OverrideError>,
) -> Result<KeyRule, OverrideError> {
    Ok(match setting.trim() {
        s if s.eq_ignore_ascii_case("unlimited") => KeyRule::Unlimited,
        s if s.eq_ignore_ascii_case("blocked") => KeyRule::Blocked,
        written => KeyRule::Rate(rate(written)?),
    })
}

/// `key` as the requests of `rules` (named `rule`) name their client.
fn normal_key(
    rules: &[Rule],
    rule: &str,
    key: &str,
    client_ip: &ClientIp,
) -> Result<String, OverrideError> {
    let invalid = |why| OverrideError::InvalidKey {
        rule: rule.to_owned(),
        key: key.to_owned(),
        why,
    };
    match rules.first().map(|r| &r.scope) {
        Some(Scope::Global) => Err(invalid(
            "the rule counts everyone together, so it has no per-client entries",
        )),
        Some(Scope::Ip) => match key.trim().parse::<IpAddr>() {
            Ok(ip) => Ok(client_ip.group(ip.to_canonical()).to_string()),
            Err(_) => Err(invalid(
                "the rule counts per client address, and this is not an IP address",
            )),
        },
        _ if key.is_empty() => Err(invalid("a key is not empty")),
        _ => Ok(key.to_owned()),
    }
}

/// Whether an override applies to `rule`: overrides change rates, and a concurrency limit is
/// not one.
fn is_rate(rule: &Rule) -> bool {
    !rule.quota.is_concurrency()
}

/// The rate rules named `name`: `extra` (rules at hand) and the program's.
fn rate_rules_named(name: &str, extra: impl Iterator<Item = Rule>) -> Vec<Rule> {
    extra
        .chain(catalogue::rules_named(name))
        .filter(is_rate)
        .collect()
}

/// Whether each of `quotas` can hold one request of each of `rules` and is a limit the limiter
/// (on Redis when `on_redis`) decides.
fn check_rules(
    rule: &str,
    rules: &[Rule],
    quotas: &[Quota],
    on_redis: bool,
) -> Result<(), OverrideError> {
    for (known, quota) in rules
        .iter()
        .flat_map(|r| quotas.iter().map(move |q| (r, q)))
    {
        let limit = known.limit_of(*quota);
        let capacity = limit.capacity.get();
        if known.cost.get() > capacity {
            return Err(OverrideError::CostTooHigh {
                rule: rule.to_owned(),
                cost: known.cost.get(),
                capacity,
            });
        }
        unsupported::check(known, &limit, on_redis).map_err(OverrideError::UnsupportedLimit)?;
    }
    Ok(())
}

impl Overrides {
    /// See [`RateLimiter::set_override`](crate::RateLimiter::set_override).
    pub(crate) fn set(&self, rule: &str, rate: &str) -> Result<(), OverrideError> {
        let quotas = validate(rule, rate, self.on_redis)?;
        tracing::info!(rule, rate, "rate limiter: override set");
        self.update(|tables| drop(tables.api.insert(rule.to_owned(), quotas)));
        Ok(())
    }

    /// See [`RateLimiter::set_key_override`](crate::RateLimiter::set_key_override).
    pub(crate) fn set_key(
        &self,
        rule: &str,
        key: &str,
        setting: &str,
    ) -> Result<(), OverrideError> {
        let (key, entry) = validate_key(rule, key, setting, self.on_redis, &self.client_ip)?;
        let mut result = Ok(());
        self.update(|tables| {
            let known = tables
                .api_keys
                .get(rule)
                .is_some_and(|keys| keys.contains_key(&key));
            if !known && key_count(&tables.api_keys) >= MAX_KEY_OVERRIDES {
                result = Err(OverrideError::TooManyKeys {
                    max: MAX_KEY_OVERRIDES,
                });
                return;
            }
            tables
                .api_keys
                .entry(rule.to_owned())
                .or_default()
                .insert(key.clone(), entry);
        });
        if result.is_ok() {
            tracing::info!(rule, key, setting, "rate limiter: per-client override set");
        }
        result
    }

    /// See [`RateLimiter::clear_key_override`](crate::RateLimiter::clear_key_override).
    pub(crate) fn clear_key(&self, rule: &str, key: &str) -> bool {
        let rules = rate_rules_named(rule, std::iter::empty());
        let Ok(key) = normal_key(&rules, rule, key, &self.client_ip) else {
            return false;
        };
        let mut had = false;
        self.update(|tables| {
            if let Some(keys) = tables.api_keys.get_mut(rule) {
                had = keys.remove(&key).is_some();
                if keys.is_empty() {
                    tables.api_keys.remove(rule);
                }
            }
        });
        if had {
            tracing::info!(rule, key, "rate limiter: per-client override cleared");
        }
        had
    }

    /// See [`RateLimiter::clear_override`](crate::RateLimiter::clear_override).
    pub(crate) fn clear(&self, rule: &str) -> bool {
        let mut had = false;
        self.update(|tables| had = tables.api.remove(rule).is_some());
        if had {
            tracing::info!(rule, "rate limiter: override cleared");
        }
        had
    }
}
