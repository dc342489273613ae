#!/usr/bin/env python3
"""Checks what headless Chromium made of a carelens report (standard library only).

    check_report.py DOM.html SHOT.png --sections N [--charts M] [--save-crop Y0:Y1:OUT.png]

DOM.html is Chromium's --dump-dom of the report, SHOT.png its --screenshot of the top of
the page. The checks fail on a page that did not render: the DOM must hold N query
sections and their charts; the screenshot must show the explainer box (its pale blue),
bars of a chart (their blue, or a grouped chart's series colours) and enough ink, not a blank or half-drawn page.
--save-crop writes a horizontal band of the screenshot as a PNG (for docs/).
"""

import argparse
import re
import struct
import sys
import zlib

EXPLAINER_BG = (0xEE, 0xF4, 0xFB)
BAR = (0x7F, 0xA9, 0xD9)
# A grouped chart's series colours (svg .bar.s0 to .s3 in the report's style).
SERIES = [(0x4F, 0x86, 0xC6), (0xE0, 0x8A, 0x3C), (0x4F, 0xA3, 0x6F), (0x9B, 0x7A, 0xD1)]
INK = (0x1D, 0x24, 0x33)


def read_png(path):
    """Width, height and rows of RGB tuples of an 8-bit, non-interlaced RGB(A) PNG."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        sys.exit(f"{path}: unsupported PNG (depth {depth}, colour {colour})")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, previous = [], bytearray(stride)
    for y in range(height):
        filter_type = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            upper_left = previous[i - bpp] if i >= bpp else 0
            if filter_type == 1:
                line[i] = (line[i] + left) & 0xFF
            elif filter_type == 2:
                line[i] = (line[i] + up) & 0xFF
            elif filter_type == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif filter_type == 4:
                p = left + up - upper_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else upper_left
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, bpp, rows


def write_png(path, width, bpp, rows):
    chunk = lambda kind, body: (
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    )
    colour = 2 if bpp == 3 else 6
    header = struct.pack(">IIBBBBB", width, len(rows), 8, colour, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", header))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def share(rows, bpp, colour, tolerance=6):
    """Fraction of pixels within `tolerance` of `colour` in every channel."""
    hits = total = 0
    for row in rows[::2]:
        for x in range(0, len(row), bpp * 2):
            r, g, b = row[x], row[x + 1], row[x + 2]
            total += 1
            if (
                abs(r - colour[0]) <= tolerance
                and abs(g - colour[1]) <= tolerance
                and abs(b - colour[2]) <= tolerance
            ):
                hits += 1
    return hits / total


def dark_share(rows, bpp):
    hits = total = 0
    for row in rows[::2]:
        for x in range(0, len(row), bpp * 2):
            total += 1
            if row[x] + row[x + 1] + row[x + 2] < 3 * 140:
                hits += 1
    return hits / total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dom")
    parser.add_argument("png")
    parser.add_argument("--sections", type=int, required=True)
    parser.add_argument("--charts", type=int, default=1, help="at least this many charts")
    parser.add_argument("--save-crop", action="append", default=[])
    args = parser.parse_args()
    problems = []

    dom = open(args.dom, encoding="utf-8").read()
    sections = len(re.findall(r'<section class="query"', dom))
    if sections != args.sections:
        problems.append(f"the DOM has {sections} query sections, expected {args.sections}")
    charts = len(re.findall(r"<svg", dom))
    if charts < args.charts:
        problems.append(f"the DOM has {charts} charts, expected at least {args.charts}")
    if "How to read these numbers" not in dom:
        problems.append("the DOM lacks the plain-English box")
    if re.search(r"<script|src=\"https?:|href=\"https?:", dom):
        problems.append("the report loads something from elsewhere")

    width, height, bpp, rows = read_png(args.png)
    explainer = share(rows, bpp, EXPLAINER_BG)
    bars = sum(share(rows, bpp, colour) for colour in [BAR, *SERIES])
    ink = dark_share(rows, bpp)
    print(
        f"screenshot {width}x{height}: explainer background {explainer:.1%}, "
        f"chart bars {bars:.2%}, dark text {ink:.2%}; DOM: {sections} sections"
    )
    if explainer < 0.01:
        problems.append(f"the explainer box is not drawn ({explainer:.2%} of the pixels)")
    # On the sample the bars' share of the first 5200 px varies with the noise (0.20% to
    # 0.36% over repeated runs of the library, 2026-12-04): a chart's scale follows its
    # largest noisy value. A report whose charts draw no bars has next to none.
    if bars < 0.001:
        problems.append(f"no chart bars are drawn ({bars:.3%} of the pixels)")
    if ink < 0.01:
        problems.append(f"hardly any text is drawn ({ink:.2%} of the pixels)")

    for spec in args.save_crop:
        y0, y1, out = spec.split(":", 2)
        band = rows[int(y0) : min(int(y1), height)]
        write_png(out, width, bpp, band)
        print(f"wrote {out} ({width}x{len(band)})")

    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        sys.exit(1)
    print("the report renders in Chromium")


if __name__ == "__main__":
    main()
