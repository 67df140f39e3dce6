#!/usr/bin/env python3
"""Samples a running `custodian serve` for bench/serve; prints the figures when time is up.

Usage: serve_sampler.py PID BASE_URL DB_PATH SECONDS CHECKS

Every second: the process's CPU time and RSS (/proc), the database's size (with its WAL), and
one timed GET each of /, /api/checks and /metrics (a fresh connection each, as a browser or a
scraper makes). Database growth is measured from the end of the first interval (every check has
run once, its rows and roll-ups exist) so start-up inserts do not inflate the per-day figure.
Only talks to the loopback BASE_URL, never through a proxy. PAGES_EVERY=N (seconds, default 1)
spaces the GETs out, so that serve's own cost per check shows without the pages' cost.
"""
import http.client
import json
import os
import sys
import time
import urllib.parse

TICK = os.sysconf("SC_CLK_TCK")
PAGES_EVERY = float(os.environ.get("PAGES_EVERY", "1"))
PATHS = ["/", "/api/checks", "/metrics"]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def memory_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


def db_bytes(path):
    return sum(os.path.getsize(path + s) for s in ("", "-wal", "-shm") if os.path.exists(path + s))


def timed_get(host, port, path):
    """Seconds for one GET (connect to last byte), or None when it failed."""
    start = time.perf_counter()
    try:
        c = http.client.HTTPConnection(host, port, timeout=30)
        c.request("GET", path, headers={"Connection": "close"})
        r = c.getresponse()
        body = r.read()
        c.close()
    except OSError:
        return None, b""
    if r.status != 200:
        return None, b""
    return time.perf_counter() - start, body


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main():
    pid, base, db, seconds, checks = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
    u = urllib.parse.urlsplit(base)
    host, port = u.hostname, u.port
    t0 = time.monotonic()
    cpu0 = cpu_seconds(pid)
    lat = {p: [] for p in PATHS}
    failed = {p: 0 for p in PATHS}
    peak_rss = 0
    db_mark = None  # (time, bytes) when the first interval has passed
    results_mark = None
    last_body = b""
    pages_at = None
    while time.monotonic() - t0 < seconds:
        tick = time.monotonic()
        # The last round runs whatever the spacing: it reads the final result count.
        due = pages_at is None or tick - pages_at >= PAGES_EVERY - 0.01 or seconds - (tick - t0) < 1.5
        for p in PATHS if due else []:
            pages_at = tick
            secs, body = timed_get(host, port, p)
            if secs is None:
                failed[p] += 1
            else:
                lat[p].append(secs)
                if p == "/api/checks":
                    last_body = body
        peak_rss = max(peak_rss, memory_kb(pid).get("VmRSS", 0))
        if db_mark is None and tick - t0 >= 60:
            db_mark = (tick, db_bytes(db))
            results_mark = (tick, engine_results(last_body))
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    t1 = time.monotonic()
    cpu1 = cpu_seconds(pid)
    mem = memory_kb(pid)
    size = db_bytes(db)
    wall = t1 - t0
    print(f"sampled {wall / 60:.1f} min of serve (pid {pid}) with {checks} checks every 60 s")
    print(f"CPU: {100 * (cpu1 - cpu0) / wall:.1f} % of one core on average "
          f"({cpu1 - cpu0:.1f} s CPU in {wall:.0f} s, page/API/metrics requests included)")
    print(f"RSS: peak {max(peak_rss, mem.get('VmHWM', 0)) / 1024:.0f} MB (VmHWM), "
          f"at end {mem.get('VmRSS', 0) / 1024:.0f} MB")
    results_end = engine_results(last_body)
    if results_mark and results_mark[1] is not None and results_end is not None:
        rate = (results_end - results_mark[1]) / ((t1 - results_mark[0]) / 60)
        print(f"results: {results_end} since start, {rate:.0f} per minute after the first interval")
    if db_mark:
        grown = size - db_mark[1]
        per_day = grown / (t1 - db_mark[0]) * 86400
        print(f"database: {size / 1e6:.1f} MB at end; grew {grown / 1e6:.1f} MB in the last "
              f"{(t1 - db_mark[0]) / 60:.1f} min = {per_day / 1e9:.2f} GB per day projected "
              f"({per_day / checks / 1440:.0f} bytes per result)")
    else:
        print(f"database: {size / 1e6:.1f} MB at end (run too short for a growth rate)")
    for p in PATHS:
        v = lat[p]
        print(f"GET {p:<12} n={len(v):<4} p50 {1000 * pct(v, 50):7.1f} ms  p99 {1000 * pct(v, 99):7.1f} ms  "
              f"max {1000 * max(v, default=float('nan')):7.1f} ms  failed {failed[p]}")


def engine_results(body):
    try:
        return json.loads(body)["engine"]["results"]
    except (ValueError, KeyError, TypeError):
        return None


if __name__ == "__main__":
    main()
