"""Output-heavy cells forwarded from a runtime against the same cells run locally.

Two cells, each timed from execute_request to the kernel's idle status with all
output received by the client: one prints 20 MB of stdout, one displays 50
PNG images (256x256). L runs them in a local ipykernel; F runs them through a
local kernel after `%switch_runtime` to a runtime on the loopback sshd (the
magic path). Ends with `ratio=<worst F/L of the two>`; the goal is <= 1.5.

    python benchmarks/cell_throughput.py [--runs 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cluster import isolated_home, register_cluster  # noqa: E402

STDOUT_CELL = "import sys\nline = 'x' * 99 + '\\n'\nfor _ in range(200_000):\n    sys.stdout.write(line)\n"
PNG_CELL = """import struct, zlib, os
from IPython.display import Image, display
def png(seed, size=256):
    raw = b''.join(b'\\x00' + bytes((x * seed + y) % 256 for x in range(size * 3)) for y in range(size))
    chunk = lambda kind, data: struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return (b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', size, size, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(raw, 1)) + chunk(b'IEND', b''))
images = [png(i + 1) for i in range(50)]
"""
SHOW_CELL = "for data in images:\n    display(Image(data=data))\n"


def timed(kc, code: str) -> tuple[float, int]:
    received = 0

    def hook(msg):
        nonlocal received
        content = msg["content"]
        received += len(content.get("text", "")) + sum(len(v) for v in content.get("data", {}).values())

    start = time.perf_counter()
    reply = kc.execute_interactive(code, timeout=600, output_hook=hook)
    elapsed = time.perf_counter() - start
    assert reply["content"]["status"] == "ok", reply["content"]
    return elapsed, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    isolated_home()
    register_cluster()
    from jupyter_client.manager import KernelManager

    results: dict[str, dict[str, float]] = {}
    for label, setup in (("L", []), ("F", ["import cybershuttle_magic",
                                          "%request_runtime tput --resource bench-ssh\n%switch_runtime tput"])):
        km = KernelManager(kernel_name="python3")
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        try:
            for code in setup + [PNG_CELL]:
                timed(kc, code)
            out, png = [], []
            for _ in range(runs):
                t, n = timed(kc, STDOUT_CELL)
                assert n >= 20_000_000, n
                out.append(t)
                t, n = timed(kc, SHOW_CELL)
                png.append(t)
            results[label] = {"stdout": statistics.median(out), "png": statistics.median(png)}
            if setup:
                timed(kc, "%stop_runtime tput")
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
        print(f"{label}: 20 MB stdout {results[label]['stdout']:.2f} s, 50 PNGs {results[label]['png']:.2f} s", flush=True)
    ratios = {k: results["F"][k] / results["L"][k] for k in ("stdout", "png")}
    print(f"stdout_ratio={ratios['stdout']:.2f} png_ratio={ratios['png']:.2f} (goal: worst <= 1.5)")
    print(f"ratio={max(ratios.values()):.2f}")


if __name__ == "__main__":
    main()
