#!/usr/bin/env python3
"""How long the console's pages take to come from the daemon with many open tickets.

Starts `aftercare run` on a config of its own (one customer, one site, a contract with clocks),
opens N tickets through the API, logs in as a manager, and asks for the ticket queue (and its
live rows), a ticket page and the fleet page many times each; prints the median and the 95th
percentile of the whole exchange, from the request's first byte to the answer's last.

    python3 scripts/console_bench.py [--tickets 1000] [--runs 50] [--bin target/release/aftercare]

Measures; asserts nothing. The figures go in docs/PERF.md.
"""
import argparse
import http.cookiejar
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

PASSWORD = "a bench password 1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tickets", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--bin", default="target/release/aftercare")
    a = ap.parse_args()
    root = tempfile.mkdtemp(prefix="console-bench-")
    http_port, mqtt_port = free_port(), free_port()
    cfg = os.path.join(root, "aftercare.toml")
    with open(cfg, "w") as f:
        f.write(f"""
[broker]
embedded = true
listen = "127.0.0.1:{mqtt_port}"
[http]
listen = "127.0.0.1:{http_port}"
writes_per_minute = 1000000
[store]
path = "data/aftercare.db"
[[sites]]
id = "site-a"
utc_offset = "+08:00"
[[customers]]
id = "cust-1"
[contracts.k]
customer = "cust-1"
title = "k"
starts = "2020-01-01"
tier1 = {{ acknowledge = "1h", on_site = "24h" }}
tier2 = {{ acknowledge = "4h" }}
tier3 = {{ acknowledge = "1d" }}
""")

    def cli(*args, stdin=""):
        subprocess.run([a.bin, args[0], "--config", cfg, *args[1:]], input=stdin.encode(), check=True,
                       stdout=subprocess.DEVNULL)

    cli("user", "add", "boss", "--role", "manager")
    cli("user", "passwd", "boss", stdin=PASSWORD + "\n")
    cli("token", "create", "boss", "--name", "bench", "--secret-stdin", stdin="act_bench_token_0123456789abcdefghijklmnop\n")
    daemon = subprocess.Popen([a.bin, "run", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{http_port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        auth = {"Authorization": "Bearer act_bench_token_0123456789abcdefghijklmnop", "Content-Type": "application/json"}
        t0 = time.monotonic()
        first = None
        for i in range(a.tickets):
            body = json.dumps({"channel": "phone", "category": ["request", "question", "fault", "complaint"][i % 4],
                               "customer": "cust-1", "site": "site-a",
                               "reporter": {"name": f"caller {i}"}, "problem": f"report number {i}"}).encode()
            r = urllib.request.urlopen(urllib.request.Request(base + "/api/v1/tickets", body, auth), timeout=10)
            t = json.load(r)
            first = first or t["id"]
        print(f"{a.tickets} tickets opened in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        form = urllib.parse.urlencode({"user": "boss", "password": PASSWORD, "next": "/tickets"}).encode()
        opener.open(urllib.request.Request(base + "/login", form, {"Origin": base}), timeout=10).read()
        pages = [("queue (all open tickets)", "/tickets"), ("queue rows (live refresh)", "/tickets?fragment=rows"),
                 ("a ticket", f"/tickets/{first}"), ("fleet", "/fleet"), ("service levels", "/sla"),
                 ("visit calendar", "/visits"), ("reports", "/reports")]
        print(f"{'page':28} {'bytes':>9} {'median ms':>10} {'p95 ms':>8}")
        for name, path in pages:
            times, size = [], 0
            for _ in range(a.runs):
                s = time.perf_counter()
                body = opener.open(base + path, timeout=30).read()
                times.append((time.perf_counter() - s) * 1000)
                size = len(body)
            times.sort()
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            print(f"{name:28} {size:>9} {statistics.median(times):>10.1f} {p95:>8.1f}")
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


if __name__ == "__main__":
    main()
