"""The comparison as a Markdown table (``comparison.md``): accuracies, spreads, failures, how settings were chosen."""

from __future__ import annotations


def markdown_table(summary: dict) -> str:
    """The comparison as a Markdown table (accuracies and BWT in points)."""
    several = any(m["average_accuracy"]["n"] > 1 for m in summary["methods"].values())
    spread = "mean ± std over seeds" if several else "one seed"
    head = (f"Benchmark `{summary['benchmark']}`, model `{summary['model']}`, {summary['n_tasks']} tasks, "
            f"{summary['epochs']} epochs per task, seeds {summary['seeds']}. ACC and BWT in % ({spread}); "
            "seconds: training time per run.\n\n")
    lines = ["| method | ACC (%) | BWT (points) | train s | parameters | storage (MB) | seeds |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for method, m in summary["methods"].items():
        acc, bwt, sec = m["average_accuracy"], m["backward_transfer"], m["train_seconds"]

        def plus_minus(stat: dict) -> str:  # no "± 0.00" for a single seed: there is no spread to show
            return f" ± {100 * stat['std']:.2f}" if stat["n"] > 1 else ""

        lines.append(
            f"| {method} | {100 * acc['mean']:.2f}{plus_minus(acc)} | {100 * bwt['mean']:+.2f}{plus_minus(bwt)} | "
            f"{sec['mean']:.0f} | {m['parameters']:,} | {m['storage_bytes'] / 1e6:.2f} | {acc['n']} |")
    per_task = ["", "Final test accuracy per task (%, mean over seeds):", "",
                "| method | " + " | ".join(f"T{j}" for j in range(summary["n_tasks"])) + " |",
                "|---|" + "---:|" * summary["n_tasks"]]
    for method, m in summary["methods"].items():
        per_task.append(f"| {method} | " + " | ".join(f"{100 * v:.1f}" for v in m["final_accuracy_per_task"]) + " |")
    failed = [f"- `{m}` seed {f['seed']} stopped: {f['error']}" for m, fs in summary.get("failures", {}).items()
              for f in fs]
    if failed:
        per_task += ["", "Runs that could not finish (left out of the tables):", "", *failed]
    return head + "\n".join(lines + per_task + settings_lines(summary) + machine_lines(summary)) + "\n"


def machine_lines(summary: dict) -> list[str]:
    """Where the runs ran: one line on one machine; on several, which runs ran where (their figures differ by the
    processors' rounding as well as by the methods)."""
    where = summary.get("machines") or {}
    if len(where) == 1:
        return ["", f"Every run ran on {next(iter(where))}."]
    if not where:
        return []
    lines = ["", f"The runs ran on {len(where)} machines, whose processors round differently (the same run gives "
             "other figures on another processor): compare rows from one machine.", ""]
    return lines + [f"- {machine}: {', '.join(runs)}" for machine, runs in where.items()]


def _values(values: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in values.items())


def settings_lines(summary: dict) -> list[str]:
    """Whether each method's settings were tuned, and how (space, trials, chosen values)."""
    record = summary.get("tuning") or {}
    if not record:
        return []
    if not any("trials_asked" in r for r in record.values()):
        given = [f"`{m}` {_values(r['options'])}" for m, r in record.items() if r.get("options")]
        return ["", "Settings: not tuned; every method runs with the shared settings above and its own defaults"
                + (f", options given: {'; '.join(given)}." if given else ".")]
    first = next(iter(record.values()))
    length = f", its first {first['tasks']} tasks" if first.get("tasks") else ""
    lines = ["", f"Settings per method, tuned with --tune {first['trials_asked']} on a tuning stream (the benchmark "
             f"at seed {first['seed']}{length}, not an evaluation seed); criterion: {first['criterion']}:", ""]
    for method, r in record.items():
        space = " x ".join(f"{k} {{{', '.join(f'{v:g}' for v in vs)}}}" for k, vs in r["space"].items())
        how = f"{r['trials']} of the {r['space_size']} settings of {space}" if r["space"] else ""
        kept = f"; kept as given: {', '.join(r['fixed'])}" if r.get("fixed") else ""
        short = [str(row["trial"]) for row in r.get("results", []) if row.get("fits_evaluation") is False]
        if short:
            kept += (f"; trial{'s' if len(short) > 1 else ''} {', '.join(short)} ranked last: "
                     f"{'their' if len(short) > 1 else 'its'} capacity forecast does not last the "
                     f"{summary['n_tasks']} tasks")
        if r.get("tuned"):
            lines.append(f"- `{method}`: tuned, {how}: chose {_values(r['chosen'])} (validation ACC "
                         f"{100 * r['chosen_validation_accuracy']:.2f} %){kept}")
        else:
            lines.append(f"- `{method}`: not tuned ({r.get('reason', '')}){': ' + how if how else ''}{kept}")
    return lines
