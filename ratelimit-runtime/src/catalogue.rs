//! Every rule of the program, by name: the `#[ratelimit]` handlers (gathered at start-up with
//! `inventory`) and the [`DefaultLimits`](crate::DefaultLimits) made so far. Operators name
//! rules to override, peek at or reset them; the catalogue tells a typo from a rule.

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

use crate::key::Scope;
use crate::rule::Rule;

/// The rules of one `#[ratelimit]` handler, as the attribute submits them.
#[doc(hidden)]
#[derive(Debug)]
pub struct HandlerRules(pub &'static [Rule]);

inventory::collect!(HandlerRules);

/// Rules made at run time (default limits).
static RUNTIME: Mutex<Vec<Rule>> = Mutex::new(Vec::new());

/// Adds rules made at run time.
pub(crate) fn register(rules: &[Rule]) {
    let mut known = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    for rule in rules {
        if !known.iter().any(|k| same_limit(k, rule)) {
            known.push(rule.clone());
        }
    }
}

/// The rules called `name`: one per limit of a handler or a budget.
pub(crate) fn rules_named(name: &str) -> Vec<Rule> {
    let mut found: Vec<Rule> = Vec::new();
    let handlers = inventory::iter::<HandlerRules>
        .into_iter()
        .flat_map(|h| h.0);
    let runtime = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    for rule in handlers.chain(runtime.iter()) {
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
        .chain(runtime.iter())
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
        && a.quota.fixed().ok() == b.quota.fixed().ok()
        && a.burst == b.burst
}
