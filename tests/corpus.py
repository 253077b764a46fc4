"""A corpus of bad and awkward input files, made on the fly (nothing downloaded), for any test to reuse.

``build_corpus(root)`` writes an ImageFolder tree and returns a ``Corpus`` that says, per file, whether
augstudio must read it (and as which kind) or skip it (and which words the user must see).

    root/good/      files that are odd but valid: 16-bit PNG, float TIFF, CMYK JPEG, palette PNG with
                    transparency, 1-bit, EXIF-rotated JPEG, animated GIF, awkward names
    root/bad/       files that must be skipped and reported: zero bytes, truncated JPEG/PNG, text and
                    HTML named as images, a decompression bomb
    root/links/     a broken symlink and a symlink loop (never items; reported by the scan)
    root/empty_class/     an empty class folder
    root/no_images/       a folder holding only a text file
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class Corpus:
    root: Path
    good: dict = field(default_factory=dict)  # rel path -> expected kind
    bad: dict = field(default_factory=dict)  # rel path -> words the message must contain
    links: dict = field(default_factory=dict)  # rel path -> words the scan problem must contain
    folders: dict = field(default_factory=dict)  # rel folder -> words the scan problem must contain

    @property
    def n_items(self) -> int:
        return len(self.good) + len(self.bad)


def _photo(h=48, w=64, seed=0) -> np.ndarray:
    """A small real photo (skimage's astronaut) cut to size; falls back to a seeded gradient."""
    try:
        from skimage import data

        a = data.astronaut()[100 + seed: 100 + seed + h * 4: 4, 150: 150 + w * 4: 4]
        return np.ascontiguousarray(a)
    except Exception:  # pragma: no cover - skimage is a test dependency
        yy, xx = np.mgrid[0:h, 0:w]
        return np.stack([(xx * 4 + seed) % 256, (yy * 5) % 256, ((xx + yy) * 3) % 256], -1).astype(np.uint8)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width=100_000, height=100_000) -> bytes:
    """A tiny PNG whose header declares ``width x height`` pixels (a decompression bomb's signature)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def exif_rotated_jpeg(arr: np.ndarray, orientation: int = 6) -> bytes:
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def encode_pil(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def build_corpus(root) -> Corpus:
    root = Path(root)
    c = Corpus(root)
    good = root / "good"
    bad = root / "bad"
    links = root / "links"
    for d in (good, bad, links, root / "empty_class", root / "no_images"):
        d.mkdir(parents=True, exist_ok=True)
    photo = _photo()

    # -- valid but awkward ---------------------------------------------------------------------------
    g16 = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    Image.fromarray(g16).save(good / "gray16.png")  # mode I;16
    c.good["good/gray16.png"] = "gray"
    f32 = (np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64))
    Image.fromarray(f32, mode="F").save(good / "float32.tif")
    c.good["good/float32.tif"] = "gray"
    Image.fromarray(photo).convert("CMYK").save(good / "cmyk.jpg", quality=95)
    c.good["good/cmyk.jpg"] = "rgb"
    pal = Image.fromarray((np.arange(48 * 64).reshape(48, 64) % 3).astype(np.uint8), mode="P")
    pal.putpalette([0, 0, 0, 0, 200, 0, 220, 0, 0] + [0] * (253 * 3))
    pal.save(good / "palette_transparent.png", transparency=0)
    c.good["good/palette_transparent.png"] = "categorical"
    Image.fromarray(photo).convert("1").save(good / "onebit.png")
    c.good["good/onebit.png"] = "gray"
    (good / "exif_rotated.jpg").write_bytes(exif_rotated_jpeg(photo, 6))
    c.good["good/exif_rotated.jpg"] = "rgb"
    frames = [Image.fromarray(np.full((32, 32, 3), v, np.uint8)) for v in (30, 120, 220)]
    frames[0].save(good / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    c.good["good/animated.gif"] = "categorical"  # GIF frames are palette images
    for name in ("with space.png", "ünïcødé_图像.png", "-leading-dash.png", "--help.png"):
        Image.fromarray(photo).save(good / name)
        c.good[f"good/{name}"] = "rgb"

    # -- must be skipped and reported -----------------------------------------------------------------
    (bad / "zero.jpg").write_bytes(b"")
    c.bad["bad/zero.jpg"] = "empty file"
    jpg = encode_pil(Image.fromarray(photo), "JPEG", quality=95)
    (bad / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    c.bad["bad/truncated.jpg"] = "truncated"
    png = encode_pil(Image.fromarray(_photo(seed=3)), "PNG")
    (bad / "truncated.png").write_bytes(png[: len(png) // 2])
    c.bad["bad/truncated.png"] = "truncated"
    (bad / "text.jpg").write_text("this is not an image\n" * 20)
    c.bad["bad/text.jpg"] = "not an image"
    (bad / "page.png").write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>\n")
    c.bad["bad/page.png"] = "not an image"
    (bad / "bomb.png").write_bytes(bomb_png())
    c.bad["bad/bomb.png"] = "decompression bomb"

    # -- links ------------------------------------------------------------------------------------------
    os.symlink(root / "does-not-exist.png", links / "broken.png")
    c.links["links/broken.png"] = "broken symbolic link"
    os.symlink(links / "loop_b.png", links / "loop_a.png")
    os.symlink(links / "loop_a.png", links / "loop_b.png")
    c.links["links/loop_a.png"] = "symbolic link loop"
    c.links["links/loop_b.png"] = "symbolic link loop"

    # -- folders ----------------------------------------------------------------------------------------
    (root / "no_images" / "README.txt").write_text("no pictures here\n")
    c.folders["empty_class"] = "no images"
    c.folders["no_images"] = "no images"
    return c


def tree_hash(root) -> str:
    """A hash of every name, link target, mode and byte under ``root`` (to prove a job never wrote there)."""
    h = hashlib.sha256()
    root = Path(root)
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
            st = os.lstat(p)
            h.update(str(st.st_mode).encode())
            if os.path.islink(p):
                h.update(os.readlink(p).encode("utf-8", "surrogateescape"))
            elif name in files:
                h.update(p.read_bytes())
    return h.hexdigest()


def leftovers(root) -> list[str]:
    """Temporary or partial files left under ``root`` (names augstudio uses for in-flight writes)."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".tmp") or ".partial" in name:
                out.append(os.path.join(dirpath, name))
    return sorted(out)
