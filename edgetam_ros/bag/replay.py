"""Publish a bag over DDS with its original timing, and record topics into a new bag (rclpy).

For machines without ``ros2 bag``: what ``ros2 bag play`` (rate factor, ``--loop``,
``--start-offset``, ``--clock``, remapping) and ``ros2 bag record`` do, in one process, so the
recording shares the player's time base.

- Messages are published as the bag stores them (serialized CDR, no conversion), each at
  ``(its time - start time - start offset) / rate`` after the start, with reliable QoS.
- ``clock``: ``/clock`` (rosgraph_msgs/Clock) carries the bag time, before every message
  and at ``clock_hz`` in between, for nodes with ``use_sim_time``.
- ``wait_for``: before starting, wait until these (bag) topics have a subscriber, so the
  first frames are not published into the void.
- ``record``: topics to record (types looked up in the ROS graph: they must have a
  publisher within ``wait_timeout``). Each recorded message's bag timestamp is the player's
  bag time at receipt; the output's custom_data holds the rate (``edgetam.rate``), the source
  (``live``) and, from the node's ``/diagnostics``, its backend, device and tracker ms/frame.
- ``lockstep``: after each image, wait (up to ``lockstep_timeout``) until a message with its
  header stamp arrives on this topic (e.g. ``/masks``) before going on; the timeline shifts
  by the wait. Nothing is dropped however slow the node is; timed replay is the default.
- After the last message, recording goes on until no message arrived for ``settle``
  seconds (at most ``wait_timeout``).

DDS settings (domain, loopback-only profile) come from the environment: run it through
``scripts/in_env.sh`` or after ``source scripts/ros_env.sh``.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetam_core.errors import InputError
from edgetam_ros.bag.bagio import (
    INFO_KEY,
    RATE_KEY,
    SOURCE_KEY,
    BagWriter,
    bag_topics,
    read_messages,
)
from edgetam_ros.bag.messages import CLOCK, COMPRESSED, IMAGE, clock_msg, serialize, stamp_ns

NS = 1_000_000_000


def wall_offsets(
    timestamps: Sequence[int], rate: float, start_offset_ns: int = 0
) -> list[tuple[int, float]]:
    """(index, seconds after the replay start) of the messages at ``timestamps`` (ns, sorted)
    that are at or after ``first + start_offset``; the replay starts at that bag time."""
    if not timestamps:
        return []
    start = timestamps[0] + start_offset_ns
    return [(i, (t - start) / rate / NS) for i, t in enumerate(timestamps) if t >= start]


@dataclass
class ReplayOptions:
    rate: float = 1.0
    loop: bool = False
    start_offset: float = 0.0  # seconds of bag time skipped at the start
    clock: bool = False
    clock_hz: float = 40.0
    topics: Sequence[str] | None = None  # bag topics to publish (None: all)
    remap: dict[str, str] = field(default_factory=dict)  # bag topic -> published topic
    record: Sequence[str] = ()
    out: str | Path | None = None
    storage: str = "mcap"
    wait_for: Sequence[str] = ()
    wait_timeout: float = 30.0
    settle: float = 2.0
    lockstep: str | None = None
    lockstep_timeout: float = 60.0
    node_name: str = "edgetam_bag_player"


@dataclass
class ReplaySummary:
    published: dict[str, int]
    recorded: dict[str, int]
    lockstep_missed: int
    seconds: float
    out: Path | None

    def line(self) -> str:
        pub = sum(self.published.values())
        text = f"published {pub} messages on {len(self.published)} topics in {self.seconds:.1f} s"
        if self.out is not None:
            rec = ", ".join(f"{n} on {t}" for t, n in sorted(self.recorded.items())) or "nothing"
            text += f"; recorded {rec} into {self.out}"
        if self.lockstep_missed:
            text += f"; {self.lockstep_missed} frames got no output in time"
        return text


def msg_class(msgtype: str) -> Any:
    """The rclpy message class of ``pkg/msg/Type``."""
    pkg, kind, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError):
        raise InputError(
            f"message type {msgtype} is not available to rclpy here (source the workspace "
            "that provides it, e.g. scripts/ros_env.sh)"
        ) from None


class _Recorder:
    """Subscriptions that write to the output bag and track stamps for lockstep."""

    def __init__(self, writer: BagWriter | None, record: set[str], bag_now: Callable[[], int]):
        self.writer = writer
        self.record = record
        self.bag_now = bag_now
        self.cond = threading.Condition()
        self.seen: dict[str, set[int]] = {}
        self.counts: dict[str, int] = {}
        self.last_time = time.monotonic()
        self.diagnostics: dict[str, str] = {}

    def callback(self, topic: str, msgtype: str) -> Callable[[bytes], None]:
        def on_message(raw: bytes) -> None:
            ts = self.bag_now()
            stamp = None
            if msgtype not in (CLOCK,):
                try:
                    stamp = stamp_ns(_decode(raw, msgtype).header)
                except Exception:  # a type without a header
                    stamp = None
            with self.cond:
                if self.writer is not None and topic in self.record:
                    self.writer.write(topic, msgtype, ts, raw)
                self.counts[topic] = self.counts.get(topic, 0) + 1
                if stamp is not None:
                    self.seen.setdefault(topic, set()).add(stamp)
                self.last_time = time.monotonic()
                self.cond.notify_all()

        return on_message

    def on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "tracker_ms" in values:
                with self.cond:
                    self.diagnostics = values

    def wait_stamp(self, topic: str, stamp: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while stamp not in self.seen.get(topic, set()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True


def _decode(raw: bytes, msgtype: str) -> Any:
    from edgetam_ros.bag.messages import deserialize

    return deserialize(raw, msgtype)


def _topic_type(node: Any, topic: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, types in node.get_topic_names_and_types():
            if name == topic and types:
                return str(types[0])
        time.sleep(0.1)
    raise InputError(f"nothing publishes {topic} (waited {timeout:g} s): is the node running "
                     "in this ROS domain?")


def _wait_subscribers(pubs: Iterable[tuple[str, Any]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for topic, pub in pubs:
        while pub.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise InputError(f"no subscriber on {topic} after {timeout:g} s: is the node "
                                 "running in this ROS domain?")
            time.sleep(0.05)


def replay(bag: str | Path, options: ReplayOptions,
           log: Callable[[str], None] | None = None) -> ReplaySummary:
    """Play ``bag`` (and record) as ``options`` say; see the module docstring."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    opts = options
    if not opts.rate > 0:
        raise InputError(f"rate must be > 0, got {opts.rate}")
    if opts.start_offset < 0:
        raise InputError(f"start offset must be >= 0, got {opts.start_offset}")
    if opts.record and opts.out is None:
        raise InputError("give an output bag to record into")
    available = bag_topics(bag)
    topics = list(opts.topics) if opts.topics else sorted(available)
    unknown = [t for t in [*topics, *opts.wait_for] if t not in available]
    if unknown:
        raise InputError(f"bag {bag} has no topic {unknown[0]} (it has: "
                         f"{', '.join(sorted(available))})")
    writer = BagWriter(opts.out, opts.storage) if opts.out is not None and opts.record else None
    say = log or (lambda _text: None)

    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node(opts.node_name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
    state = {"t0": time.monotonic(), "start_ns": 0, "shift": 0.0}

    def bag_now() -> int:
        elapsed = time.monotonic() - state["t0"] - state["shift"]
        return int(state["start_ns"] + elapsed * opts.rate * NS)

    recorder = _Recorder(writer, set(opts.record), bag_now)
    spinner = threading.Thread(target=executor.spin, name="edgetam_bag_spin", daemon=True)
    published: dict[str, int] = {}
    missed = 0
    started = time.monotonic()
    try:
        if writer is not None:
            writer.__enter__()
        pubs = {t: node.create_publisher(msg_class(available[t]), opts.remap.get(t, t), reliable)
                for t in topics}
        clock_pub = node.create_publisher(msg_class(CLOCK), "/clock", 10) if opts.clock else None
        for topic in dict.fromkeys([*opts.record, *([opts.lockstep] if opts.lockstep else [])]):
            msgtype = _topic_type(node, topic, opts.wait_timeout)
            node.create_subscription(msg_class(msgtype), topic,
                                     recorder.callback(topic, msgtype), 100, raw=True)
        if opts.record:
            from diagnostic_msgs.msg import DiagnosticArray

            node.create_subscription(DiagnosticArray, "/diagnostics", recorder.on_diagnostics,
                                     10)
        spinner.start()
        _wait_subscribers([(t, pubs[t]) for t in opts.wait_for], opts.wait_timeout)
        say(f"playing {bag} at rate {opts.rate:g}" + (" (lockstep)" if opts.lockstep else ""))

        def publish_clock(ns: int) -> None:
            if clock_pub is not None:
                clock_pub.publish(serialize(clock_msg(ns)))

        offset_ns = int(round(opts.start_offset * NS))
        first_loop = True
        while first_loop or opts.loop:
            first_loop = False
            stamps = [m.timestamp for m in read_messages(bag, topics)]
            if not stamps:
                raise InputError(f"bag {bag} has no messages on the chosen topics")
            state["start_ns"] = stamps[0] + offset_ns
            state["t0"], state["shift"] = time.monotonic(), 0.0
            schedule = dict(wall_offsets(stamps, opts.rate, offset_ns))
            for i, m in enumerate(read_messages(bag, topics)):
                if i not in schedule:
                    continue
                target = state["t0"] + state["shift"] + schedule[i]
                period = 1.0 / opts.clock_hz if clock_pub is not None else 0.05
                while (left := target - time.monotonic()) > 0:
                    time.sleep(min(left, period))
                    if clock_pub is not None and target - time.monotonic() > 0:
                        publish_clock(bag_now())
                publish_clock(m.timestamp)
                pubs[m.topic].publish(m.raw)
                published[m.topic] = published.get(m.topic, 0) + 1
                if opts.lockstep and m.msgtype in (IMAGE, COMPRESSED):
                    stamp = stamp_ns(m.decode().header)
                    t_wait = time.monotonic()
                    if not recorder.wait_stamp(opts.lockstep, stamp, opts.lockstep_timeout):
                        missed += 1
                    state["shift"] += time.monotonic() - t_wait
        # Let the last outputs arrive: until nothing came for `settle` s after the last publish.
        with recorder.cond:
            recorder.last_time = time.monotonic()
        deadline = time.monotonic() + opts.wait_timeout
        while opts.record and time.monotonic() < deadline:
            with recorder.cond:
                idle = time.monotonic() - recorder.last_time
            if idle >= opts.settle:
                break
            time.sleep(0.05)
    finally:
        executor.shutdown(timeout_sec=2.0)
        if spinner.is_alive():
            spinner.join(timeout=2.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        if writer is not None:
            writer.set_custom_data(RATE_KEY, f"{opts.rate:g}")
            writer.set_custom_data(SOURCE_KEY, "live")
            info = _node_info(recorder.diagnostics)
            info["bag"] = str(bag)
            writer.set_custom_data(INFO_KEY, json.dumps(info))
            writer.close()
    out = Path(opts.out) if writer is not None and opts.out is not None else None
    return ReplaySummary(published, dict(recorder.counts), missed,
                         time.monotonic() - started, out)


def _node_info(values: dict[str, str]) -> dict[str, Any]:
    """backend, device, checkpoint and tracker ms/frame from the node's diagnostics."""
    info: dict[str, Any] = {}
    for key in ("backend", "device", "checkpoint"):
        if key in values:
            info[key] = values[key]
    try:
        if "tracker_ms" in values:
            info["ms_per_frame"] = float(values["tracker_ms"])
        if "frames_dropped" in values:
            info["node_frames_dropped"] = int(values["frames_dropped"])
    except ValueError:
        pass
    return info
