#!/usr/bin/env python3
"""Writes the results section of BENCHMARKS.md from one scripts/bench.sh run.

usage: report.py META_ENV RUNS_TSV MICRO_TXT BENCHMARKS_MD

RUNS_TSV has a header line naming its columns (see scripts/bench.sh); one
row per case run. Only the text between the section's markers is replaced:
bench:results for a pinned run, bench:results-unpinned for an unpinned one
(META_ENV's section=); everything else in the file (the method, the
hand-written analysis, the other run's section) is kept. Markers that are
missing are added: the unpinned section after the pinned one, or at the
end of the file; a missing file is created.
"""
import re
import statistics
import sys

SECTIONS = ("results", "results-unpinned")


def markers(section):
    return f"<!-- bench:{section}:begin -->", f"<!-- bench:{section}:end -->"


BEGIN, END = markers("results")

ALL_CASES = ["direct", "passthrough", "encrypted", "encrypted-local", "kroxylicious"]
LABEL = {
    "direct": "direct",
    "passthrough": "kseal passthrough",
    "encrypted": "kseal encrypted",
    "encrypted-local": "kseal encrypted (local KMS)",
    "kroxylicious": "Kroxylicious",
}
PROXIES = [c for c in ALL_CASES if c != "direct"]
KSEAL_ENC = ["encrypted", "encrypted-local"]
# A phase during which other processes used more than this many cores (of
# the machine's) is flagged as disturbed.
NOISY_CORES = 0.3
MIB = 1024 * 1024
GIB = 1024 * MIB


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def read_meta(path):
    meta = {}
    with open(path) as f:
        for line in f:
            k, sep, v = line.rstrip("\n").partition("=")
            if sep:
                meta[k] = v
    return meta


def read_runs(path):
    runs = []
    with open(path) as f:
        cols = f.readline().rstrip("\n").split("\t")
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(cols):
                continue
            r = dict(zip(cols, parts))
            derive(r)
            runs.append(r)
    return runs


def derive(r):
    """Adds the columns computed from the measured ones."""
    size, records = num(r["size"]), num(r["records"])
    r["workload"] = wl_name(r["size"], r["codec"])
    gib = size * records / GIB if size and records else None
    mib = size * records / MIB if size and records else None
    for phase in ("prod", "cons"):
        k = num(r[phase + "_cpu"]) if r["case"] != "direct" else 0.0
        b, c = num(r[phase + "_broker"]), num(r[phase + "_client"])
        r[phase + "_total"] = "-" if None in (k, b, c) else f"{k + b + c:.3f}"
        if r["case"] == "direct" or k is None or not records:
            r[phase + "_us"] = r[phase + "_per_gib"] = r[phase + "_eff"] = "-"
            continue
        r[phase + "_us"] = f"{k * 1e6 / records:.4f}"
        r[phase + "_per_gib"] = f"{k / gib:.4f}"
        # MiB of record values moved per proxy CPU-second: throughput at
        # equal proxy CPU.
        r[phase + "_eff"] = f"{mib / k:.4f}" if k > 0 else "-"
    others = [num(r["prod_others"]), num(r["cons_others"]), num(r["lat_others"])]
    r["noisy"] = any(o is not None and o > NOISY_CORES for o in others)


def wl_name(size, codec):
    return f"{size} B, {'uncompressed' if codec == 'none' else codec}"


def select(runs, workload, case):
    return [r for r in runs if r["workload"] == workload and r["case"] == case and r["status"] == "OK"]


def quiet(runs, key):
    """The runs whose phase of key (produce, consume or fixed-rate) had
    other load at or below NOISY_CORES."""
    others = key.split("_")[0] + "_others"
    return [r for r in runs if (num(r.get(others)) is not None and num(r[others]) <= NOISY_CORES)]


def stats(runs, workload, case, key):
    vals = [num(r[key]) for r in select(runs, workload, case)]
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None, None, 0
    return statistics.median(vals), min(vals), max(vals), len(vals)


def med(runs, workload, case, key):
    return stats(runs, workload, case, key)[0]


def fmt(v, digits=1):
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def cell(runs, workload, case, key, digits=1, spread=False, n=False):
    m, lo, hi, cnt = stats(runs, workload, case, key)
    if m is None:
        return "—"
    s = fmt(m, digits)
    if spread and lo != hi:
        s += f" ({fmt(lo, digits)}–{fmt(hi, digits)})"
    if n:
        s = f"n={cnt}: " + s
    return s


def ratio_of(a, b):
    return None if a is None or not b else a / b


def diff_of(a, b):
    return None if a is None or b is None else a - b


def pct(r):
    return "—" if r is None else f"{100 * r:.1f}%"


def times(r):
    return "—" if r is None else f"{r:.2f}×"


def ms(d):
    return "—" if d is None else f"{d:+.2f} ms"


def rnd(v, digits):
    f = num(v)
    return v if f is None else f"{f:.{digits}f}"


# (label, key, digits, spread, kind vs direct, kind vs Kroxylicious,
#  proxies only). Kinds: ratio (a / b), added (a - b, ms), None.
ROWS = [
    ("Produce MB/s (saturated)", "prod_mbs", 1, True, "ratio", "ratio", False),
    ("Produce records/s", "prod_rps", 0, False, "ratio", "ratio", False),
    ("Consume MB/s (fetch phase)", "cons_mbs", 1, True, "ratio", "ratio", False),
    ("Consume records/s", "cons_rps", 0, False, "ratio", "ratio", False),
    ("Fixed-rate produce p50 latency, ms", "lat_p50", 0, False, "added", "added", False),
    ("Fixed-rate produce p99 latency, ms", "lat_p99", 0, True, "added", "added", False),
    ("Fixed-rate produce p99.9 latency, ms", "lat_p999", 0, False, "added", "added", False),
    ("Proxy CPU s per GiB produced", "prod_per_gib", 2, True, None, "ratio", True),
    ("Proxy CPU s per GiB consumed", "cons_per_gib", 2, True, None, "ratio", True),
    ("Proxy CPU µs per record produced", "prod_us", 2, True, None, "ratio", True),
    ("Proxy CPU µs per record consumed", "cons_us", 2, True, None, "ratio", True),
    ("MB/s produced per proxy core (MiB per proxy CPU-second)", "prod_eff", 0, True, None, "ratio", True),
    ("MB/s consumed per proxy core (MiB per proxy CPU-second)", "cons_eff", 0, True, None, "ratio", True),
    ("Proxy CPU s, fixed-rate run", "lat_cpu", 2, False, None, "ratio", True),
    ("Proxy peak RSS, MiB (VmHWM)", "rss", 1, True, None, "ratio", True),
    ("Produce avg latency, ms (saturated)", "prod_avg", 1, False, "ratio", "ratio", False),
    ("CPU s of broker+client+proxy, produce run", "prod_total", 2, False, "ratio", "ratio", False),
    ("CPU s of broker+client+proxy, consume run", "cons_total", 2, False, "ratio", "ratio", False),
]


def compare(kind, a, b):
    if kind == "ratio":
        return pct(ratio_of(a, b))
    if kind == "added":
        return ms(diff_of(a, b))
    return ""


def compare_x(kind, a, b):
    if kind == "ratio":
        return times(ratio_of(a, b))
    if kind == "added":
        return ms(diff_of(a, b))
    return ""


def header(cases, vs_kroxy):
    cols = ["Metric"]
    align = ["---"]
    for c in cases:
        cols.append(LABEL[c])
        align.append("---:")
        if c != "direct" and "direct" in cases:
            cols.append("vs direct")
            align.append("---:")
    for c in vs_kroxy:
        cols.append(f"{LABEL[c]} ÷ Kroxylicious" if len(vs_kroxy) > 1 else "kseal ÷ Kroxylicious")
        align.append("---:")
    return ["| " + " | ".join(cols) + " |", "|" + "|".join(align) + "|"]


def summary(runs, workload, cases):
    vs_kroxy = [c for c in KSEAL_ENC if c in cases] if "kroxylicious" in cases else []
    out = header(cases, vs_kroxy)
    for label, key, digits, spread, kd, kk, proxy_only in ROWS:
        cells = [label]
        d = med(runs, workload, "direct", key)
        for c in cases:
            if c == "direct":
                cells.append("—" if proxy_only else cell(runs, workload, c, key, digits, spread))
                continue
            cells.append(cell(runs, workload, c, key, digits, spread))
            if "direct" in cases:
                cells.append(compare(kd, med(runs, workload, c, key), d) if kd else "")
        kx = med(runs, workload, "kroxylicious", key)
        for c in vs_kroxy:
            cells.append(compare_x(kk, med(runs, workload, c, key), kx))
        out.append("| " + " | ".join(cells) + " |")
    return out


UNDISTURBED_ROWS = [
    ("Produce MB/s (saturated)", "prod_mbs", 1, "ratio"),
    ("Consume MB/s (fetch phase)", "cons_mbs", 1, "ratio"),
    ("Fixed-rate produce p50 latency, ms", "lat_p50", 0, "added"),
    ("Fixed-rate produce p99 latency, ms", "lat_p99", 0, "added"),
    ("Fixed-rate produce p99.9 latency, ms", "lat_p999", 0, "added"),
]


def undisturbed(runs, workload, cases):
    """Medians over the undisturbed phases only: fewer samples, less noise."""
    vs_kroxy = [c for c in KSEAL_ENC if c in cases] if "kroxylicious" in cases else []
    out = header(cases, vs_kroxy)
    for label, key, digits, kind in UNDISTURBED_ROWS:
        q = quiet(runs, key)
        cells = [label]
        d = med(q, workload, "direct", key)
        for c in cases:
            n = stats(q, workload, c, key)[3]
            cells.append("no run" if n == 0 else cell(q, workload, c, key, digits, True, n=True))
            if c != "direct" and "direct" in cases:
                cells.append(compare(kind, med(q, workload, c, key), d))
        kx = med(q, workload, "kroxylicious", key)
        for c in vs_kroxy:
            cells.append(compare_x(kind, med(q, workload, c, key), kx))
        out.append("| " + " | ".join(cells) + " |")
    return out


# Goals: (label, case, baseline case, key, kind, test, noise-sensitive).
# Noise-sensitive goals are judged on the undisturbed phases when both
# sides have one; CPU and RSS barely depend on other load and use all runs.
GOALS = [
    ("kseal passthrough produce ≥ 95% of direct", "passthrough", "direct", "prod_mbs", "ratio", lambda v: v >= 0.95, True),
    ("kseal passthrough consume ≥ 95% of direct", "passthrough", "direct", "cons_mbs", "ratio", lambda v: v >= 0.95, True),
    ("kseal passthrough adds ≤ 1 ms to p99 (fixed rate)", "passthrough", "direct", "lat_p99", "added", lambda v: v <= 1.0, True),
    ("kseal encrypted produce ≥ 90% of direct", "encrypted", "direct", "prod_mbs", "ratio", lambda v: v >= 0.90, True),
    ("kseal encrypted consume ≥ 85% of direct", "encrypted", "direct", "cons_mbs", "ratio", lambda v: v >= 0.85, True),
    ("kseal encrypted adds < 2 ms to p99 (fixed rate)", "encrypted", "direct", "lat_p99", "added", lambda v: v < 2.0, True),
    ("Produce MiB per proxy CPU-s ≥ 2× Kroxylicious", "encrypted", "kroxylicious", "prod_eff", "times", lambda v: v >= 2.0, False),
    ("Consume MiB per proxy CPU-s ≥ 2× Kroxylicious", "encrypted", "kroxylicious", "cons_eff", "times", lambda v: v >= 2.0, False),
    ("Peak RSS ≤ ¼ of Kroxylicious'", "encrypted", "kroxylicious", "rss", "times", lambda v: v <= 0.25, False),
    ("Encrypted produce MB/s vs Kroxylicious (for reference)", "encrypted", "kroxylicious", "prod_mbs", "times", None, True),
    ("Encrypted consume MB/s vs Kroxylicious (for reference)", "encrypted", "kroxylicious", "cons_mbs", "times", None, True),
]


def judge(runs, workload, case, base, key, kind, ok, noisy):
    """One goal cell: the value, whether it is met, and on what data."""
    f = diff_of if kind == "added" else ratio_of
    show = {"ratio": pct, "added": ms, "times": times}[kind]
    v_all = f(med(runs, workload, case, key), med(runs, workload, base, key))
    if v_all is None:
        return "no data"
    if not noisy:
        txt = show(v_all)
        return txt if ok is None else f"{txt} {'yes' if ok(v_all) else '**no**'}"
    q = quiet(runs, key)
    nb, nc = stats(q, workload, base, key)[3], stats(q, workload, case, key)[3]
    v_q = f(med(q, workload, case, key), med(q, workload, base, key)) if nb and nc else None
    if v_q is None:
        txt = show(v_all)
        return txt if ok is None else f"{txt} {'yes' if ok(v_all) else '**no**'} (disturbed runs only: unreliable)"
    txt = f"{show(v_q)}"
    if ok is not None:
        txt += " yes" if ok(v_q) else " **no**"
    txt += f" (n {nc}/{nb})"
    return txt


def goals(runs, workloads, cases):
    out = [
        "| Goal | " + " | ".join(workloads) + " |",
        "|---|" + "|".join(["---:"] * len(workloads)) + "|",
    ]
    for label, case, base, key, kind, ok, noisy in GOALS:
        if case not in cases or base not in cases:
            continue
        cells = [label] + [judge(runs, w, case, base, key, kind, ok, noisy) for w in workloads]
        out.append("| " + " | ".join(cells) + " |")
    return out


def every_run(runs):
    out = [
        "| # | workload | case | status | produce MB/s | produce rec/s | consume MB/s | consume rec/s"
        " | fixed-rate p50 / p99 / p99.9 ms | proxy CPU s (prod/cons/fixed) | broker+client CPU s (prod/cons)"
        " | proxy RSS MiB | other load, cores (prod/cons/fixed) | value at rest |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for i, r in enumerate(runs, 1):
        direct = r["case"] == "direct"
        cpu = "—" if direct else f"{r['prod_cpu']} / {r['cons_cpu']} / {r['lat_cpu']}"
        rss = "—" if direct else r["rss"]
        bc = "—"
        pb, pc, cb, cc = (num(r[k]) for k in ("prod_broker", "prod_client", "cons_broker", "cons_client"))
        if None not in (pb, pc, cb, cc):
            bc = f"{pb + pc:.2f} / {cb + cc:.2f}"
        status = r["status"] + (", disturbed" if r["noisy"] else "")
        out.append("| " + " | ".join([
            str(i), r["workload"], LABEL.get(r["case"], r["case"]), status,
            rnd(r["prod_mbs"], 1), rnd(r["prod_rps"], 0), rnd(r["cons_mbs"], 1), rnd(r["cons_rps"], 0),
            f"{r['lat_p50']} / {r['lat_p99']} / {r['lat_p999']}", cpu, bc, rss,
            f"{r['prod_others']} / {r['cons_others']} / {r['lat_others']}", r["at_rest"],
        ]) + " |")
    return out


BENCH_LINE = re.compile(r"^(Benchmark\S+)\s+(\d+)\s+(.*)$")


def micro(path, ok):
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    out = []
    if not ok:
        out += ["The micro-benchmarks **failed** in this run; the tail of their output:", "", "```"]
        out += lines[-15:]
        out += ["```", ""]
    rows = []
    pkg = ""
    cpu = ""
    for line in lines:
        if line.startswith("pkg: "):
            pkg = line[5:].replace("github.com/kseal/kseal/", "")
        elif line.startswith("cpu: "):
            cpu = line[5:]
        m = BENCH_LINE.match(line)
        if not m:
            continue
        name = re.sub(r"-\d+$", "", m.group(1))
        vals = {}
        rest = m.group(3).split()
        for i in range(0, len(rest) - 1, 2):
            vals[rest[i + 1]] = rest[i]
        rows.append((pkg, name, vals))
    if not rows:
        return out + ["No benchmark results."]
    if cpu:
        out += [f"`go test` reports cpu: {cpu}", ""]
    out += [
        "| package | benchmark | ns/op | MB/s | B/op | allocs/op |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for pkg, name, v in rows:
        out.append(f"| {pkg} | {name} | {v.get('ns/op', '')} | {v.get('MB/s', '')} | {v.get('B/op', '')} | {v.get('allocs/op', '')} |")
    return out


def order(meta, runs):
    """Cases and workloads in the order the run used them."""
    cases = [c for c in meta.get("cases", "").split() if c in ALL_CASES]
    cases += [c for c in ALL_CASES if c not in cases and any(r["case"] == c for r in runs)]
    workloads = []
    for w in meta.get("workloads", "").split():
        size, _, codec = w.partition(":")
        workloads.append(wl_name(size, codec))
    for r in runs:
        if r["workload"] not in workloads:
            workloads.append(r["workload"])
    return cases, workloads


def per_record(runs, workloads, cases):
    """The headline table: proxy CPU per record and MB/s per proxy core,
    per workload, for produce and consume (medians, range in brackets)."""
    proxies = [c for c in cases if c != "direct"]
    if not proxies:
        return []
    cols = ["Workload"]
    for c in proxies:
        cols += [f"{LABEL[c]} produce", f"{LABEL[c]} consume"]
    out = ["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 1)]
    for w in workloads:
        row = [w]
        for c in proxies:
            for phase in ("prod", "cons"):
                us = cell(runs, w, c, phase + "_us", 2, spread=True)
                eff = med(runs, w, c, phase + "_eff")
                row.append(us + ("" if eff is None else f" µs; {fmt(eff, 0)} MB/s"))
        out.append("| " + " | ".join(row) + " |")
    return out


def section(meta, runs, micro_path):
    cases, workloads = order(meta, runs)
    nfail = sum(1 for r in runs if r["status"] != "OK")
    missing = [f"{LABEL[c]} at {w}" for w in workloads for c in cases if not select(runs, w, c)]
    records = {}
    for r in runs:
        records.setdefault(r["workload"], r["records"])
    kx = meta.get("kroxylicious", "")
    name = meta.get("section", "results")
    begin, end = markers(name)
    title = "Results of the last run" if name == "results" else "Results of the last unpinned run"
    out = [
        begin,
        "<!-- Generated by scripts/bench.sh: edits between these markers are overwritten. -->",
        "",
        f"## {title} ({meta.get('date', '?')})",
        "",
        f"Run took {meta.get('duration_s', '?')} s in total; kseal built from commit {meta.get('kseal', '?')}."
        + (f" Each run first waited up to {meta['quiet_wait']} s for the machine to be idle (`BENCH_QUIET_WAIT`)."
           if meta.get("quiet_wait", "0") not in ("", "0") else ""),
        "",
        f"Command: `{meta.get('command', 'scripts/bench.sh')}`",
        "",
        "| Machine | |",
        "|---|---|",
        f"| CPU | {meta.get('cpu', '?')}, nproc = {meta.get('nproc', '?')} |",
        f"| Memory, kernel | {meta.get('mem', '?')}, Linux {meta.get('kernel', '?')} |",
        f"| Pinning (taskset) | {meta.get('pin', '?')} |",
        f"| Kafka | Apache Kafka {meta.get('kafka', '?')}, 1 broker (KRaft, combined broker+controller) |",
        f"| Java (broker, clients) | {meta.get('java', '?')} |",
        f"| Go | {meta.get('go', '?')} |",
        f"| Broker JVM | `{meta.get('broker_jvm', '?')}` |",
        f"| Client JVM | `{meta.get('client_jvm', '?')}` |",
    ]
    if meta.get("openbao"):
        out.append(f"| KMS | {meta['openbao']}, Transit engine, one KEK per topic, token auth (least privilege) |")
    if kx:
        out += [
            f"| Kroxylicious | {kx} (runtime, RecordEncryption, Vault KMS from Maven Central; our launcher,"
            " see Method) |",
            f"| Kroxylicious JVM | {meta.get('kroxylicious_java', '?')}, `{meta.get('kroxylicious_jvm', '?')}` |",
        ]
    out += [
        f"| Load average (1/5/15 min) | {meta.get('load_start', '?')} at start, {meta.get('load_end', '?')} at end |",
        "",
        "Workloads (records per throughput run): "
        + ", ".join(f"{w} ({int(records.get(w, '0')):,})" for w in workloads)
        + ". Each throughput run uses `--throughput -1` and the producer defaults (acks=all, linger and"
        " batch size default, `compression.type` as named) and is consumed back with ConsumerPerformance;"
        f" then {int(meta.get('lat_records', '0')):,} records at a fixed {meta.get('lat_rate', '?')}"
        f" records/s for latency (the first {meta.get('lat_warmup', '?')} are the tool's warm-up and not in"
        f" the numbers). Before measuring, {int(meta.get('warm_records') or 0):,} records are produced and read"
        " back with kcat through each freshly started proxy (unmeasured warm-up). A fresh topic with"
        f" {meta.get('partitions', '?')} partitions per run, {meta.get('reps', '?')} runs per case and"
        " workload, interleaved. MB are the perf tools' MB (2^20 bytes of record values).",
        "",
    ]
    if nfail or missing:
        out += [
            f"**{nfail} run(s) failed**"
            + (f"; no successful run for: {', '.join(missing)}" if missing else "") + ".",
            "",
        ]
    if name != "results":
        out += [
            "Unpinned: broker, clients and proxy share every core (no taskset), so throughput ratios"
            " show what the proxy costs on the same hardware; each proxy also sees every core"
            " (GOMAXPROCS, JVM ergonomics).",
            "",
        ]
    out += [
        "### Proxy CPU per record and MB/s per proxy core",
        "",
        "Proxy CPU (utime+stime from /proc over the client run) per record moved, and the MB/s one"
        " proxy core would carry at that cost (MiB of record values per proxy CPU-second). Medians,"
        " range over the runs in brackets.",
        "",
    ]
    out += per_record(runs, workloads, cases)
    out += [""]
    noisy = sum(1 for r in runs if r["noisy"])
    out += ["### Goals", ""]
    out += [
        "Throughput and latency goals are judged on the undisturbed phases when both sides have one"
        " (n = runs of the case / of the baseline), else on all runs (marked unreliable); proxy CPU and"
        " RSS barely depend on other load and use all runs. Medians.",
        "",
    ]
    out += goals(runs, workloads, cases)
    if noisy:
        out += [
            "",
            f"**{noisy} of {len(runs)} runs were disturbed**: other processes used more than"
            f" {NOISY_CORES} cores during at least one of their phases (see the per-run table), so"
            " the throughput and latency medians of all runs mix in other jobs' load. The proxy CPU and"
            " RSS rows depend much less on it.",
        ]
    for w in workloads:
        out += [
            "",
            f"### {w}: {int(records.get(w, '0')):,} records per throughput run",
            "",
            "Median of all runs (min–max in brackets). ÷ Kroxylicious: kseal's median over"
            " Kroxylicious' (higher is better for throughput and MiB per CPU-s, lower for CPU per GiB,"
            " µs per record and RSS).",
            "",
        ]
        out += summary(runs, w, cases)
        out += ["", f"Undisturbed phases only (other load ≤ {NOISY_CORES} cores during that phase):", ""]
        out += undisturbed(runs, w, cases)
    out += [
        "",
        "### Every run, in the order it ran",
        "",
        "\"Other load\" is the average number of cores used during that phase by processes that"
        " are not part of the benchmark (machine CPU time from /proc/stat minus broker, OpenBao, client"
        f" and proxy CPU time); runs above {NOISY_CORES} cores in a phase are marked disturbed.",
        "",
    ]
    out += every_run(runs)
    if meta.get("micro_pkgs"):
        out += [
            "",
            f"### Go micro-benchmarks (`-benchtime {meta.get('benchtime', '?')}`)",
            "",
            f"`go test -run '^$' -bench . -benchmem -benchtime {meta.get('benchtime', '?')} {meta.get('micro_pkgs', '')}`",
            "",
        ]
        mo = num(meta.get("micro_others"))
        if mo is not None:
            out += [
                f"Other processes used {mo:.2f} cores on average while these ran"
                + (" (disturbed: expect these to be slower than on an idle machine)." if mo > NOISY_CORES else "."),
                "",
            ]
        out += micro(micro_path, meta.get("micro_ok") == "1")
    out += ["", end]
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    meta = read_meta(sys.argv[1])
    runs = read_runs(sys.argv[2])
    text = section(meta, runs, sys.argv[3])
    out = sys.argv[4]
    name = meta.get("section", "results")
    if name not in SECTIONS:
        sys.exit(f"report.py: unknown section {name!r} (want one of {', '.join(SECTIONS)})")
    begin, end = markers(name)
    try:
        with open(out) as f:
            doc = f.read()
    except FileNotFoundError:
        doc = ""
    b, e = doc.find(begin), doc.find(end)
    pe = doc.find(END)
    if b >= 0 and e > b:
        rest = doc[e + len(end):].lstrip("\n")
        doc = doc[:b] + text + ("\n" + rest if rest else "")
    elif not doc:
        doc = "# kseal benchmarks\n\n" + text
    elif name != "results" and pe >= 0:
        # The unpinned section goes right after the pinned one.
        at = pe + len(END)
        rest = doc[at:].lstrip("\n")
        doc = doc[:at] + "\n\n" + text + ("\n" + rest if rest else "")
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    with open(out, "w") as f:
        f.write(doc)
    # The gist on stdout, for whoever ran `make bench`.
    cases, workloads = order(meta, runs)
    print("\n".join(goals(runs, workloads, cases)))


if __name__ == "__main__":
    main()
