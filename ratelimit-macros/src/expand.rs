//! Code generation: the handler keeps its name, attributes and extractors; its body moves into
//! a nested function that runs only after the limits allowed the request.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, ToTokens};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, ItemFn, Path, Type};

use crate::args::Args;
use crate::config::{QuotaSpec, RuleSpec, ScopeSpec};

/// The whole expansion; on error, the error and the item as written.
pub fn ratelimit(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => return error_with_item(not_a_function(&item), item),
    };
    match rules_of(args, &mut func).and_then(|rules| check_signature(&func).map(|()| rules)) {
        Ok(rules) => wrap(func, &rules),
        Err(error) => error_with_item(error, item),
    }
}

fn not_a_function(item: &TokenStream) -> syn::Error {
    syn::Error::new(
        item.span(),
        "`#[ratelimit]` goes on an `async fn` Actix handler",
    )
}

fn error_with_item(error: syn::Error, item: TokenStream) -> TokenStream {
    let error = error.to_compile_error();
    quote! { #error #item }
}

/// The rules of this attribute and of any further `#[ratelimit]` on the same function, which
/// are taken off it: one decision covers all of them.
fn rules_of(args: TokenStream, func: &mut ItemFn) -> syn::Result<Vec<RuleSpec>> {
    let mut rules = Args::parse(args)?.build(Span::call_site())?;
    refuse_repeats(&[], &rules, Span::call_site())?;
    let (stacked, others): (Vec<Attribute>, Vec<Attribute>) = std::mem::take(&mut func.attrs)
        .into_iter()
        .partition(is_ratelimit);
    func.attrs = others;
    for attr in stacked {
        let (tokens, span) = match &attr.meta {
            syn::Meta::List(list) => (list.tokens.clone(), list.delimiter.span().join()),
            other => (TokenStream::new(), other.span()),
        };
        let more = Args::parse(tokens)?.build(span)?;
        refuse_repeats(&rules, &more, span)?;
        rules.extend(more);
    }
    Ok(rules)
}

/// Two rules counting in the same state would charge it twice per request: one of `new` that
/// repeats one of `known`, or another of `new`, is an error at `span`.
fn refuse_repeats(known: &[RuleSpec], new: &[RuleSpec], span: Span) -> syn::Result<()> {
    let repeated = new.iter().enumerate().any(|(i, rule)| {
        known
            .iter()
            .chain(&new[..i])
            .any(|earlier| same_limit(earlier, rule))
    });
    if repeated {
        return Err(syn::Error::new(
            span,
            "this `#[ratelimit]` repeats a limit of this handler (same quota, algorithm, scope and budget), so each request would count twice; remove one",
        ));
    }
    Ok(())
}

fn is_ratelimit(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "ratelimit")
}

/// Two rules that would count in the same state.
fn same_limit(a: &RuleSpec, b: &RuleSpec) -> bool {
    let text = |t: &dyn ToTokens| t.to_token_stream().to_string();
    let quota = |q: &QuotaSpec| match q {
        QuotaSpec::Fixed { limit, period_secs } => format!("{limit}/{period_secs}"),
        QuotaSpec::PerRequest(p) => text(p),
        QuotaSpec::InFlight(n) => format!("in flight {n}"),
        QuotaSpec::Adaptive { min, max } => format!("adaptive {min}..{max}"),
    };
    let scope = |s: &ScopeSpec| match s {
        ScopeSpec::Ip => "ip".to_string(),
        ScopeSpec::Global => "global".to_string(),
        ScopeSpec::Header(h) => format!("header:{h}"),
        ScopeSpec::Custom(p, _) => text(p),
    };
    // The capacity as the runtime resolves it: no `burst` and the default burst are one state.
    let capacity = |r: &RuleSpec| match (&r.quota, r.burst) {
        (_, Some(burst)) => Some(burst),
        (_, None) if r.algorithm == "leaky_bucket" => Some(1),
        (QuotaSpec::Fixed { limit, .. } | QuotaSpec::InFlight(limit), None) => Some(*limit),
        (QuotaSpec::Adaptive { max, .. }, None) => Some(*max),
        (QuotaSpec::PerRequest(_), None) => None,
    };
    (
        quota(&a.quota),
        a.algorithm,
        scope(&a.scope),
        &a.shared,
        capacity(a),
        &a.own_method,
    ) == (
        quota(&b.quota),
        b.algorithm,
        scope(&b.scope),
        &b.shared,
        capacity(b),
        &b.own_method,
    )
}

fn check_signature(func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        return Err(syn::Error::new(
            sig.fn_token.span,
            "`#[ratelimit]` needs an `async fn`: Actix handlers are async",
        ));
    }
    if let Some(receiver) = sig.receiver() {
        return Err(syn::Error::new(
            receiver.span(),
            "`#[ratelimit]` cannot limit a method taking `self`; make it a free `async fn` handler",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "`#[ratelimit]` handlers cannot be generic",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new(
            variadic.span(),
            "`#[ratelimit]` handlers cannot be variadic",
        ));
    }
    Ok(())
}

/// The handler, rewritten.
fn wrap(func: ItemFn, rules: &[RuleSpec]) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let name = &sig.ident;
    let rt = quote!(::ratelimit_runtime::__private);
    let inner_sig = syn::Signature {
        ident: format_ident!("__ratelimit_handler"),
        ..sig.clone()
    };
    let types: Vec<&Type> = sig.inputs.iter().filter_map(arg_type).collect();
    let args: Vec<_> = (0..types.len())
        .map(|i| format_ident!("__ratelimit_arg{i}"))
        .collect();
    let rule_exprs = rules.iter().map(|rule| rule_expr(rule, name));
    let count = rules.len();
    quote! {
        #(#attrs)*
        #vis async fn #name(__ratelimit_raw: #rt::RawRequest) -> #rt::HttpResponse {
            #inner_sig #block
            static __RATELIMIT_RULES: [#rt::Rule; #count] = [#(#rule_exprs),*];
            #rt::inventory::submit! { #rt::HandlerRules(&__RATELIMIT_RULES) }
            let (__ratelimit_req, mut __ratelimit_payload) = __ratelimit_raw.into_parts();
            let __ratelimit_pass = match #rt::check(&__ratelimit_req, &__RATELIMIT_RULES).await {
                ::core::result::Result::Ok(__ratelimit_allowed) => __ratelimit_allowed,
                ::core::result::Result::Err(__ratelimit_denied) => return __ratelimit_denied,
            };
            #(
                let #args = match #rt::extract::<#types>(&__ratelimit_req, &mut __ratelimit_payload).await {
                    ::core::result::Result::Ok(__ratelimit_value) => __ratelimit_value,
                    ::core::result::Result::Err(__ratelimit_error) => {
                        return __ratelimit_pass.finish(__ratelimit_error, &__ratelimit_req)
                    }
                };
            )*
            __ratelimit_pass.respond(__ratelimit_handler(#(#args),*).await, &__ratelimit_req)
        }
    }
}

fn arg_type(arg: &FnArg) -> Option<&Type> {
    match arg {
        FnArg::Typed(typed) => Some(&typed.ty),
        FnArg::Receiver(_) => None,
    }
}

/// One `Rule { .. }` constant.
fn rule_expr(rule: &RuleSpec, handler: &syn::Ident) -> TokenStream {
    let rt = quote!(::ratelimit_runtime::__private);
    // Custom keys are told apart by name: the key function's path joins it.
    let mut key_fn = match &rule.scope {
        ScopeSpec::Custom(path, _) => format!("#key={}", path.to_token_stream()).replace(' ', ""),
        _ => String::new(),
    };
    // A method's own budget (`per_method`) is told apart by the method.
    if let Some(method) = &rule.own_method {
        key_fn.push_str(&format!("#method={method}"));
    }
    let methods = &rule.methods;
    let deduct_when = option(rule.deduct_when.as_ref().map(deduct_when_expr));
    let cost_fn = option(rule.cost_fn.as_ref().map(cost_fn_expr));
    let priority = option(rule.priority.as_ref().map(priority_expr));
    let penalty = option(
        rule.penalty
            .map(|(refusals, secs)| quote!(#rt::quota(#refusals, #secs))),
    );
    let name = match &rule.shared {
        Some(shared) => quote!(#rt::Cow::Borrowed(::core::concat!("shared:", #shared, #key_fn))),
        None => quote!(#rt::Cow::Borrowed(::core::concat!(
            ::core::module_path!(), "::", ::core::stringify!(#handler), #key_fn
        ))),
    };
    let quota = quota_expr(&rule.quota);
    let algorithm = format_ident!("{}", camel(rule.algorithm));
    let burst = option(rule.burst.map(|b| quote!(#rt::non_zero(#b))));
    let scope = scope_expr(&rule.scope);
    let cost = rule.cost;
    let exempt = option(rule.exempt.as_ref().map(exempt_expr));
    let send = rule.send_x_headers;
    let over_limit = option(rule.over_limit.as_ref().map(over_limit_expr));
    let soft = option(rule.soft.map(|s| quote!(#rt::non_zero(#s))));
    let mode = format_ident!("{}", camel(rule.mode));
    let max_wait = option(
        rule.max_wait_millis
            .map(|ms| quote!(#rt::Duration::from_millis(#ms))),
    );
    quote! {
        #rt::Rule {
            name: #name,
            quota: #quota,
            algorithm: #rt::AlgorithmKind::#algorithm,
            burst: #burst,
            scope: #scope,
            cost: #rt::non_zero(#cost),
            exempt: #exempt,
            send_x_headers: #send,
            over_limit: #over_limit,
            soft: #soft,
            mode: #rt::Mode::#mode,
            max_wait: #max_wait,
            methods: &[#(#methods),*],
            deduct_when: #deduct_when,
            cost_fn: #cost_fn,
            penalty: #penalty,
            priority: #priority,
            limiter_cache: #rt::LimiterCache::new(),
        }
    }
}

fn quota_expr(quota: &QuotaSpec) -> TokenStream {
    let rt = quote!(::ratelimit_runtime::__private);
    match quota {
        QuotaSpec::Fixed { limit, period_secs } => {
            quote!(#rt::QuotaSource::Fixed(#rt::quota(#limit, #period_secs)))
        }
        QuotaSpec::InFlight(n) => quote!(#rt::QuotaSource::InFlight(#rt::non_zero(#n))),
        QuotaSpec::Adaptive { min, max } => quote!(#rt::QuotaSource::Adaptive(
            #rt::AdaptiveBounds { min: #min, max: #max }
        )),
        // A function of the request, or an async lookup of the client's key: the function's
        // type tells which (`TierFn`).
        QuotaSpec::PerRequest(path) => {
            let choose = at(
                path,
                quote!(|__ratelimit_req: &#rt::HttpRequest, __ratelimit_key: ::core::option::Option<::std::string::String>| -> #rt::Choice<#rt::Tier> {
                    #rt::TierFn::choose(&#path, __ratelimit_req, __ratelimit_key)
                }),
            );
            let looks_up = at(path, quote!(#rt::tier_looks_up(&#path)));
            let function = at(path, quote!(|| #rt::function_id(&#path)));
            quote!(#rt::QuotaSource::Chosen(#rt::Chooser {
                choose: #choose,
                looks_up: #looks_up,
                function: #function,
            }))
        }
    }
}

fn scope_expr(scope: &ScopeSpec) -> TokenStream {
    let rt = quote!(::ratelimit_runtime::__private);
    match scope {
        ScopeSpec::Ip => quote!(#rt::Scope::Ip),
        ScopeSpec::Global => quote!(#rt::Scope::Global),
        ScopeSpec::Header(name) => quote!(#rt::Scope::Header(#rt::Cow::Borrowed(#name))),
        ScopeSpec::Custom(path, of) => {
            let choose = at(
                path,
                quote!(|__ratelimit_req: &#rt::HttpRequest, __ratelimit_key: ::core::option::Option<::std::string::String>| -> #rt::Choice<::core::option::Option<::std::string::String>> {
                    #rt::KeyFn::choose(&#path, __ratelimit_req, __ratelimit_key)
                }),
            );
            let looks_up = at(path, quote!(#rt::key_looks_up(&#path)));
            let function = at(path, quote!(|| #rt::function_id(&#path)));
            let of_expr = match of {
                Some(of) => scope_expr(of),
                None => quote!(#rt::Scope::Ip),
            };
            // A `scope` with a key function: it must be an async lookup, asked the scope's key.
            let with_scope = of.as_ref().map(|_| {
                at(
                    path,
                    quote!(const _: () = #rt::key_with_scope(#rt::key_looks_up(&#path));),
                )
            });
            quote!(#rt::Scope::Chosen {
                key: #rt::Chooser {
                    choose: #choose,
                    looks_up: { #with_scope #looks_up },
                    function: #function,
                },
                of: &#of_expr,
            })
        }
    }
}

fn exempt_expr(path: &Path) -> TokenStream {
    let rt = quote!(::ratelimit_runtime::__private);
    at(
        path,
        quote!(|req: &#rt::HttpRequest| -> bool { #rt::IsExempt::into_exempt(#path(req)) }),
    )
}

fn deduct_when_expr(path: &Path) -> TokenStream {
    let rt = quote!(::ratelimit_runtime::__private);
    at(
        path,
        quote!(|res: &#rt::HttpResponse| -> bool { #rt::Deducts::deducts(#path(res)) }),
    )
}

fn cost_fn_expr(path: &Path) -> TokenStream {
    let rt = quote!(::ratelimit_runtime::__private);
    at(
        path,
        quote!(|req: &#rt::HttpRequest| -> u32 { #rt::IntoCost::into_cost(#path(req)) }),
    )
}

fn priority_expr(path: &Path) -> TokenStream {
    let rt = quote!(::ratelimit_runtime::__private);
    at(
        path,
        quote!(|__ratelimit_req: &#rt::HttpRequest| -> #rt::Priority {
            #rt::IntoPriority::into_priority(#path(__ratelimit_req))
        }),
    )
}

fn over_limit_expr(path: &Path) -> TokenStream {
    let rt = quote!(::ratelimit_runtime::__private);
    at(
        path,
        quote!(|req: &#rt::HttpRequest, info: &#rt::RateLimitInfo| -> #rt::HttpResponse {
            #rt::OverLimit::respond(&#path, req, info)
        }),
    )
}

/// `tokens` re-spanned at the user's path, so that a function of the wrong type is reported
/// there rather than on the whole attribute.
fn at(path: &Path, tokens: TokenStream) -> TokenStream {
    let span: Span = path.span();
    tokens
        .into_iter()
        .map(|mut tree| {
            respan(&mut tree, span);
            tree
        })
        .collect()
}

fn respan(tree: &mut proc_macro2::TokenTree, span: Span) {
    if let proc_macro2::TokenTree::Group(group) = tree {
        let inner = group.stream().into_iter().map(|mut t| {
            respan(&mut t, span);
            t
        });
        let mut respanned = proc_macro2::Group::new(group.delimiter(), inner.collect());
        respanned.set_span(span);
        *group = respanned;
    } else {
        tree.set_span(span);
    }
}

fn option(value: Option<TokenStream>) -> TokenStream {
    match value {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    }
}

/// `sliding_log` -> `SlidingLog`.
fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// `quota!("...")`: the one rate of the string, as a `const` expression.
pub(crate) fn quota(input: TokenStream) -> TokenStream {
    match quota_of(input) {
        Ok((limit, period_secs)) => quote! {
            ::ratelimit_runtime::__private::quota(#limit, #period_secs)
        },
        Err(e) => e.to_compile_error(),
    }
}

fn quota_of(input: TokenStream) -> syn::Result<(u32, u32)> {
    let text: syn::LitStr = syn::parse2(input).map_err(|e| {
        syn::Error::new(
            e.span(),
            "`quota!` takes one rate as a string, e.g. `quota!(\"100/minute\")`",
        )
    })?;
    let rates = crate::rate::parse_rates(&text.value())
        .map_err(|e| syn::Error::new(text.span(), format!("invalid rate: {e}")))?;
    match rates[..] {
        [one] => Ok((one.limit, one.period_secs)),
        _ => Err(syn::Error::new(
            text.span(),
            "`quota!` makes one quota; for several limits give the attribute the string, or write one `quota!` each",
        )),
    }
}
