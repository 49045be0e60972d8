#!/usr/bin/env python3
"""The yardstick: aftercare measured against the broker's own ceiling.

Starts Mosquitto on a free loopback port (a fresh one for every run, so no
session or backlog of one run reaches the next), publishes with firmware-sim's
load generator (devices' ~190-byte telemetry, 1 % of messages over a
threshold), and measures in turn, round after round:

  - `mosquitto_sub -C N`: the ceiling, a consumer that does nothing;
  - `aftercare run` with that Mosquitto as its external broker, one kind with
    one threshold rule (hold 0 s, clear below a lower bound), and a fresh
    SQLite database.

Then the fault->ticket latency at paced rates, and aftercare's resident
memory over a long run and per device of a large fleet. It checks what must
hold in every run (every message accepted, every raise the publisher computed
a ticket or an occurrence) and exits non-zero when it does not. It asserts no
speed: it prints one table, for docs/PERF.md.

    scripts/yardstick.py                      # the full run (about 10 minutes)
    scripts/yardstick.py --small --bin-dir target/debug --no-build   # what CI runs
    scripts/yardstick.py --only soak --wrap "heaptrack -o /tmp/ht"   # where memory goes

Needs python3, mosquitto and mosquitto_sub (Debian: mosquitto, mosquitto-clients).
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRAP = []  # a command the daemon runs under (--wrap), such as a heap profiler

KIND = """
[kinds.meter]
title = "Meter"
heartbeat = "1h"
[kinds.meter.metrics]
storage_used_pct = { unit = "%" }
recording = { type = "bool" }
status_flags = {}
battery_pct = { unit = "%" }
charging = { type = "bool" }
clock_offset_s = { unit = "s" }
temp_c = { unit = "°C" }
[[kinds.meter.rules]]
code = "over_temperature"
tier = 2
title = "Over-temperature"
raise = { threshold = { metric = "temp_c", op = ">", value = 70 } }
hold = "0s"
clear = { threshold = { metric = "temp_c", op = "<", value = 65 } }
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"yardstick: nothing listens on port {port} after {timeout} s")


class Mosquitto:
    """A Mosquitto of its own on a free port, holding any backlog (no queue limit)."""

    def __init__(self, workdir):
        self.port = free_port()
        conf = Path(workdir) / f"mosquitto-{self.port}.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 20\n"
            "log_dest none\n"
        )
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def metrics(http):
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as r:
        return r.read().decode()


def metric(text, name, labels=None):
    """Sum of the samples of `name` (optionally only those whose labels contain `labels`)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        if labels and labels not in (m.group(2) or ""):
            continue
        total += float(m.group(3))
    return total


def buckets(text, name):
    """Cumulative histogram buckets as [(le, count)], sorted by le."""
    out = []
    for line in text.splitlines():
        m = re.match(rf'^{name}_bucket\{{le="([^"]+)"\}}\s+(\S+)', line)
        if m:
            out.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), float(m.group(2))))
    return sorted(out)


def quantile(before, after, q):
    """Upper bound of the bucket holding quantile q of the observations between two scrapes."""
    b = dict(before)
    diff = [(le, c - b.get(le, 0.0)) for le, c in after]
    total = diff[-1][1] if diff else 0
    if total <= 0:
        return None
    for le, c in diff:
        if c >= q * total:
            return le
    return float("inf")


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_seconds(pid):
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class Aftercare:
    """`aftercare run` on a fresh directory, with `devices` meters and the given broker."""

    def __init__(self, bins, broker_url, devices, queue_capacity=None):
        self.dir = tempfile.TemporaryDirectory(prefix="yardstick-")
        d = Path(self.dir.name)
        (d / "kinds.toml").write_text(KIND)
        ingest = f"[ingest]\nqueue_capacity = {queue_capacity}\n" if queue_capacity else ""
        cfg = [
            'include = ["kinds.toml"]',
            f'[broker]\nembedded = false\nurl = "{broker_url}"\nclient_id = "yardstick"',
            '[http]\nlisten = "127.0.0.1:0"\nmetrics_public = true',
            '[store]\npath = "a.db"',
            ingest,
            '[[sites]]\nid = "load"\n[[customers]]\nid = "c"',
        ]
        for i in range(devices):
            cfg.append(f'[[devices]]\nid = "load-{i:05}"\nkind = "meter"\nsite = "load"\ncustomer = "c"\naccepted_on = "2025-01-01"')
        (d / "a.toml").write_text("\n".join(cfg) + "\n")
        self.log = open(d / "daemon.log", "w")
        self.proc = subprocess.Popen(
            WRAP + [str(bins / "aftercare"), "run", "--config", str(d / "a.toml")],
            stdout=subprocess.PIPE, stderr=self.log, text=True,
            env={**os.environ, "AFTERCARE_LOG": "warn"},
        )
        line = self.proc.stdout.readline()
        while WRAP and line and "http=" not in line:  # the wrapper's own words
            line = self.proc.stdout.readline()
        m = re.search(r"http=(\S+)", line)
        if not m:
            sys.exit(f"yardstick: aftercare did not start: {line!r}; see {d / 'daemon.log'}")
        self.http = m.group(1)
        end = time.monotonic() + 20
        while metric(metrics(self.http), "aftercare_mqtt_connected") < 1:
            if time.monotonic() > end:
                sys.exit("yardstick: aftercare did not connect to its broker")
            time.sleep(0.05)
        time.sleep(0.5)  # its SUBSCRIBE

    def counters(self):
        t = metrics(self.http)
        return t, metric(t, "aftercare_messages_received_total"), metric(t, "aftercare_messages_rejected_total")

    def wait_received(self, n, timeout):
        end = time.monotonic() + timeout
        while True:
            _, received, _ = self.counters()
            if received >= n or time.monotonic() > end:
                return received
            time.sleep(0.02)

    def occurrences(self):
        """Occurrences of the threshold rule's tickets, read from the store once the daemon stopped."""
        import sqlite3
        db = sqlite3.connect(Path(self.dir.name, "a.db"))
        n = db.execute("SELECT COALESCE(SUM(occurrences), 0) FROM tickets WHERE code = 'over_temperature'").fetchone()[0]
        db.close()
        return n

    def slow_statements(self):
        """The daemon's warnings of statements over 100 ms (store::SLOW_STATEMENT)."""
        if not self.log.closed:
            self.log.flush()
        text = Path(self.dir.name, "daemon.log").read_text()
        return [line for line in text.splitlines() if "slow statement" in line]

    def daemon_pids(self):
        """The daemon's process: the one started, or under --wrap the one the wrapper started."""
        if not WRAP:
            return [self.proc.pid]
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                if Path(f"/proc/{pid}/comm").read_text().strip() == "aftercare":
                    found.append(pid)
            except OSError:
                continue
            todo += map(int, kids)
        return found or [self.proc.pid]

    def stop(self, keep=False):
        """SIGTERM: the daemon drains its ticket writer before it exits."""
        for pid in self.daemon_pids():
            os.kill(pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        if not keep:
            self.dir.cleanup()


def load(bins, url, devices, messages, qos, rate=0, spike=1.0, id_prefix="load-"):
    cmd = [str(bins / "firmware-sim"), "load", "--broker", url, "--devices", str(devices), "--messages", str(messages),
           "--qos", str(qos), "--rate", str(rate), "--spike-pct", str(spike), "--site", "load", "--id-prefix", id_prefix]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def raises_of(publisher):
    out, _ = publisher.communicate(timeout=3600)
    if publisher.returncode != 0:
        sys.exit(f"yardstick: the load generator failed: {out}")
    m = re.search(r"^raises (\d+)", out, re.M)
    return int(m.group(1)) if m else 0


def run_sub(bins, work, a):
    """mosquitto_sub's rate for N messages, msg/s."""
    rates = {}
    for qos in a.qos:
        broker = Mosquitto(work)
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", str(qos), "-i", "yardstick",
                                "-t", "aftercare/#", "-C", str(a.messages)], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        t0 = time.monotonic()
        pub = load(bins, broker.url, a.devices, a.messages, qos)
        sub.wait(timeout=3600)
        t1 = time.monotonic()
        raises_of(pub)
        broker.stop()
        rates[qos] = a.messages / (t1 - t0)
    return rates


failures = []


def check(what, ok):
    if not ok:
        failures.append(what)
        print(f"  FAILED: {what}", flush=True)


def run_aftercare(bins, work, a):
    rates, cpu = {}, {}
    for qos in a.qos:
        broker = Mosquitto(work)
        d = Aftercare(bins, broker.url, a.devices)
        c0 = cpu_seconds(d.daemon_pids()[0])
        t0 = time.monotonic()
        pub = load(bins, broker.url, a.devices, a.messages, qos)
        received = d.wait_received(a.messages, 3600)
        t1 = time.monotonic()
        cpu[qos] = (cpu_seconds(d.daemon_pids()[0]) - c0) / (t1 - t0)
        raises = raises_of(pub)
        rates[qos] = a.messages / (t1 - t0)
        _, received, rejected = d.counters()
        # The flood's statements, and the writer's tail a moment after it, but not the merge of
        # every partial hour into the history that a stop makes.
        time.sleep(1)
        slow = d.slow_statements()
        d.stop(keep=True)
        occ = d.occurrences()
        d.dir.cleanup()
        check(f"qos {qos}: received {received:.0f} of {a.messages}", received == a.messages)
        check(f"qos {qos}: {rejected:.0f} rejected", rejected == 0)
        check(f"qos {qos}: {occ} occurrences for {raises} raises", occ == raises)
        check(f"qos {qos}: {len(slow)} statements over 100 ms" + "".join(f"\n    {x[:400]}" for x in slow[:3]), not slow)
        broker.stop()
    return rates, cpu


def paced(bins, work, a, rate):
    broker = Mosquitto(work)
    d = Aftercare(bins, broker.url, a.devices)
    before = buckets(metrics(d.http), "aftercare_fault_to_ticket_seconds")
    n = rate * a.paced_seconds
    pub = load(bins, broker.url, a.devices, n, 0, rate=rate)
    raises = raises_of(pub)
    d.wait_received(n, 120)
    time.sleep(1)
    after = buckets(metrics(d.http), "aftercare_fault_to_ticket_seconds")
    p50, p99 = quantile(before, after, 0.5), quantile(before, after, 0.99)
    d.stop()
    broker.stop()
    return p50, p99, raises


def soak(bins, work, a):
    broker = Mosquitto(work)
    d = Aftercare(bins, broker.url, a.devices)
    pid = d.daemon_pids()[0]
    marks = [(0, rss_mb(pid))]
    step = a.soak // 10
    pub = load(bins, broker.url, a.devices, a.soak, 0)
    for k in range(1, 11):
        d.wait_received(k * step, 3600)
        marks.append((k * step, rss_mb(pid)))
    raises_of(pub)
    time.sleep(20 if not a.small else 1)
    marks.append(("idle", rss_mb(pid)))
    d.stop()
    broker.stop()
    return marks


def per_device(bins, work, a):
    """KB of RSS per device: a fleet of `big` devices, each heard once, against a fleet of one."""
    out = []
    for n in (1, a.big):
        broker = Mosquitto(work)
        d = Aftercare(bins, broker.url, n)
        pub = load(bins, broker.url, n, n, 0, spike=0)
        raises_of(pub)
        d.wait_received(n, 600)
        time.sleep(1)
        out.append(rss_mb(d.daemon_pids()[0]))
        d.stop()
        broker.stop()
    return (out[1] - out[0]) * 1024 / (a.big - 1), out


def count(m):
    if isinstance(m, str):
        return m
    return f"{m / 1e6:g}M" if m >= 1_000_000 else f"{m / 1e3:g}k"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rates", default="10000,50000", help="paced rates for the latency runs, msg/s")
    p.add_argument("--paced-seconds", type=int, default=20)
    p.add_argument("--soak", type=int, default=10_000_000, help="messages of the memory run")
    p.add_argument("--big", type=int, default=100_000, help="devices of the per-device memory run")
    p.add_argument("--bin-dir", default=str(ROOT / "target" / "release"))
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--small", action="store_true", help="a quick run that only checks the script works")
    p.add_argument("--only", choices=["throughput", "paced", "soak", "fleet"], help="one part of the run")
    p.add_argument("--wrap", default="", help="run the daemon under this command, e.g. \"heaptrack -o /tmp/ht\"; "
                   "the figures are then the wrapped daemon's")
    a = p.parse_args()
    WRAP[:] = a.wrap.split()
    a.qos = [0, 1]
    if a.small:
        a.messages, a.devices, a.rounds, a.paced_seconds, a.soak, a.big = 20_000, 1_000, 1, 2, 20_000, 2_000
        a.rates = "2000"
    for tool in ("mosquitto", "mosquitto_sub"):
        if not shutil.which(tool):
            sys.exit(f"yardstick: {tool} is not installed (Debian: apt install mosquitto mosquitto-clients)")
    bins = Path(a.bin_dir)
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "aftercare", "-p", "firmware-sim", "--bin", "aftercare", "--bin", "firmware-sim"],
                       cwd=ROOT, check=True)
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    print(f"yardstick {time.strftime('%Y-%m-%d')} commit {commit or '?'} on {os.cpu_count()} cores: "
          f"{a.messages} messages from {a.devices} devices per run, {a.rounds} rounds", flush=True)

    sub = {q: [] for q in a.qos}
    ac = {q: [] for q in a.qos}
    cpu = {q: [] for q in a.qos}
    part = lambda name: a.only in (None, name)  # noqa: E731
    lat, marks, fleet = [], [], None
    with tempfile.TemporaryDirectory(prefix="yardstick-broker-") as work:
        for r in range(a.rounds if part("throughput") else 0):
            s = run_sub(bins, work, a)
            x, c = run_aftercare(bins, work, a)
            for q in a.qos:
                sub[q].append(s[q])
                ac[q].append(x[q])
                cpu[q].append(c[q])
                print(f"  round {r + 1} qos {q}: mosquitto_sub {s[q]:,.0f} msg/s, aftercare {x[q]:,.0f} msg/s "
                      f"({c[q] * 100:.0f}% of a core)", flush=True)
        if part("paced"):
            for rate in map(int, a.rates.split(",")):
                runs = [paced(bins, work, a, rate) for _ in range(a.rounds)]
                lat.append((rate, runs))
        if part("soak"):
            marks = soak(bins, work, a)
        if part("fleet"):
            kb, fleet = per_device(bins, work, a)

    if sub[0]:
        print()
        print("| run | mosquitto_sub msg/s | aftercare msg/s | ratio | aftercare CPU |")
        print("|---|---:|---:|---:|---:|")
        for q in a.qos:
            ms, ma = statistics.median(sub[q]), statistics.median(ac[q])
            rounds = " / ".join(f"{x:,.0f}" for x in ac[q])
            print(f"| QoS {q}, median of {a.rounds} ({rounds}) | {ms:,.0f} | {ma:,.0f} | {ma / ms:.2f} | "
                  f"{statistics.median(cpu[q]) * 100:.0f}% of a core |")
    if lat:
        print()
        print(f"| paced rate | fault→ticket p50, {a.rounds} runs | p99 | raises per run |")
        print("|---:|---:|---:|---:|")
        fmt = lambda v: "-" if v is None else f"≤ {v * 1000:g}"  # noqa: E731
        for rate, runs in lat:
            p50 = " / ".join(fmt(r[0]) for r in runs)
            p99 = " / ".join(fmt(r[1]) for r in runs)
            print(f"| {rate:,} msg/s | {p50} ms | {p99} ms | {runs[0][2]} |")
    if marks:
        print()
        print(f"RSS over {a.soak:,} messages from {a.devices:,} devices (MB): "
              + ", ".join(f"{count(m)} {v:.1f}" for m, v in marks))
        rest = [v for m, v in marks if not isinstance(m, str) and m >= 2 * (a.soak // 10)]
        if rest:
            print(f"  from the 2nd tenth to the end: {min(rest):.1f} to {max(rest):.1f} MB")
    if fleet:
        print(f"{a.big:,} devices, each heard once: {fleet[1]:.1f} MB against {fleet[0]:.1f} MB for one: "
              f"{kb:.2f} KB per device")
    if failures:
        print("\nwhat must hold did not:\n  " + "\n  ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
