"""Write the figures of a bench run into docs/performance.md and draw its chart.

    python bench/report.py docs/bench-results.json docs/performance.md docs/performance.png

Only the part between the ``bench:begin`` and ``bench:end`` markers is replaced; the
explanations around it are written by people. Needs matplotlib (the ``bench`` extra) for
the chart; without it the table is still written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BEGIN = "<!-- bench:begin (written by bench/report.py) -->"
END = "<!-- bench:end -->"


def _num(value: Any, fmt: str = ",.0f") -> str:
    return format(value, fmt) if isinstance(value, int | float) else "–"


def _pairs(ratios: list[float] | None) -> str:
    """``; pairs 1.03/1.05/1.26``: the back-to-back rounds a median ratio is taken from."""
    if not ratios or len(ratios) < 2:
        return ""
    return "; pairs " + "/".join(f"{r:.2f}" for r in ratios)


def tables(data: dict[str, Any]) -> str:
    out = [f"Machine: {data.get('machine', 'unknown')}.", ""]
    engine = data.get("engine")
    if engine:
        out += [
            (
                f"**Engine** — {engine['tasks']} tasks × 5 no-op stages"
                if engine.get("tasks")
                else f"**Engine** — N tasks × 5 no-op stages, N sized for each system to run "
                f"≥ {engine.get('seconds', 20):g} s"
            )
            + ", each system in the same run (bench/engine.py):",
            "",
            "| system | tasks done | stage transitions | seconds | transitions/s "
            "| clustertasks (SQLite) ÷ this |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, f in engine["systems"].items():
            if "transitions_per_s" not in f:
                why = f.get("skipped") or f"could not run: {f.get('error', '')[:120]}"
                out.append(f"| {name} | {why} | | | | |")
                continue
            out.append(
                f"| {name} | {f['tasks']} | {f['transitions']} | {f['seconds']:.2f} | "
                f"{f['transitions_per_s']:,.0f} | {f['clustertasks_sqlite_ratio']:.2f}× |"
            )
        out.append("")
    read = data.get("read_path")
    if read:
        workers = read.get("workers", 1)
        out += [
            "**Read path** — the floor (bench/floor.py: FastAPI and one SQLite primary-key "
            "lookup of the stored document, uvicorn with httptools and uvloop, one process) "
            f"and `clustertasks serve --no-executor --workers {workers}` on SQLite, each "
            "loaded from a separate process (bench/read_path.py, bench/load.py"
            + (" driving wrk" if read.get("client") == "wrk" else "")
            + ")"
            + (f"; measured on {read['machine']}" if read.get("machine") else "")
            + ":",
            "",
            "| request | requests/s | p50 ms | p99 ms | server CPU µs/request |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        rows = [
            (f"floor: FastAPI + SQLite lookup, {read['small']:,} documents", "floor"),
            ("GET /healthz", "healthz"),
            (f"DescribeTaskInfo, {read['small']:,} tasks stored", "describe_small"),
            ("DescribeTaskInfo, task with 1 task_result", "describe_1_result"),
            ("DescribeTaskInfo, task with many task_result", "describe_many_results"),
            ("GET /healthz, `--auth off`", "healthz_auth_off"),
            (f"DescribeTaskInfo, {read['small']:,} tasks, `--auth off`", "describe_small_auth_off"),
            (
                f"DescribeTaskInfo, {read['small']:,} tasks (again, before the large store)",
                "describe_small_again",
            ),
            (f"DescribeTaskInfo, {read['large']:,} tasks stored", "describe_large"),
        ]
        for label, key in rows:
            if key not in read:
                continue
            f = read[key]
            out.append(
                f"| {label} | {_num(f.get('rps'))} | {_num(f.get('p50_ms'), '.2f')} | "
                f"{_num(f.get('p99_ms'), '.2f')} | {_num(f.get('server_cpu_us'))} |"
            )
        r = read["ratios"]
        pairs = read.get("round_ratios", {})
        parts = [
            f"signed DescribeTaskInfo ÷ floor = **{_num(r.get('describe_vs_floor_rps'), '.2f')}** "
            f"(target ≥ 1.0{_pairs(pairs.get('signed'))})",
            f"÷ healthz = **{r['describe_vs_healthz_rps']:.2f}** "
            f"(target ≥ 0.6{_pairs(pairs.get('signed_vs_healthz'))})",
            "`--auth off` ÷ floor = "
            f"**{_num(r.get('describe_auth_off_vs_floor_rps'), '.2f')}** "
            f"(target ≥ 1.2{_pairs(pairs.get('auth_off'))})",
        ]
        if "p99_large_vs_small" in r:
            parts.append(
                f"p99 at {read['large']:,} ÷ {read['small']:,} tasks = "
                f"**{r['p99_large_vs_small']:.2f}×** (target ≤ 1.5)"
            )
        parts.append(
            f"p99 many ÷ 1 task_result = **{r['p99_many_results_vs_1']:.2f}×** (target ≤ 10)"
        )
        out += ["", f"Ratios ({workers} API worker processes): " + "; ".join(parts) + "."]
        if read.get("db_bytes_large"):
            out[-1] += (
                f" Storing a task through the store: {read['store_ms_per_task']:.1f} ms; bulk "
                f"copy: {read['copy_tasks_per_s']:,.0f} tasks/s; database at "
                f"{read['large']:,} tasks: {read['db_bytes_large'] / 1e6:,.0f} MB."
            )
        out.append("")
    floods = [(k, data[k]) for k in ("flood-poll", "flood-stream") if k in data]
    if floods:
        out += [
            "**Waiting clients** — another client's signed DescribeTaskInfo (one connection, "
            "a request every 20 ms) before, while a crowd connects, while it is held, and "
            "after; DescribeTaskInfo's requests/s (16 connections) before and while the crowd "
            "is held; the server's RSS (bench/flood.py):",
            "",
            "| crowd | answers | p50 / p99 ms before | p99 ms while connecting | "
            "p50 / p99 ms while held | requests/s before / held / after | "
            "RSS MiB before / peak / held / after |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for _key, f in floods:
            kind = "long-polls (wait=60)" if f["kind"] == "poll" else "event streams"
            answers = ", ".join(f"{v:,} {k}" for k, v in sorted(f["flood"]["answers"].items()))
            base, held = f["prober_baseline"], f.get("prober_while_held", {})
            rss = f["rss_mib"]
            rate = f.get("describe_rate") or {}
            rates = "—"
            if rate:
                rates = f"{rate['before_rps']:,} / {rate['held_rps']:,}"
                if "after_rps" in rate:
                    rates += (
                        f" / {rate['after_rps']:,} ({rate['held_vs_around']:.2f}× the mean "
                        "before and after)"
                    )
                else:
                    rates += f" ({rate['held_vs_before']:.2f}×)"
            out.append(
                f"| {f['waiters']:,} {kind} | {answers} | {base['p50_ms']:.1f} / "
                f"{base['p99_ms']:.1f} | {f['prober_during_flood']['p99_ms']:.1f} | "
                f"{_num(held.get('p50_ms'), '.1f')} / {_num(held.get('p99_ms'), '.1f')} | "
                f"{rates} | {rss['before']:.0f} / {rss['peak_during']:.0f} / "
                f"{_num(rss.get('held'), '.0f')} / {rss['after']:.0f} |"
            )
        out.append("")
    e2e = data.get("e2e")
    if e2e:
        done = e2e["states"].get("success", 0)
        out += [
            "**End to end** — concurrent ScaleClusterNodePool at `--sim-speed 0` (bench/e2e.py):",
            "",
            "| scale-outs × nodes | wall s | tasks ok | nodes/s | peak RSS (VmHWM) | RSS before |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| {e2e['scale_outs']} × {e2e['nodes']} | {e2e['seconds']:.2f} | {done} | "
            f"{done * e2e['nodes'] / e2e['seconds']:.1f} | "
            f"{(e2e['peak_rss_kib'] or 0) / 1024:.0f} MiB | "
            f"{(e2e['rss_before_kib'] or 0) / 1024:.0f} MiB |",
            "",
        ]
    return "\n".join(out)


def chart(data: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    engine = data.get("engine", {}).get("systems", {})
    names = [n for n, f in engine.items() if "transitions_per_s" in f]
    rates = [engine[n]["transitions_per_s"] for n in names]
    ax = axes[0]
    colours = ["#2b7bba" if n.startswith("clustertasks") else "#999999" for n in names]
    ax.barh(names, rates, color=colours)
    ax.set_xscale("log")
    ax.set_xlabel("stage transitions/s (log scale, higher is better)")
    ax.set_title("Engine: tasks × 5 no-op stages")
    for y, rate in enumerate(rates):
        ax.text(rate, y, f" {rate:,.0f}", va="center", fontsize=8)
    if rates:
        ax.set_xlim(right=max(rates) * 4)  # room for the largest bar's figure
    ax.invert_yaxis()
    read = data.get("read_path", {})
    labels, rps, p99 = [], [], []
    for label, key in (
        ("floor", "floor"),
        ("/healthz", "healthz"),
        (f"signed\n{read.get('small', 0):,}\ntasks", "describe_small"),
        (f"signed\n{read.get('large', 0):,}\ntasks", "describe_large"),
        ("signed\n1 result", "describe_1_result"),
        ("signed\nmany\nresults", "describe_many_results"),
        (f"--auth off\n{read.get('small', 0):,}\ntasks", "describe_small_auth_off"),
    ):
        if key in read:
            labels.append(label)
            rps.append(read[key]["rps"])
            p99.append(read[key]["p99_ms"])
    ax = axes[1]
    ax.bar(labels, rps, color=["#999999" if label == "floor" else "#2b7bba" for label in labels])
    ax.set_ylabel("requests/s (bars)")
    ax.set_title("Read path: DescribeTaskInfo on clustertasks serve, SQLite")
    ax.tick_params(axis="x", labelsize=8)
    twin = ax.twinx()
    twin.plot(labels, p99, "o-", color="#d95f02")
    twin.set_ylabel("p99 ms (line)", color="#d95f02")
    fig.suptitle(data.get("machine", ""), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    results, doc, png = (Path(a) for a in sys.argv[1:])
    data = json.loads(results.read_text())
    block = f"{BEGIN}\n{tables(data)}\n{END}"
    text = doc.read_text() if doc.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)
    drew = chart(data, png)
    print(f"wrote {doc}" + (f" and {png}" if drew else " (no matplotlib: no chart)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
