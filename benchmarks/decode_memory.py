"""Peak memory of decoding the largest pictures the service accepts (40 megapixels, under 50 MB),
as `worker.media.decode_image` does for the CLI, the API and the workers.

    python benchmarks/decode_memory.py [--megapixels 40]

Each picture is written once (smooth gradients, so the file stays under the 50 MB upload limit),
then decoded in a fresh process; the process reports its peak RSS (VmHWM) after decoding minus its
peak before, i.e. what decoding added. Writes benchmarks/results/decode_memory.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

# VmHWM (the peak RSS of this process image, in KiB), not ru_maxrss: a child's ru_maxrss starts at
# its parent's peak (it survives the exec), and the parent here made the pictures.
CHILD = r"""
import sys
def peak():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
from worker.media import decode_image
data = open(sys.argv[1], "rb").read()
before = peak()
image = decode_image(data, "big")
print(peak() - before, image.size[0], image.size[1], len(data))
"""


def pictures(megapixels: float, folder: Path) -> dict[str, Path]:
    import numpy as np
    from PIL import Image

    width = int((megapixels * 1e6 * 4 / 3) ** 0.5)
    height = int(megapixels * 1e6 / width)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    grey = (x * 0.6 + y * 0.4)  # (height, width) in [0, 1]
    made = {}
    rgba = np.dstack([(grey * 255).astype(np.uint8), (x * 255 + 0 * y).astype(np.uint8),
                      (y * 255 + 0 * x).astype(np.uint8), ((1 - grey) * 255).astype(np.uint8)])
    made["RGBA PNG"] = folder / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(made["RGBA PNG"], compress_level=9)
    del rgba
    made["16-bit grey PNG"] = folder / "grey16.png"
    Image.fromarray((grey * 65535).astype(np.uint16)).save(made["16-bit grey PNG"], compress_level=9)
    made["32-bit float grey TIFF"] = folder / "float.tif"
    Image.fromarray(grey, "F").save(made["32-bit float grey TIFF"], compression="tiff_adobe_deflate")
    made["RGB JPEG"] = folder / "rgb.jpg"
    Image.fromarray((grey * 255).astype(np.uint8), "L").convert("RGB").save(made["RGB JPEG"], quality=90)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, default=40.0)
    args = parser.parse_args()
    data = {"benchmark": "decode_memory", "machine": _common.machine_info(), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in pictures(args.megapixels, Path(tmp)).items():
            out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
            added_kib, width, height, size = map(int, out.stdout.split())
            pixels = width * height
            data["rows"].append({"picture": label, "width": width, "height": height, "file_bytes": size,
                                 "added_peak_mib": round(added_kib / 1024, 1),
                                 "bytes_per_pixel": round(added_kib * 1024 / pixels, 1)})
    _common.write_results("decode_memory", data)
    print("| picture | size | file | decoding added (peak RSS) | bytes per pixel |\n|---|---|---|---|---|")
    for row in data["rows"]:
        print(f"| {row['picture']} | {row['width']}x{row['height']} | {row['file_bytes'] / 2**20:.1f} MB "
              f"| {row['added_peak_mib']} MiB | {row['bytes_per_pixel']} |")
    print(json.dumps(data["machine"]["date_utc"]))


if __name__ == "__main__":
    main()
