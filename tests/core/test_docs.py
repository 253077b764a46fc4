from augstudio.cli import main
from augstudio.core.ops import all_batch_ops, all_ops
from augstudio.core.workflows.docs import op_help, ops_table_markdown


def test_ops_table_lists_every_declared_op_and_parameter():
    table = ops_table_markdown()
    for name, cls in {**all_ops(), **all_batch_ops()}.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
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
