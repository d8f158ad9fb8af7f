//! Parsing: the attribute's tokens into [`Args`], every value with its span, repeats refused.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned as _;
use syn::{Expr, ExprLit, ExprUnary, Lit, Path, UnOp};

/// A value and where it was written.
#[derive(Clone)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// `limit = ...`: a count, or a function choosing the quota per request.
#[derive(Clone)]
pub enum LimitArg {
    Count(u32),
    PerRequest(Path),
}

/// `concurrency = ...`: a fixed number of slots, or `"adaptive"` (with bounds).
#[derive(Clone, Copy)]
pub enum ConcurrencyArg {
    Fixed(u32),
    Adaptive { min: u32, max: u32 },
}

/// The arguments of one `#[ratelimit(...)]`, as written.
#[derive(Default)]
pub struct Args {
    pub rate: Option<Spanned<String>>,
    pub limit: Option<Spanned<LimitArg>>,
    pub per: Option<Spanned<u32>>,
    pub scope: Option<Spanned<String>>,
    pub key: Option<Spanned<Path>>,
    pub algorithm: Option<Spanned<String>>,
    pub burst: Option<Spanned<u32>>,
    pub cost: Option<Spanned<u32>>,
    pub shared: Option<Spanned<String>>,
    pub exempt: Option<Spanned<Path>>,
    pub send_x_headers: Option<Spanned<bool>>,
    pub over_limit: Option<Spanned<Path>>,
    pub soft: Option<Spanned<u32>>,
    pub mode: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<ConcurrencyArg>>,
    /// `priority = path::to::fn`: what an adaptive limit sheds first and last.
    pub priority: Option<Spanned<Path>>,
    pub max_wait: Option<Spanned<u64>>,
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    pub per_method: Option<Spanned<bool>>,
    pub deduct_when: Option<Spanned<Path>>,
    /// `cost = path::to::fn`: the units a request reserves, chosen per request.
    pub cost_fn: Option<Spanned<Path>>,
    /// `penalty = "3/10 minutes"`: refusals within a period that earn a penalty of that period.
    pub penalty: Option<Spanned<String>>,
}

/// The keys, `rate` last: it is usually written first, without a key, and not listed.
const KEYS: [&str; 21] = [
    "limit",
    "per",
    "scope",
    "key",
    "algorithm",
    "burst",
    "cost",
    "shared",
    "exempt",
    "send_x_headers",
    "over_limit",
    "soft",
    "mode",
    "concurrency",
    "priority",
    "max_wait",
    "methods",
    "per_method",
    "deduct_when",
    "penalty",
    "rate",
];

impl Args {
    /// Parses `"100/minute", scope = "ip"` or `limit = 10, per = "1m"`.
    pub fn parse(tokens: TokenStream) -> syn::Result<Args> {
        let mut args = Args::default();
        let rest = args.take_leading_rate(tokens)?;
        syn::meta::parser(|meta| args.set(meta)).parse2(rest)?;
        Ok(args)
    }

    /// The Flask-Limiter string may come first, without a key.
    fn take_leading_rate(&mut self, tokens: TokenStream) -> syn::Result<TokenStream> {
        let mut iter = tokens.into_iter().peekable();
        let Some(TokenTree::Literal(lit)) = iter.peek().cloned() else {
            return Ok(iter.collect());
        };
        iter.next();
        let rate = match Lit::new(lit) {
            Lit::Str(s) => s,
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "expected a rate string such as `\"100/minute\"` or `limit = N, per = S`",
                ))
            }
        };
        self.rate = Some(Spanned {
            value: rate.value(),
            span: rate.span(),
        });
        match iter.next() {
            None => Ok(TokenStream::new()),
            Some(TokenTree::Punct(p)) if p.as_char() == ',' => Ok(iter.collect()),
            Some(other) => Err(syn::Error::new(
                other.span(),
                "expected `,` after the rate string",
            )),
        }
    }

    fn set(&mut self, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
        let Some(name) = meta.path.get_ident().map(|i| i.to_string()) else {
            return Err(unknown_key(&meta));
        };
        let value: Expr = meta.value()?.parse()?;
        let span = value.span();
        match name.as_str() {
            "rate" => put(&mut self.rate, "rate", span, string(&value, "rate")?),
            "limit" => put(&mut self.limit, "limit", span, limit(&value)?),
            "per" => put(&mut self.per, "per", span, period(&value)?),
            "scope" => put(&mut self.scope, "scope", span, string(&value, "scope")?),
            "key" => put(&mut self.key, "key", span, path(&value, "key")?),
            "algorithm" => put(
                &mut self.algorithm,
                "algorithm",
                span,
                string(&value, "algorithm")?,
            ),
            "burst" => put(&mut self.burst, "burst", span, positive(&value, "burst")?),
            "cost" if matches!(value, Expr::Path(_)) => {
                if self.cost.is_some() {
                    return put(&mut self.cost, "cost", span, 0);
                }
                put(&mut self.cost_fn, "cost", span, path(&value, "cost")?)
            }
            "cost" => {
                if self.cost_fn.is_some() {
                    return put(&mut self.cost_fn, "cost", span, path(&value, "cost")?);
                }
                put(&mut self.cost, "cost", span, positive(&value, "cost")?)
            }
            "shared" => put(&mut self.shared, "shared", span, string(&value, "shared")?),
            "exempt" => put(&mut self.exempt, "exempt", span, path(&value, "exempt")?),
            "send_x_headers" => put(
                &mut self.send_x_headers,
                "send_x_headers",
                span,
                boolean(&value, "send_x_headers")?,
            ),
            "deduct_when" => put(
                &mut self.deduct_when,
                "deduct_when",
                span,
                path(&value, "deduct_when")?,
            ),
            "penalty" => put(
                &mut self.penalty,
                "penalty",
                span,
                string(&value, "penalty")?,
            ),
            "methods" => put(
                &mut self.methods,
                "methods",
                span,
                strings(&value, "methods")?,
            ),
            "per_method" => put(
                &mut self.per_method,
                "per_method",
                span,
                boolean(&value, "per_method")?,
            ),
            "over_limit" => put(
                &mut self.over_limit,
                "over_limit",
                span,
                path(&value, "over_limit")?,
            ),
            "soft" => put(&mut self.soft, "soft", span, positive(&value, "soft")?),
            "mode" => put(&mut self.mode, "mode", span, string(&value, "mode")?),
            "concurrency" => put(
                &mut self.concurrency,
                "concurrency",
                span,
                concurrency(&value)?,
            ),
            "priority" => put(
                &mut self.priority,
                "priority",
                span,
                path(&value, "priority")?,
            ),
            "max_wait" => put(&mut self.max_wait, "max_wait", span, wait(&value)?),
            _ => Err(unknown_key(&meta)),
        }
    }
}

fn put<T>(slot: &mut Option<Spanned<T>>, name: &str, span: Span, value: T) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(
            span,
            format!("`{name}` is given twice; keep one"),
        ));
    }
    *slot = Some(Spanned { value, span });
    Ok(())
}

fn unknown_key(meta: &ParseNestedMeta<'_>) -> syn::Error {
    let written = meta
        .path
        .get_ident()
        .map(|i| i.to_string())
        .unwrap_or_default();
    let nearest = KEYS
        .iter()
        .min_by_key(|k| strsim::levenshtein(k, &written))
        .filter(|k| strsim::levenshtein(k, &written) <= 3);
    let hint = nearest
        .map(|k| format!("did you mean `{k}`? "))
        .unwrap_or_default();
    let keys = KEYS[..KEYS.len() - 1]
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    meta.error(format!(
        "unknown argument `{written}`; {hint}the arguments are {keys}"
    ))
}

fn integer(value: &Expr, name: &str) -> syn::Result<u64> {
    match value {
        Expr::Lit(ExprLit { lit: Lit::Int(int), .. }) => int.base10_parse::<u64>().map_err(|_| {
            syn::Error::new(int.span(), format!("`{name}` is too large"))
        }),
        Expr::Unary(ExprUnary { op: UnOp::Neg(_), .. }) => {
            Err(syn::Error::new(value.span(), format!("`{name}` must be a positive whole number")))
        }
        Expr::Lit(ExprLit { lit: Lit::Float(_), .. }) => Err(syn::Error::new(
            value.span(),
            format!("`{name}` must be a whole number; for a fraction use a longer period, e.g. `limit = 3, per = 2` for 1.5 per second"),
        )),
        _ => Err(syn::Error::new(value.span(), format!("`{name}` takes a whole number literal"))),
    }
}

/// `concurrency = N`, `"adaptive"` or `"adaptive(MIN..MAX)"`.
fn concurrency(value: &Expr) -> syn::Result<ConcurrencyArg> {
    let Expr::Lit(ExprLit {
        lit: Lit::Str(text),
        ..
    }) = value
    else {
        return positive(value, "concurrency").map(ConcurrencyArg::Fixed);
    };
    let wrong = || {
        syn::Error::new(
            text.span(),
            "`concurrency` takes a number of slots, `\"adaptive\"`, or `\"adaptive(MIN..MAX)\"` with bounds, e.g. `\"adaptive(2..64)\"`",
        )
    };
    let text_value = text.value();
    let body = text_value.trim();
    if body == "adaptive" {
        return Ok(ConcurrencyArg::Adaptive { min: 2, max: 1_000 });
    }
    let bounds = body
        .strip_prefix("adaptive(")
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(wrong)?;
    let (min, max) = bounds.split_once("..").ok_or_else(wrong)?;
    let (min, max) = (
        min.trim().parse::<u32>().map_err(|_| wrong())?,
        max.trim().parse::<u32>().map_err(|_| wrong())?,
    );
    if min == 0 || max < min {
        return Err(syn::Error::new(
            text.span(),
            format!("an adaptive limit's bounds need 1 <= MIN <= MAX, not {min}..{max}"),
        ));
    }
    Ok(ConcurrencyArg::Adaptive { min, max })
}

fn positive(value: &Expr, name: &str) -> syn::Result<u32> {
    let n = integer(value, name)?;
    match u32::try_from(n) {
        Ok(0) => Err(syn::Error::new(
            value.span(),
            format!("`{name}` must be at least 1"),
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(syn::Error::new(
            value.span(),
            format!("`{name}` must be at most {}", u32::MAX),
        )),
    }
}

fn limit(value: &Expr) -> syn::Result<LimitArg> {
    match value {
        Expr::Path(p) => Ok(LimitArg::PerRequest(p.path.clone())),
        Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Err(syn::Error::new(
            s.span(),
            format!(
                "`limit` takes a number or a function; a rate string goes first, without a key: `#[ratelimit({})]`",
                s.token()
            ),
        )),
        _ => positive(value, "limit").map(LimitArg::Count),
    }
}

fn period(value: &Expr) -> syn::Result<u32> {
    if let Expr::Lit(ExprLit {
        lit: Lit::Str(s), ..
    }) = value
    {
        return crate::rate::parse_period(&s.value())
            .map_err(|e| syn::Error::new(s.span(), format!("invalid `per`: {e}; write seconds (`30`) or `\"30s\"`, `\"5m\"`, `\"1h\"`, `\"1d\"`")));
    }
    let secs = integer(value, "per")?;
    match u32::try_from(secs) {
        Ok(0) => Err(syn::Error::new(
            value.span(),
            "`per = 0` is an empty period; `per` must be at least 1 second",
        )),
        Ok(secs) => Ok(secs),
        Err(_) => Err(syn::Error::new(
            value.span(),
            "`per` is too large; at most 4294967295 seconds",
        )),
    }
}

fn wait(value: &Expr) -> syn::Result<u64> {
    let text = string(value, "max_wait")?;
    let millis = crate::rate::parse_wait(&text).map_err(|_| {
        syn::Error::new(
            value.span(),
            format!("invalid `max_wait` `{text}`: write a positive duration such as `\"2s\"`, `\"500ms\"` or `\"1m\"`"),
        )
    })?;
    if millis > MAX_WAIT_MILLIS {
        return Err(syn::Error::new(
            value.span(),
            "`max_wait` is at most 10 minutes: a request waiting longer holds its connection and worker memory that long",
        ));
    }
    Ok(millis)
}

/// The longest `max_wait` accepted.
const MAX_WAIT_MILLIS: u64 = 10 * 60 * 1_000;

fn string(value: &Expr, name: &str) -> syn::Result<String> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.value()),
        _ => Err(syn::Error::new(
            value.span(),
            format!("`{name}` takes a string literal"),
        )),
    }
}

fn path(value: &Expr, name: &str) -> syn::Result<Path> {
    match value {
        Expr::Path(p) => Ok(p.path.clone()),
        _ => Err(syn::Error::new(
            value.span(),
            format!("`{name}` takes a path to a function, e.g. `{name} = crate::my_fn`"),
        )),
    }
}

fn boolean(value: &Expr, name: &str) -> syn::Result<bool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(b), ..
        }) => Ok(b.value),
        _ => Err(syn::Error::new(
            value.span(),
            format!("`{name}` takes `true` or `false`"),
        )),
    }
}

/// `["POST", "PUT"]`: string literals in brackets, each with its span.
fn strings(value: &Expr, name: &str) -> syn::Result<Vec<Spanned<String>>> {
    let wrong = || {
        syn::Error::new(
            value.span(),
            format!("`{name}` takes a list of strings, e.g. `{name} = [\"POST\", \"PUT\"]`"),
        )
    };
    let Expr::Array(array) = value else {
        return Err(wrong());
    };
    array
        .elems
        .iter()
        .map(|elem| match elem {
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => Ok(Spanned {
                value: s.value(),
                span: s.span(),
            }),
            other => Err(syn::Error::new(
                other.span(),
                format!("`{name}` takes string literals, e.g. `\"POST\"`"),
            )),
        })
        .collect()
}
