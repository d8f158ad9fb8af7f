// ratelimit.js: the browser side of the ratelimit crates. `fetchWithRetry(url, options)` is
// `fetch` that paces itself from the limit headers and retries only what is safe to repeat,
// with the semantics of the Rust client `ratelimit-client` (see docs/clients.md and
// docs/browser.md):
//
// - Before sending, it asks what the last responses said about the budget (per origin, shared
//   by every call on the page): while the budget is spent, a request waits for the reset
//   instead of collecting a 429; each request sent takes one unit.
// - A 429 (or 503) is retried only for an idempotent method (GET, HEAD, OPTIONS, TRACE, PUT,
//   DELETE) or a request with an `Idempotency-Key` header, after `Retry-After` (seconds or an
//   HTTP date; garbage ignored; capped at a day), or without one after exponential backoff with
//   full jitter (a random wait up to min(cap, base * 2^retry)).
// - At most `maxRetries` retries and `waitBudgetMs` of waiting per call; past that the last
//   response is returned as it is.
//
// Headers read: X-RateLimit-Limit / -Remaining / -Reset (reset as Unix seconds, Unix
// milliseconds or seconds from now), the IETF RateLimit and RateLimit-Policy fields (the
// most restrictive policy wins), and Retry-After. A page served from another origin than the
// API can read them only if the API lists them in Access-Control-Expose-Headers.
//
// Usable on its own: a classic script defines `window.RateLimit`; under Node, `require` it.
(function (root) {
  "use strict";

  const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);
  /** Waits the server asks for are cut to a day. */
  const MAX_HINT_MS = 24 * 60 * 60 * 1000;
  /** Reset values at or above these are Unix seconds, then Unix milliseconds. */
  const EPOCH_SECONDS_FROM = 1e9;
  const EPOCH_MILLIS_FROM = 1e12;
  /** How often a request held behind requests in flight looks again. */
  const POLL_MS = 50;

  const DEFAULTS = {
    maxRetries: 5,
    waitBudgetMs: 60000,
    backoff: { baseMs: 1000, capMs: 60000 },
  };

  const cap = (ms) => Math.min(Math.max(ms, 0), MAX_HINT_MS);

  /** A non-negative decimal number of seconds, or null. */
  function seconds(text) {
    if (typeof text !== "string") return null;
    const t = text.trim();
    if (!/^\d+(\.\d+)?$/.test(t)) return null;
    return Number(t);
  }

  /** `Retry-After` as milliseconds from `nowMs`: delta-seconds or an HTTP date; else null. */
  function parseRetryAfter(value, nowMs) {
    if (value == null) return null;
    const secs = seconds(String(value));
    if (secs !== null) return cap(secs * 1000);
    // An HTTP date names a weekday and GMT; Date.parse alone would take "1" for 2001.
    const text = String(value).trim();
    if (!/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(text)) return null;
    const at = Date.parse(text);
    return Number.isNaN(at) ? null : cap(at - nowMs);
  }

  /** `X-RateLimit-Reset` as milliseconds from `nowMs`. */
  function parseReset(value, nowMs) {
    const secs = seconds(value);
    if (secs === null) return null;
    if (secs >= EPOCH_MILLIS_FROM) return cap(secs - nowMs);
    if (secs >= EPOCH_SECONDS_FROM) return cap(secs * 1000 - nowMs);
    return cap(secs * 1000);
  }

  /** The parameters of each member of a Structured Fields list: [{name, params}]. */
  function sfList(value) {
    if (!value) return [];
    return value.split(",").map((member) => {
      const [name, ...params] = member.split(";").map((p) => p.trim());
      const out = {};
      for (const p of params) {
        const [k, v] = p.split("=");
        if (k && v !== undefined) out[k.trim()] = v.trim();
      }
      return { name: name.replace(/^"|"$/g, ""), params: out };
    });
  }

  /**
   * What a response says about the budget: {limit, remaining, resetMs, whole} (null where
   * unknown, or null altogether without a remaining count; `whole`: whether the whole budget is
   * back at the reset, as X-RateLimit-Reset says, or only more of it, as the IETF `t`) and
   * retryAfterMs.
   */
  function parseStatus(headers, nowMs) {
    const get = (name) => (headers && headers.get ? headers.get(name) : null);
    let budget = null;
    const remaining = seconds(get("x-ratelimit-remaining"));
    if (remaining !== null && Number.isInteger(remaining)) {
      const limit = seconds(get("x-ratelimit-limit"));
      budget = {
        limit: limit !== null && Number.isInteger(limit) ? limit : null,
        remaining,
        resetMs: parseReset(get("x-ratelimit-reset"), nowMs),
        whole: true,
      };
    }
    // The IETF fields: `RateLimit: "p";r=N;t=S`, `RateLimit-Policy: "p";q=N;w=S`.
    const quotas = new Map(sfList(get("ratelimit-policy")).map((p) => [p.name, p.params]));
    for (const { name, params } of sfList(get("ratelimit"))) {
      const r = seconds(params.r);
      if (r === null || !Number.isInteger(r)) continue;
      const t = seconds(params.t);
      const q = quotas.has(name) ? seconds(quotas.get(name).q) : null;
      // draft-11's `t` is when more is available, not necessarily all of it: not whole.
      const candidate = { limit: q, remaining: r, resetMs: t === null ? null : cap(t * 1000), whole: false };
      if (!budget || candidate.remaining < budget.remaining) budget = candidate;
    }
    return { budget, retryAfterMs: parseRetryAfter(get("retry-after"), nowMs) };
  }

  /** Per budget (an origin by default), what the last responses said. */
  class Pacer {
    constructor() {
      this.budgets = new Map();
    }

    state(key) {
      if (!this.budgets.has(key)) {
        this.budgets.set(key, { estimate: null, blockedUntil: 0, inFlight: 0, silent: false });
      }
      return this.budgets.get(key);
    }

    /** null: send now (one unit taken); else the instant (ms) to ask again. */
    admit(key, nowMs) {
      const s = this.state(key);
      if (s.blockedUntil > nowMs) return s.blockedUntil;
      const e = s.estimate;
      if (e && e.resetAt !== null && e.resetAt <= nowMs) {
        // The announced reset has come: the whole budget is back, less what is in flight; after
        // an IETF reset (more of it, maybe one unit), one request goes first and tells.
        s.estimate = e.limit === null || !e.whole ? null : { limit: e.limit, remaining: Math.max(e.limit - s.inFlight, 0), resetAt: null, whole: true };
      }
      const now = s.estimate;
      if (now && now.remaining <= 0) {
        if (s.inFlight === 0 && now.resetAt !== null) return now.resetAt;
        return now.resetAt === null ? nowMs + POLL_MS : Math.min(now.resetAt, nowMs + POLL_MS);
      }
      // Nothing known yet: one request goes first, the others wait for its answer.
      if (!now && s.inFlight > 0 && !s.silent) return nowMs + POLL_MS;
      s.inFlight += 1;
      if (now) now.remaining -= 1;
      return null;
    }

    /** What the response to a request `admit` let go said. */
    observe(key, nowMs, status, report) {
      const s = this.state(key);
      s.inFlight = Math.max(s.inFlight - 1, 0);
      const refused = status === 429;
      if (report.retryAfterMs !== null && (refused || status === 503)) {
        s.blockedUntil = Math.max(s.blockedUntil, nowMs + report.retryAfterMs);
      }
      const b = report.budget;
      if (b) {
        s.silent = false;
        const resetAt = b.resetMs === null ? null : nowMs + b.resetMs;
        const ours = s.estimate;
        s.estimate = ours
          ? {
              limit: b.limit !== null ? b.limit : ours.limit,
              remaining: Math.min(ours.remaining, b.remaining),
              resetAt: ours.resetAt === null ? resetAt : resetAt === null ? ours.resetAt : Math.max(ours.resetAt, resetAt),
              whole: b.whole,
            }
          : { limit: b.limit, remaining: Math.max(b.remaining - s.inFlight, 0), resetAt, whole: b.whole };
      } else if (!s.estimate && !refused) {
        s.silent = true;
      }
      if (refused) {
        if (!s.estimate) s.estimate = { limit: null, remaining: 0, resetAt: null, whole: true };
        s.estimate.remaining = 0;
        if (s.estimate.resetAt === null && report.retryAfterMs !== null) {
          s.estimate.resetAt = nowMs + report.retryAfterMs;
        }
      }
    }
  }

  /** The wait before retry `retry` (from 0) for a draw `unit` in [0, 1). */
  function backoffDelay(backoff, retry, unit) {
    const ceiling = Math.min(backoff.capMs, backoff.baseMs * Math.pow(2, Math.min(retry, 52)));
    const u = Number.isNaN(unit) ? 0 : Math.min(Math.max(unit, 0), 1);
    return ceiling * u;
  }

  /** Whether `method` with `headers` may be sent twice. */
  function mayRepeat(method, headers) {
    if (IDEMPOTENT.has(String(method || "GET").toUpperCase())) return true;
    if (!headers) return false;
    if (typeof headers.get === "function") return headers.get("idempotency-key") != null;
    return Object.keys(headers).some((k) => k.toLowerCase() === "idempotency-key");
  }

  const shared = new Pacer();

  /**
   * `fetch(url, options)`, paced and retried. `config` (optional, for tests and special
   * cases): fetch, now, sleep, random, pacer, maxRetries, waitBudgetMs, backoff, budgetOf
   * (url -> the budget's name; the origin by default). The response carries `attempts`.
   */
  async function fetchWithRetry(url, options = {}, config = {}) {
    const c = Object.assign({}, DEFAULTS, config);
    const doFetch = c.fetch || ((u, o) => root.fetch(u, o));
    const now = c.now || (() => Date.now());
    const sleep = c.sleep || ((ms) => new Promise((r) => setTimeout(r, ms)));
    const random = c.random || Math.random;
    const pacer = c.pacer || shared;
    const key = (c.budgetOf || ((u) => new URL(u, root.location ? root.location.href : "http://localhost/").origin))(url);
    const repeatable = mayRepeat(options.method, options.headers);
    let waited = 0;
    let attempts = 0;
    for (let retry = 0; ; retry++) {
      // Paced: wait while the budget is spent, within the wait budget.
      for (;;) {
        const at = pacer.admit(key, now());
        if (at === null) break;
        const wait = Math.max(at - now(), 1);
        if (waited + wait > c.waitBudgetMs) {
          throw new Error(`ratelimit: waiting ${wait} ms would overrun the wait budget of ${c.waitBudgetMs} ms`);
        }
        waited += wait;
        await sleep(wait);
      }
      attempts += 1;
      let response;
      try {
        response = await doFetch(url, options);
      } catch (error) {
        pacer.observe(key, now(), 0, { budget: null, retryAfterMs: null });
        throw error;
      }
      const report = parseStatus(response.headers, now());
      pacer.observe(key, now(), response.status, report);
      const refused = response.status === 429 || response.status === 503;
      if (!refused || !repeatable || retry >= c.maxRetries) {
        response.attempts = attempts;
        return response;
      }
      const wait = report.retryAfterMs !== null ? report.retryAfterMs : backoffDelay(c.backoff, retry, random());
      if (waited + wait > c.waitBudgetMs) {
        response.attempts = attempts;
        return response;
      }
      waited += wait;
      await sleep(wait);
    }
  }

  const api = { fetchWithRetry, parseRetryAfter, parseReset, parseStatus, backoffDelay, mayRepeat, Pacer, MAX_HINT_MS };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.RateLimit = api;
})(typeof globalThis !== "undefined" ? globalThis : this);
