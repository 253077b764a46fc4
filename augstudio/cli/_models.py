"""The model arguments every command that takes a model shares (``--model``, ``--arch``, ``--allow-code``,
``--device``), so bringing your own model reads the same everywhere."""

from __future__ import annotations

MODEL_HELP = ("a file from augstudio.save_model (.pt2), a checkpoint (.pt: state dict + architecture), a "
              "torchvision name (resnet18, resnet18:IMAGENET1K_V1), or a TorchScript file (with --allow-code)")


def add_model_args(p, required: bool = False, model_help: str = MODEL_HELP, short: bool = True) -> None:
    p.add_argument("--model", *(("-m",) if short else ()), required=required, default=None, help=model_help)
    p.add_argument("--arch", default=None,
                   help="architecture of a bare state-dict --model file: a torchvision name (resnet18) or your "
                        "own class as package.module:Class (with --allow-code)")
    p.add_argument("--allow-code", action="store_true",
                   help="allow files and classes that run code: a TorchScript --model, an --arch "
                        "package.module:Class (trusted sources only)")
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:1, mps or auto (default auto: CUDA, else MPS, else CPU)")


def load_model_arg(args):
    """The LoadedModel named by ``--model`` (``ModelError`` -> exit code 2, like any bad argument)."""
    from augstudio.core.models.loading import load_model  # deferred: torch

    return load_model(args.model, device=args.device, allow_code=args.allow_code, arch=args.arch)
