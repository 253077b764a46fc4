"""Neighbourhood filters on uint8 images (OpenCV on the CPU, see ``kernels.cv``; torch elsewhere).

* ``gaussian_blur``: torchvision's Gaussian (its float32 1-D kernel, reflect border without repeating the
  edge pixel, rounded once) as two 1-D passes instead of one 2-D convolution: k + k instead of k * k
  multiply-adds per pixel. The sums are the same numbers added in another order, so a pixel can round the
  other way where the exact value sits on a half level: within one grey level of torchvision's 2-D form.
* ``sharpen``: torchvision's adjust_sharpness (PIL's 3x3 smooth filter, blended with the image; the border
  row and column are kept), byte for byte: torchvision's own function on an accelerator, one compiled pass
  on the CPU (``filters_jit``; 0.34 ms at 512 x 512 x 3, where OpenCV's filter and blend per plane took
  0.77 ms and were only within one grey level of it).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from . import color, cv, jit


@functools.lru_cache(maxsize=256)
def gaussian_kernel1d(size: int, sigma: float) -> np.ndarray:
    """torchvision's 1-D Gaussian kernel: exp(-x^2 / 2 sigma^2) at x = -(k-1)/2 .. (k-1)/2, normalised to
    sum 1, as float32 (read-only: it is cached per (size, sigma)). Computed in float64 and rounded once:
    torch's float32 ``exp`` rounds the last bit differently on its SIMD and scalar kernels. The weights are
    within 3e-7 of the peak weight of torchvision's float32 ones (whose tails are the less accurate:
    ``exp`` of a rounded square); every device uses this kernel.

    In Python floats, not numpy: a few dozen float operations instead of a dozen numpy calls, which with
    cold caches (a call after another library's) cost 180 us against the blur's 450. The same float32
    kernels as numpy's float64 ``linspace`` / ``exp`` / ``sum`` on 108,000 (size, sigma) pairs."""
    half = (size - 1) * 0.5
    if size > 1:  # np.linspace(-half, half, size): i * step + start, the last one exactly the end
        step = (half + half) / (size - 1)
        xs = [i * step - half for i in range(size - 1)] + [half]
    else:
        xs = [-half]
    pdf = [math.exp(-0.5 * (t / sigma) * (t / sigma)) for t in xs]
    total = math.fsum(pdf)  # the exact sum, rounded once
    k = np.array([p / total for p in pdf], dtype=np.float32)
    k.flags.writeable = False
    return k


def gaussian_blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Blur uint8 ``C x H x W`` with a ``size`` x ``size`` Gaussian of ``sigma`` (odd size, smaller than twice
    the image side) as two 1-D passes, rounded once to uint8."""
    k1 = gaussian_kernel1d(size, sigma)
    if cv.active(x):
        cv.sync_threads()
        src = cv.planes(x)
        out, dst = cv.new_planes(x.shape)
        for i in range(src.shape[0]):  # float sums, rounded to nearest once at the end (as torchvision)
            cv2.sepFilter2D(src[i], -1, k1, k1, dst=dst[i], borderType=cv2.BORDER_REFLECT_101)
        return out
    c = x.shape[-3]
    pad = size // 2
    xf = x.reshape(-1, c, *x.shape[-2:]).to(torch.float32)
    xf = torch.nn.functional.pad(xf, [pad, pad, pad, pad], mode="reflect")
    k = torch.tensor(k1, device=x.device)  # a copy: the cached kernel is read-only
    xf = torch.nn.functional.conv2d(xf, k.view(1, 1, 1, size).expand(c, 1, 1, size), groups=c)
    xf = torch.nn.functional.conv2d(xf, k.view(1, 1, size, 1).expand(c, 1, size, 1), groups=c)
    return xf.round_().clamp_(0, 255).to(torch.int16).to(torch.uint8).view(x.shape)


def sharpen(x: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision's adjust_sharpness of uint8 ``C x H x W``: one compiled pass on the CPU (``filters_jit``,
    the same bytes), torchvision's function elsewhere and where numba is missing."""
    loops = jit.load("filters_jit") if cv.active(x) and min(x.shape[-2:]) > 2 else None
    fused = color.torch_fuses() if loops is not None else None
    if fused is None:  # channel by channel (torchvision takes 1 or 3; its filter is per channel anyway)
        return x if x.numel() == 0 else F.adjust_sharpness(x.reshape(-1, 1, *x.shape[-2:]), factor).view(x.shape)
    src = cv.planes(x)
    out, dst = cv.new_planes(x.shape)
    loop = loops.sharpen_fused if fused else loops.sharpen_unfused
    loop(src.reshape(-1, *src.shape[-2:]), 1.0 - factor, dst.reshape(-1, *dst.shape[-2:]))
    return out


__all__ = ["gaussian_kernel1d", "gaussian_blur", "sharpen"]
