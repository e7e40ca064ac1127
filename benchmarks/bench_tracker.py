"""Tracker speed and memory: ms/frame per component and end to end, peak RSS, vs the reference.

Each measurement runs in its own subprocess (clean peak RSS, no shared caches); ours and the
reference run in the same invocation on the same clip so their ratio is meaningful on a noisy
machine. Frames are a generated clip (480x640 by default); the first frame (prompt) is left out
of the per-frame statistics.

Backends are given as ``NAME[:PRECISION]`` (``eager``, ``torchscript:bf16``, ...), so fp32 and
bf16 runs share one invocation with the reference. Every run's binary masks are kept, and each
run is compared with the first fp32 run of the invocation: mask agreement (share of pixels with
the same value) per frame and object, mean and worst.

    python benchmarks/bench_tracker.py --frames 24 --reference --backend torchscript eager:bf16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _clip(frames: int, height: int, width: int, objects: int, folder: Path) -> list[dict]:
    import numpy as np
    from PIL import Image

    from edgetam_core.synthetic import make_sample_clip

    clip = make_sample_clip(num_frames=frames, height=height, width=width, seed=0)
    for i, frame in enumerate(clip.frames):
        Image.fromarray(frame).save(folder / f"{i:05d}.jpg", quality=95)
    ids = sorted(clip.clicks)
    rng = np.random.default_rng(0)
    prompts = []
    for n in range(objects):
        if n < len(ids):
            x, y = clip.clicks[ids[n]]
        else:
            x, y = float(rng.uniform(0, width)), float(rng.uniform(0, height))
        prompts.append({"object_id": n + 1, "points": [[x, y]], "labels": [1]})
    return prompts


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_ours(
    folder: Path,
    prompts: list[dict],
    threads: int,
    backend: str,
    precision: str,
    checkpoint: str,
    masks_out: Path | None = None,
) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from edgetam_core.backends import create_backend
    from edgetam_core.checkpoint import build_default_model, load_named_model
    from edgetam_core.tracker import Tracker
    from edgetam_core.types import Prompt

    torch.set_num_threads(threads)
    # Official sizes with seeded random weights by default: speed does not depend on weights.
    if checkpoint == "official-random":
        model = build_default_model()
    else:
        model = load_named_model(checkpoint)[0]
    # "unfused": the eager modules exactly as loaded (no BatchNorm folding, no channels-last).
    runtime = model if backend == "unfused" else create_backend(backend, model, precision=precision)
    tracker = Tracker(runtime)
    files = sorted(folder.glob("*.jpg"))
    first = [Prompt.from_clicks(p["object_id"], p["points"], p["labels"]) for p in prompts]
    per_frame, parts = [], {}
    masks: dict[str, np.ndarray] = {}
    for i, f in enumerate(files):
        frame = np.asarray(Image.open(f).convert("RGB"))
        t0 = time.perf_counter()
        result = tracker.step(frame, first if i == 0 else [])
        if i > 0:
            per_frame.append((time.perf_counter() - t0) * 1000)
            for k, v in result.timings_ms.items():
                parts.setdefault(k, []).append(v)
        for obj_id, obj in result.objects.items():
            masks[f"f{i:05d}_o{obj_id}"] = np.packbits(obj.mask)
    if masks_out is not None:
        np.savez_compressed(masks_out, **masks)
    return {
        "ms_per_frame": per_frame,
        "components": {k: statistics.median(v) for k, v in parts.items()},
        "peak_rss_mb": _peak_rss_mb(),
    }


def run_reference(folder: Path, prompts: list[dict], threads: int) -> dict:
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT / "test"))
    from reference import build_reference_video_predictor

    torch.set_num_threads(threads)
    predictor = build_reference_video_predictor()
    state = predictor.init_state(str(folder))
    per_frame = []
    with torch.inference_mode():
        # The reference fails with several objects in one state (upstream issue #15).
        p = prompts[0]
        predictor.add_new_points_or_box(
            state,
            frame_idx=0,
            obj_id=p["object_id"],
            points=np.asarray(p["points"], dtype=np.float32),
            labels=np.asarray(p["labels"], dtype=np.int32),
        )
        t0 = time.perf_counter()
        for i, _ in enumerate(predictor.propagate_in_video(state)):
            now = time.perf_counter()
            if i > 0:
                per_frame.append((now - t0) * 1000)
            t0 = now
    return {"ms_per_frame": per_frame, "components": {}, "peak_rss_mb": _peak_rss_mb()}


def _child(args: argparse.Namespace) -> None:
    folder = Path(args.folder)
    prompts = json.loads(Path(args.prompts).read_text())
    if args.child == "ours":
        name, precision = _spec(args.backend[0], args.precision)
        out = run_ours(
            folder,
            prompts,
            args.threads,
            name,
            precision,
            args.checkpoint,
            Path(args.masks_out) if args.masks_out else None,
        )
    else:
        out = run_reference(folder, prompts, args.threads)
    print("RESULT " + json.dumps(out))


BACKEND_NAMES = ("eager", "torchscript", "unfused")
PRECISION_NAMES = ("fp32", "bf16")


def _spec(spec: str, default_precision: str) -> tuple[str, str]:
    """``NAME[:PRECISION]`` -> (backend name, precision)."""
    name, _, precision = spec.partition(":")
    return name, precision or default_precision


def _backend_spec(text: str) -> str:
    name, precision = _spec(text, "fp32")
    if name not in BACKEND_NAMES or precision not in PRECISION_NAMES:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME[:PRECISION], NAME in {', '.join(BACKEND_NAMES)}, "
            "PRECISION fp32 or bf16"
        )
    return text


def _agreement(a_file: Path, b_file: Path, shape: tuple[int, int]) -> tuple[float, float, int]:
    """Mean and worst per (frame, object) pixel agreement of two runs' masks; pairs compared."""
    import numpy as np

    a, b = np.load(a_file), np.load(b_file)
    n = shape[0] * shape[1]
    values = []
    for key in sorted(set(a.files) | set(b.files)):
        ma = np.unpackbits(a[key])[:n] if key in a.files else np.zeros(n, np.uint8)
        mb = np.unpackbits(b[key])[:n] if key in b.files else np.zeros(n, np.uint8)
        values.append(float(np.mean(ma == mb)))
    return float(np.mean(values)), float(np.min(values)), len(values)


def _spawn(
    kind: str,
    folder: Path,
    prompts_file: Path,
    args: argparse.Namespace,
    masks_out: Path | None = None,
) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--folder",
        str(folder),
        "--prompts",
        str(prompts_file),
        "--threads",
        str(args.threads),
        "--checkpoint",
        args.checkpoint,
    ]
    cmd += ["--backend", *args.backend, "--precision", args.precision]
    if masks_out is not None:
        cmd += ["--masks-out", str(masks_out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise SystemExit(f"{kind} run failed:\n{proc.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--objects", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--reference", action="store_true", help="also time the reference (1 object)"
    )
    parser.add_argument(
        "--backend",
        nargs="+",
        default=["eager"],
        type=_backend_spec,
        help="ours, one or more NAME[:PRECISION] (each timed in its own subprocess, same "
        "clip): eager (fused, channels-last), torchscript (traced), unfused (as loaded); "
        "e.g. torchscript:bf16",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISION_NAMES,
        help="precision of backends given without one (default fp32)",
    )
    parser.add_argument(
        "--checkpoint",
        default="official-random",
        help="weights of ours: official-random (official sizes, seeded random weights; the "
        "default, comparable with the reference), demo (the bundled model) or a path",
    )
    parser.add_argument("--masks-out", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--prompts", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "frames"
        folder.mkdir()
        prompts = _clip(args.frames, args.height, args.width, args.objects, folder)
        prompts_file = Path(tmp) / "prompts.json"
        prompts_file.write_text(json.dumps(prompts))
        runs = {}
        if args.reference:
            runs["reference"] = _spawn("reference", folder, prompts_file, args)
        mask_files: dict[str, Path] = {}
        for spec in args.backend:
            name, precision = _spec(spec, args.precision)
            label = f"ours {name} {precision}"
            one = argparse.Namespace(**{**vars(args), "backend": [f"{name}:{precision}"]})
            mask_files[label] = Path(tmp) / f"masks{len(mask_files)}.npz"
            runs[label] = _spawn("ours", folder, prompts_file, one, mask_files[label])
        agreement = {}
        baseline = next((k for k in mask_files if k.endswith(" fp32")), None)
        if baseline is not None:
            for label, path in mask_files.items():
                if label != baseline:
                    agreement[label] = _agreement(
                        mask_files[baseline], path, (args.height, args.width)
                    )

    print(
        f"clip {args.frames} frames {args.width}x{args.height}, {args.objects} object(s), "
        f"{args.threads} threads, weights {args.checkpoint}, ours: {' '.join(args.backend)}"
    )
    for name, r in runs.items():
        ms = r["ms_per_frame"]
        q = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
        print(
            f"{name:18s} median {statistics.median(ms):8.1f} ms/frame (IQR {q[0]:.0f}-{q[2]:.0f}) "
            f"peak RSS {r['peak_rss_mb']:.0f} MB"
        )
        for k, v in r["components"].items():
            print(f"    {k:18s} {v:8.1f} ms")
    if "reference" in runs:
        reference = statistics.median(runs["reference"]["ms_per_frame"])
        for name, r in runs.items():
            if name == "reference":
                continue
            ratio = reference / statistics.median(r["ms_per_frame"])
            line = f"{name}: speed-up vs reference (median ms/frame ratio) {ratio:.2f}x"
            if args.objects > 1:
                # The reference holds one object per state: N objects cost N runs of it.
                line += (
                    f" with {args.objects} objects vs its 1; vs {args.objects} reference runs "
                    f"(one per object) {ratio * args.objects:.2f}x"
                )
            print(line)
    for label, (mean, worst, pairs) in agreement.items():
        print(
            f"{label}: mask agreement vs {baseline} mean {100 * mean:.3f} %, "
            f"worst {100 * worst:.3f} % ({pairs} frame-object pairs)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
