"""This CPU's GEMM and attention ceilings through torch, fp32 vs bf16 (the roofline the
tracker's numbers are read against in docs/benchmarks.md).

    python benchmarks/roofline.py [--threads 2]

Shapes are memory attention's: 4096 queries of width 256 against 7744 keys (4096 self +
3648 memory tokens), and its 256 -> 2048 FFN projection.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F


def _gflops(fn: Callable[[], object], flop: float, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return flop / statistics.median(times) / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cpu = torch.cpu
    print(
        f"torch {torch.__version__}, {args.threads} threads, "
        f"AVX512-BF16 {cpu._is_avx512_bf16_supported()}, AMX {cpu._is_amx_tile_supported()}"
    )
    n, c, m, hidden = 4096, 256, 7744, 2048
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(n, c, dtype=dtype), torch.randn(c, m, dtype=dtype)
        w = torch.randn(hidden, c, dtype=dtype)
        q, k = torch.randn(1, 1, n, c, dtype=dtype), torch.randn(1, 1, m, c, dtype=dtype)
        rows = {
            "matmul 4096x256 @ 256x7744": _gflops(
                partial(torch.matmul, a, b), 2 * n * c * m, args.repeats
            ),
            "linear 4096x256 -> 2048": _gflops(
                partial(F.linear, a, w), 2 * n * c * hidden, args.repeats
            ),
            "sdpa 4096 x 7744 keys, 256": _gflops(
                partial(F.scaled_dot_product_attention, q, k, k), 4 * n * c * m, args.repeats
            ),
        }
        for name, value in rows.items():
            print(f"{str(dtype).removeprefix('torch.'):9s} {name:28s} {value:8.0f} GFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
