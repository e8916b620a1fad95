"""The comparison table and plot (issue 15, plots): no "± 0.00" for one seed, spread over seeds per task."""

import json

import matplotlib

from clnp.experiments.compare import CompareConfig, compare, markdown_table, plot

matplotlib.use("Agg")


def test_one_seed_prints_no_spread_and_several_seeds_give_per_task_error_bars(tmp_path, monkeypatch):
    config = CompareConfig(benchmark="split-digits", methods=["finetune"], seeds=2, tasks=2, epochs=1, model="mlp:8")
    summary = compare(config, tmp_path)
    m = summary["methods"]["finetune"]
    assert len(m["final_accuracy_per_task_std"]) == 2 and any(s > 0 for s in m["final_accuracy_per_task_std"])
    assert "±" in (tmp_path / "comparison.md").read_text()
    one = json.loads(json.dumps(summary))
    one["methods"]["finetune"]["average_accuracy"]["n"] = 1
    one["methods"]["finetune"]["backward_transfer"]["n"] = 1
    table = markdown_table(one)
    assert "±" not in table and "(one seed)" in table

    import matplotlib.pyplot as plt

    seen = {}
    real_savefig = matplotlib.figure.Figure.savefig

    def keep_axes(fig, *args, **kwargs):
        ax = fig.axes[0]
        seen["ylim"] = ax.get_ylim()
        from matplotlib.container import ErrorbarContainer

        seen["errorbars"] = sum(isinstance(c, ErrorbarContainer) for c in ax.containers)
        legend = ax.get_legend()
        fig.canvas.draw()
        box, axes_box = legend.get_window_extent(), ax.get_window_extent()
        seen["legend_above_axes"] = box.y0 >= axes_box.y1 - 1
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep_axes)
    plot(summary, tmp_path / "p.png")
    plt.close("all")
    assert seen["ylim"][0] == 0 and seen["errorbars"] > 0 and seen["legend_above_axes"]
