#!/usr/bin/env python3
"""Writes the results section of BENCHMARKS.md from one scripts/bench.sh run.

usage: report.py META_ENV RUNS_TSV MICRO_TXT BENCHMARKS_MD

Only the text between the bench:results markers is replaced; everything else
in the file (the method and the hand-written analysis) is kept. If the file
or the markers are missing, a minimal file with the markers is written.
"""
import re
import statistics
import sys

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"

# runs.tsv columns, in the order scripts/bench.sh writes them.
COLS = [
    "case", "rep", "status",
    "prod_rps", "prod_mbs", "prod_avg", "prod_p50", "prod_p99", "prod_p999",
    "cons_rps", "cons_mbs",
    "lat_rps", "lat_mbs", "lat_avg", "lat_p50", "lat_p99", "lat_p999",
    "prod_wall", "prod_cpu", "prod_others", "prod_broker", "prod_client",
    "cons_wall", "cons_cpu", "cons_others", "cons_broker", "cons_client",
    "lat_wall", "lat_cpu", "lat_others", "lat_broker", "lat_client",
    "rss", "at_rest",
]
CASES = ["direct", "passthrough", "encrypted"]
# A run during which other processes used more than this many cores (out
# of the machine's) is flagged as disturbed.
NOISY_CORES = 0.3


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


def read_runs(path, records):
    runs = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(COLS):
                continue
            r = dict(zip(COLS, parts))
            derive(r, records)
            runs.append(r)
    return runs


def derive(r, records):
    """Adds the columns computed from the measured ones."""
    for phase in ("prod", "cons"):
        k = num(r[phase + "_cpu"]) if r["case"] != "direct" else 0.0
        b, c = num(r[phase + "_broker"]), num(r[phase + "_client"])
        r[phase + "_total"] = "-" if None in (k, b, c) else f"{k + b + c:.2f}"
        r[phase + "_us"] = "-" if k is None or not records else f"{k * 1e6 / records:.2f}"
    others = [num(r["prod_others"]), num(r["cons_others"]), num(r["lat_others"])]
    r["noisy"] = any(o is not None and o > NOISY_CORES for o in others)


def median(runs, case, key):
    vals = [num(r[key]) for r in runs if r["case"] == case and r["status"] == "OK"]
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None, None
    return statistics.median(vals), min(vals), max(vals)


def quiet(runs, key):
    """The runs whose phase of key (produce, consume or fixed-rate) had
    other load at or below NOISY_CORES."""
    others = key.split("_")[0] + "_others"
    return [r for r in runs if (num(r.get(others)) is not None and num(r[others]) <= NOISY_CORES)]


def count(runs, case):
    return sum(1 for r in runs if r["case"] == case and r["status"] == "OK")


def fmt(v, digits=1):
    if v is None:
        return "failed"
    return f"{v:,.{digits}f}"


def cell(runs, case, key, digits=1, spread=False):
    m, lo, hi = median(runs, case, key)
    if m is None:
        return "failed"
    s = fmt(m, digits)
    if spread and lo != hi:
        s += f" ({fmt(lo, digits)}–{fmt(hi, digits)})"
    return s


def ratio(runs, case, key):
    m, _, _ = median(runs, case, key)
    d, _, _ = median(runs, "direct", key)
    if m is None or not d:
        return None
    return m / d


def added(runs, case, key):
    m, _, _ = median(runs, case, key)
    d, _, _ = median(runs, "direct", key)
    if m is None or d is None:
        return None
    return m - d


def rnd(v, digits):
    f = num(v)
    return v if f is None else f"{f:.{digits}f}"


def pct(r):
    return "—" if r is None else f"{100 * r:.1f}%"


def ms(d):
    return "—" if d is None else f"{d:+.2f} ms"


def summary(runs):
    rows = [
        ("Produce MB/s (saturated)", "prod_mbs", 1, True, "ratio"),
        ("Produce records/s", "prod_rps", 0, False, "ratio"),
        ("Produce avg latency, ms (saturated)", "prod_avg", 1, False, "ratio"),
        ("Produce p99 latency, ms (saturated)", "prod_p99", 0, False, "ratio"),
        ("Consume MB/s (fetch phase)", "cons_mbs", 1, True, "ratio"),
        ("Consume records/s", "cons_rps", 0, False, "ratio"),
        ("Fixed-rate produce avg latency, ms", "lat_avg", 2, False, "added"),
        ("Fixed-rate produce p50 latency, ms", "lat_p50", 0, False, "added"),
        ("Fixed-rate produce p99 latency, ms", "lat_p99", 0, True, "added"),
        ("Fixed-rate produce p99.9 latency, ms", "lat_p999", 0, False, "added"),
        ("kseal CPU seconds, produce run", "prod_cpu", 2, False, None),
        ("kseal CPU µs per record produced", "prod_us", 2, False, None),
        ("kseal CPU seconds, consume run", "cons_cpu", 2, False, None),
        ("kseal CPU µs per record consumed", "cons_us", 2, False, None),
        ("kseal peak RSS, MiB (VmHWM)", "rss", 1, False, None),
        ("CPU seconds of broker+client+kseal, produce run", "prod_total", 2, False, "ratio"),
        ("CPU seconds of broker+client+kseal, consume run", "cons_total", 2, False, "ratio"),
    ]
    out = [
        "| Metric | direct | passthrough | vs direct | encrypted | vs direct |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, key, digits, spread, kind in rows:
        cells = [label, cell(runs, "direct", key, digits, spread)]
        for c in ("passthrough", "encrypted"):
            cells.append(cell(runs, c, key, digits, spread))
            if kind == "ratio":
                cells.append(pct(ratio(runs, c, key)))
            elif kind == "added":
                cells.append(ms(added(runs, c, key)))
            else:
                cells.append("")
        if key in ("prod_cpu", "cons_cpu", "prod_us", "cons_us", "rss"):
            cells[1] = "—"
        out.append("| " + " | ".join(cells) + " |")
    return out


def undisturbed(runs):
    """Medians over the undisturbed phases only: fewer samples, less noise."""
    rows = [
        ("Produce MB/s (saturated)", "prod_mbs", 1, "ratio"),
        ("Consume MB/s (fetch phase)", "cons_mbs", 1, "ratio"),
        ("Fixed-rate produce p50 latency, ms", "lat_p50", 0, "added"),
        ("Fixed-rate produce p99 latency, ms", "lat_p99", 0, "added"),
    ]
    out = [
        "| Metric | direct | passthrough | vs direct | encrypted | vs direct |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, key, digits, kind in rows:
        q = quiet(runs, key)
        cells = [label]
        for c in CASES:
            n = count(q, c)
            cells.append("no run" if n == 0 else f"n={n}: {cell(q, c, key, digits, True)}")
            if c == "direct":
                continue
            cells.append(pct(ratio(q, c, key)) if kind == "ratio" else ms(added(q, c, key)))
        out.append("| " + " | ".join(cells) + " |")
    return out


GOALS = [
    ("Passthrough produce throughput ≥ 95% of direct", "passthrough", "prod_mbs", "ratio", lambda v: v >= 0.95),
    ("Passthrough consume throughput ≥ 95% of direct", "passthrough", "cons_mbs", "ratio", lambda v: v >= 0.95),
    ("Passthrough adds ≤ 1 ms to p99 (fixed rate)", "passthrough", "lat_p99", "added", lambda v: v <= 1.0),
    ("Encrypted produce throughput ≥ 90% of direct", "encrypted", "prod_mbs", "ratio", lambda v: v >= 0.90),
    ("Encrypted consume throughput ≥ 85% of direct", "encrypted", "cons_mbs", "ratio", lambda v: v >= 0.85),
]


def goals(runs):
    """Judged on the undisturbed phases when there are some for both sides,
    else on all runs and marked unreliable."""
    out = [
        "| Goal | All runs | Undisturbed only (n direct / n case) | Met? |",
        "|---|---:|---:|:---:|",
    ]
    for label, case, key, kind, ok in GOALS:
        f, show = (ratio, pct) if kind == "ratio" else (added, ms)
        v_all = f(runs, case, key)
        q = quiet(runs, key)
        nd, nc = count(q, "direct"), count(q, case)
        v_q = f(q, case, key) if nd and nc else None
        q_txt = "no undisturbed pair" if v_q is None else f"{show(v_q)} ({nd} / {nc})"
        if v_q is not None:
            verdict = "yes" if ok(v_q) else "**no**"
            if min(nd, nc) < 2:
                verdict += " (few samples)"
        elif v_all is not None:
            verdict = ("yes" if ok(v_all) else "**no**") + " (disturbed runs only: unreliable)"
        else:
            verdict = "no data"
        out.append(f"| {label} | {show(v_all)} | {q_txt} | {verdict} |")
    return out


def every_run(runs):
    out = [
        "| # | case | status | produce MB/s | produce rec/s | avg ms | p99 ms | consume MB/s | consume rec/s"
        " | fixed-rate avg ms | fixed-rate p99 ms | kseal CPU s (prod/cons) | broker+client CPU s (prod/cons)"
        " | kseal RSS MiB | other load, cores (prod/cons/fixed-rate) | value at rest |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for i, r in enumerate(runs, 1):
        cpu = "—" if r["case"] == "direct" else f"{r['prod_cpu']} / {r['cons_cpu']}"
        rss = "—" if r["case"] == "direct" else r["rss"]
        bc = "—"
        pb, pc, cb, cc = (num(r[k]) for k in ("prod_broker", "prod_client", "cons_broker", "cons_client"))
        if None not in (pb, pc, cb, cc):
            bc = f"{pb + pc:.2f} / {cb + cc:.2f}"
        status = r["status"] + (", disturbed" if r["noisy"] else "")
        out.append("| " + " | ".join([
            str(i), r["case"], status,
            rnd(r["prod_mbs"], 1), rnd(r["prod_rps"], 0), rnd(r["prod_avg"], 1), r["prod_p99"],
            rnd(r["cons_mbs"], 1), rnd(r["cons_rps"], 0),
            rnd(r["lat_avg"], 2), r["lat_p99"], cpu, bc, rss,
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


def section(meta, runs, micro_path):
    ok_cases = {r["case"] for r in runs if r["status"] == "OK"}
    failed = [c for c in CASES if c not in ok_cases]
    nfail = sum(1 for r in runs if r["status"] != "OK")
    out = [
        BEGIN,
        "<!-- Generated by scripts/bench.sh: edits between these markers are overwritten. -->",
        "",
        f"## Results of the last run ({meta.get('date', '?')})",
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
        f"| Kafka | Apache Kafka {meta.get('kafka', '?')}, 1 broker (KRaft, combined broker+controller) |",
        f"| Java | {meta.get('java', '?')} |",
        f"| Go | {meta.get('go', '?')} |",
        f"| Broker JVM | `{meta.get('broker_jvm', '?')}` |",
        f"| Client JVM | `{meta.get('client_jvm', '?')}` |",
        f"| Load average (1/5/15 min) | {meta.get('load_start', '?')} at start, {meta.get('load_end', '?')} at end |",
        "",
        f"Workload: {int(meta.get('records', '0')):,} records of {meta.get('record_size', '?')} B per throughput run"
        f" (`--throughput -1`, producer defaults: acks=all, linger and batch size default), consumed back"
        f" with ConsumerPerformance; then {int(meta.get('lat_records', '0')):,} records at a fixed"
        f" {meta.get('lat_rate', '?')} records/s for latency (the first {meta.get('lat_warmup', '?')}"
        " are the tool's warm-up and not in the numbers). A fresh topic with"
        f" {meta.get('partitions', '?')}"
        f" partitions per run, {meta.get('reps', '?')} runs per case, interleaved.",
        "",
    ]
    if failed or nfail:
        out += [
            f"**{nfail} run(s) failed**" + (f"; no successful run for: {', '.join(failed)}" if failed else "") + ".",
            "",
        ]
    noisy = sum(1 for r in runs if r["noisy"])
    out += ["### Summary (median of all runs; min–max in brackets)", ""]
    if noisy:
        out += [
            f"**{noisy} of {len(runs)} runs were disturbed**: other processes used more than"
            f" {NOISY_CORES} cores during at least one of their phases (see the per-run table), so"
            " the throughput and latency medians below mix in other jobs' load. The kseal CPU and"
            " RSS rows depend much less on it. The next table keeps only undisturbed phases.",
            "",
        ]
    out += summary(runs)
    out += [
        "",
        f"### Undisturbed phases only (other load ≤ {NOISY_CORES} cores during that phase)",
        "",
    ]
    out += undisturbed(runs)
    out += ["", "### Goals", ""]
    out += goals(runs)
    out += [
        "",
        "### Every run, in the order it ran",
        "",
        "\"Other load\" is the average number of cores used during that run by processes that"
        " are not part of the benchmark (machine CPU time from /proc/stat minus broker, client and"
        f" kseal CPU time); runs above {NOISY_CORES} cores are marked disturbed.",
        "",
    ]
    out += every_run(runs)
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
    out += ["", END]
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    meta = read_meta(sys.argv[1])
    runs = read_runs(sys.argv[2], int(meta.get("records") or 0))
    text = section(meta, runs, sys.argv[3])
    out = sys.argv[4]
    try:
        with open(out) as f:
            doc = f.read()
    except FileNotFoundError:
        doc = ""
    b, e = doc.find(BEGIN), doc.find(END)
    if b >= 0 and e > b:
        rest = doc[e + len(END):].lstrip("\n")
        doc = doc[:b] + text + ("\n" + rest if rest else "")
    else:
        doc = "# kseal benchmarks\n\n" + text
    with open(out, "w") as f:
        f.write(doc)
    # The gist on stdout, for whoever ran `make bench`.
    print("\n".join(summary(runs) + [""] + undisturbed(runs) + [""] + goals(runs)))


if __name__ == "__main__":
    main()
