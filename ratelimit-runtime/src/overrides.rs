//! Runtime overrides: an operator changes a rule's limit without a rebuild, through the API or
//! a file (`RATELIMIT_OVERRIDES`) that is watched and reloaded when it changes.
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
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};

use crate::catalogue;
use crate::limiter::RateLimiter;
use crate::quota::Quota;
use crate::rate::RateError;
use crate::rule::{QuotaSource, Rule};
use crate::unsupported::{self, UnsupportedLimit};

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
            OverrideError::File { path, message } => {
                write!(f, "rate-limit overrides file {}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for OverrideError {}

type Table = HashMap<String, Vec<Quota>>;

/// The overrides in force: the API's, then the file's; and the file's entries for rules not
/// known when it was read, checked against their rule when it first decides a request.
#[derive(Clone, Default)]
struct Tables {
    api: Table,
    file: Table,
    pending: Table,
}

impl Tables {
    fn is_empty(&self) -> bool {
        self.api.is_empty() && self.file.is_empty() && self.pending.is_empty()
    }
}

/// What tells one version of the overrides file from another: where it resolves to (a
/// ConfigMap swaps a symlink), when it was written and its size (and its inode on Unix). Other
/// files of its directory change none of it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    target: PathBuf,
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let target = std::fs::canonicalize(path).ok()?;
        let meta = std::fs::metadata(&target).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(FileStamp {
            target,
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        })
    }
}

/// How long the overrides file must be quiet before it is read again.
const RELOAD_DELAY: Duration = Duration::from_millis(200);

/// The overrides of one limiter.
#[derive(Default)]
pub(crate) struct Overrides {
    /// False until a first override: the hot path then reads one flag.
    active: AtomicBool,
    tables: ArcSwap<Tables>,
    writing: Mutex<()>,
    file: Option<PathBuf>,
    /// The version of the file last read, so that only its own changes reload it.
    stamp: Mutex<Option<FileStamp>>,
    /// Reads of the file, by result.
    pub(crate) reloads: AtomicU64,
    pub(crate) failed_reloads: AtomicU64,
    watcher: Mutex<Option<Debouncer<RecommendedWatcher>>>,
    /// Whether the limiter is on Redis: overrides must then be limits Redis decides exactly.
    on_redis: bool,
}

impl Overrides {
    pub(crate) fn with_file(file: Option<PathBuf>, on_redis: bool) -> Overrides {
        Overrides {
            file,
            on_redis,
            ..Overrides::default()
        }
    }

    /// `rules` with their overrides applied; borrowed as they are when none applies.
    pub(crate) fn apply<'r>(&self, rules: &'r [Rule]) -> Cow<'r, [Rule]> {
        if !self.active.load(Ordering::Relaxed) {
            return Cow::Borrowed(rules);
        }
        let mut tables = self.tables.load();
        // Rates only: a concurrency limit of the same handler stays as it is.
        if rules
            .iter()
            .any(|r| is_rate(r) && tables.pending.contains_key(r.name.as_ref()))
        {
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
                let Some(quotas) = tables.pending.remove(name) else {
                    continue;
                };
                // The rules of that name at hand (those of `RateLimiter::check` need not be in
                // the catalogue) and the program's.
                let at_hand = rules.iter().filter(|r| r.name == rule.name).cloned();
                let named = rate_rules_named(name, at_hand);
                match check_rules(name, &named, &quotas, self.on_redis) {
                    Ok(()) => {
                        tracing::info!(rule = name, "rate limiter: overrides file entry in force");
                        tables.file.insert(name.to_owned(), quotas);
                    }
                    Err(e) => tracing::error!(
                        file = %self.file.as_deref().unwrap_or(Path::new("")).display(),
                        "rate limiter: the overrides file's entry is refused: {e}; the rule's own limit stays"
                    ),
                }
            }
        });
    }

    fn update(&self, change: impl FnOnce(&mut Tables)) {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut tables = (**self.tables.load()).clone();
        change(&mut tables);
        let active = !tables.is_empty();
        self.tables.store(Arc::new(tables));
        self.active.store(active, Ordering::Relaxed);
    }

    /// Reads the file and puts its overrides in force, all or none.
    fn load_file(&self) -> Result<usize, OverrideError> {
        let Some(path) = &self.file else {
            return Err(OverrideError::File {
                path: PathBuf::new(),
                message: "this limiter was built without an overrides file".into(),
            });
        };
        let stamp = FileStamp::of(path);
        let read = read_file(path, self.on_redis);
        // A failed read keeps no stamp, so that the next event in the directory tries again.
        let stamp = stamp.filter(|_| read.is_ok());
        *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) = stamp;
        let (file, pending) = match read {
            Ok(read) => {
                self.reloads.fetch_add(1, Ordering::Relaxed);
                read
            }
            Err(e) => {
                self.failed_reloads.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let count = file.len() + pending.len();
        self.update(|tables| {
            tables.file = file;
            tables.pending = pending;
        });
        Ok(count)
    }

    pub(crate) fn has_file(&self) -> bool {
        self.file.is_some()
    }

    pub(crate) fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Whether the file is another version than the one last read.
    fn file_changed(&self) -> bool {
        let Some(path) = &self.file else {
            return false;
        };
        let now = FileStamp::of(path);
        *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) != now
    }
}

/// `rule = "rate"` pairs from a TOML file, or a JSON object when the file ends in `.json`;
/// every rate must parse and suit the rules of its name, or nothing is taken. Returns the
/// entries of known rules, and apart those of rules not known yet (checked when they appear).
fn read_file(path: &Path, on_redis: bool) -> Result<(Table, Table), OverrideError> {
    let fail = |message: String| OverrideError::File {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let entries: BTreeMap<String, String> = if is_json {
        serde_json::from_str(&text).map_err(|e| fail(format!("invalid JSON: {e}")))?
    } else {
        toml::from_str(&text).map_err(|e| fail(format!("invalid TOML: {e}")))?
    };
    let (mut table, mut pending) = (Table::new(), Table::new());
    for (rule, rate) in entries {
        let quotas = match validate(&rule, &rate, on_redis) {
            Ok(quotas) => quotas,
            // Default limits join the catalogue when the app is built, which may come after the
            // limiter read the file: such a name applies once its rule exists.
            Err(OverrideError::UnknownRule { .. }) => {
                tracing::warn!(
                    rule,
                    file = %path.display(),
                    "rate limiter: the overrides file names a rule not known yet; it applies once a rule of that name exists"
                );
                let quotas = Quota::parse_many(&rate).map_err(|error| {
                    fail(
                        OverrideError::InvalidRate {
                            rule: rule.clone(),
                            error,
                        }
                        .to_string(),
                    )
                })?;
                pending.insert(rule, quotas);
                continue;
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        table.insert(rule, quotas);
    }
    Ok((table, pending))
}

/// The quotas of `rate` for a known `rule`, each able to hold one of its requests and each one
/// the limiter (on Redis when `on_redis`) decides.
fn validate(rule: &str, rate: &str, on_redis: bool) -> Result<Vec<Quota>, OverrideError> {
    let rules = rate_rules_named(rule, std::iter::empty());
    if rules.is_empty() {
        return Err(OverrideError::UnknownRule {
            rule: rule.to_owned(),
            known: catalogue::names().into_iter().collect(),
        });
    }
    let quotas = Quota::parse_many(rate).map_err(|error| OverrideError::InvalidRate {
        rule: rule.to_owned(),
        error,
    })?;
    check_rules(rule, &rules, &quotas, on_redis)?;
    Ok(quotas)
}

/// Whether an override applies to `rule`: overrides change rates, and a concurrency limit is
/// not one.
fn is_rate(rule: &Rule) -> bool {
    !matches!(rule.quota, QuotaSource::InFlight(_))
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

impl RateLimiter {
    /// Overrides the limit of the rule `rule` (a handler's rule name, as
    /// [`rules`](RateLimiter::rules) lists them, or `shared:<name>`) with `rate`
    /// (`"20/minute"`, or several limits separated by `;`), in force from the next request.
    ///
    /// A rate that does not parse, a name no rule has, or a limit this limiter cannot decide
    /// ([`OverrideError::UnsupportedLimit`]: a `sliding_log` above its maximum, or on Redis a
    /// limit its script cannot keep exact) is refused and the limit stays as it was. An
    /// override counts in a budget of its own (see the README's *Overrides*).
    pub fn set_override(&self, rule: &str, rate: &str) -> Result<(), OverrideError> {
        let quotas = validate(rule, rate, self.inner().backend.is_shared())?;
        tracing::info!(rule, rate, "rate limiter: override set");
        self.inner()
            .overrides
            .update(|tables| drop(tables.api.insert(rule.to_owned(), quotas)));
        Ok(())
    }

    /// Removes the API's override of `rule` (the file's, if any, then applies); returns
    /// whether there was one.
    pub fn clear_override(&self, rule: &str) -> bool {
        let mut had = false;
        self.inner()
            .overrides
            .update(|tables| had = tables.api.remove(rule).is_some());
        if had {
            tracing::info!(rule, "rate limiter: override cleared");
        }
        had
    }

    /// Reads the overrides file again (the one given to
    /// [`overrides_file`](crate::RateLimiterBuilder::overrides_file) or `RATELIMIT_OVERRIDES`)
    /// and returns how many overrides it holds. A file with any bad entry is refused whole, and
    /// the overrides in force stay.
    pub fn reload_overrides(&self) -> Result<usize, OverrideError> {
        self.inner().overrides.load_file()
    }

    /// The names of every rule the program has: `#[ratelimit]` handlers and default limits.
    pub fn rules(&self) -> Vec<String> {
        catalogue::names().into_iter().collect()
    }

    /// Loads the overrides file and watches it, reloading it when it changes.
    pub(crate) fn watch_overrides(&self) {
        let overrides = &self.inner().overrides;
        let Some(path) = overrides.file.clone() else {
            return;
        };
        match overrides.load_file() {
            Ok(count) => tracing::info!(
                file = %path.display(),
                count,
                "rate limiter: overrides loaded"
            ),
            Err(e) => tracing::error!("{e}; no overrides from it until it is fixed"),
        }
        // Weak: the watcher lives in the overrides, which must not keep themselves alive.
        let reload = Arc::downgrade(overrides);
        // Debounced: a file written in several steps is read once, after the last one. Any
        // change in the directory is looked at (a Kubernetes ConfigMap swaps a symlink beside
        // the file, never the file itself), but only a new version of the file reloads it.
        let watcher = new_debouncer(RELOAD_DELAY, move |events: DebounceEventResult| {
            if events.is_err() {
                return;
            }
            let Some(overrides) = reload.upgrade() else {
                return;
            };
            // Only the file's own changes: a log file beside it, written on each reload, would
            // otherwise reload it again and again.
            if !overrides.file_changed() {
                return;
            }
            match overrides.load_file() {
                Ok(count) => tracing::info!(count, "rate limiter: overrides reloaded"),
                Err(e) => tracing::error!("{e}; the overrides in force stay"),
            }
        });
        // Editors replace files rather than write them: watch the directory.
        let directory = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let watching = watcher.and_then(|mut w| {
            w.watcher().watch(directory, RecursiveMode::NonRecursive)?;
            Ok(w)
        });
        match watching {
            Ok(watcher) => {
                *overrides
                    .watcher
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(watcher);
            }
            Err(e) => tracing::error!(
                file = %path.display(),
                "rate limiter: cannot watch the overrides file ({e}); use `reload_overrides()`"
            ),
        }
    }
}
