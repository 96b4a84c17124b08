"""Reading a screenshot back: the pixels of an 8-bit, non-interlaced PNG (what Chromium
writes), so a test can tell a drawn page from a blank one without an imaging library."""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from pathlib import Path

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def pixels(path: Path) -> tuple[int, int, list[tuple[int, ...]]]:
    """Width, height and every pixel (a tuple of channel values) of the PNG at ``path``."""
    data = path.read_bytes()
    assert data.startswith(_SIGNATURE), f"{path} is not a PNG"
    position = len(_SIGNATURE)
    compressed = b""
    width = height = channels = 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8, "unsupported PNG bit depth"
            assert interlace == 0, "unsupported interlaced PNG"
            assert colour in _CHANNELS, "unsupported PNG colour type"
            channels = _CHANNELS[colour]
        elif kind == b"IDAT":
            compressed += body
    raw = zlib.decompress(compressed)
    stride = width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for index in range(height):
        start = index * (stride + 1)
        method, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = previous[x]
            corner = previous[x - channels] if x >= channels else 0
            if method == 1:
                line[x] = (line[x] + left) & 0xFF
            elif method == 2:
                line[x] = (line[x] + up) & 0xFF
            elif method == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif method == 4:
                estimate = left + up - corner
                near = min(
                    (abs(estimate - left), 0, left),
                    (abs(estimate - up), 1, up),
                    (abs(estimate - corner), 2, corner),
                )
                line[x] = (line[x] + near[2]) & 0xFF
        rows.append(line)
        previous = line
    flat = [tuple(row[x : x + channels]) for row in rows for x in range(0, stride, channels)]
    return width, height, flat


def assert_not_blank(path: Path) -> None:
    """The screenshot shows a drawn page: many colours, and no colour covers nearly all of it."""
    width, height, flat = pixels(path)
    assert width >= 800, width
    assert height >= 600, height
    counts = Counter(flat)
    (colour, most), *_ = counts.most_common(1)
    assert len(counts) > 50, f"{path}: only {len(counts)} colours"
    assert most / len(flat) < 0.97, f"{path}: {most / len(flat):.1%} of it is {colour}"
