"""Writing and reading rosbag2 bags (mcap or sqlite3) with ``rosbags``; errors as InputError."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetam_core.errors import InputError
from edgetam_ros.bag.messages import serialize, typestore

STORAGES = ("mcap", "sqlite3")

#: custom_data keys this package writes into bags it records.
RATE_KEY = "edgetam.rate"  # replay rate factor (bag seconds per wall second)
SOURCE_KEY = "edgetam.source"  # "live" (replayed through the node) or "offline"
INFO_KEY = "edgetam.info"  # JSON: backend, device, checkpoint, ms/frame... of the producer


class BagWriter:
    """A new rosbag2 bag; ``write(topic, msgtype, timestamp_ns, msg_or_cdr_bytes)``."""

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise InputError(f"unknown bag storage {storage!r} (one of {', '.join(STORAGES)})")
        self.path = Path(path)
        if self.path.exists():
            raise InputError(f"output bag {self.path} exists already (remove it or pick another)")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=plugin)
        self._connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self._open = False

    def __enter__(self) -> BagWriter:
        self._writer.open()
        self._open = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._open:
            self._writer.close()
            self._open = False

    def set_custom_data(self, key: str, value: str) -> None:
        self._writer.set_custom_data(key, value)

    def write(self, topic: str, msgtype: str, timestamp: int, msg: Any) -> None:
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=typestore())
            self._connections[topic] = conn
            self.counts[topic] = 0
        elif conn.msgtype != msgtype:
            raise ValueError(f"topic {topic} has type {conn.msgtype}, not {msgtype}")
        data = msg if isinstance(msg, bytes | bytearray | memoryview) else serialize(msg)
        self._writer.write(conn, int(timestamp), bytes(data))
        self.counts[topic] += 1


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    timestamp: int  # ns, the bag's receive/record time
    raw: bytes  # CDR

    def decode(self) -> Any:
        return typestore().deserialize_cdr(self.raw, self.msgtype)


def _open_reader(path: Path) -> Any:
    from rosbags.rosbag2 import Reader

    if not path.exists():
        raise InputError(f"bag not found: {path}")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises its own errors, and sqlite/mcap ones
        raise InputError(f"cannot read bag {path}: {exc}") from None
    return reader


def bag_topics(path: str | Path) -> dict[str, str]:
    """topic -> message type of a bag."""
    reader = _open_reader(Path(path))
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


def read_messages(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """The bag's messages (of ``topics``, all when None) in timestamp order."""
    p = Path(path)
    reader = _open_reader(p)
    try:
        wanted = None if topics is None else set(topics)
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        store = typestore()
        for c in conns:
            if c.msgtype not in store.fielddefs:
                raise InputError(f"bag {p}: unknown message type {c.msgtype} on {c.topic}")
        if not conns:
            return
        for conn, timestamp, raw in reader.messages(connections=conns):
            yield BagMessage(conn.topic, conn.msgtype, int(timestamp), bytes(raw))
    finally:
        reader.close()


def bag_custom_data(path: str | Path) -> dict[str, str]:
    """The ``custom_data`` of a bag's metadata.yaml (empty when it has none)."""
    import yaml

    meta = Path(path) / "metadata.yaml"
    if not meta.is_file():
        return {}
    try:
        info = yaml.safe_load(meta.read_text()) or {}
    except yaml.YAMLError:
        return {}
    data = info.get("rosbag2_bagfile_information", {}).get("custom_data") or {}
    return {str(k): str(v) for k, v in data.items()}
