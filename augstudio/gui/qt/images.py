"""The one image -> QImage converter, and the picture -> display array it builds on.

Every panel shows pictures through ``to_qimage``: thumbnails (PIL images), previews and TTA views
(``Picture``), saliency overlays (uint8 arrays) and the Mix panel's tensors (float 0..1 maps and images).
A QImage may be built on a worker thread; turn it into a QPixmap on the GUI thread only. No torch import
here: tensors are recognised by their methods, so the browser can use this before torch has loaded.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtGui import QImage

_FORMATS = {1: QImage.Format.Format_Grayscale8, 3: QImage.Format.Format_RGB888, 4: QImage.Format.Format_RGBA8888}


def display_array(pic) -> np.ndarray:
    """A ``Picture`` as an HWC (or HW) uint8 array; categorical pictures through their palette."""
    x = pic.pixels
    if x.dim() == 3 and x.shape[0] == 1:
        a = x[0].contiguous().numpy()
        if pic.kind == "categorical":
            pal = pic.palette or list(range(256)) * 3
            width = 4 if pic.palette_mode == "RGBA" else 3
            lut = np.zeros((256, 3), np.uint8)
            p = np.asarray(pal, dtype=np.uint8).reshape(-1, width)[:256, :3]
            lut[: len(p)] = p
            return lut[a]
        return a
    if str(x.dtype) == "torch.uint8":  # a Picture's pixels: OpenCV's merge, several times torch's permuted copy
        from augstudio.core.io.layout import interleaved_of  # deferred: OpenCV

        return interleaved_of(x.detach().cpu())
    return x.permute(1, 2, 0).contiguous().numpy()


def as_array(image) -> np.ndarray:
    """HW or HWC uint8 array of an array, a PIL image, a ``Picture``, or a tensor (uint8 ``C x H x W``, or
    float 0..1 ``C x H x W`` / ``H x W``)."""
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, Image.Image):
        if image.mode not in ("L", "RGB", "RGBA"):
            image = image.convert("RGBA" if ("A" in image.mode or "transparency" in image.info) else "RGB")
        return np.asarray(image)
    if hasattr(image, "pixels") and hasattr(image, "kind"):
        return display_array(image)
    x = image.detach().cpu()
    if x.is_floating_point():
        x = x.clamp(0, 1).mul(255).round().byte()
    if x.dim() == 3 and x.shape[0] > 1 and str(x.dtype) == "torch.uint8":
        from augstudio.core.io.layout import interleaved_of  # deferred: OpenCV

        return interleaved_of(x)
    if x.dim() == 3:
        x = x[0] if x.shape[0] == 1 else x.permute(1, 2, 0)
    return x.contiguous().numpy()


def to_qimage(image) -> QImage:
    """A QImage that owns a copy of ``image`` (anything ``as_array`` takes): gray, RGB or RGBA."""
    a = np.ascontiguousarray(as_array(image), dtype=np.uint8)
    h, w = a.shape[:2]
    channels = 1 if a.ndim == 2 else a.shape[2]
    return QImage(a.data, w, h, a.strides[0], _FORMATS[channels]).copy()
