"""The recipe's ``targets:`` block: how masks, boxes and keypoints are treated (see ``engine.targets``).
Plain data, no torch: a recipe is loaded and edited where torch is not imported yet."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from augstudio.core.base.errors import RecipeError
from augstudio.core.base.targets import IGNORE_INDEX

BOX_MODES = ("corners", "pixels")


@dataclass(frozen=True)
class TargetOptions:
    """The recipe's ``targets:`` block."""

    ignore_index: int = IGNORE_INDEX  # class-mask value of erased pixels (and of pixels from outside)
    fill_mask: int | None = None  # class-mask value of pixels from outside the image; None: ignore_index
    min_visibility: float = 0.0  # drop a box when less than this share of its (moved) area stays inside
    min_area: float = 0.0  # drop a box smaller than this many pixels after clipping
    drop_erased_boxes: bool = False  # drop boxes that an erasing op hid completely
    # how a moved box is measured: "corners", the box around its moved corners (torchvision's, the default);
    # "pixels", the box around the pixels a mask of the box keeps after the move (tight at tilted corners)
    box_mode: str = "corners"

    @classmethod
    def from_dict(cls, data, where: str = "") -> TargetOptions:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise RecipeError(f"{where}'targets' must be a mapping of options "
                              f"({', '.join(f.name for f in fields(cls))}), got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RecipeError(f"{where}unknown option(s) {unknown} under 'targets'; known: {', '.join(sorted(known))}")
        out = cls(**data)
        for name in ("ignore_index", "fill_mask"):
            v = getattr(out, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**31):
                raise RecipeError(f"{where}targets: '{name}' must be a whole number >= 0 (a mask value), got {v!r}")
        if isinstance(out.min_visibility, bool) or not isinstance(out.min_visibility, (int, float)) \
                or not 0.0 <= out.min_visibility <= 1.0:
            raise RecipeError(f"{where}targets: 'min_visibility' must be a share 0 .. 1, got {out.min_visibility!r}")
        if isinstance(out.min_area, bool) or not isinstance(out.min_area, (int, float)) or out.min_area < 0:
            raise RecipeError(f"{where}targets: 'min_area' must be a number of pixels >= 0, got {out.min_area!r}")
        if not isinstance(out.drop_erased_boxes, bool):
            raise RecipeError(f"{where}targets: 'drop_erased_boxes' must be true or false, got {out.drop_erased_boxes!r}")
        if out.box_mode not in BOX_MODES:
            raise RecipeError(f"{where}targets: 'box_mode' must be one of {', '.join(BOX_MODES)}, got {out.box_mode!r}")
        return out

    def to_dict(self) -> dict:
        """Only what differs from the defaults (a recipe without targets options stays as it was)."""
        default = TargetOptions()
        return {k: v for k, v in asdict(self).items() if v != getattr(default, k)}

    @property
    def outside_value(self) -> int:
        return self.ignore_index if self.fill_mask is None else self.fill_mask


__all__ = ["BOX_MODES", "TargetOptions"]
