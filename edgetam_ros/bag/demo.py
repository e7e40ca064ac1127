"""``edgetam-demo-ros``: the whole product on the bundled demo model, over live loopback DDS.

1. Generates the synthetic sample clip (as ``edgetam-demo``) and writes it, with its ground
   truth and one click on object 1 (taken from the ground truth), into ``OUT/input.bag``.
2. Starts ``tracker_node`` (the colcon-installed executable, the launch file's remappings)
   with the bundled demo model (``checkpoint:=demo``) or ``--checkpoint``.
3. Replays the bag into it over DDS kept on this machine (the loopback-only Fast DDS profile,
   ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, a domain id of its own unless one is set) and
   records the node's ``/masks`` and ``/tracks`` into ``OUT/recorded.bag``. By default each
   frame waits for the node's masks of the one before (lockstep: nothing is dropped however
   slow the machine); ``--rate R`` replays with the bag's timing at rate factor R instead.
4. Scores the recording against the ground truth (``OUT/report``: JSON, CSV, plot, overlay
   video) and prints one line saying where.

Run it in the project environment: ``scripts/in_env.sh edgetam-demo-ros``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from edgetam_core.errors import EdgeTAMError, InputError

PROG = "edgetam-demo-ros"
REPO = Path(__file__).resolve().parents[2]


def tracker_node_executable() -> Path:
    """``lib/edgetam_ros/tracker_node`` of this repository's colcon build or of any
    ``AMENT_PREFIX_PATH`` entry."""
    candidates = [REPO / "build" / "ros" / "install" / "edgetam_ros"]
    candidates += [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
                   if p]
    for prefix in candidates:
        exe = prefix / "lib" / "edgetam_ros" / "tracker_node"
        if exe.is_file():
            return exe
    raise InputError("tracker_node not found: build the package (scripts/build_ros.sh) and run "
                     "through scripts/in_env.sh")


def loopback_environment() -> dict[str, str]:
    """This process's environment with DDS kept on this machine (set in os.environ too, so
    rclpy in this process uses it)."""
    profiles = [REPO / "config" / "fastdds_loopback.xml"] + [
        Path(p) / "share" / "edgetam_ros" / "config" / "fastdds_loopback.xml"
        for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p
    ]
    found = [p for p in profiles if p.is_file()]
    if not os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") and found:
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(found[0])
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 100 + 1))
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    return dict(os.environ)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Make a sample bag, replay it through tracker_node over loopback DDS with a "
        "click prompt, record its outputs and write the J&F report, plot and overlay video.",
    )
    p.add_argument("--frames", type=int, default=12, help="clip length (default 12)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--seed", type=int, default=0, help="sample clip seed")
    p.add_argument("--out", default="out/demo_ros", help="output folder (default out/demo_ros)")
    p.add_argument("--checkpoint", default="demo",
                   help="checkpoint for the node: a .pt path, 'demo' (default: the bundled "
                        "synthetic-world demo model) or 'random' (random weights)")
    p.add_argument("--device", default="cpu", help="the node's device (default cpu)")
    p.add_argument("--rate", type=float, default=None,
                   help="replay with the bag's timing at this rate factor (default: lockstep)")
    p.add_argument("--bag-rate", type=float, default=10.0, help="frames per second in the bag")
    p.add_argument("--startup-timeout", type=float, default=300.0)
    p.add_argument("--quiet", action="store_true")
    return p


def run(args: argparse.Namespace) -> str:
    from edgetam_core.synthetic import make_sample_clip
    from edgetam_ros.bag.evaluate import evaluate_bag
    from edgetam_ros.bag.from_frames import frames_to_bag, prompts_from_ground_truth
    from edgetam_ros.bag.messages import TOPICS
    from edgetam_ros.bag.replay import ReplayOptions, replay
    from edgetam_ros.launch_config import node_settings

    if args.frames < 2:
        raise InputError(f"--frames must be >= 2 (the click applies to frame 1), got "
                         f"{args.frames}")
    if args.checkpoint not in ("demo", "default", "random") and not Path(args.checkpoint).is_file():
        raise InputError(f"checkpoint not found: {args.checkpoint}")
    out = Path(args.out)
    for old in ("input.bag", "recorded.bag", "report"):
        shutil.rmtree(out / old, ignore_errors=True)  # this demo's own outputs of a last run
    out.mkdir(parents=True, exist_ok=True)
    clip = make_sample_clip(num_frames=args.frames, height=args.height, width=args.width,
                            seed=args.seed)
    truth = dict(enumerate(clip.labels))
    object_id = clip.object_ids[0]
    click = prompts_from_ground_truth({k: (lab == object_id).astype("uint8") * object_id
                                       for k, lab in truth.items()}, "click", args.frames)
    ((frame, (prompt,)),) = click.items()
    assert prompt.points is not None
    x, y = (float(v) for v in prompt.points[0])
    input_bag, recorded = out / "input.bag", out / "recorded.bag"
    frames_to_bag(clip.frames, input_bag, args.frames, rate=args.bag_rate, prompts=click,
                  ground_truth={k: (lab == object_id).astype("uint8") * object_id
                                for k, lab in truth.items()})

    env = loopback_environment()
    exe = tracker_node_executable()
    settings = node_settings({})
    cmd = [str(exe), "--ros-args", "-p", f"checkpoint:={args.checkpoint}",
           "-p", f"device:={args.device}"]
    for src, dst in settings["remappings"]:
        cmd += ["-r", f"{src}:={dst}"]
    log_path = out / "tracker_node.log"
    with log_path.open("w") as log:
        node = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            _wait_started(node, log_path, args.startup_timeout)
            opts = ReplayOptions(
                rate=args.rate or 1.0, record=(TOPICS.masks, TOPICS.tracks), out=recorded,
                wait_for=(TOPICS.image, TOPICS.prompt), settle=1.5,
                lockstep=None if args.rate else TOPICS.masks,
                wait_timeout=args.startup_timeout,
            )
            say = None if args.quiet else (lambda t: print(f"{PROG}: {t}", file=sys.stderr))
            summary = replay(input_bag, opts, say)
        finally:
            _stop(node)
    result = evaluate_bag(recorded, input_bag, out / "report", overlay_video=True)
    mode = "lockstep" if not args.rate else f"at rate {args.rate:g}"
    model = {"random": "random weights", "demo": "the bundled demo model",
             "default": "the bundled demo model"}.get(args.checkpoint,
                                                      f"checkpoint {args.checkpoint}")
    lat = result.latency_ms["median"]
    return (
        f"{PROG}: replayed {args.frames} frames ({mode}) through tracker_node with {model} "
        f"over loopback DDS (domain {env['ROS_DOMAIN_ID']}), one click on object {object_id} "
        f"at ({x:.0f}, {y:.0f}) before frame {frame}; J&F "
        f"{_f(result.scores.jf_mean)}, {result.dropped} dropped, "
        f"{lat if lat is None else round(lat)} ms median latency; recorded "
        f"{sum(summary.recorded.values())} messages to {recorded}; report in "
        f"{result.paths.json}, plot in {result.paths.plots[0]}, video in "
        f"{result.paths.videos[0]}"
    )


def _f(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f}"


def _wait_started(node: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if "tracking on" in text:
            return
        if node.poll() is not None:
            last = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["(no output)"]
            raise InputError(f"tracker_node exited with {node.returncode}: {last[0]}")
        time.sleep(0.1)
    raise InputError(f"tracker_node did not start within {timeout:g} s (log: {log_path})")


def _stop(node: subprocess.Popen[bytes]) -> None:
    import signal

    if node.poll() is None:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait(timeout=10)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        line = run(args)
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
        print(f"{PROG}: unexpected error: {type(exc).__name__}: {text[0] if text else ''}",
              file=sys.stderr)
        return 1
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
