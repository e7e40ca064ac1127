"""``edgetam-bag``: make, replay, track and evaluate rosbag2 bags without the ``ros2`` CLI.

    edgetam-bag from-frames --input FRAMES|VIDEO --out BAG [--ground-truth DIR]
                            [--prompts JSON | --prompt-from-gt click|box] [--rate HZ]
                            [--storage mcap|sqlite3] [--compressed] [--frame-id ID]
    edgetam-bag run-offline --bag BAG --checkpoint CKPT|demo --out OUT_BAG [--device D]
    edgetam-bag replay --bag BAG [--rate R] [--loop] [--start-offset S] [--clock]
                       [--topics T ...] [--remap FROM:=TO ...] [--record T ... --out OUT_BAG]
                       [--wait-for T ...] [--lockstep TOPIC]
    edgetam-bag eval --bag RECORDED --ground-truth INPUT_BAG --out DIR [--overlay-video]

``from-frames``, ``run-offline`` and ``eval`` need no ROS; ``replay`` needs rclpy and this
package's built interfaces (run it through ``scripts/in_env.sh``). Topics and timing rules are
in ``edgetam_ros.bag`` (``messages``, ``from_frames``, ``evaluate``). Exit status: 0 success,
2 unusable input (one line on stderr), 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgetam_core.errors import EdgeTAMError, InputError

PROG = "edgetam-bag"


def _from_frames(args: argparse.Namespace) -> str:
    from edgetam_core.cli.track import parse_prompts_file
    from edgetam_core.io import count_frames, list_image_files, read_frames, read_label_png
    from edgetam_ros.bag.from_frames import frames_to_bag, prompts_from_ground_truth

    source = Path(args.input)
    if not source.exists():
        raise InputError(f"input not found: {source}")
    num = count_frames(source)
    truth: dict[int, Any] = {}
    if args.ground_truth:
        gt_dir = Path(args.ground_truth)
        if not gt_dir.is_dir():
            raise InputError(f"--ground-truth must be a folder of label PNGs: {gt_dir}")
        stems = [p.stem for p in list_image_files(source)] if source.is_dir() \
            else [f"{k:05d}" for k in range(num)]
        index = {s: k for k, s in enumerate(stems)}
        for png in sorted(gt_dir.glob("*.png")):
            if png.stem not in index:
                raise InputError(f"ground truth {png} has no frame named {png.stem}")
            truth[index[png.stem]] = read_label_png(png)
    if args.prompts and args.prompt_from_gt:
        raise InputError("give --prompts or --prompt-from-gt, not both")
    prompts: dict[int, Any] = {}
    if args.prompts:
        prompts = dict(parse_prompts_file(args.prompts))
    elif args.prompt_from_gt:
        if not truth:
            raise InputError("--prompt-from-gt needs --ground-truth")
        prompts = prompts_from_ground_truth(truth, args.prompt_from_gt, num)
    summary = frames_to_bag(
        read_frames(source), args.out, num, rate=args.rate, prompts=prompts,
        ground_truth=truth, storage=args.storage, compressed=args.compressed,
        frame_id=args.frame_id,
    )
    return summary.line()


def _run_offline(args: argparse.Namespace) -> str:
    from edgetam_ros.bag.offline import build_tracker, run_offline

    tracker, desc = build_tracker(args.checkpoint, args.device, args.max_objects)
    backend = str(getattr(getattr(tracker, "backend", None), "name", None) or "eager")
    info = {"checkpoint": desc, "backend": backend, "device": str(tracker.device),
            "bag": str(args.bag)}
    summary = run_offline(args.bag, args.out, tracker, storage=args.storage, info=info,
                          progress=False if args.quiet else None)
    return summary.line()


def parse_remaps(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        src, sep, dst = item.partition(":=")
        if not sep or not src or not dst:
            raise InputError(f"--remap {item!r}: expected FROM:=TO")
        out[src] = dst
    return out


def _replay(args: argparse.Namespace) -> str:
    from edgetam_ros.bag.replay import ReplayOptions, replay

    if args.record and not args.out:
        raise InputError("--record needs --out BAG")
    opts = ReplayOptions(
        rate=args.rate, loop=args.loop, start_offset=args.start_offset, clock=args.clock,
        topics=args.topics, remap=parse_remaps(args.remap or []), record=args.record or (),
        out=args.out, storage=args.storage, wait_for=args.wait_for or (),
        wait_timeout=args.wait_timeout, settle=args.settle, lockstep=args.lockstep,
    )
    log = None if args.quiet else (lambda text: print(f"{PROG}: {text}", file=sys.stderr))
    return replay(args.bag, opts, log).line()


def _eval(args: argparse.Namespace) -> str:
    from edgetam_ros.bag.evaluate import evaluate_bag

    result = evaluate_bag(args.bag, args.ground_truth, args.out,
                          overlay_video=args.overlay_video, skip_first_last=not args.all_frames,
                          plots=not args.no_plots)
    return result.line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="rosbag2 tools for EdgeTAM tracking: "
                                "make bags from frames, replay and record them over DDS, run "
                                "the tracker offline over a bag, and score recorded masks.")
    sub = p.add_subparsers(dest="command", required=True)

    f = sub.add_parser("from-frames", help="frames or a video (+ truth, prompts) -> a bag")
    f.add_argument("--input", required=True, help="folder of frames, or a video file")
    f.add_argument("--out", required=True, help="output bag folder (must not exist)")
    f.add_argument("--ground-truth", help="folder of label PNGs named like the frames "
                   "(videos: 00000.png, ...)")
    f.add_argument("--prompts", help="prompts JSON (edgetam-track format; points and boxes)")
    f.add_argument("--prompt-from-gt", choices=("click", "box"),
                   help="one click (or box) per ground-truth object where it first appears")
    f.add_argument("--rate", type=float, default=10.0, help="frames per second (default 10)")
    f.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    f.add_argument("--compressed", action="store_true", help="jpeg CompressedImage frames")
    f.add_argument("--frame-id", default="camera", help="header frame_id (default camera)")
    f.set_defaults(func=_from_frames)

    o = sub.add_parser("run-offline", help="run the node's logic over a bag, no DDS")
    o.add_argument("--bag", required=True)
    o.add_argument("--checkpoint", required=True,
                   help="checkpoint (.pt), 'demo' (= 'default': the bundled demo model) "
                        "or 'random'")
    o.add_argument("--out", required=True, help="output bag with /masks and /tracks")
    o.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"))
    o.add_argument("--max-objects", type=int, default=None)
    o.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    o.set_defaults(func=_run_offline)

    r = sub.add_parser("replay", help="publish a bag over DDS (and record topics)")
    r.add_argument("--bag", required=True)
    r.add_argument("--rate", type=float, default=1.0, help="rate factor (default 1)")
    r.add_argument("--loop", action="store_true", help="play again and again (Ctrl-C stops)")
    r.add_argument("--start-offset", type=float, default=0.0, help="skip this many seconds")
    r.add_argument("--clock", action="store_true", help="publish the bag time on /clock")
    r.add_argument("--topics", nargs="+", help="only these bag topics")
    r.add_argument("--remap", nargs="+", help="FROM:=TO topic renames")
    r.add_argument("--record", nargs="+", help="topics to record (e.g. /masks /tracks)")
    r.add_argument("--out", help="output bag for --record")
    r.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"))
    r.add_argument("--wait-for", nargs="+", help="bag topics that need a subscriber first")
    r.add_argument("--wait-timeout", type=float, default=30.0)
    r.add_argument("--settle", type=float, default=2.0,
                   help="after the last message, record until idle this long (s)")
    r.add_argument("--lockstep", help="wait for this topic's output of each image (no drops)")
    r.set_defaults(func=_replay)

    e = sub.add_parser("eval", help="J&F, latency and drops of recorded masks")
    e.add_argument("--bag", required=True, help="recorded bag (/masks, /tracks)")
    e.add_argument("--ground-truth", required=True, help="the input bag (from-frames)")
    e.add_argument("--out", required=True, help="report folder")
    e.add_argument("--overlay-video", action="store_true")
    e.add_argument("--all-frames", action="store_true", help="score first and last frames too")
    e.add_argument("--no-plots", action="store_true")
    e.set_defaults(func=_eval)

    for s in (f, o, r, e):
        s.add_argument("--quiet", action="store_true", help="no progress, no summary line")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], str] = args.func
    try:
        line = func(args)
    except EdgeTAMError as exc:
        text = str(exc).strip().splitlines()
        print(f"{PROG}: error: {text[0] if text else type(exc).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("EDGETAM_DEBUG"):
            raise
        text = str(exc).strip().splitlines()
        first = text[0] if text else ""
        print(f"{PROG}: unexpected error: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"{PROG} {args.command}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
