//! Validation: [`Args`] into [`RuleSpec`]s, refusing combinations that make no sense.

use proc_macro2::Span;
use syn::Path;

use crate::args::{Args, ConcurrencyArg, LimitArg, Spanned};
use crate::rate;

/// Where a rule's quota comes from.
#[derive(Clone)]
pub enum QuotaSpec {
    Fixed {
        limit: u32,
        period_secs: u32,
    },
    PerRequest(Path),
    /// A concurrency limit: at most this many in flight.
    InFlight(u32),
    /// An adaptive concurrency limit, within these bounds.
    Adaptive {
        min: u32,
        max: u32,
    },
}

/// Who a rule counts.
#[derive(Clone)]
pub enum ScopeSpec {
    Ip,
    Global,
    Header(String),
    /// A key function; with the scope whose key it is asked (an async lookup only).
    Custom(Path, Option<Box<ScopeSpec>>),
}

/// One validated limit, ready to expand.
#[derive(Clone)]
pub struct RuleSpec {
    pub quota: QuotaSpec,
    pub algorithm: &'static str,
    pub burst: Option<u32>,
    pub scope: ScopeSpec,
    pub cost: u32,
    pub shared: Option<String>,
    pub exempt: Option<Path>,
    pub send_x_headers: bool,
    pub over_limit: Option<Path>,
    pub soft: Option<u32>,
    pub mode: &'static str,
    pub max_wait_millis: Option<u64>,
    /// The methods it applies to, in capitals; empty: all.
    pub methods: Vec<String>,
    /// With `per_method`, the one method whose own budget this rule is.
    pub own_method: Option<String>,
    /// `fn(&HttpResponse) -> bool`: only responses it accepts keep their charge.
    pub deduct_when: Option<Path>,
    /// `fn(&HttpRequest) -> u32`: the units a request reserves.
    pub cost_fn: Option<Path>,
    /// Refusals (the limit) within a period that earn a penalty of that period.
    pub penalty: Option<(u32, u32)>,
    /// `fn(&HttpRequest) -> Priority`, for an adaptive limit.
    pub priority: Option<Path>,
}

/// The request methods `methods` accepts (RFC 9110 and PATCH).
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The largest limit of a `sliding_log`: `ratelimit_runtime::algorithm::SlidingLog::MAX_LIMIT`,
/// which says why (this crate cannot depend on the runtime; a test keeps the two equal).
const MAX_SLIDING_LOG: u32 = 10_000;

/// The algorithms and whether each has a capacity (`burst`).
const ALGORITHMS: [(&str, bool); 6] = [
    ("fixed_window", false),
    ("sliding_window", false),
    ("sliding_log", false),
    ("token_bucket", true),
    ("leaky_bucket", true),
    ("gcra", true),
];

impl Args {
    /// Checks the combination and returns one rule per quota; `at` is where to report a
    /// missing limit.
    pub fn build(self, at: Span) -> syn::Result<Vec<RuleSpec>> {
        let algorithm = algorithm(self.algorithm.as_ref())?;
        let burst = self.burst_for(algorithm)?;
        let scope = self.scope_spec()?;
        let quotas = match &self.concurrency {
            Some(n) => self.in_flight(n)?,
            None => self.quotas(at)?,
        };
        let adaptive = matches!(quotas[..], [QuotaSpec::Adaptive { .. }]);
        if let Some(priority) = self.priority.as_ref().filter(|_| !adaptive) {
            return Err(syn::Error::new(
                priority.span,
                "`priority` orders what an adaptive limit sheds: it needs `concurrency = \"adaptive\"`",
            ));
        }
        // An adaptive limit protects the server: one for the handler, unless a scope says
        // otherwise.
        let scope = match (adaptive, &self.scope, &self.key) {
            (true, None, None) => ScopeSpec::Global,
            _ => scope,
        };
        self.check_log_size(algorithm, &quotas)?;
        if let Some(shared) = self.shared.as_ref().filter(|s| s.value.trim().is_empty()) {
            return Err(syn::Error::new(
                shared.span,
                "`shared` needs a name, e.g. `shared = \"search\"`",
            ));
        }
        let cost = self.cost.as_ref().map_or(1, |c| c.value);
        let mode = mode(self.mode.as_ref())?;
        let methods = self.methods()?;
        let per_method = self.per_method.as_ref().is_some_and(|p| p.value);
        let penalty = self.penalty()?;
        self.check_max_wait(algorithm, mode)?;
        for quota in &quotas {
            check_cost(self.cost.as_ref(), quota, algorithm, burst)?;
            check_soft(self.soft.as_ref(), quota, algorithm, burst)?;
        }
        // Each method its own budget: one rule per method, each named after it.
        let budgets: Vec<(Vec<String>, Option<String>)> = if per_method {
            methods
                .iter()
                .map(|m| (vec![m.clone()], Some(m.clone())))
                .collect()
        } else {
            vec![(methods, None)]
        };
        Ok(budgets
            .into_iter()
            .flat_map(|budget| {
                quotas
                    .iter()
                    .cloned()
                    .map(move |quota| (quota, budget.clone()))
            })
            .map(|(quota, (methods, own_method))| RuleSpec {
                methods,
                own_method,
                deduct_when: self.deduct_when.as_ref().map(|d| d.value.clone()),
                cost_fn: self.cost_fn.as_ref().map(|c| c.value.clone()),
                penalty,
                quota,
                algorithm,
                burst,
                scope: scope.clone(),
                cost,
                shared: self.shared.as_ref().map(|s| s.value.clone()),
                exempt: self.exempt.as_ref().map(|e| e.value.clone()),
                send_x_headers: self.send_x_headers.as_ref().is_none_or(|s| s.value),
                over_limit: self.over_limit.as_ref().map(|o| o.value.clone()),
                soft: self.soft.as_ref().map(|s| s.value),
                mode,
                max_wait_millis: self.max_wait.as_ref().map(|w| w.value),
                priority: self.priority.as_ref().map(|p| p.value.clone()),
            })
            .collect())
    }

    /// `penalty`: one rate, refusals per period; the client's strikes are a sliding log of
    /// them, bounded as its limit is.
    fn penalty(&self) -> syn::Result<Option<(u32, u32)>> {
        let Some(penalty) = &self.penalty else {
            return Ok(None);
        };
        let invalid = |why: String| {
            syn::Error::new(
                penalty.span,
                format!("invalid `penalty`: {why}; write refusals per period, e.g. `penalty = \"3/10 minutes\"`: 3 refusals within 10 minutes keep the client out for 10 minutes"),
            )
        };
        let specs = rate::parse_rates(&penalty.value).map_err(|e| invalid(e.to_string()))?;
        let [spec] = specs.as_slice() else {
            return Err(invalid(format!("it takes one rate, not {}", specs.len())));
        };
        if spec.limit > MAX_SLIDING_LOG {
            return Err(invalid(format!(
                "at most {MAX_SLIDING_LOG} refusals are counted, not {}",
                spec.limit
            )));
        }
        Ok(Some((spec.limit, spec.period_secs)))
    }

    /// `methods`, checked and in capitals; `per_method` needs them.
    fn methods(&self) -> syn::Result<Vec<String>> {
        let Some(methods) = &self.methods else {
            return match self.per_method.as_ref().filter(|p| p.value) {
                Some(per_method) => Err(syn::Error::new(
                    per_method.span,
                    "`per_method = true` gives each of `methods` its own budget: list them, e.g. `methods = [\"GET\", \"POST\"], per_method = true`",
                )),
                None => Ok(Vec::new()),
            };
        };
        if methods.value.is_empty() {
            return Err(syn::Error::new(
                methods.span,
                "`methods` is empty, so the limit would never apply; list methods, e.g. `methods = [\"POST\"]`, or leave `methods` out for every method",
            ));
        }
        let mut seen: Vec<String> = Vec::new();
        for method in &methods.value {
            let upper = method.value.trim().to_ascii_uppercase();
            if !METHODS.contains(&upper.as_str()) {
                return Err(syn::Error::new(
                    method.span,
                    format!(
                        "unknown HTTP method `{}`; the methods are {}",
                        method.value,
                        METHODS.map(|m| format!("`{m}`")).join(", ")
                    ),
                ));
            }
            if seen.contains(&upper) {
                return Err(syn::Error::new(
                    method.span,
                    format!("`{upper}` is listed twice in `methods`"),
                ));
            }
            seen.push(upper);
        }
        Ok(seen)
    }

    fn quotas(&self, at: Span) -> syn::Result<Vec<QuotaSpec>> {
        match (&self.rate, &self.limit, &self.per) {
            (Some(rate), None, None) => rate::parse_rates(&rate.value)
                .map(|specs| specs.into_iter().map(|s| QuotaSpec::Fixed { limit: s.limit, period_secs: s.period_secs }).collect())
                .map_err(|e| syn::Error::new(rate.span, format!("invalid rate: {e}"))),
            (Some(_), Some(other), _) => Err(both_forms(other.span, "limit")),
            (Some(_), None, Some(other)) => Err(both_forms(other.span, "per")),
            (None, Some(limit), per) => quota_from_limit(limit, per.as_ref()),
            (None, None, Some(per)) => Err(syn::Error::new(per.span, "`per` needs a `limit`: write `limit = 100, per = 60`")),
            (None, None, None) => Err(syn::Error::new(
                at,
                "missing limit: write `#[ratelimit(limit = 100, per = 60)]` or `#[ratelimit(\"100/minute\")]`",
            )),
        }
    }

    /// A concurrency limit: only the arguments that say who it counts and how it answers.
    fn in_flight(&self, n: &Spanned<ConcurrencyArg>) -> syn::Result<Vec<QuotaSpec>> {
        if let Some(span) = [
            self.rate.as_ref().map(|r| r.span),
            self.limit.as_ref().map(|l| l.span),
            self.per.as_ref().map(|p| p.span),
        ]
        .into_iter()
        .flatten()
        .next()
        {
            return Err(syn::Error::new(
                span,
                "`concurrency` is a limit of its own; put the rate limit in another `#[ratelimit(...)]` on the same handler",
            ));
        }
        let meaningless = [
            ("algorithm", self.algorithm.as_ref().map(|a| a.span)),
            ("burst", self.burst.as_ref().map(|b| b.span)),
            ("cost", self.cost.as_ref().map(|c| c.span)),
            ("cost", self.cost_fn.as_ref().map(|c| c.span)),
            ("soft", self.soft.as_ref().map(|s| s.span)),
            ("mode", self.mode.as_ref().map(|m| m.span)),
            ("max_wait", self.max_wait.as_ref().map(|w| w.span)),
            ("deduct_when", self.deduct_when.as_ref().map(|d| d.span)),
            ("penalty", self.penalty.as_ref().map(|p| p.span)),
        ];
        if let Some((name, Some(span))) = meaningless.into_iter().find(|(_, s)| s.is_some()) {
            return Err(syn::Error::new(
                span,
                format!("`{name}` has no meaning for a concurrency limit, which counts requests in flight; remove it"),
            ));
        }
        if let (ConcurrencyArg::Adaptive { .. }, Some(over)) = (n.value, &self.over_limit) {
            return Err(syn::Error::new(
                over.span,
                "an adaptive limit answers what it sheds itself (503 with `Retry-After: 1`): `over_limit` has no meaning here; remove it",
            ));
        }
        Ok(vec![match n.value {
            ConcurrencyArg::Fixed(n) => QuotaSpec::InFlight(n),
            ConcurrencyArg::Adaptive { min, max } => QuotaSpec::Adaptive { min, max },
        }])
    }

    /// A sliding log keeps one timestamp per unit it counts: its limit is its size, bounded as
    /// the runtime bounds it. Reported on the limit (or the rate string) that is too large.
    fn check_log_size(&self, algorithm: &str, quotas: &[QuotaSpec]) -> syn::Result<()> {
        let too_large = quotas.iter().find_map(|quota| match quota {
            QuotaSpec::Fixed { limit, .. } if *limit > MAX_SLIDING_LOG => Some(*limit),
            _ => None,
        });
        let (Some(limit), "sliding_log") = (too_large, algorithm) else {
            return Ok(());
        };
        let span = match (&self.rate, &self.limit) {
            (Some(rate), _) => rate.span,
            (None, Some(limit)) => limit.span,
            (None, None) => Span::call_site(),
        };
        Err(syn::Error::new(
            span,
            format!("a `sliding_log` keeps one timestamp per request it counts, so its limit is at most {MAX_SLIDING_LOG}, not {limit}; use `algorithm = \"sliding_window\"` or `\"gcra\"` for a larger limit, or a shorter period with a smaller one"),
        ))
    }

    /// Waiting needs an algorithm that can reserve a later turn, and an enforced limit.
    fn check_max_wait(&self, algorithm: &str, mode: &str) -> syn::Result<()> {
        let Some(wait) = &self.max_wait else {
            return Ok(());
        };
        if mode == "shadow" {
            return Err(syn::Error::new(
                wait.span,
                "`max_wait` has no meaning in a dry run (`mode = \"shadow\"`), which never refuses",
            ));
        }
        if matches!(algorithm, "gcra" | "token_bucket" | "leaky_bucket") {
            return Ok(());
        }
        Err(syn::Error::new(
            wait.span,
            format!("`max_wait` needs an algorithm that can reserve a later turn: `gcra`, `token_bucket` or `leaky_bucket`, not `{algorithm}`; add e.g. `algorithm = \"gcra\"`"),
        ))
    }

    fn scope_spec(&self) -> syn::Result<ScopeSpec> {
        match (&self.scope, &self.key) {
            // Only an async lookup takes both: it is asked the scope's key (checked where the
            // function's type is known, in the expansion).
            (Some(scope), Some(_)) if scope.value == "global" => Err(syn::Error::new(
                scope.span,
                "a `key` lookup is asked the key its `scope` gives, and `\"global\"` gives none: use `\"ip\"` or `\"header:<Name>\"`, or drop `scope`",
            )),
            (Some(scope), Some(key)) => Ok(ScopeSpec::Custom(
                key.value.clone(),
                Some(Box::new(parse_scope(scope)?)),
            )),
            (None, Some(key)) => Ok(ScopeSpec::Custom(key.value.clone(), None)),
            (Some(scope), None) => parse_scope(scope),
            (None, None) => Ok(ScopeSpec::Ip),
        }
    }

    fn burst_for(&self, algorithm: &str) -> syn::Result<Option<u32>> {
        let Some(burst) = &self.burst else {
            return Ok(None);
        };
        let has_capacity = ALGORITHMS
            .iter()
            .any(|&(name, cap)| name == algorithm && cap);
        if has_capacity {
            return Ok(Some(burst.value));
        }
        Err(syn::Error::new(
            burst.span,
            format!("`burst` has no meaning for `{algorithm}`; it sets the capacity of `token_bucket`, `leaky_bucket` and `gcra`"),
        ))
    }
}

fn both_forms(span: Span, key: &str) -> syn::Error {
    syn::Error::new(span, format!("`{key}` conflicts with the rate string; give either `\"100/minute\"` or `limit = 100, per = 60`"))
}

fn quota_from_limit(
    limit: &Spanned<LimitArg>,
    per: Option<&Spanned<u32>>,
) -> syn::Result<Vec<QuotaSpec>> {
    match (&limit.value, per) {
        (LimitArg::Count(n), Some(per)) => Ok(vec![QuotaSpec::Fixed { limit: *n, period_secs: per.value }]),
        (LimitArg::Count(_), None) => Err(syn::Error::new(
            limit.span,
            "`limit` needs a period: add `per = 60` (seconds) or `per = \"1m\"`",
        )),
        (LimitArg::PerRequest(path), None) => Ok(vec![QuotaSpec::PerRequest(path.clone())]),
        (LimitArg::PerRequest(_), Some(per)) => Err(syn::Error::new(
            per.span,
            "`per` conflicts with `limit = <function>`: the `Quota` the function returns carries its period",
        )),
    }
}

fn algorithm(written: Option<&Spanned<String>>) -> syn::Result<&'static str> {
    let Some(written) = written else {
        return Ok("fixed_window");
    };
    let Some(&(name, _)) = ALGORITHMS.iter().find(|(name, _)| *name == written.value) else {
        let names: Vec<&str> = ALGORITHMS.iter().map(|(n, _)| *n).collect();
        return Err(choice_error(written, "algorithm", &names));
    };
    Ok(name)
}

fn parse_scope(scope: &Spanned<String>) -> syn::Result<ScopeSpec> {
    match scope.value.as_str() {
        "ip" => Ok(ScopeSpec::Ip),
        "global" => Ok(ScopeSpec::Global),
        other => match other.strip_prefix("header:") {
            Some(name) if is_header_name(name) => Ok(ScopeSpec::Header(name.to_ascii_lowercase())),
            Some("") => Err(syn::Error::new(
                scope.span,
                "`header:` needs the name of the header to count by, e.g. `scope = \"header:X-API-Key\"`",
            )),
            Some(name) => Err(syn::Error::new(
                scope.span,
                format!("`{name}` is not a valid header name; write e.g. `scope = \"header:X-API-Key\"`"),
            )),
            None => Err(choice_error(scope, "scope", &["ip", "global", "header:<Name>"])),
        },
    }
}

/// An HTTP header name: a non-empty token (RFC 9110).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn choice_error(written: &Spanned<String>, key: &str, choices: &[&str]) -> syn::Error {
    let nearest = choices
        .iter()
        .min_by_key(|c| strsim::levenshtein(c, &written.value))
        .filter(|c| strsim::levenshtein(c, &written.value) <= 3);
    let hint = nearest
        .map(|c| format!("did you mean `\"{c}\"`? "))
        .unwrap_or_default();
    let list = choices
        .iter()
        .map(|c| format!("`\"{c}\"`"))
        .collect::<Vec<_>>()
        .join(", ");
    syn::Error::new(
        written.span,
        format!(
            "unknown {key} `\"{}\"`; {hint}choose one of {list}",
            written.value
        ),
    )
}

fn mode(written: Option<&Spanned<String>>) -> syn::Result<&'static str> {
    let Some(written) = written else {
        return Ok("enforce");
    };
    match written.value.as_str() {
        "enforce" => Ok("enforce"),
        "shadow" => Ok("shadow"),
        _ => Err(choice_error(written, "mode", &["enforce", "shadow"])),
    }
}

/// What a limit reports as its size: the capacity for the algorithms that have one.
fn reported_limit(limit: u32, algorithm: &str, burst: Option<u32>) -> u32 {
    match algorithm {
        "leaky_bucket" => burst.unwrap_or(1),
        "token_bucket" | "gcra" => burst.unwrap_or(limit),
        _ => limit,
    }
}

/// A soft limit must be below the limit it softens; with a per-request quota this is checked
/// at run time instead.
fn check_soft(
    soft: Option<&Spanned<u32>>,
    quota: &QuotaSpec,
    algorithm: &str,
    burst: Option<u32>,
) -> syn::Result<()> {
    let (Some(soft), QuotaSpec::Fixed { limit, .. }) = (soft, quota) else {
        return Ok(());
    };
    let size = reported_limit(*limit, algorithm, burst);
    if soft.value < size {
        return Ok(());
    }
    Err(syn::Error::new(
        soft.span,
        format!(
            "`soft = {}` must be below the limit ({size}): above the soft limit requests pass degraded, at the limit they are refused",
            soft.value
        ),
    ))
}

/// A request that costs more than a limit can ever hold would never pass. (The leaky bucket
/// holds one request unless given a `burst`.)
fn check_cost(
    cost: Option<&Spanned<u32>>,
    quota: &QuotaSpec,
    algorithm: &str,
    burst: Option<u32>,
) -> syn::Result<()> {
    let (Some(cost), QuotaSpec::Fixed { limit, .. }) = (cost, quota) else {
        return Ok(());
    };
    let capacity = reported_limit(*limit, algorithm, burst);
    if cost.value <= capacity {
        return Ok(());
    }
    Err(syn::Error::new(
        cost.span,
        format!("a request costing {} can never pass a limit of {capacity}; lower `cost` or raise the limit", cost.value),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sliding_log_bound_is_the_runtimes() {
        assert_eq!(
            super::MAX_SLIDING_LOG,
            ratelimit_runtime::algorithm::SlidingLog::MAX_LIMIT
        );
    }
}
