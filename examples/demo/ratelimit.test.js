// Unit tests of ratelimit.js on a fake clock and a fake fetch: `node --test examples/demo/`.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { fetchWithRetry, parseRetryAfter, parseReset, parseStatus, backoffDelay, Pacer, MAX_HINT_MS } = require("./ratelimit.js");

/** A fake clock whose `sleep` advances it, and a fake fetch answering from `script`. */
function harness(script) {
  const h = { t: 1_800_000_000_000, sent: [], sleeps: [] };
  h.now = () => h.t;
  h.sleep = async (ms) => {
    h.sleeps.push(ms);
    h.t += ms;
  };
  h.fetch = async (url, options) => {
    h.sent.push({ at: h.t, method: (options && options.method) || "GET" });
    const next = script(h.sent.length, h.t);
    return { status: next.status, headers: new Map(Object.entries(next.headers || {})) };
  };
  h.config = (extra) => Object.assign({ fetch: h.fetch, now: h.now, sleep: h.sleep, random: () => 0.5, pacer: new Pacer(), budgetOf: () => "api" }, extra);
  return h;
}

test("Retry-After in seconds and as an HTTP date", () => {
  const now = Date.parse("Wed, 21 Oct 2015 07:28:00 GMT");
  assert.equal(parseRetryAfter("120", now), 120_000);
  assert.equal(parseRetryAfter(" 1.5 ", now), 1_500);
  assert.equal(parseRetryAfter("Wed, 21 Oct 2015 07:28:30 GMT", now), 30_000);
  assert.equal(parseRetryAfter("Wed, 21 Oct 2015 07:27:00 GMT", now), 0, "a date past is now");
  assert.equal(parseRetryAfter("99999999999", now), MAX_HINT_MS, "capped at a day");
});

test("garbage Retry-After is ignored", () => {
  for (const value of ["", "soon", "-5", "1e3", "0x10", "2015-10-21", "1, 2", "Wed, 21 Oct 2015", null, undefined]) {
    assert.equal(parseRetryAfter(value, 0), null, JSON.stringify(value));
  }
});

test("X-RateLimit-Reset as Unix seconds, Unix milliseconds or seconds from now", () => {
  const now = 1_795_439_000_000;
  assert.equal(parseReset("1795439010", now), 10_000);
  assert.equal(parseReset("1795439002500", now), 2_500);
  assert.equal(parseReset("30", now), 30_000);
  assert.equal(parseReset("1795438990", now), 0);
  assert.equal(parseReset("later", now), null);
});

test("the limit headers and the IETF fields, the most restrictive winning", () => {
  const headers = new Map(Object.entries({ "x-ratelimit-limit": "10", "x-ratelimit-remaining": "7", "x-ratelimit-reset": "4" }));
  assert.deepEqual(parseStatus(headers, 0).budget, { limit: 10, remaining: 7, resetMs: 4_000, whole: true });
  const ietf = new Map(Object.entries({ ratelimit: '"hour";r=50;t=3000, "second";r=2;t=1', "ratelimit-policy": '"hour";q=100;w=3600, "second";q=5;w=1' }));
  assert.deepEqual(parseStatus(ietf, 0).budget, { limit: 5, remaining: 2, resetMs: 1_000, whole: false });
  assert.equal(parseStatus(new Map([["x-ratelimit-remaining", "many"]]), 0).budget, null);
});

test("backoff: full jitter under min(cap, base * 2^retry)", () => {
  const backoff = { baseMs: 1000, capMs: 60000 };
  assert.equal(backoffDelay(backoff, 0, 0.999999) < 1000, true);
  assert.equal(backoffDelay(backoff, 3, 0.5), 4000);
  assert.equal(backoffDelay(backoff, 10, 0.5), 30000, "capped");
  assert.equal(backoffDelay(backoff, 1000, 1), 60000, "no overflow");
  assert.equal(backoffDelay(backoff, 2, 0), 0);
  assert.equal(backoffDelay(backoff, 2, NaN), 0);
  assert.equal(backoffDelay(backoff, 2, 7), 4000, "draws clamped");
});

test("a 429 is retried after Retry-After", async () => {
  const h = harness((n) => (n === 1 ? { status: 429, headers: { "retry-after": "3" } } : { status: 200 }));
  const res = await fetchWithRetry("/data", {}, h.config());
  assert.equal(res.status, 200);
  assert.equal(res.attempts, 2);
  assert.equal(h.sent[1].at - h.sent[0].at, 3000);
});

test("without Retry-After, exponential backoff with jitter", async () => {
  const h = harness((n) => (n <= 3 ? { status: 503 } : { status: 200 }));
  const res = await fetchWithRetry("/data", {}, h.config());
  assert.equal(res.attempts, 4);
  assert.deepEqual(h.sleeps, [500, 1000, 2000], "half of 1 s, 2 s, 4 s with a draw of 0.5");
});

test("a POST is never retried without an Idempotency-Key", async () => {
  const h = harness(() => ({ status: 429, headers: { "retry-after": "1" } }));
  const res = await fetchWithRetry("/items", { method: "POST" }, h.config());
  assert.equal(res.status, 429);
  assert.equal(h.sent.length, 1);
  const keyed = harness((n) => (n === 1 ? { status: 429, headers: { "retry-after": "1" } } : { status: 201 }));
  const ok = await fetchWithRetry("/items", { method: "POST", headers: { "Idempotency-Key": "k-1" } }, keyed.config());
  assert.equal(ok.status, 201);
  assert.equal(keyed.sent.length, 2);
});

test("retries and waiting are bounded", async () => {
  const h = harness(() => ({ status: 429, headers: { "retry-after": "1" } }));
  const res = await fetchWithRetry("/data", {}, h.config({ maxRetries: 2 }));
  assert.equal(res.status, 429);
  assert.equal(h.sent.length, 3, "the first and 2 retries");
  const long = harness(() => ({ status: 429, headers: { "retry-after": "120" } }));
  const given = await fetchWithRetry("/data", {}, long.config());
  assert.equal(given.status, 429, "a wait past the budget hands the 429 over");
  assert.equal(long.sent.length, 1);
});

test("a spent budget holds the next request until the reset: no 429 collected", async () => {
  // The server: 2 per 10 s, its window starting at the first request.
  let windowStart = null;
  let used = 0;
  const h = harness((n, t) => {
    if (windowStart === null || t >= windowStart + 10_000) {
      windowStart = t;
      used = 0;
    }
    const reset = String(Math.ceil((windowStart + 10_000) / 1000));
    if (used >= 2) return { status: 429, headers: { "retry-after": String(Math.ceil((windowStart + 10_000 - t) / 1000)) } };
    used += 1;
    return { status: 200, headers: { "x-ratelimit-limit": "2", "x-ratelimit-remaining": String(2 - used), "x-ratelimit-reset": reset } };
  });
  const config = h.config();
  const statuses = [];
  for (let i = 0; i < 5; i++) statuses.push((await fetchWithRetry("/data", {}, config)).status);
  assert.deepEqual(statuses, [200, 200, 200, 200, 200]);
  assert.equal(h.sent.length, 5, "nothing sent into the spent budget");
  assert.equal(h.sent[2].at - h.sent[0].at >= 10_000, true);
});

test("concurrent calls share the budget", async () => {
  const pacer = new Pacer();
  const key = "api";
  assert.equal(pacer.admit(key, 0), null, "the first goes to learn the budget");
  assert.notEqual(pacer.admit(key, 0), null, "the others wait for its answer");
  pacer.observe(key, 10, 200, { budget: { limit: 3, remaining: 2, resetMs: 1000, whole: true }, retryAfterMs: null });
  assert.equal(pacer.admit(key, 10), null);
  assert.equal(pacer.admit(key, 10), null);
  assert.equal(pacer.admit(key, 10) > 10, true, "spent: held");
});

test("after an IETF reset one request goes first: draft-11's t may bring back a single unit", async () => {
  const pacer = new Pacer();
  const key = "bucket";
  assert.equal(pacer.admit(key, 0), null);
  // A token bucket of 3 per 60 s, spent: one unit back in 20 s.
  pacer.observe(key, 10, 200, { budget: { limit: 3, remaining: 0, resetMs: 20_000, whole: false }, retryAfterMs: null });
  assert.equal(pacer.admit(key, 20_010), null, "the first after t goes");
  assert.notEqual(pacer.admit(key, 20_010), null, "the others wait for its answer, not for 3 units");
  // The same under X-RateLimit-Reset, which is the whole budget: all 3 go.
  const x = new Pacer();
  assert.equal(x.admit(key, 0), null);
  x.observe(key, 10, 200, { budget: { limit: 3, remaining: 0, resetMs: 20_000, whole: true }, retryAfterMs: null });
  for (let i = 0; i < 3; i++) assert.equal(x.admit(key, 20_010), null);
});
