#!/usr/bin/env python3
"""Draws the web authenticator's icons (icon-192.png, icon-512.png): the
accent blue as a full square (safe for "maskable" cropping), a white disc
and a blue check mark in the middle. Standard library only; run it from
this directory after changing the design. The PNGs are committed."""
import math, struct, zlib

BLUE = (0x0B, 0x5C, 0xAD)
WHITE = (0xFF, 0xFF, 0xFF)
SS = 4  # samples per pixel side, for smooth edges


def seg_dist(px, py, ax, ay, bx, by):
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - ax - t * dx, py - ay - t * dy)


def colour(x, y):
    """The colour at (x, y) in the unit square."""
    if math.hypot(x - 0.5, y - 0.5) > 0.31:
        return BLUE
    check = [(0.37, 0.51), (0.46, 0.60), (0.64, 0.41)]
    d = min(seg_dist(x, y, *check[0], *check[1]), seg_dist(x, y, *check[1], *check[2]))
    return BLUE if d < 0.035 else WHITE


def png(size):
    rows = []
    for j in range(size):
        row = bytearray([0])
        for i in range(size):
            acc = [0, 0, 0]
            for sj in range(SS):
                for si in range(SS):
                    c = colour((i + (si + 0.5) / SS) / size, (j + (sj + 0.5) / SS) / size)
                    acc = [a + b for a, b in zip(acc, c)]
            row += bytes(round(a / (SS * SS)) for a in acc)
        rows.append(bytes(row))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b""))


for n in (192, 512):
    with open(f"icon-{n}.png", "wb") as f:
        f.write(png(n))
