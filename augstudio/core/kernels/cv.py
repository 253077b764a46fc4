"""The CPU backend: OpenCV kernels on uint8 tensors that live on the CPU.

Every kernel module has a torch form that runs on any device (CUDA, MPS, the CPU) and, for the CPU, may
hand the same work to OpenCV (``opencv-python-headless``, Apache-2), whose uint8 kernels are the field's
standard CPU kernels and several times faster than torch's general-purpose ones here (measured:
``benchmarks/README.md``). The contract between the two forms:

* the OpenCV form is used for **every** CPU image, one item at a time in a batch, so the batched path on
  the CPU gives the per-image bytes exactly, for any number of threads (OpenCV's kernels compute every
  output pixel on its own; ``threads`` follows ``torch.get_num_threads()``);
* the torch form (what an accelerator runs) agrees with it within one grey level, or exactly where the
  kernel module says so; ``torch_only()`` runs the torch form on the CPU too, which is how the tests
  compare the two without a GPU.

Tensors are handed to OpenCV as numpy views (no copy) of ``C x H x W`` planes; 3- and 4-channel images are
interleaved for OpenCV only where that is measured faster (the warp), with ``cv2.merge`` / ``cv2.split``;
the merge writes a scratch array placed so that it goes through the caches (``_scratch``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import cv2
import numpy as np
import torch

try:  # byte lookup tables with SIMD shuffles: ~3x cv2.LUT here; the bytes are the same either way
    import stringzilla as _sz
except ImportError:  # pragma: no cover - a declared dependency; cv2.LUT gives the same bytes
    _sz = None

_STATE = {"threads": None, "torch_only": 0}
BORDERS = {"constant": cv2.BORDER_CONSTANT, "edge": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101}
INTERP = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}


def active(x: torch.Tensor) -> bool:
    """Does the OpenCV form handle ``x``? (uint8 on the CPU, unless ``torch_only()`` is in force.)"""
    return x.is_cpu and x.dtype == torch.uint8 and not _STATE["torch_only"]


def device_of(x: torch.Tensor):
    """``x.device``, or ``"cpu"`` for a CPU tensor: ``x.device`` makes a ``torch.device`` object, whose code
    costs ~20 us when the caches are cold (a call after another library's) against ~2 for ``x.is_cpu``."""
    return "cpu" if x.is_cpu else x.device


def on_cpu(device) -> bool:
    """Is ``device`` (a string or a ``torch.device``) the CPU? (``torch.device(...)`` costs more.)"""
    return device == "cpu" or getattr(device, "type", None) == "cpu"


def rounding() -> str:
    """Which OpenCV kernels round this machine's bilinear warps: its version, and whether Intel's IPP kernels
    run (they round ~0.06% of pixels the other way than OpenCV's own: ``benchmarks/README.md``, "Which
    results are bit-exact"). An export records it, so a resume on a machine that rounds otherwise refuses."""
    return f"OpenCV {cv2.__version__}" + (" with IPP" if cv2.ipp.useIPP() else "")


def enabled() -> bool:
    """Do the CPU forms run (False inside ``torch_only()``)?"""
    return not _STATE["torch_only"]


@contextlib.contextmanager
def torch_only():
    """Run the torch (device) form of every kernel on the CPU too: what the tests compare OpenCV with."""
    _STATE["torch_only"] += 1
    try:
        yield
    finally:
        _STATE["torch_only"] -= 1


def sync_threads() -> None:
    """OpenCV uses as many threads as torch is told to (one in a DataLoader worker or an export worker)."""
    n = torch.get_num_threads()
    if n != _STATE["threads"]:
        cv2.setNumThreads(n)
        _STATE["threads"] = n


def _stop_pool_before_fork() -> None:
    """OpenCV's thread pool is not fork-safe: a forked child (a DataLoader or export worker) that resizes
    the pool it inherited waits for ever on a condition variable the parent's pool threads were waiting on
    (seen: ``pthread_cond_destroy`` inside ``cv2.setNumThreads`` in 1 of ~6 forked loaders). The pool is
    emptied before every fork, so a child starts with none; the parent's next kernel makes it again."""
    if cv2.getNumThreads() > 1:
        cv2.setNumThreads(1)  # joins the pool's threads
    _STATE["threads"] = None  # parent and child: the next kernel sets the count torch has


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(before=_stop_pool_before_fork)


def planes(x: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU uint8 ``... x H x W`` tensor: no copy while its rows are contiguous (crops are
    views; OpenCV takes any row stride), else a contiguous copy."""
    return byte_rows(x.numpy())


def byte_rows(a: np.ndarray) -> np.ndarray:
    """``planes``' rule for a numpy uint8 array: itself while each row is adjacent bytes, else a contiguous
    copy (what OpenCV can read)."""
    return a if a.strides[-1] == 1 else np.ascontiguousarray(a)


def new_planes(shape) -> tuple[torch.Tensor, np.ndarray]:
    """An empty uint8 CPU tensor and its numpy view (OpenCV writes into the view). numpy allocates it: its
    memory is reused from call to call, where ``torch.empty`` of a large image pays fresh pages every time
    (measured 57 vs 37 us for one bitwise_not of 512 x 512 x 3)."""
    a = np.empty(tuple(shape), dtype=np.uint8)
    return torch.from_numpy(a), a


def warp_affine(src: np.ndarray, inv, out_size: tuple[int, int], interpolation: str, mode: str,
                fills: list[float], dst: np.ndarray) -> None:
    """Bilinear / bicubic / nearest resampling of uint8 planes ``src`` (C x h x w) into ``dst`` (C x oh x ow)
    through the inverse matrix ``inv`` (output pixel -> input pixel, pixel centres at integers).

    OpenCV 5 interpolates in float32 like ``grid_sample`` (4.x quantised coordinates to 1/32 pixel, which
    is why the dependency asks for 5): the two agree within one grey level (tests/core/test_kernels_cv.py).
    Each channel is computed on its own, so planar, 3- and 4-channel interleaved calls give the same bytes.
    """
    sync_threads()
    c = src.shape[0]
    oh, ow = out_size
    if mode == "edge" and is_resize(inv, src.shape[-2:], out_size):  # separable: several times faster
        for i in range(c):
            cv2.resize(src[i], (ow, oh), dst=dst[i], interpolation=INTERP[interpolation])
        return
    m = np.array((inv[0][:3], inv[1][:3]), dtype=np.float64)
    # interleaved: one pass over the coordinates for up to 4 channels, which pays unless the output is much
    # smaller than the region read (the merge is a pass over the region)
    planar = oh * ow * _INTERLEAVE_RATIO < src.shape[-1] * src.shape[-2]
    if (not planar and c > 1 and interpolation == "bilinear" and mode != "reflect" and m[0, 1] == 0.0
            and m[1, 0] == 0.0 and planar_warps_faster()):
        planar = True  # an axis-aligned map where this machine's OpenCV runs Intel's IPP kernels
    _warp(src, m, out_size, interpolation, mode, fills, dst, planar)


def _warp(src, m, out_size, interpolation: str, mode: str, fills, dst, planar: bool) -> None:
    """``warp_affine``'s OpenCV calls: plane by plane, or up to 4 planes interleaved per call as
    ``_interleaved_width`` says."""
    c = src.shape[0]
    oh, ow = out_size
    flags = INTERP[interpolation] | cv2.WARP_INVERSE_MAP
    border = BORDERS[mode]
    for start in range(0, c, 4):
        chunk = range(start, min(c, start + 4))
        k = 1 if planar else _interleaved_width(len(chunk), interpolation)
        if k == 1:
            for i in chunk:
                cv2.warpAffine(src[i], m, (ow, oh), dst=dst[i], flags=flags, borderMode=border,
                               borderValue=(fills[i],) * 4)
            continue
        pad = [chunk[-1]] * (k - len(chunk))  # a copy of the last plane fills a 4th channel; dropped after
        merged = _scratch("merged", (*src.shape[-2:], k))
        cv2.merge([src[i] for i in (*chunk, *pad)], dst=merged)
        out = _scratch("warped", (oh, ow, k))
        cv2.warpAffine(merged, m, (ow, oh), dst=out, flags=flags, borderMode=border,
                       borderValue=tuple(fills[i] for i in (*chunk, *pad)))
        spare = _scratch("spare", (len(pad), oh, ow)) if pad else ()
        cv2.split(out, [dst[i] for i in chunk] + [spare[j] for j in range(len(pad))])  # writes into the planes


_PLANAR: dict = {}  # "aligned": do planes beat 4 interleaved channels for axis-aligned bilinear maps here


def planar_warps_faster() -> bool:
    """Does this machine's OpenCV warp 3 planes one by one faster than interleaved with a 4th, for an
    axis-aligned bilinear map (translate, scale, crop and resize) with a constant border? Timed once per
    process (~4 ms, 3 x 256 x 512, best of 3 each); the bytes are the same either way.

    Where OpenCV's Intel IPP kernels run (Intel CPUs), such planar warps take 0.4-0.8x the time of 4
    interleaved channels at 512 x 512 (constant or edge border); without them (OpenCV's own kernels: AMD
    here, or IPP switched off) 4 channels are 1.2-1.8x faster. For turns 4 channels win on both (IPP: 847 us
    against 897 for 3 channels and 955 for planes, in alternation), and a reflect border is OpenCV's own.
    Asking the timing is surer than guessing from the CPU's vendor."""
    try:
        return _PLANAR["aligned"]
    except KeyError:
        pass
    src = (np.arange(3 * 256 * 512, dtype=np.uint32) * 2654435761 >> 24).astype(np.uint8).reshape(3, 256, 512)
    dst = np.empty_like(src)
    m = np.array(((1.0, 0.0, 3.3), (0.0, 1.0, -2.7)))
    fills = [0.0, 0.0, 0.0]
    best = {True: float("inf"), False: float("inf")}
    for _ in range(3):
        for planar in (True, False):
            t0 = time.perf_counter()
            _warp(src, m, (256, 512), "bilinear", "constant", fills, dst, planar)
            best[planar] = min(best[planar], time.perf_counter() - t0)
    _PLANAR["aligned"] = faster = best[True] < best[False]
    return faster


# measured on 512 x 512 RGB (benchmarks/README.md, "OpenCV's channel layouts"): interleaving pays from an
# output of 1/16 of the region read (128 x 128 from 512 x 512: 68 vs 80 us planar; 64 x 64: 41 vs 28)
_INTERLEAVE_RATIO = 16


def _interleaved_width(channels: int, interpolation: str) -> int:
    """How many channels to interleave ``channels`` (1-4) planes into, or 1 for plane by plane. OpenCV 5's
    own bilinear and nearest warps are vectorised for 4 channels, not for 3: 0.43 vs 0.85 ms at 512 x 512 (AMD
    EPYC), so 3 planes get a 4th; its bicubic warp is faster on 3 (0.50 vs 0.61 ms), so it gets them as they
    are. (Intel's IPP kernels, where they run, change this for axis-aligned maps: ``planar_warps_faster``.)"""
    if interpolation == "bicubic":
        return channels if channels >= 3 else 1
    return 4 if channels >= 2 else 1


_SCRATCH = threading.local()
_SCRATCH_KEEP = 1 << 24  # bytes kept per buffer and thread (2048 x 2048 x 4); a larger one is made per call


def _scratch(name: str, shape) -> np.ndarray:
    """A per-thread uint8 work array of ``shape`` (its contents undefined), reused from call to call, whose
    data starts one byte past a 64-byte boundary.

    Why off the boundary: OpenCV's ``merge`` and ``split`` write an aligned destination with non-temporal
    stores, which bypass the caches (fast for a frame nobody reads soon); the warp that reads the merged
    image right away then waits on memory (measured: 0.87 ms for a 512 x 512 warp of a just-merged image
    against 0.43 for the same bytes written ordinarily). An unaligned destination gets ordinary stores.
    Why reused: a fresh array of a megabyte or more comes from new pages (~110 page faults a call seen)."""
    n = 1
    for d in shape:
        n *= int(d)
    try:
        pool = _SCRATCH.pool
    except AttributeError:
        pool = _SCRATCH.pool = {}
    raw, off = pool.get(name, (None, 0))
    if raw is None or raw.size < n + off:
        raw = np.empty(n + 64, dtype=np.uint8)
        off = (1 - raw.__array_interface__["data"][0]) % 64  # once per buffer: building the dict costs ~1 us
        if n <= _SCRATCH_KEEP:
            pool[name] = raw, off
    return raw[off:off + n].reshape(tuple(shape))


def lut_bytes(src: np.ndarray, lut: np.ndarray, dst: np.ndarray) -> None:
    """``dst = lut[src]`` for uint8 arrays (``src`` and ``dst`` contiguous, same shape; ``lut`` 256 bytes)."""
    if _sz is not None and _STATE.get("stringzilla", True):
        try:
            _sz.translate(memoryview(src.reshape(-1)), memoryview(lut), out=memoryview(dst.reshape(-1)))
        except TypeError:  # an older stringzilla without out=: translate a copy in place
            dst[...] = src
            _sz.translate(memoryview(dst.reshape(-1)), memoryview(lut), inplace=True)
        return
    sync_threads()
    cv2.LUT(src.reshape(-1, src.shape[-1]), lut, dst=dst.reshape(-1, dst.shape[-1]))


def is_resize(inv, size: tuple[int, int], out_size: tuple[int, int]) -> bool:
    """Is the inverse map exactly a resize of the whole ``size`` image to ``out_size`` (pixel centres:
    x = (u + 0.5) w / ow - 0.5)? With an edge border that is what ``cv2.resize`` computes."""
    (a, b, c), (d, e, f) = inv[0][:3], inv[1][:3]
    h, w = size
    oh, ow = out_size
    sx, sy = w / ow, h / oh
    return (b == 0.0 and d == 0.0 and abs(a - sx) < 1e-9 * sx and abs(e - sy) < 1e-9 * sy
            and abs(c - (0.5 * sx - 0.5)) < 1e-7 and abs(f - (0.5 * sy - 0.5)) < 1e-7)


def box_reduce(src: np.ndarray, ky: int, kx: int) -> np.ndarray:
    """``ky x kx`` block means of uint8 planes rounded to levels (within half a level of
    ``kernels.warp.box_reduce``'s exact means); a last partial block is dropped. 2 x 2 blocks through
    OpenCV's INTER_AREA (a dedicated SIMD path, ~10x numpy), other sizes as integer sums in numpy (OpenCV's
    generic area and box filters measured slower)."""
    sync_threads()
    h, w = src.shape[-2:]
    hh, ww = h // ky, w // kx
    if ky == kx == 2:
        out = np.empty((*src.shape[:-2], hh, ww), dtype=np.uint8)
        flat_src, flat_out = src.reshape(-1, h, w), out.reshape(-1, hh, ww)
        for i in range(flat_src.shape[0]):
            cv2.resize(flat_src[i, :hh * 2, :ww * 2], (ww, hh), dst=flat_out[i], interpolation=cv2.INTER_AREA)
        return out
    k = ky * kx
    p = src[..., :hh * ky, :ww * kx]
    acc = p[..., 0::ky, :].astype(np.uint16 if k * 256 < 65536 else np.uint32)
    for i in range(1, ky):
        acc += p[..., i::ky, :]
    if kx > 1:
        cols = acc[..., 0::kx].copy()
        for i in range(1, kx):
            cols += acc[..., i::kx]
        acc = cols
    acc += k // 2
    acc //= k
    return acc.astype(np.uint8)


__all__ = ["active", "device_of", "on_cpu", "enabled", "rounding", "lut_bytes", "torch_only", "sync_threads", "planes", "byte_rows", "new_planes", "warp_affine", "box_reduce", "BORDERS"]
