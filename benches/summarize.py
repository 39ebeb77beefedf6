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
def load_runs(pattern):
    return [json.load(open(f)) for f in sorted(glob.glob(os.path.join(out, pattern)))]


def machine_loads():
    """(load at start, load at end) from machine.txt, as written by benches/run."""
    start = end = "-"
    try:
        for line in open(os.path.join(out, "machine.txt")):
            if line.startswith("load at start:"):
                start = line.split(":", 1)[1].strip()
            elif line.startswith("load at end:"):
                end = line.split(":", 1)[1].split(";")[0].strip()
    except OSError:
        pass
    return start, end


def ack_p99(r, rate):
    for x in r.get("ack_latency", []):
        if x["rate_target"] == rate:
            return x["latency_from_schedule"]["p99_ms"]
    return None


def vals(rs, fn):
    v = []
    for r in rs:
        try:
            x = fn(r)
        except (KeyError, IndexError, TypeError):
            x = None
        if x is not None:
            v.append(x)
    return v


def pair_ratio(a_runs, b_runs, fn):
    """Per-repetition ratio fn(a)/fn(b) (the same repetition index), median and range."""
    a, b = [], []
    for x, y in zip(a_runs, b_runs):
        try:
            fx, fy = fn(x), fn(y)
        except (KeyError, IndexError, TypeError):
            continue
        if fx is not None and fy:
            a.append(fx)
            b.append(fy)
    return ratio_cell(a, b, fr) if a else "-"


def runs_per_s(r):
    """`/bin/true` runs finished per s in phase a (older results: executions of any outcome)."""
    t = r["throughput"][0]
    return t.get("runs_finished_per_s", t["executions_finished_per_s"])


def runs_whole(r):
    """`/bin/true` runs finished over the whole run (kafka-healing: after the drain)."""
    if "executions_after_drain" in r:
        e = r["executions_after_drain"]
        return e.get("runs_finished", e["finished"])
    return r["totals"]["outcomes"]["ok_2xx"] if r.get("target") == "am-executor" else 0


storm = load_runs("webhook-decide-kafka-healing-*.json")
byp = {p: {t: load_runs(f"webhook-{p}-{t}-*.json") for t in ("kafka-healing", "am-executor", "noop")}
       for p in ("fixture", "unique")}
decided = [r["decision_storm"] for r in storm if "decision_storm" in r]
# The storm probe, by target: kafka-healing, the no-op server and the durable floor (the same
# storm posted to each; repetition i of each ran back to back).
probe_runs = {t: [r["decision_storm"] for r in load_runs(f"webhook-decide-probe-{t}-*.json")
                  if r.get("decision_storm", {}).get("ack_probe")]
              for t in ("kafka-healing", "noop", "floor")}
probed = probe_runs["kafka-healing"]

if decided or any(byp[p][t] for p in byp for t in byp[p]):
    ls, le = machine_loads()
    print("## Headline (this run)\n")
    print("| measure | kafka-healing | am-executor | no-op axum server | ratio |")
    print("|---|---|---|---|---|")
    if decided:
        dps = [d["decisions_per_s"] for d in decided if d.get("decisions_per_s") is not None]
        tos = sum(1 for d in decided if d.get("timed_out"))
        n = decided[0]["alerts"]
        cell = spread(dps, f0) if dps else "-"
        if tos:
            lb = [d["decisions_per_s_lower_bound"] for d in decided if d.get("timed_out")]
            cell += f" ({tos} of {len(decided)} TIMED OUT after {decided[0]['timeout_s']:.0f} s; ≥ {spread(lb, f0)}/s)"
        print(f"| decisions/s, storm of {n:,} distinct alerts (phase d: alerts / time from first request to backlog 0) "
              f"| {cell} | n/a (no decision step) | n/a | |")
        print(f"| phase d: posting / all decided (s from the first request) "
              f"| {spread(vals(decided, lambda d: d['post_s']), f2)} / {spread(vals(decided, lambda d: d['decided_s']), f2)} | | | |")
        print(f"| phase d: peak RSS, VmHWM (MiB) | {spread(vals(decided, lambda d: d['server_peak_rss_kb'] / 1024), f1)} | | | |")
    u = byp["unique"]
    fin = runs_per_s
    if u["kafka-healing"] or u["am-executor"]:
        print(f"| distinct alerts (`unique`, 64 clients): `/bin/true` runs finished per s during the phase "
              f"| {spread(vals(u['kafka-healing'], fin), f0)} | {spread(vals(u['am-executor'], fin), f0)} | (runs nothing) "
              f"| ours / am-executor {pair_ratio(u['kafka-healing'], u['am-executor'], fin)} |")
        hwm = lambda r: r["server_peak_rss_kb"] / 1024
        print(f"| distinct alerts (`unique`): peak RSS, VmHWM (MiB) "
              f"| {spread(vals(u['kafka-healing'], hwm), f1)} | {spread(vals(u['am-executor'], hwm), f1)} | {spread(vals(u['noop'], hwm), f1)} "
              f"| ours / am-executor {pair_ratio(u['kafka-healing'], u['am-executor'], hwm)} |")
    for p in ("unique", "fixture"):
        g = byp[p]
        p99 = lambda r: ack_p99(r, 1000)
        if not any(vals(g[t], p99) for t in g):
            continue
        print(f"| ACK p99 at 1,000 req/s, payload `{p}` (ms, from the scheduled send) "
              f"| {spread(vals(g['kafka-healing'], p99), f2)} | {spread(vals(g['am-executor'], p99), f2)} | {spread(vals(g['noop'], p99), f2)} "
              f"| ours / no-op {pair_ratio(g['kafka-healing'], g['noop'], p99)} (target ≤ 2×); ours / am-executor {pair_ratio(g['kafka-healing'], g['am-executor'], p99)} |")
    if probed:
        pr = lambda k: (lambda d: d["ack_probe"]["latency_from_schedule"][k])
        noop_p99 = vals(byp["unique"]["noop"] + byp["fixture"]["noop"], lambda r: ack_p99(r, 1000))
        ratio = ""
        if noop_p99:
            mid = sorted(noop_p99)[len(noop_p99) // 2]
            ratio = f"ours / no-op's median p99 at 1,000 req/s {statistics.median(vals(probed, pr('p99_ms'))) / mid:.1f}× (target ≤ 2×)"
        print(f"| ACK p99 at 1,000 req/s **while phase d's storm is being decided** (probe: one distinct alert "
              f"per request for the storm's first second; ms, from the scheduled send) "
              f"| {spread(vals(probed, pr('p99_ms')), f2)} (p50 {spread(vals(probed, pr('p50_ms')), f2)}) | n/a | "
              f"{spread(noop_p99, f2)} (its phase b) | {ratio} |")
        p99 = pr("p99_ms")
        noop_storm, floor = probe_runs["noop"], probe_runs["floor"]
        if noop_storm:
            print(f"| the same probe, the same storm posted to the no-op server (ms) "
                  f"| | n/a | {spread(vals(noop_storm, p99), f2)} "
                  f"| ours / no-op under the same storm {pair_ratio(probed, noop_storm, p99)} |")
        if floor:
            print(f"| the same probe and storm, **durable floor** (`noop_server --durable`: raw body "
                  f"committed with fsync before the 200, nothing else; ms) "
                  f"| | n/a | {spread(vals(floor, p99), f2)} (p50 {spread(vals(floor, pr('p50_ms')), f2)}) "
                  f"| floor / no-op under the storm {pair_ratio(floor, noop_storm, p99)}; "
                  f"ours / floor {pair_ratio(probed, floor, p99)} |")
        print(f"| phase d with the probe: all decided (s from the first request) "
              f"| {spread(vals(probed, lambda d: d['decided_s']), f2)} | | | |")
    print(f"| whole-machine load average (1, 5, 15 min) at the start / at the end of the run | {ls} / {le} | | | |")
    print()
    print("The `unique` and `fixture` ACK rows are measured on their own servers, after phase d; "
          "with `unique` the ACK phase itself posts one distinct alert per request, each needing a "
          "decision and a run. The row marked **while phase d's storm is being decided** is the probe "
          "sent during the storm itself.\n")

if decided:
    print("## Phase d: decision storm (kafka-healing)\n")
    print("| rep | alerts / requests | posted (s) | all decided (s) | after last 200 (s) | decisions/s | 503 retries "
          "| backlog max | executions by outcome | in flight | peak RSS (MiB) | acked = journaled | load before → after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i, d in enumerate(decided, 1):
        opt = lambda k, fmt: "-" if d.get(k) is None else fmt(d[k])
        dec = opt("decided_s", f2) if not d.get("timed_out") else f"TIMEOUT ({d['timeout_s']:.0f} s, backlog {d['backlog_at_end']:,.0f})"
        outc = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(d.get("executions_by_outcome", {}).items())) or "-"
        print(f"| {i} | {d['alerts_acknowledged']:,} / {d['requests']} | {opt('post_s', f2)} | {dec} | {opt('decided_after_last_ack_s', f2)} "
              f"| {opt('decisions_per_s', f0)} | {d['retries_503']} | {d['backlog_max_seen']:,.0f} | {outc} | {opt('executions_in_flight', f0)} "
              f"| {d['server_peak_rss_kb'] / 1024:.1f} | {d['alerts_acknowledged']:,} = {d['alerts_journaled']:,}: {d['zero_loss']} "
              f"| {d['uptime_load_before']:.2f} → {d['uptime_load']:.2f} |")
    print()

for payload in ("fixture", "unique"):
    kh, am, nz = byp[payload]["kafka-healing"], byp[payload]["am-executor"], byp[payload]["noop"]
    if not kh or not am:
        continue
    n = min(len(kh), len(am))
    kh, am = kh[:n], am[:n]
    per = "2 alerts (the Alertmanager fixture)" if payload == "fixture" else "1 alert with a unique label"
    print(f"## Webhook, payload `{payload}`: {per} per request; {n} repetition(s)\n")
    print("| measure | kafka-healing | am-executor | no-op axum server | ratio kafka-healing / am-executor | ratio kafka-healing / no-op |")
    print("|---|---|---|---|---|---|")

    def row(name, fn, fmt, better=""):
        a, b, z = vals(kh, fn), vals(am, fn), vals(nz, fn)
        print(f"| {name} | {spread(a, fmt)} | {spread(b, fmt)} | {spread(z, fmt)} "
              f"| {pair_ratio(kh, am, fn)}{better} | {pair_ratio(kh, nz, fn)} |")

    tp = lambda r: r["throughput"][0]
    row("sustained alerts/s (64 clients, closed loop)", lambda r: tp(r)["alerts_per_s_journaled"], f0)
    row("requests/s answered 2xx", lambda r: tp(r)["requests_per_s_2xx"], f0)
    row("/bin/true runs finished per s during that phase", runs_per_s, f0)
    row("executions finished per s during that phase (runs + `skipped` decisions)", lambda r: tp(r)["executions_finished_per_s"], f0)
    row("closed-loop latency p50 (ms)", lambda r: tp(r)["closed_loop_latency"]["p50_ms"], f2)
    row("closed-loop latency p99 (ms)", lambda r: tp(r)["closed_loop_latency"]["p99_ms"], f2)
    rates = [x["rate_target"] for x in kh[0].get("ack_latency", [])]
    for i, rate in enumerate(rates):
        al = lambda r, k: r["ack_latency"][i]["latency_from_schedule"][k]
        for k, name in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
            row(f"ACK {name} at {rate:,} req/s (ms)", lambda r, k=k: al(r, k), f2)
        kept = lambda rs: "/".join("yes" if r["ack_latency"][i]["kept_up"] else "NO" for r in rs if len(r.get("ack_latency", [])) > i) or "-"
        print(f"| kept up at {rate:,} req/s (per repetition) | {kept(kh)} | {kept(am)} | {kept(nz)} | | |")
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
    fin = runs_whole
    allx = lambda r: r["executions_after_drain"]["finished"] if "executions_after_drain" in r else runs_whole(r)
    pend = lambda r: r["executions_after_drain"]["in_flight"] if "executions_after_drain" in r else 0
    row("whole run: /bin/true runs finished (kafka-healing: after up to 60 s of drain)", fin, f0)
    row("whole run: executions finished, runs + `skipped` decisions", allx, f0)
    row("whole run: executions still queued or running at the end", pend, f0)
    row("peak RSS, VmHWM (MiB)", lambda r: r["server_peak_rss_kb"] / 1024, f1)
    bad = lambda rs: "/".join(str(sum(r["totals"]["outcomes"]["non_2xx"].values()) + r["totals"]["outcomes"]["transport_errors"]) for r in rs) or "-"
    print(f"| non-2xx + transport errors (per repetition) | {bad(kh)} | {bad(am)} | {bad(nz)} | | |")
    zl = "/".join(str(r.get("zero_loss")) for r in kh)
    print(f"| kafka-healing: every 2xx alert in the journal | {zl} | (no journal) | (no journal) | | |")
    loads = [x["uptime_load"] for r in kh + am + nz for x in r.get("ack_latency", [])]
    if loads:
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
