#!/usr/bin/env python3
"""Summary of benches/run's results (target/bench/) as Markdown tables: medians over the
repetitions, the spread (min-max), and ratios taken per repetition (both sides measured
back to back) then their median. Usage: benches/summarize.py target/bench"""
import glob
import json
import os
import statistics
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "target/bench"
crit_dir = os.path.join(os.path.dirname(os.path.abspath(out)), "criterion")


def med(v):
    return statistics.median(v) if v else float("nan")


def spread(v, fmt):
    if not v:
        return "-"
    if len(v) == 1:
        return fmt(v[0])
    return f"{fmt(med(v))} ({fmt(min(v))}–{fmt(max(v))})"


def f0(x):
    return f"{x:,.0f}"


def f1(x):
    return f"{x:,.1f}"


def f2(x):
    return f"{x:,.2f}"


def fr(r):
    """A ratio: two decimals, or 1/N when small."""
    if r >= 10:
        return f"{r:,.0f}"
    if r >= 0.1:
        return f"{r:.2f}"
    return f"1/{1 / r:,.0f}" if r > 0 else "0"


def ratio_cell(a, b, fmt=f1, suffix="×"):
    """Median and range of a[i]/b[i] over repetitions."""
    rs = [x / y for x, y in zip(a, b) if y]
    if not rs:
        return "-"
    return spread(rs, lambda r: fmt(r) + suffix) if len(rs) > 1 else fmt(rs[0]) + suffix


print(f"# Benchmark summary ({out})\n")
try:
    print("```\n" + open(os.path.join(out, "machine.txt")).read().strip() + "\n```\n")
except OSError:
    pass

# ---------------------------------------------------------------- webhook
for payload in ("fixture", "unique"):
    runs = {}
    for t in ("kafka-healing", "am-executor"):
        files = sorted(glob.glob(os.path.join(out, f"webhook-{payload}-{t}-*.json")))
        runs[t] = [json.load(open(f)) for f in files]
    kh, am = runs["kafka-healing"], runs["am-executor"]
    if not kh or not am:
        continue
    n = min(len(kh), len(am))
    kh, am = kh[:n], am[:n]
    per = "2 alerts (the Alertmanager fixture)" if payload == "fixture" else "1 alert with a unique label"
    print(f"## Webhook, payload `{payload}`: {per} per request; {n} repetition(s)\n")
    print("| measure | kafka-healing | am-executor | ratio kafka-healing / am-executor |")
    print("|---|---|---|---|")

    def col(rs, fn):
        return [fn(r) for r in rs]

    def row(name, fn, fmt, better=""):
        a, b = col(kh, fn), col(am, fn)
        print(f"| {name} | {spread(a, fmt)} | {spread(b, fmt)} | {ratio_cell(a, b, fr)}{better} |")

    tp = lambda r: r["throughput"][0]
    row("sustained alerts/s (64 clients, closed loop)", lambda r: tp(r)["alerts_per_s_journaled"], f0)
    row("requests/s answered 2xx", lambda r: tp(r)["requests_per_s_2xx"], f0)
    row("/bin/true runs finished per s during that phase", lambda r: tp(r)["executions_finished_per_s"], f0)
    row("closed-loop latency p50 (ms)", lambda r: tp(r)["closed_loop_latency"]["p50_ms"], f2)
    row("closed-loop latency p99 (ms)", lambda r: tp(r)["closed_loop_latency"]["p99_ms"], f2)
    rates = [x["rate_target"] for x in kh[0].get("ack_latency", [])]
    for i, rate in enumerate(rates):
        al = lambda r, k: r["ack_latency"][i]["latency_from_schedule"][k]
        for k, name in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
            row(f"ACK {name} at {rate:,} req/s (ms)", lambda r, k=k: al(r, k), f2)
        kept = lambda rs: "/".join("yes" if r["ack_latency"][i]["kept_up"] else "NO" for r in rs)
        print(f"| kept up at {rate:,} req/s (per repetition) | {kept(kh)} | {kept(am)} | |")
        row(f"requests skipped at {rate:,} req/s (backlog > 2,000 outstanding)",
            lambda r: r["ack_latency"][i]["skipped_backlog"], f0)
        row(f"server CPU at {rate:,} req/s, own (µs/request)",
            lambda r: r["ack_latency"][i]["server_cpu"]["us_per_request_own"], f0)
    reqs = lambda r: r["totals"]["outcomes"]["ok_2xx"] + sum(r["totals"]["outcomes"]["non_2xx"].values()) + r["totals"]["outcomes"]["transport_errors"]
    row("whole run: server CPU own (s)", lambda r: r["server_cpu_whole_run"]["own_s"], f2)
    row("whole run: CPU of its children, the /bin/true runs (s)", lambda r: r["server_cpu_whole_run"]["children_s"], f2)
    row("whole run: CPU own + children per request (µs)",
        lambda r: (r["server_cpu_whole_run"]["own_s"] + r["server_cpu_whole_run"]["children_s"]) / reqs(r) * 1e6, f0)
    row("whole run: requests", reqs, f0)
    fin = lambda r: r["executions_after_drain"]["finished"] if "executions_after_drain" in r else r["totals"]["outcomes"]["ok_2xx"]
    pend = lambda r: r["executions_after_drain"]["in_flight"] if "executions_after_drain" in r else 0
    row("whole run: /bin/true runs finished (kafka-healing: after up to 60 s of drain)", fin, f0)
    row("whole run: executions still queued or running at the end", pend, f0)
    row("peak RSS, VmHWM (MiB)", lambda r: r["server_peak_rss_kb"] / 1024, f1)
    bad = lambda rs: "/".join(str(sum(r["totals"]["outcomes"]["non_2xx"].values()) + r["totals"]["outcomes"]["transport_errors"]) for r in rs)
    print(f"| non-2xx + transport errors (per repetition) | {bad(kh)} | {bad(am)} | |")
    zl = "/".join(str(r.get("zero_loss")) for r in kh)
    print(f"| kafka-healing: every 2xx alert in the journal | {zl} | (no journal) | |")
    loads = [x["uptime_load"] for r in kh + am for x in r.get("ack_latency", [])]
    print(f"\n1-min load average during these runs: {min(loads):.2f}–{max(loads):.2f}\n")

# ---------------------------------------------------------------- criterion
def criterion(prefix):
    rows = {}
    for bj in glob.glob(os.path.join(crit_dir, "**", "new", "benchmark.json"), recursive=True):
        b = json.load(open(bj))
        if not b.get("group_id", "").startswith(prefix):
            continue
        e = json.load(open(os.path.join(os.path.dirname(bj), "estimates.json")))
        rows[(b["group_id"], b.get("function_id"), b.get("value_str"))] = (e["median"]["point_estimate"], b.get("throughput"))
    return rows

exp = criterion("expo")
if exp:
    print("## Parser, in process (criterion median)\n")
    print("| body | ours `parse` | ours `parse_into` (reused) | `prometheus-parse` | ratio `parse` / reused |")
    print("|---|---|---|---|---|")
    for body in ("small_2k", "jmx_200k", "big_20m"):
        g = f"expo/{body}"
        def cell(fn):
            v = exp.get((g, fn, None))
            if not v:
                return "-", None
            ns, thr = v
            mbs = thr["Bytes"] / ns * 1e3 if thr and "Bytes" in thr else float("nan")
            t = f"{ns/1e3:,.1f} µs" if ns < 1e6 else f"{ns/1e6:,.1f} ms"
            return f"{t}, {mbs:,.0f} MB/s", ns
        a, an = cell("ours_parse")
        b, bn = cell("ours_parse_into_reused")
        c, cn = cell("prometheus_parse")
        r = f"{cn/an:.1f}× / {cn/bn:.1f}×" if an and bn and cn else "-"
        print(f"| {body} | {a} | {b} | {c} | {r} |")
    print()

pf = os.path.join(out, "parser-files.tsv")
if os.path.exists(pf):
    data = {}
    for line in open(pf):
        p = line.rstrip("\n").split("\t")
        if len(p) < 6:
            continue
        # file, size, tool, repetition, wall µs, peak RSS KiB, load
        data.setdefault((p[0], p[2]), []).append((int(p[1]), float(p[4]) / 1e6, int(p[5])))
    print("## Parser, whole process on a file: ours (`expo_mem ours FILE`) vs `promtool check metrics < FILE`\n")
    print("Wall time and peak RSS of the whole process (start, read, parse, exit); `none` reads the file only. "
          "MB/s = file size / wall time. Median (min–max).\n")
    print("| file | ours wall (ms) | ours MB/s | promtool wall (ms) | promtool MB/s | wall ratio promtool / ours | ours peak RSS (MiB) | promtool peak RSS (MiB) | none: read only (ms, MiB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for body in ("small_2k", "jmx_200k", "big_20m"):
        o, pt, nn = data.get((body, "ours"), []), data.get((body, "promtool"), []), data.get((body, "none"), [])
        if not o:
            continue
        size = o[0][0]
        ow, pw = [x[1] * 1e3 for x in o], [x[1] * 1e3 for x in pt]
        mbs = lambda w: [size / (x / 1e3) / 1e6 for x in w if x > 0]
        rat = ratio_cell(pw, ow, f1) if pw else "-"
        print(f"| {body} ({size:,} B) | {spread(ow, f1)} | {spread(mbs(ow), f0)} | {spread(pw, f1)} | {spread(mbs(pw), f0) if pw else '-'} | {rat} "
              f"| {spread([x[2]/1024 for x in o], f1)} | {spread([x[2]/1024 for x in pt], f1)} | {f1(med([x[1]*1e3 for x in nn]))}, {f1(med([x[2]/1024 for x in nn]))} |")
    print()

rl = criterion("rules")
if rl:
    print("## Rule matching, one alert against N rules (criterion median, per alert)\n")
    print("| rules | `Rule::matches` over all rules | `plan_alert` (match + plan the one hit) | per rule (`Rule::matches`) |")
    print("|---|---|---|---|")
    for n in ("10", "100", "1000", "10000"):
        m = rl.get(("rules", "match_only", n))
        p = rl.get(("rules", "plan_alert", n))
        fmt = lambda v: "-" if not v else (f"{v[0]/1e3:,.2f} µs" if v[0] < 1e6 else f"{v[0]/1e6:,.2f} ms")
        per = f"{m[0]/int(n):,.1f} ns" if m else "-"
        print(f"| {int(n):,} | {fmt(m)} | {fmt(p)} | {per} |")
    print()

cf = os.path.join(out, "check-1000.tsv")
if os.path.exists(cf):
    rows = [l.rstrip("\n").split("\t") for l in open(cf) if l.strip()]
    w = [float(r[1]) / 1e3 for r in rows]
    u = [float(r[2]) * 1e3 for r in rows]
    m = [int(r[3]) / 1024 for r in rows]
    rc = sorted({r[4] for r in rows})
    print(f"## `kafka-healing check` on 1,000 generated rules\n\nwall {spread(w, f1)} ms, user CPU {spread(u, f0)} ms (10 ms steps), peak RSS {spread(m, f1)} MiB, exit codes {rc} (target < 100 ms)\n")

rf = os.path.join(out, "idle-rss.tsv")
if os.path.exists(rf):
    rows = [l.split() for l in open(rf) if l.strip()]
    print("## Idle RSS of `serve` (examples/config.yaml)\n")
    print("| seconds after start | VmRSS (MiB) | VmHWM (MiB) | threads |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {int(r[1])/1024:.1f} | {int(r[2])/1024:.1f} | {r[3]} |")
    print("\n(target < 20 MB)\n")
