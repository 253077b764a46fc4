"""The ``augstudio`` command. Each subcommand lives in its own module in this package and registers
itself with ``add_parser(subparsers)`` and ``run(args) -> exit code``.

Exit codes: 0 done, 2 bad arguments, recipe, dataset or output folder, 1 anything else (an interrupted
job, a full disk, an I/O error).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from augstudio.core.base.errors import (
    AugstudioError,
    DatasetError,
    JobCancelled,
    ModelError,
    OutputError,
    ParamError,
    RecipeError,
    WriteError,
)
from augstudio.core.base.version import __version__

BAD_INPUT = (RecipeError, ParamError, DatasetError, OutputError, ModelError)  # exit code 2


def _commands():
    mods = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            mods.append(importlib.import_module(f"{__name__}.{info.name}"))
    return sorted(mods, key=lambda m: getattr(m, "ORDER", 50))


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="augstudio", description="See and ship image data augmentation.")
    parser.add_argument("--version", action="version", version=f"augstudio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    runners = {}
    for mod in _commands():
        name = mod.add_parser(sub)
        runners[name] = mod.run
    return parser, runners


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, runners = build_parser()
    if not argv or (argv[0] not in runners and argv[0] not in ("-h", "--help", "--version")):
        argv = ["gui", *argv]  # `augstudio` and `augstudio PATH` open the app
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        rc = int(runners[args.command](args) or 0)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:  # the reader went away (`augstudio ops | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except WriteError as e:  # the arguments were fine; writing failed part-way (disk full, I/O)
        print(f"augstudio {args.command}: error: {e}", file=sys.stderr)
        return 1
    except BAD_INPUT as e:
        print(f"augstudio {args.command}: error: {e}", file=sys.stderr)
        return 2
    except JobCancelled as e:
        print(f"augstudio {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"augstudio {args.command}: interrupted", file=sys.stderr)
        return 1
    except AugstudioError as e:
        print(f"augstudio {args.command}: error: {e}", file=sys.stderr)
        return 1
