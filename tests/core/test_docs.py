import pytest

from augstudio.cli import main
from augstudio.core.ops import all_batch_ops, all_ops
from augstudio.core.workflows.docs import op_help, ops_table_markdown


def test_ops_table_lists_every_declared_op_and_parameter():
    table = ops_table_markdown()
    for name, cls in list(all_ops().items()) + list(all_batch_ops().items()):  # one_of is in both
        row = next(line for line in table.splitlines() if line.startswith(f"| `{name}` | {cls.family} |"))
        for p in cls.params:
            assert f"`{p.name}`" in row


def test_op_help_and_cli(capsys):
    text = op_help("rotate")
    assert "degrees" in text and "-360 .. 360" in text
    assert main(["ops", "rotate"]) == 0
    assert "interpolation" in capsys.readouterr().out
    assert main(["ops", "no_such_op"]) == 2
    assert "unknown" in capsys.readouterr().err


def test_readme_ops_table_is_current():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("<!-- ops-table:start -->")
    end = readme.index("<!-- ops-table:end -->")
    assert readme[start:end].strip().split("\n", 1)[1].strip() == ops_table_markdown().strip(), (
        "README ops table is stale: run `python -m augstudio.core.workflows.docs --update-readme`")


def test_shipped_catalogue_equals_the_declarations():
    """`augstudio ops` reads the shipped catalogue (no torch); it must say what the declarations say."""
    from augstudio.core.ops import catalogue

    assert catalogue.load() == catalogue.build(), (
        "the ops catalogue is stale: run `python -m augstudio.core.workflows.docs --update-readme`")


def test_ops_suggests_the_closest_op_of_either_kind(capsys):
    assert main(["ops", "rotat"]) == 2
    err = capsys.readouterr().err
    assert "unknown op 'rotat'" in err and "Closest: rotate" in err and "batch op" not in err
    assert main(["ops", "mixup"]) == 0
    assert "batch op (under 'batch:')" in capsys.readouterr().out


def test_cli_starts_without_torch():
    """`augstudio --version`, `augstudio ops` and every command's --help answer without importing torch
    (it takes seconds to import): the start-up stays under a second."""
    import subprocess
    import sys

    code = ("import sys\nfrom augstudio.cli import main, build_parser\n_, runners = build_parser()\n"
            "for argv in [['--version'], ['ops'], ['ops', 'rotate'], ['--help']] + "
            "[[c, '--help'] for c in runners]:\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO TORCH', file=sys.stderr)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stderr.strip().splitlines()[-1] == "NO TORCH", res.stderr[-2000:]


def test_a_closed_pipe_ends_quietly():
    """`augstudio ops --markdown | head -c 5`: no BrokenPipeError traceback, exit 0."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "augstudio", "ops", "--markdown"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.read(5)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0 and "Traceback" not in err, err


def test_the_readmes_adding_an_op_example_runs_as_written():
    """The README's op class registers, validates its parameter, runs in a recipe with the seed path, and
    leaves targets alone; it is removed from the registry afterwards (other tests list every op)."""
    import re
    from pathlib import Path

    import torch

    from augstudio.core.engine.recipe import load_recipe
    from augstudio.core.ops import REGISTRY

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Adding an op"):readme.index("## Dependencies, and why")]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    try:
        exec(compile(code, "README.md (Adding an op)", "exec"), {})
        x = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16).repeat(3, 1, 1)
        recipe = load_recipe({"seed": 1, "steps": [{"op": "keep_top_bits", "bits": [2, 2]}]})
        out, t = recipe.apply(x, item="a.png", targets={"boxes": [[1, 2, 5, 6]]})
        assert torch.equal(out, x & 0xC0) and t["boxes"].tolist() == [[1.0, 2.0, 5.0, 6.0]]
        with pytest.raises(Exception, match="bits"):
            load_recipe({"steps": [{"op": "keep_top_bits", "bits": [0, 9]}]})
    finally:
        REGISTRY.pop("keep_top_bits", None)


def test_the_readme_recipe_file_loads_and_shows_the_targets_defaults():
    """The README's example recipe is a valid recipe, and its targets: block shows the real defaults."""
    from pathlib import Path

    import yaml

    from augstudio.core.engine.recipe import Recipe
    from augstudio.core.engine.target_options import TargetOptions

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## The recipe file", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    data = yaml.safe_load(block)
    recipe = Recipe.from_dict(data, strict=True)
    assert recipe.targets == TargetOptions() and set(data["targets"]) == set(TargetOptions().__dataclass_fields__) - {
        "fill_mask"}
    assert [s.op for s in recipe.steps] == ["hflip", "rotate", "color_jitter", "random_resized_crop"]
