"""The recipe: an ordered list of per-image steps, a batch stage, and a seed. Load, validate, save.

File format (YAML or JSON; other top-level keys are kept as they are)::

    augstudio_recipe: 1
    seed: 0
    steps:
      - {op: hflip, p: 0.5}
      - {op: rotate, degrees: [-15, 15]}
    batch: []
    targets: {min_visibility: 0.3}   # optional: how masks, boxes and keypoints are treated
"""

from __future__ import annotations

import copy as _copy
import difflib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from augstudio.core.base.errors import AugstudioError, RecipeError
from augstudio.core.base.keys import item_key
from augstudio.core.io.images import as_picture, atomic_write_bytes, from_picture
from augstudio.core.ops.step import Step, parse_steps

from .target_options import TargetOptions

SCHEMA_VERSION = 1
KEYS = ("augstudio_recipe", "seed", "steps", "batch", "targets")
# top-level keys that describe a recipe without changing what it does (kept as they are, no warning)
METADATA_KEYS = ("augstudio_version", "name", "description", "notes", "author", "tags")


class RecipeWarning(UserWarning):
    """Something in a recipe that is probably a mistake but does not stop it (an unknown top-level key)."""


def check_top_level_keys(data: dict, where: str = "", strict: bool = False) -> None:
    """An unknown top-level key is kept as metadata and does nothing, so a typo (``step:``) would silently
    give a recipe without augmentation: warn with the closest known key, or refuse when ``strict``."""
    for key in data:
        if key in KEYS or key in METADATA_KEYS or str(key).startswith(("x-", "x_")):
            continue
        close = difflib.get_close_matches(str(key), KEYS, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        text = (f"{where}unknown top-level key {key!r}{hint} It would be kept as metadata and do nothing. Known "
                f"keys: {', '.join(KEYS)}; for your own notes use {', '.join(METADATA_KEYS[1:])} or an x- prefix")
        if strict:
            raise RecipeError(text)
        warnings.warn(text, RecipeWarning, stacklevel=4)
@dataclass
class Recipe:
    steps: list[Step] = field(default_factory=list)
    batch: list[Step] = field(default_factory=list)
    seed: int = 0
    extra: dict = field(default_factory=dict)
    source: str | None = None  # the file it came from, for messages
    targets: TargetOptions = field(default_factory=TargetOptions)  # masks, boxes, keypoints (engine.targets)

    # -- construction / serialisation --------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str | None = None, strict: bool = False) -> Recipe:
        """``strict``: refuse unknown top-level keys instead of warning about them."""
        where = f"{source}: " if source else ""
        if not isinstance(data, dict):
            raise RecipeError(f"{where}a recipe must be a mapping with 'steps:' (and optionally 'seed:', "
                              f"'batch:'), got {type(data).__name__}")
        check_plain_data(data, where)
        check_top_level_keys(data, where, strict)
        version = data.get("augstudio_recipe", SCHEMA_VERSION)
        if isinstance(version, bool) or not isinstance(version, int):
            raise RecipeError(f"{where}'augstudio_recipe' must be the schema version number {SCHEMA_VERSION}, got {version!r}")
        if version > SCHEMA_VERSION:
            raise RecipeError(f"{where}recipe schema version {version} is newer than this augstudio understands "
                              f"({SCHEMA_VERSION}); upgrade augstudio (pip install -U augstudio)")
        if version < 1:
            raise RecipeError(f"{where}recipe schema version must be >= 1, got {version}")
        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise RecipeError(f"{where}'seed' must be a whole number 0 .. 2^63-1, got {seed!r}")
        steps = parse_steps(data.get("steps", []), where, batch=False)
        batch = parse_steps(data.get("batch", []), where, batch=True)
        targets = TargetOptions.from_dict(data.get("targets"), where)
        extra = {k: _copy.deepcopy(v) for k, v in data.items() if k not in KEYS}
        return cls(steps, batch, seed, extra, source, targets)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"augstudio_recipe": SCHEMA_VERSION, "seed": self.seed,
                             "steps": [s.to_dict() for s in self.steps],
                             "batch": [s.to_dict() for s in self.batch]}
        if self.targets.to_dict():
            d["targets"] = self.targets.to_dict()
        d.update(_copy.deepcopy(self.extra))
        return d

    def dumps(self, fmt: str = "yaml") -> str:
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2) + "\n"
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)

    def save(self, path) -> None:
        """Write YAML (.yaml/.yml) or JSON (.json) atomically."""
        path = Path(path)
        fmt = "json" if path.suffix.lower() == ".json" else "yaml"
        atomic_write_bytes(path, self.dumps(fmt).encode("utf-8"))

    def copy(self) -> Recipe:
        with warnings.catch_warnings():  # said when the recipe was loaded; a copy keeps its metadata quietly
            warnings.simplefilter("ignore", RecipeWarning)
            return Recipe.from_dict(self.to_dict(), self.source)

    def __eq__(self, other) -> bool:
        return isinstance(other, Recipe) and self.to_dict() == other.to_dict()

    # -- use ------------------------------------------------------------------------------------------
    # The engine imports torch (seconds); a Recipe is also made and edited where torch is not loaded yet
    # (browsing in the app, CLI start-up), so the engine modules are imported on first use.
    def pipeline(self):
        """The engine's ``Pipeline`` for these steps: built once (its ops validated and made) and reused
        while the steps stay as they are: it is kept with a deep copy of the steps' fields, so a step edited in
        place (nested lists too), added or removed builds a new one. Measured: building it took 70-190 us of
        every ``apply`` of the reference chain; comparing with the copy ~1 us (the steps' ``repr`` was 4).
        The comparison walks the steps beside the copy, building nothing: right after another library's call
        34 -> 19 us (a list of tuples per call, and the deferred import statement, touched cold memory)."""
        cached = self.__dict__.get("_pipeline")
        if cached is not None:
            fields, pipe = cached
            steps = self.steps
            if len(fields) == len(steps):
                for s, (op, values, p, enabled, batch) in zip(steps, fields):
                    if s.values != values or s.op != op or s.p != p or s.enabled != enabled or s.batch != batch:
                        break
                else:
                    return pipe
        from .pipeline import Pipeline  # deferred: torch

        pipe = Pipeline(self.steps)
        fields = [(s.op, s.values, s.p, s.enabled, s.batch) for s in self.steps]
        self.__dict__["_pipeline"] = (_copy.deepcopy(fields), pipe)
        return pipe

    def __getstate__(self):  # the cached pipeline is rebuilt where the recipe is unpickled, never shipped
        state = dict(self.__dict__)
        state.pop("_pipeline", None)
        return state

    def apply(self, image, item=0, copy: int = 0, categorical: bool = False, return_params: bool = False,
              root=None, targets: dict | None = None):
        """Apply the per-image steps deterministically for (seed, item, copy).

        ``image`` is a PIL image, a ``Picture`` or a uint8 ``C x H x W`` tensor; the result is of the same
        kind. ``item`` is the item's key: its path relative to the dataset root (``"cat/001.jpg"``; ``./``,
        backslashes and an absolute path under ``root`` are normalised to it), or an index; export and the
        GUI use the relative path. With ``return_params=True`` returns ``(result, records)`` where records
        lists, per step, whether it was applied and with which parameters.

        ``targets``: the image's masks, boxes and keypoints (``augstudio.core.base.targets``: a dict with any
        of mask, boxes + box_labels, keypoints + keypoint_labels); they go through the same draws as the
        pixels and come back moved: ``(result, targets)``, or ``(result, targets, records)`` where the record of
        the step that dropped a box or lost a keypoint lists it under ``"targets_lost"`` (index, reason).
        """
        pic, tag = as_picture(image, categorical=categorical)
        pipe = self.pipeline()
        if targets is not None:
            targets = self._check_targets(pipe, targets, pic.size, pic.pixels.device)
        out, records = pipe.run(pic, self.seed, item_key(item, root), copy)
        result = pipe.finish(out.pixels) if pipe.has_outputs else from_picture(out, tag)
        if targets is None:
            return (result, records) if return_params else result
        log: list = []
        moved = pipe.replay_targets(targets, records, pic.kind, pic.size, self.targets, log=log)
        note_lost(records, log)
        return (result, moved, records) if return_params else (result, moved)

    @staticmethod
    def _check_targets(pipe, targets, size, device) -> dict:
        from augstudio.core.base.targets import normalize_targets  # deferred: torch

        pipe.check_targets()
        return normalize_targets(targets, size, device)

    def apply_batch(self, x, items, copies=0, kind: str = "rgb", targets: list | None = None):
        """The per-image steps on a uint8 batch ``N x C x H x W`` (any device, e.g. for GPU training), each
        item with its own draws: item ``i`` equals ``apply(x[i], item=items[i], copy=copies[i])`` (exactly
        where the kernels are the same, within a grey level where a batched kernel rounds differently).

        ``items``: one key per image; ``copies``: one int for all or one per image. Returns
        ``(out, records)`` with ``records[i]`` the per-step records of item ``i``; with ``targets`` (one
        dict per image, see ``apply``) ``(out, moved_targets, records)``.
        """
        import torch  # deferred: torch

        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.dtype != torch.uint8:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise RecipeError(f"apply_batch needs a uint8 N x C x H x W tensor, got {getattr(x, 'dtype', '')} "
                              f"of shape {shape}")
        items = list(items)
        if len(items) != x.shape[0]:
            raise RecipeError(f"apply_batch: {x.shape[0]} images but {len(items)} item keys; give one key per image")
        copies = [int(copies)] * len(items) if isinstance(copies, int) else [int(c) for c in copies]
        pipe = self.pipeline()
        size = (int(x.shape[-2]), int(x.shape[-1]))
        if targets is not None:
            targets = list(targets)
            if len(targets) != len(items):
                raise RecipeError(f"apply_batch: {len(items)} images but {len(targets)} targets; give one dict "
                                  "(or None) per image")
            targets = [self._check_targets(pipe, t, size, x.device) for t in targets]
        out, records = pipe.run_batch(x, self.seed, items, copies, kind)
        out = pipe.finish(out) if pipe.has_outputs else out
        if targets is None:
            return out, records
        moved = []
        for t, recs in zip(targets, records):
            log: list = []
            moved.append(pipe.replay_targets(t, recs, kind, size, self.targets, log=log))
            note_lost(recs, log)
        return out, moved, records

    def check_no_batch_stage(self, what: str) -> None:
        """A per-sample helper cannot apply the batch stage: refuse rather than drop it without a word."""
        if any(s.enabled for s in self.batch):
            ops = ", ".join(s.op for s in self.batch if s.enabled)
            raise RecipeError(f"{what} applies the per-image steps only, and this recipe has a batch stage ({ops}) "
                              "that would be dropped: mix in the training loop with recipe.batch_transform("
                              "num_classes), or in the DataLoader with collate_fn=recipe.collate_fn(num_classes), "
                              "and pass batch_stage_elsewhere=True here")

    def sample_transform(self, output: str | None = None, batch_stage_elsewhere: bool = False):
        """A callable for a torchvision dataset's ``transform=``: fresh randomness on every call.

        Randomness comes from the recipe's seed, ``torch.initial_seed()`` (which differs per DataLoader
        worker and epoch, and follows ``torch.manual_seed`` in the main process) and a call counter, so
        runs are reproducible without touching the global RNG, but a call is not tied to an item: for
        export's pixels per item use ``dataset()``. ``output``: ``"tensor"`` (what the recipe's output steps
        make, else uint8 ``C x H x W``), ``"pil"``, or None (a tensor when the recipe ends with output steps,
        else the input's type). A recipe with a batch stage is refused unless ``batch_stage_elsewhere``.
        """
        from .training import SampleTransform  # deferred: torch

        if not batch_stage_elsewhere:
            self.check_no_batch_stage("sample_transform()")
        return SampleTransform(self, output=output)

    def batch_transform(self, num_classes: int, model=None, device=None):
        """``(images, labels) -> (images, soft_labels)`` for the recipe's batch stage, for a training loop.

        Each call draws fresh randomness from the recipe seed, ``torch.initial_seed()`` and a call counter.
        Pass ``key=`` (an int, a string, or a tuple of them naming the batch) to make a batch reproducible
        from the recipe seed and the key alone, in any process::

            mix = recipe.batch_transform(num_classes=10, model=model)
            for epoch in range(epochs):
                for step, (images, labels) in enumerate(loader):
                    images, soft = mix(images, labels, key=(epoch, step))
                    loss = -(soft * model(images).log_softmax(1)).sum(1).mean()
        """
        from .training import BatchTransform  # deferred: torch

        return BatchTransform(self, num_classes, model=model, device=device)

    def dataset(self, source, copy: int | None = None, epoch: int = 0, output: str | None = None,
                batch_stage_elsewhere: bool = False, targets: bool = False):
        """A dataset whose item i is this recipe applied to item i, keyed by its relative path and the copy:
        ``copy=k`` gives ``augstudio export``'s copy k exactly; without it the copy is the epoch
        (``ds.set_epoch(e)``), fresh draws each epoch. ``source``: a folder, a torchvision ImageFolder, or a
        dataset with ``item_key(i)``. See ``augstudio.core.engine.training.RecipeDataset``. A recipe with a
        batch stage is refused unless ``batch_stage_elsewhere`` (mix with ``collate_fn`` / ``batch_transform``).

        With targets (``targets=True`` and a COCO / YOLO / VOC / mask-folder dataset, or a ``TargetDataset``
        from ``augstudio.core.io.targets.read_targets``) items are ``(image, targets)`` with the targets as
        torchvision ``tv_tensors`` (``output="plain"``: canonical tensors); see
        ``augstudio.core.engine.target_training``."""
        from augstudio.core.io.targets import TargetDataset  # deferred: torch

        if not batch_stage_elsewhere:
            self.check_no_batch_stage("dataset()")
        if targets or isinstance(source, TargetDataset):
            from .target_training import TargetRecipeDataset  # deferred: torch

            return TargetRecipeDataset(self, source, copy=copy, epoch=epoch, output=output or "tv_tensors")
        from .training import RecipeDataset  # deferred: torch

        return RecipeDataset(self, source, copy=copy, epoch=epoch, output=output or "tensor")

    def collate_fn(self, num_classes: int):
        """``DataLoader(..., collate_fn=recipe.collate_fn(10))``: the batch stage (model-free mixing) runs in
        the DataLoader workers and batches come out as ``(images, soft_labels)``. See
        ``augstudio.core.engine.training.MixCollate``."""
        from .training import MixCollate  # deferred: torch

        return MixCollate(self, num_classes)

    def jsd_views(self, post=None):
        """``transform=`` giving ``(clean, aug1, aug2)`` for AugMix's Jensen-Shannon consistency loss; see
        ``augstudio.core.engine.training.JSDViews``."""
        from .training import JSDViews  # deferred: torch

        return JSDViews(self, post=post)


def note_lost(records: list[dict], log: list[dict]) -> None:
    """Put what the targets lost (``engine.targets`` log) into the records of the steps that lost it, so the
    export manifest and the GUI say which box went where and why."""
    for entry in log:
        entry = dict(entry)
        records[entry.pop("step") - 1].setdefault("targets_lost", []).append(entry)


MAX_NODES = 100_000  # values in one recipe, counting every reuse of a YAML alias
MAX_DEPTH = 64


def check_plain_data(data: Any, where: str = "") -> None:
    """Refuse what a plain-data recipe cannot hold: objects, self-references, and alias bombs.

    YAML aliases can make a structure refer to itself or expand to billions of values ("billion laughs");
    either would hang or crash whatever later walks the recipe (saving, hashing, the GUI). Dates, sets
    and binary values (safe YAML tags) are refused too: a recipe must round-trip through JSON.
    """
    count = 0
    stack: list[tuple[Any, int, tuple]] = [(data, 0, ())]
    while stack:
        node, depth, path = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise RecipeError(f"{where}the recipe holds more than {MAX_NODES:,} values (are YAML aliases "
                              "repeating a block?); a recipe is a short list of steps")
        if depth > MAX_DEPTH:
            raise RecipeError(f"{where}the recipe is nested more than {MAX_DEPTH} levels deep")
        if node is None or isinstance(node, (bool, int, float, str)):
            continue
        if isinstance(node, (dict, list, tuple)):
            if id(node) in path:
                raise RecipeError(f"{where}the recipe refers to itself (a YAML alias inside its own anchor); "
                                  "write the values out")
            inner = path + (id(node),)
            if isinstance(node, dict):
                for k, v in node.items():
                    if not (k is None or isinstance(k, (bool, int, float, str))):
                        raise RecipeError(f"{where}a key of type {type(k).__name__} is not plain data: "
                                          f"{k!r}; use text keys")
                    stack.append((v, depth + 1, inner))
            else:
                stack.extend((v, depth + 1, inner) for v in node)
            continue
        hint = " (put it in quotes to keep it as text)" if type(node).__name__ in ("date", "datetime") else ""
        raise RecipeError(f"{where}a value of type {type(node).__name__} is not plain data: {node!r}{hint}")


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a folder; give the recipe file (.yaml or .json)") from None
    except OSError as e:
        raise RecipeError(f"{path}: cannot read the recipe: {e.strerror or e}") from None
    if len(raw) > 10_000_000:
        raise RecipeError(f"{path}: {len(raw):,} bytes is too large for a recipe file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a UTF-8 text file; a recipe is YAML or JSON text") from None


def parse_text(text: str, source: str = "<text>", fmt: str | None = None) -> Any:
    """Parse YAML (safe loader only: tags that construct objects are refused) or JSON."""
    if fmt == "json" or (fmt is None and source.lower().endswith(".json")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise RecipeError(f"{source}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
        except RecursionError:
            raise RecipeError(f"{source}: JSON nested too deeply") from None
    try:
        return yaml.safe_load(text)
    except yaml.constructor.ConstructorError as e:
        raise RecipeError(f"{source}: YAML tag not allowed in a recipe ({e.problem}); recipes hold plain data "
                          "only, never objects") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(f"{source}: not valid YAML{at}: {problem}") from None
    except RecursionError:
        raise RecipeError(f"{source}: YAML nested too deeply") from None
    except Exception as e:  # the YAML scanner can raise odd things on binary junk
        raise RecipeError(f"{source}: cannot parse as YAML: {type(e).__name__}: {e}") from None


def loads(text: str, source: str = "<text>", fmt: str | None = None, strict: bool = False) -> Recipe:
    """A recipe from YAML or JSON text. Raises RecipeError, and nothing else, whatever the text."""
    data = parse_text(text, source, fmt)
    return _guarded(lambda: Recipe.from_dict(data, source, strict), source)


def load_recipe(source, strict: bool = False) -> Recipe:
    """Load and validate a recipe from a path (YAML/JSON), a dict, or a Recipe. Raises RecipeError.
    ``strict``: an unknown top-level key is an error (``augstudio export`` loads recipes strictly), not a
    warning."""
    if isinstance(source, Recipe):
        if strict:
            check_top_level_keys(source.extra, f"{source.source}: " if source.source else "", strict=True)
        return source.copy()
    if isinstance(source, dict):
        return _guarded(lambda: Recipe.from_dict(source, strict=strict), "<dict>")
    if not isinstance(source, (str, Path)):
        raise RecipeError(f"a recipe is a file path, a dict or a Recipe, got {type(source).__name__}")
    path = Path(source)
    return loads(_read_text(path), str(path), strict=strict)


def _guarded(make, source: str) -> Recipe:
    try:
        return make()
    except AugstudioError as e:
        if isinstance(e, RecipeError):
            raise
        raise RecipeError(str(e)) from None
    except RecursionError:
        raise RecipeError(f"{source}: recipe nested too deeply") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as e:
        # an op's own checks tripping on a value of a type nobody expected: still a recipe problem
        raise RecipeError(f"{source}: invalid recipe value ({type(e).__name__}: {e})") from None
