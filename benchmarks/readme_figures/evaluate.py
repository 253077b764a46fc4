"""``augstudio evaluate`` on the bundled wafer maps, as the README and docs/report_example/README.md show it:
the command in a subprocess, then the table (and the example's curves.png and numbers) from the report's
results.json."""

from __future__ import annotations

import json

from . import ROOT, figure

EXAMPLE = ROOT / "docs" / "report_example"
ARGS = ["--data", "resources/samples/wafers", "--recipes", "resources/recipes/wafer.yaml",
        "docs/report_example/wafer_d4.yaml", "--epochs", "30", "--seeds", "5"]
DESCRIBE = {"no augmentation": "no augmentation", "wafer": "wafer (flips + rotation)",
            "wafer_d4": "wafer_d4 (lossless d4)"}


def _pm(d: dict) -> str:
    return f"{d['mean']:.3f} ± {d['std']:.3f}"


def _p(v) -> str:
    return "n/a" if v is None or v != v else f"{v:.2f}" if v >= 0.01 else f"{v:.3f}"


def readme_table(res: dict) -> str:
    comps = {c["arm"]: c for c in res["comparisons"]}
    lines = ["| arm | accuracy | NLL | ECE | vs none (paired) | verdict |", "|---|---|---|---|---|---|"]
    for arm in res["arms"]:
        s, c = arm["summary"], comps.get(arm["name"])
        vs = "—" if c is None else f"{c['accuracy']['mean_diff']:+.3f}, p = {_p(c['accuracy']['p'])}"
        verdict = "baseline" if c is None else c["accuracy"]["verdict"]
        lines.append(f"| {DESCRIBE.get(arm['name'], arm['name'])} | {_pm(s['accuracy'])} | {_pm(s['nll'])} | "
                     f"{_pm(s['ece'])} | {vs} | {verdict} |")
    return "\n".join(lines)


def example_table(res: dict) -> str:
    from augstudio.core.workflows.report import markdown_table

    return markdown_table(res)


def reading(res: dict) -> str:
    """The 'how to read it' paragraph of the example, from the numbers."""
    n_val = len(res["split"]["val"])
    comps = res["comparisons"]
    acc = " and ".join(_p(c["accuracy"]["p"]) for c in comps)
    nll = " and ".join(f"{c['nll']['mean_diff']:+.3f}, p = {_p(c['nll']['p'])}, {c['nll']['verdict']}" for c in comps)
    beyond = [c["arm"] for c in comps if c["accuracy"]["verdict"] != "within noise"]
    verdict = ("neither recipe changes accuracy beyond noise" if not beyond else
               f"{', '.join(beyond)} changes accuracy beyond noise")
    classes = res["classes"]
    per = [min(arm["summary"]["per_class_accuracy"][k] for arm in res["arms"]) for k in range(len(classes))]
    easy = [c for c, v in zip(classes, per) if v >= 0.999]
    hard = sorted(zip(per, classes))[:2]
    seeds = res["config"]["seeds"]
    n_seeds = len(seeds) if isinstance(seeds, list) else seeds
    return (f"How to read it: on {n_val} validation maps one map is {1 / n_val:.3f} of accuracy; {verdict} (paired "
            f"t-test over the {n_seeds} seeds, p = {acc}). The paired NLL differences against no augmentation: {nll}. "
            f"Classes learnt perfectly in every arm: {', '.join(easy) or 'none'}; the hardest: "
            f"{hard[0][1]} and {hard[1][1]} (lowest per-class accuracy {hard[0][0]:.2f} and {hard[1][0]:.2f}). A "
            f"real answer needs more data than the {len(res['split']['train']) + n_val} bundled maps: run the same "
            f"command on your own folder.")


@figure("evaluate", "`augstudio evaluate` on the bundled wafer maps, 3 arms x 5 seeds x 30 epochs (also "
        "docs/report_example/)", minutes=12)
def evaluate(ctx) -> str:
    out = ctx.tmp / "wafer_report"
    ctx.cli("evaluate", *ARGS, "--device", "cpu", "--threads", "1", "--report", out)
    res = json.loads((out / "results.json").read_text())
    cmd = "augstudio evaluate " + " ".join(ARGS) + " --threads 1 --report wafer_report"
    ctx.copy(out / "curves.png", EXAMPLE / "curves.png")
    cfg = res["config"]
    shown = cmd.replace(" --", " \\\n    --")
    ctx.write_block(EXAMPLE / "README.md", "evaluate_run", (
        f"Made with\n\n```\n{shown}\n```\n\n"
        f"on the bundled sample dataset ({len(res['classes'])} defect classes, 64 x 64 palette PNGs), on the CPU "
        f"with one torch thread ({res['seconds']:.0f} s). The split is stratified and fixed (`--split-seed "
        f"{cfg['split_seed']}`): {len(res['split']['train'])} training and {len(res['split']['val'])} validation "
        f"maps, the same for every arm and seed."))
    ctx.write_block(EXAMPLE / "README.md", "evaluate_table", example_table(res))
    ctx.write_block(EXAMPLE / "README.md", "evaluate_reading", reading(res))
    return (f"`{cmd}` ({len(res['split']['val'])} validation maps, mean ± std over 5 seeds):\n\n" + readme_table(res)
            + "\n\n![curves](docs/report_example/curves.png)")
