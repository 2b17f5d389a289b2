"""Files that are small on disk and huge once decoded, as a hostile upload would send them."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, side: int = 30000) -> Path:
    """A valid grey PNG of side x side black pixels: about side**2 / 1030 bytes on disk (30000: 870 KB),
    side**2 bytes decoded (3x that as RGB)."""
    squeeze = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte, then the pixels
    rows_at_once = max(1, 2**24 // len(row))
    parts = []
    for start in range(0, side, rows_at_once):
        parts.append(squeeze.compress(row * min(rows_at_once, side - start)))
    parts.append(squeeze.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts))
                     + _chunk(b"IEND", b""))
    return path
