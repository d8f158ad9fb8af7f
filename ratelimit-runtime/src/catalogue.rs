//! Every rule of the program, by name: the `#[ratelimit]` handlers (gathered at start-up with
//! `inventory`) and the [`DefaultLimits`](crate::DefaultLimits) made so far. Operators name
//! rules to override, peek at or reset them; the catalogue tells a typo from a rule.
//!
//! It is also where a rule a limiter cannot decide is caught before the app serves a request
//! (see `unsupported.rs`): building a limiter on Redis checks every rule known, and default
//! limits made afterwards are checked as they join.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use crate::key::Scope;
use crate::rule::Rule;
use crate::unsupported::{check_fixed, UnsupportedLimit};

/// The rules of one `#[ratelimit]` handler, as the attribute submits them.
#[doc(hidden)]
#[derive(Debug)]
pub struct HandlerRules(pub &'static [Rule]);

inventory::collect!(HandlerRules);

/// Rules made at run time (default limits), and whether a limiter on Redis was built in this
/// process: one lock, so that a limiter built while default limits join sees them, or they it.
static RUNTIME: Mutex<Runtime> = Mutex::new(Runtime {
    rules: Vec::new(),
    on_redis: false,
});

struct Runtime {
    rules: Vec<Rule>,
    on_redis: bool,
}

/// Adds rules made at run time, unless one of them cannot be decided: by any limiter (a
/// sliding log too large), or on Redis once a limiter on Redis was built. (Whether these rules
/// will run on that limiter is not known here: the app finds its limiter per request.)
pub(crate) fn register(rules: &[Rule]) -> Result<(), UnsupportedLimit> {
    let mut known = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    for rule in rules {
        check_fixed(rule, known.on_redis)?;
    }
    for rule in rules {
        if !known.rules.iter().any(|k| same_limit(k, rule)) {
            known.rules.push(rule.clone());
        }
    }
    Ok(())
}

/// Checks that a limiter on Redis decides every rule known (handlers and default limits made so
/// far) and, if so, has default limits made from now on checked for Redis too.
pub(crate) fn adopt_redis() -> Result<(), UnsupportedLimit> {
    let mut known = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    let handlers = inventory::iter::<HandlerRules>
        .into_iter()
        .flat_map(|h| h.0);
    for rule in handlers.chain(known.rules.iter()) {
        check_fixed(rule, true)?;
    }
    known.on_redis = true;
    Ok(())
}

/// The rules called `name`: one per limit of a handler or a budget.
pub(crate) fn rules_named(name: &str) -> Vec<Rule> {
    let mut found: Vec<Rule> = Vec::new();
    let handlers = inventory::iter::<HandlerRules>
        .into_iter()
        .flat_map(|h| h.0);
    let runtime = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    for rule in handlers.chain(runtime.rules.iter()) {
        // Handlers sharing a budget each carry its rules: one of each is enough.
        if rule.name == name && !found.iter().any(|f| same_limit(f, rule)) {
            found.push(rule.clone());
        }
    }
    found
}

/// The names of every known rule.
pub(crate) fn names() -> BTreeSet<String> {
    let handlers = inventory::iter::<HandlerRules>
        .into_iter()
        .flat_map(|h| h.0);
    let runtime = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    handlers
        .chain(runtime.rules.iter())
        .map(|rule| rule.name.to_string())
        .collect()
}

/// Two rules that count in the same state.
fn same_limit(a: &Rule, b: &Rule) -> bool {
    let scope = |r: &Rule| match &r.scope {
        Scope::Header(name) => (std::mem::discriminant(&r.scope), Some(name.to_string())),
        other => (std::mem::discriminant(other), None),
    };
    a.name == b.name
        && scope(a) == scope(b)
        && a.algorithm == b.algorithm
        && a.quota.fixed() == b.quota.fixed()
        && a.quota.chooser_id() == b.quota.chooser_id()
        && a.burst == b.burst
}
