#!/usr/bin/env python3
"""The observer and the report of the soak test (scripts/soak.sh runs both; stdlib only).

    soak.py observe --port P --pid PID --seconds S --out DIR [--xff]
    soak.py report --out DIR [--max-rss-mb M] [--level-pct L] [--cap KEYS]

observe, for S seconds (bounded; every loop ends by its deadline):
  - samples the server once a second: VmRSS, VmHWM and RssAnon of /proc/PID/status, and from
    /metrics the store's ratelimit_tracked_keys, ratelimit_evictions_total and the sum of
    ratelimit_decisions_total (every decision of every rule), into DIR/samples.csv;
  - runs the two hot clients, each one keep-alive connection sending at a fixed schedule:
      fixed window  GET /rate-limited, 300 per 30 s per client address, HOT_FIXED_RATE a second
                    (with --xff as X-Forwarded-For 192.0.2.1, else as the peer 127.0.0.1,
                    which the flood then never uses);
      sliding log   GET /data with X-API-Key soak-hot, 10 per 10 s, HOT_LOG_RATE a second;
    every request's send and receive instants (monotonic and wall clock), status and
    X-RateLimit-* headers into DIR/hot_fixed.csv and DIR/hot_log.csv.

report reads those, DIR/wrk.txt (the wrk script's totals) and DIR/phases.txt (when the flood
ran), prints the summary (also DIR/summary.txt) and exits 1 if a check fails:
  - the fixed-window hot key: in every 30-s window it covered whole, exactly 300 admitted
    (and more than 300 sent); in the partial first and last windows at most 300; the admitted
    ones' X-RateLimit-Remaining 299, 298, ... 0 in order (nobody else spent its budget); no 429
    before its window's 300th admission;
  - the sliding-log hot key, from the client's own instants, which bound the server's decision
    instant (sent <= decided <= received): never 11 admissions within 10 s (the 10th admission
    before each admission was sent at least 10 s before it was received), and never a 429
    when the 10th most recent admission was received 10 s or more before the 429 was sent
    (both with 0.1% of 10 s, 10 ms, allowed for the rate of the server's clock, a calibrated
    time-stamp counter, against this process's monotonic clock);
  - no hot request failed (a lost request leaves its window unverifiable);
  - the flood: every response 200 (every key fresh), no socket errors, more distinct keys than
    the store's cap;
  - memory levels off: the resident size grew by less than L% of the peak over the last third
    of the flood, and the peak is under M MB.
"""
import argparse
import csv
import http.client
import os
import sys
import threading
import time

HOT_FIXED_RATE = 20.0  # requests a second: 600 per 30-s window against a limit of 300
HOT_LOG_RATE = 4.0  # requests a second: 40 per 10 s against a limit of 10
FIXED_LIMIT, FIXED_PERIOD = 300, 30
LOG_LIMIT, LOG_PERIOD = 10, 10.0
CLOCK_RATE_SLACK = 0.001 * LOG_PERIOD  # 10 ms: the server's clock rate against ours
HOT_XFF = "192.0.2.1"
HOT_API_KEY = "soak-hot"


# ---------------------------------------------------------------------------------- observe


def read_status(pid):
    """VmRSS, VmHWM and RssAnon of a process, in kB (None once it is gone)."""
    fields = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM", "RssAnon"):
                    fields[name] = int(value.split()[0])
    except OSError:
        return None
    return fields


def read_metrics(port):
    """tracked keys, evictions and all decisions from /metrics (None if it did not answer)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
        conn.close()
    except (OSError, http.client.HTTPException):
        return None
    keys = evictions = None
    decisions = 0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if name == "ratelimit_tracked_keys":
            keys = int(float(value))
        elif name == "ratelimit_evictions_total":
            evictions = int(float(value))
        elif name.startswith("ratelimit_decisions_total{"):
            decisions += int(float(value))
    return keys, evictions, decisions


def sampler(pid, port, deadline, path):
    with open(path, "w", newline="", encoding="ascii") as f:
        out = csv.writer(f)
        out.writerow(
            ["wall", "rss_kb", "hwm_kb", "anon_kb", "tracked_keys", "evictions", "decisions"]
        )
        start = time.monotonic()
        k = 0
        while time.monotonic() < deadline:
            status = read_status(pid)
            if status is None:
                break
            metrics = read_metrics(port) or (None, None, None)
            out.writerow(
                [
                    f"{time.time():.3f}",
                    status.get("VmRSS"),
                    status.get("VmHWM"),
                    status.get("RssAnon"),
                    *("" if m is None else m for m in metrics),
                ]
            )
            f.flush()
            k += 1
            time.sleep(max(0.0, start + k - time.monotonic()))


def hot_client(port, path, headers, rate, deadline, out_path):
    """Sends GET `path` at `rate` a second on one keep-alive connection until `deadline`."""
    period = 1.0 / rate
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    with open(out_path, "w", newline="", encoding="ascii") as f:
        out = csv.writer(f)
        out.writerow(
            ["i", "sent_mono", "recv_mono", "sent_wall", "status", "limit", "remaining", "reset"]
        )
        due = time.monotonic()
        i = 0
        while due < deadline:
            time.sleep(max(0.0, due - time.monotonic()))
            sent_wall, sent = time.time(), time.monotonic()
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
                row = [resp.getheader(h, "") for h in ("x-ratelimit-limit",
                                                       "x-ratelimit-remaining",
                                                       "x-ratelimit-reset")]
            except (OSError, http.client.HTTPException):
                status, row = 0, ["", "", ""]
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            recv = time.monotonic()
            out.writerow([i, f"{sent:.6f}", f"{recv:.6f}", f"{sent_wall:.6f}", status, *row])
            i += 1
            # A fixed schedule; a slot already missed is skipped, not sent in a burst.
            due += period
            if due < recv:
                due += period * int((recv - due) / period + 1)
    conn.close()


def observe(args):
    os.makedirs(args.out, exist_ok=True)
    deadline = time.monotonic() + args.seconds
    fixed_headers = {"X-Forwarded-For": HOT_XFF} if args.xff else {}
    threads = [
        threading.Thread(
            target=sampler,
            args=(args.pid, args.port, deadline, os.path.join(args.out, "samples.csv")),
        ),
        threading.Thread(
            target=hot_client,
            args=(args.port, "/rate-limited", fixed_headers, HOT_FIXED_RATE, deadline,
                  os.path.join(args.out, "hot_fixed.csv")),
        ),
        threading.Thread(
            target=hot_client,
            args=(args.port, "/data", {"X-API-Key": HOT_API_KEY}, HOT_LOG_RATE, deadline,
                  os.path.join(args.out, "hot_log.csv")),
        ),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ----------------------------------------------------------------------------------- report


def read_csv(path):
    with open(path, newline="", encoding="ascii") as f:
        return list(csv.DictReader(f))


def read_kv(path):
    with open(path, encoding="ascii") as f:
        return {k: v for k, _, v in (w.partition("=") for w in f.read().split())}


def check_fixed(rows, evictions_at, problems, lines):
    """The fixed-window hot key: exactly 300 per window it covered whole.

    `evictions_at(t)` is the store's eviction count sampled last before wall-clock instant t.
    """
    failed = [r for r in rows if r["status"] not in ("200", "429")]
    if failed:
        problems.append(f"fixed window: {len(failed)} hot requests failed or answered other "
                        f"than 200/429 (first: {failed[0]})")
    windows = {}
    for r in rows:
        if r["status"] in ("200", "429"):
            windows.setdefault(int(r["reset"]), []).append(r)
    first_sent = float(rows[0]["sent_wall"]) if rows else 0.0
    last_sent = float(rows[-1]["sent_wall"]) if rows else 0.0
    lines.append(f"hot key, fixed window (GET /rate-limited, {FIXED_LIMIT} per {FIXED_PERIOD} s,"
                 f" sent at {HOT_FIXED_RATE:g}/s):")
    whole_windows = over = 0
    for reset in sorted(windows):
        rs = windows[reset]
        admitted = [r for r in rs if r["status"] == "200"]
        # Whole: the client sent from before the window opened until after it closed (a second
        # of margin for the client's clock against the server's).
        whole = first_sent <= reset - FIXED_PERIOD - 1 and last_sent >= reset + 1
        whole_windows += whole
        # The admitted ones must show 299, 298, ... 0 in order (the hot client's address is its
        # own: nobody else spends its budget, even in its first window). A remaining count that
        # goes back up within the window means the store lost the key's state: a fresh budget.
        remaining = [int(r["remaining"]) for r in admitted]
        in_order = remaining == list(range(FIXED_LIMIT - 1, FIXED_LIMIT - 1 - len(admitted), -1))
        restarts = sum(1 for a, b in zip(remaining, remaining[1:]) if b > a)
        early_429 = 0
        seen_200 = 0
        for r in rs:
            if r["status"] == "200":
                seen_200 += 1
            elif seen_200 < FIXED_LIMIT:
                early_429 += 1
        wrong = []
        if len(admitted) > FIXED_LIMIT:
            wrong.append(f"{len(admitted) - FIXED_LIMIT} over the limit")
            over += len(admitted) - FIXED_LIMIT
        elif whole and len(admitted) < FIXED_LIMIT:
            wrong.append(f"{FIXED_LIMIT - len(admitted)} under the limit")
        if whole and len(rs) <= FIXED_LIMIT:
            wrong.append(f"only {len(rs)} sent: the check needs more than {FIXED_LIMIT}")
        if not in_order:
            wrong.append(f"X-RateLimit-Remaining not {FIXED_LIMIT - 1}..0 in order, back up "
                         f"{restarts} times (the key's state lost)")
        if early_429:
            wrong.append(f"{early_429} refused before {FIXED_LIMIT} were admitted")
        evicted = evictions_at(reset) - evictions_at(reset - FIXED_PERIOD)
        clock = time.strftime("%H:%M:%S", time.gmtime(reset))
        lines.append(f"  window ending {clock} UTC: {len(admitted):>3} admitted / "
                     f"{len(rs) - len(admitted):>3} refused of {len(rs):>3} sent "
                     f"({'whole' if whole else 'partial'}; store evictions in it {evicted:,}) "
                     + ("ok" if not wrong else "WRONG: " + "; ".join(wrong)))
        if wrong:
            problems.append(f"fixed-window hot key, window ending {clock} UTC: {len(admitted)} "
                            f"admitted of {len(rs)} sent: " + "; ".join(wrong))
    if whole_windows < 2:
        problems.append(f"fixed window: only {whole_windows} whole windows observed; run longer "
                        f"(SOAK_SECONDS >= 100)")
    if over:
        lines.append(f"  over-admitted in all: {over}")


def check_log(rows, problems, lines):
    """The sliding-log hot key, from the client's instants bounding the server's decisions."""
    failed = [r for r in rows if r["status"] not in ("200", "429")]
    if failed:
        problems.append(f"sliding log: {len(failed)} hot requests failed or answered other "
                        f"than 200/429 (first: {failed[0]})")
    admitted = []  # (sent, received) of each admission, in order
    too_many = too_strict = 0
    worst_gap = None  # the shortest bound on the span of 11 consecutive admissions
    for r in rows:
        sent, recv = float(r["sent_mono"]), float(r["recv_mono"])
        if r["status"] == "200":
            if len(admitted) >= LOG_LIMIT:
                # This one and the 10 before it: decided at least span apart.
                span = recv - admitted[-LOG_LIMIT][0]
                worst_gap = span if worst_gap is None else min(worst_gap, span)
                if span < LOG_PERIOD - CLOCK_RATE_SLACK:
                    too_many += 1
            admitted.append((sent, recv))
        elif r["status"] == "429":
            if len(admitted) < LOG_LIMIT:
                too_strict += 1
            elif sent - admitted[-LOG_LIMIT][1] >= LOG_PERIOD + CLOCK_RATE_SLACK:
                too_strict += 1
    if too_many:
        problems.append(f"sliding log: {too_many} admissions were the 11th within 10 s")
    if too_strict:
        problems.append(f"sliding log: {too_strict} refusals while fewer than 10 had been "
                        f"admitted in the 10 s before")
    span = rows and float(rows[-1]["recv_mono"]) - float(rows[0]["sent_mono"])
    lines.append(f"hot key, sliding log (GET /data X-API-Key {HOT_API_KEY}, {LOG_LIMIT} per "
                 f"{LOG_PERIOD:g} s, sent at {HOT_LOG_RATE:g}/s): {len(admitted)} admitted of "
                 f"{len(rows)} sent over {span:.1f} s (at most {LOG_LIMIT} * "
                 f"ceil({span:.1f} / {LOG_PERIOD:g}) = "
                 f"{LOG_LIMIT * -(-int(span * 1000) // int(LOG_PERIOD * 1000))}); "
                 f"11 consecutive admissions at least {worst_gap or 0:.3f} s apart; "
                 f"{too_many} too many, {too_strict} refused too early: "
                 f"{'ok' if not (too_many or too_strict or failed) else 'WRONG'}")


def report(args):
    out = args.out
    samples = read_csv(os.path.join(out, "samples.csv"))
    fixed = read_csv(os.path.join(out, "hot_fixed.csv"))
    log = read_csv(os.path.join(out, "hot_log.csv"))
    wrk = read_kv(os.path.join(out, "wrk.txt"))
    phases = read_kv(os.path.join(out, "phases.txt"))
    flood_start, flood_end = float(phases["flood_start"]), float(phases["flood_end"])
    problems, lines = [], []

    # Hot requests the server had decided by a given wall-clock instant (received by then).
    hot_done = sorted(
        float(r["sent_wall"]) + float(r["recv_mono"]) - float(r["sent_mono"])
        for r in fixed + log if r["status"] in ("200", "429")
    )

    def hot_by(t):
        lo, hi = 0, len(hot_done)
        while lo < hi:
            mid = (lo + hi) // 2
            if hot_done[mid] <= t:
                lo = mid + 1
            else:
                hi = mid
        return lo

    rows = []
    baseline = None  # decisions before the flood that are not the hot clients' (the probe's)
    for s in samples:
        if not s["decisions"]:
            continue  # /metrics did not answer within 2 s
        t = float(s["wall"])
        if baseline is None:
            baseline = int(s["decisions"]) - hot_by(t)
        rows.append({
            "t": t,
            "rss": int(s["rss_kb"]) * 1024,
            "keys_held": int(s["tracked_keys"]),
            "evictions": int(s["evictions"]),
            "keys_seen": int(s["decisions"]) - hot_by(t) - baseline,
        })
    unanswered = len(samples) - len(rows)
    rss_all = [int(s["rss_kb"]) * 1024 for s in samples]
    walls = [float(s["wall"]) for s in samples]
    before = [r for w, r in zip(walls, rss_all) if w <= flood_start]
    during = [(w, r) for w, r in zip(walls, rss_all) if flood_start <= w <= flood_end]
    rss_start = before[-1] if before else rss_all[0]
    peak = max(rss_all)
    rss_end = rss_all[-1]
    third = flood_start + (flood_end - flood_start) * 2 / 3
    last_third = [r for w, r in during if w >= third]
    growth = (max(last_third) - last_third[0]) if last_third else None
    after_cap = next((r for r in rows if r["keys_seen"] >= args.cap), None)
    final = rows[-1] if rows else None
    held_max = max((r["keys_held"] for r in rows), default=0)

    requests = int(wrk["requests"])
    duration = int(wrk["duration_us"]) / 1e6
    flood_keys = final["keys_seen"] if final else 0
    mb = 1024 * 1024

    lines.append(f"flood: {requests:,} requests in {duration:.1f} s ({requests / duration:,.0f} "
                 f"req/s), {wrk['routes']} routes, latency p50 {int(wrk['latency_p50_us']) / 1000:.1f} ms"
                 f" p99 {int(wrk['latency_p99_us']) / 1000:.1f} ms max "
                 f"{int(wrk['latency_max_us']) / 1000:.1f} ms")
    errors = {k: int(wrk[k]) for k in ("connect_errors", "read_errors", "write_errors",
                                       "timeouts", "status_errors")}
    lines.append("flood errors: " + ", ".join(f"{k} {v}" for k, v in errors.items()))
    lines.append(f"distinct keys decided by the server (all decisions less the hot clients'): "
                 f"{flood_keys:,} (the store's cap {args.cap:,})")
    lines.append(f"keys held: at most {held_max:,}, at the end {final['keys_held'] if final else 0:,};"
                 f" evictions {final['evictions'] if final else 0:,}")
    lines.append(f"RSS: start {rss_start / mb:.1f} MB"
                 + (f", after {args.cap:,} distinct keys {after_cap['rss'] / mb:.1f} MB "
                    f"(t+{after_cap['t'] - flood_start:.0f} s)" if after_cap else "")
                 + f", peak {peak / mb:.1f} MB, end {rss_end / mb:.1f} MB")
    if growth is not None:
        lines.append(f"RSS over the last third of the flood: {last_third[0] / mb:.1f} -> "
                     f"max {max(last_third) / mb:.1f} MB, growth {growth / mb:.1f} MB = "
                     f"{100 * growth / peak:.2f}% of the peak (bound {args.level_pct:g}%)")
    if held_max:
        lines.append(f"bytes per key held: (peak - start) / most keys held = "
                     f"{(peak - rss_start) / held_max:.1f}")
    if unanswered:
        lines.append(f"/metrics did not answer within 2 s in {unanswered} of {len(samples)} "
                     f"samples (RSS still sampled)")

    if any(errors[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")):
        problems.append(f"flood: socket errors {errors}")
    if errors["status_errors"]:
        problems.append(f"flood: {errors['status_errors']} responses other than 2xx/3xx to "
                        f"fresh keys")
    if flood_keys <= args.cap:
        problems.append(f"flood: {flood_keys:,} distinct keys, not more than the cap "
                        f"{args.cap:,}: run longer")
    if held_max > args.cap:
        problems.append(f"store: {held_max:,} keys held, over its cap {args.cap:,}")
    if growth is None:
        problems.append("memory: no samples in the last third of the flood")
    elif growth > peak * args.level_pct / 100:
        problems.append(f"memory: RSS grew {growth / mb:.1f} MB over the last third of the flood "
                        f"({100 * growth / peak:.2f}% of the peak, bound {args.level_pct:g}%): "
                        f"it does not level off")
    if peak > args.max_rss_mb * mb:
        problems.append(f"memory: peak RSS {peak / mb:.1f} MB over the bound {args.max_rss_mb} MB")

    eviction_samples = [(float(s["wall"]), int(s["evictions"])) for s in samples
                        if s["evictions"]]

    def evictions_at(t):
        last = 0
        for wall, count in eviction_samples:
            if wall > t:
                break
            last = count
        return last

    check_fixed(fixed, evictions_at, problems, lines)
    check_log(log, problems, lines)

    lines.append("checks: " + ("all passed" if not problems else f"{len(problems)} FAILED"))
    lines.extend(f"  FAILED: {p}" for p in problems)
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(os.path.join(out, "summary.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(out, "rss.csv"), "w", newline="", encoding="ascii") as f:
        w = csv.writer(f)
        w.writerow(["seconds_into_flood", "rss_mb", "keys_seen", "keys_held", "evictions"])
        for r in rows:
            w.writerow([f"{r['t'] - flood_start:.1f}", f"{r['rss'] / mb:.1f}", r["keys_seen"],
                        r["keys_held"], r["evictions"]])
    return 1 if problems else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    o = sub.add_parser("observe")
    o.add_argument("--port", type=int, required=True)
    o.add_argument("--pid", type=int, required=True)
    o.add_argument("--seconds", type=float, required=True)
    o.add_argument("--out", required=True)
    o.add_argument("--xff", action="store_true")
    r = sub.add_parser("report")
    r.add_argument("--out", required=True)
    r.add_argument("--max-rss-mb", type=float, default=256)
    r.add_argument("--level-pct", type=float, default=5)
    r.add_argument("--cap", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.command == "observe":
        observe(args)
        return 0
    return report(args)


if __name__ == "__main__":
    sys.exit(main())
