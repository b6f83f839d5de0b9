"""rosbag2 files through ``rosbags`` (pure Python): validated reading and atomic MCAP writing.

A rosbag2 bag is a folder with ``metadata.yaml`` and its storage file(s) (``.mcap`` here;
``.db3`` bags are read too). Every problem with an input bag becomes a :class:`BagError` whose
message names the bag and what is wrong; :class:`AtomicBagWriter` leaves either a complete bag
at the requested path or nothing there.

Example::

    info = inspect_bag(Path("tests/data/bags/mug_sim"), required=catalog.INPUTS)
    for msg in read_messages(info.path, [t.name for t in catalog.INPUTS]):
        ...  # msg.topic, msg.msgtype, msg.log_time_ns, msg.data (CDR bytes)

    with AtomicBagWriter(Path("out/bags/run1")) as bag:
        conn = bag.add_topic("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo")
        bag.write(conn, time.time_ns(), cdr_bytes)
    # out/bags/run1/ is complete here (also after Ctrl-C inside the block)
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from functional_grasp.bags.catalog import TopicSpec

#: rosbag2 metadata format version written (9 = Jazzy).
BAG_VERSION = 9


class BagError(Exception):
    """An input bag is missing, not a bag, truncated/corrupt, or lacks a needed topic or type."""


@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag: its type and how many messages the file really holds."""

    msgtype: str
    count: int


@dataclass(frozen=True)
class BagInfo:
    """What :func:`inspect_bag` found.

    Attributes:
        path: the bag folder.
        storage: ``mcap`` or ``sqlite3``.
        topics: topic name -> :class:`TopicInfo`.
        start_ns: first message log time, nanoseconds since the epoch (0 for an empty bag).
        end_ns: last message log time, nanoseconds.
        custom: the metadata's ``custom_data`` (``fgrasp.*`` keys: how ``fgrasp replay`` made it).
    """

    path: Path
    storage: str
    topics: dict[str, TopicInfo]
    start_ns: int
    end_ns: int
    custom: dict[str, str] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        """Time from the first to the last message, seconds."""
        return max(0, self.end_ns - self.start_ns) * 1e-9

    @property
    def message_count(self) -> int:
        return sum(t.count for t in self.topics.values())


@dataclass(frozen=True)
class BagMessage:
    """One recorded message: topic, type, log (receive) time in ns, serialized CDR bytes."""

    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes


@lru_cache(maxsize=1)
def typestore():
    """The rosbags type store of ROS 2 Jazzy (message definitions for writing, CDR decoding)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def bag_folder(path: str | Path) -> Path:
    """The bag folder of ``path`` (the folder itself, or the folder of its ``.mcap``/``.db3`` file).

    Raises:
        BagError: ``path`` does not exist or is not part of a rosbag2 bag.
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag {path}: not found")
    if path.is_file():
        if (path.parent / "metadata.yaml").is_file() and path.suffix in (".mcap", ".db3"):
            return path.parent
        raise BagError(f"bag {path}: not a rosbag2 bag (expected a folder holding metadata.yaml and "
                       "the .mcap file, as written by `fgrasp record` or `ros2 bag record`)")
    if not (path / "metadata.yaml").is_file():
        raise BagError(f"bag {path}: not a rosbag2 bag (the folder has no metadata.yaml)")
    return path


def inspect_bag(path: str | Path, required: Sequence[TopicSpec] = ()) -> BagInfo:
    """Open a bag, read every message once, and check it holds what ``required`` names.

    Reading every message finds truncated and corrupt files before anything is started; a
    file holding fewer messages than its metadata lists is reported as truncated. The first
    message of each required topic is decoded as its type.

    Args:
        path: the bag folder (or its storage file).
        required: topics that must be present with exactly this type and at least one message.

    Returns:
        The bag's :class:`BagInfo`.

    Raises:
        BagError: naming the bag and the problem (not found, not a bag, unreadable metadata,
            truncated or corrupt data, a required topic missing, empty or of another type).
    """
    from rosbags.rosbag2 import Reader

    folder = bag_folder(path)
    counts: dict[str, int] = {}
    first: dict[str, bytes] = {}
    start_ns = end_ns = 0
    try:
        with Reader(folder) as reader:
            listed = {name: (info.msgtype or "", info.msgcount) for name, info in reader.topics.items()}
            for conn, t_ns, data in reader.messages():
                counts[conn.topic] = counts.get(conn.topic, 0) + 1
                first.setdefault(conn.topic, bytes(data))
                start_ns = t_ns if not start_ns else min(start_ns, t_ns)
                end_ns = max(end_ns, t_ns)
    except BagError:
        raise
    except Exception as exc:  # noqa: BLE001 - rosbags raises many types for broken files
        raise BagError(f"bag {folder}: cannot be read, the file is truncated or corrupt "
                       f"({type(exc).__name__}: {exc})") from None
    short = [f"{name} ({counts.get(name, 0)} of {n})" for name, (_, n) in listed.items()
             if counts.get(name, 0) < n]
    if short:
        raise BagError(f"bag {folder}: truncated: metadata.yaml lists more messages than the file holds on "
                       + ", ".join(short) + "; re-record it or copy the complete file")
    storage = "mcap" if any(folder.glob("*.mcap")) else "sqlite3"
    custom = _custom_data(folder)
    info = BagInfo(folder, storage, {name: TopicInfo(t, counts.get(name, 0)) for name, (t, _) in listed.items()},
                   start_ns, end_ns, custom)
    check_topics(info, required)
    for spec in required:
        try:
            typestore().deserialize_cdr(first[spec.name], spec.msgtype)
        except Exception as exc:  # noqa: BLE001 - any decoding failure means the same to the user
            raise BagError(f"bag {folder}: the first message on {spec.name} does not decode as "
                           f"{spec.msgtype} ({type(exc).__name__}: {exc}); the data is corrupt") from None
    return info


def _custom_data(folder: Path) -> dict[str, str]:
    """``custom_data`` of the bag's metadata.yaml (rosbag2 format v6+), {} when absent."""
    import yaml

    try:
        meta = yaml.safe_load((folder / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return {}
    custom = meta.get("custom_data") if isinstance(meta, dict) else None
    return {str(k): str(v) for k, v in custom.items()} if isinstance(custom, dict) else {}


def check_topics(info: BagInfo, required: Iterable[TopicSpec]) -> None:
    """Raise :class:`BagError` listing every required topic that is missing, empty or mistyped."""
    problems = []
    for spec in required:
        topic = info.topics.get(spec.name)
        if topic is None:
            problems.append(f"no topic {spec.name} ({spec.msgtype})")
        elif topic.msgtype != spec.msgtype:
            problems.append(f"{spec.name} has type {topic.msgtype}, expected {spec.msgtype}")
        elif topic.count == 0:
            problems.append(f"{spec.name} has no messages")
    if problems:
        have = ", ".join(f"{n} ({t.msgtype}, {t.count})" for n, t in sorted(info.topics.items())) or "none"
        raise BagError(f"bag {info.path}: " + "; ".join(problems) + f". Topics in the bag: {have}. "
                       "Record the camera topics and /joint_states (fgrasp record) or remap them")


def read_messages(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """The bag's messages in log-time order, optionally only on ``topics``.

    Raises:
        BagError: the bag cannot be opened or read (use :func:`inspect_bag` first to find
            problems before acting on any message).
    """
    from rosbags.rosbag2 import Reader

    folder = bag_folder(path)
    wanted = None if topics is None else set(topics)
    try:
        with Reader(folder) as reader:
            conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
            if not conns:  # rosbags reads every connection when given none
                return
            for conn, t_ns, data in reader.messages(connections=conns):
                yield BagMessage(conn.topic, conn.msgtype, t_ns, bytes(data))
    except BagError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise BagError(f"bag {folder}: read failed ({type(exc).__name__}: {exc})") from None


def decode(msg: BagMessage) -> Any:
    """The message as a rosbags dataclass (fields as in the .msg, arrays as numpy)."""
    return typestore().deserialize_cdr(msg.data, msg.msgtype)


class AtomicBagWriter:
    """Write a rosbag2 MCAP bag (zstd-compressed chunks) so that ``out`` is complete or absent.

    The bag is written under a hidden ``.<name>.partial-<pid>/`` folder next to ``out`` and
    renamed to ``out`` by :meth:`commit` (a context manager commits on normal exit and on
    ``KeyboardInterrupt``, and removes the partial folder on any other exception).

    Args:
        out: the bag folder to create; must not exist.
        compress: zstd chunk compression (MCAP ``storage`` mode, readable by every MCAP reader).

    Raises:
        BagError: ``out`` exists already or its parent cannot be created.
    """

    def __init__(self, out: str | Path, compress: bool = True) -> None:
        from rosbags.rosbag2 import Writer
        from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin

        self.out = Path(out)
        if self.out.exists():
            raise BagError(f"output bag {self.out} exists already; choose another --out or delete it")
        self._partial = self.out.parent / f".{self.out.name}.partial-{os.getpid()}"
        try:
            self._partial.mkdir(parents=True)
        except OSError as exc:
            raise BagError(f"output bag {self.out}: cannot create {self._partial}: {exc}") from None
        self._writer = Writer(self._partial / self.out.name, version=BAG_VERSION,
                              storage_plugin=StoragePlugin.MCAP)
        if compress:
            self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._writer.open()
        self._open = True
        self.counts: dict[str, int] = {}

    def add_topic(self, topic: str, msgtype: str, offered_qos: Sequence[Any] = ()) -> Any:
        """Register a topic; returns the connection to pass to :meth:`write`.

        Raises:
            BagError: the Jazzy type store does not know ``msgtype``.
        """
        try:
            conn = self._writer.add_connection(topic, msgtype, typestore=typestore(),
                                               offered_qos_profiles=list(offered_qos))
        except Exception as exc:  # noqa: BLE001 - unknown type (KeyError/TypesysError) or a duplicate
            raise BagError(f"output bag {self.out}: cannot add topic {topic} of type {msgtype}: "
                           f"{type(exc).__name__}: {exc}") from None
        self.counts.setdefault(topic, 0)
        return conn

    def set_custom_data(self, key: str, value: str) -> None:
        """Store a string in the bag's metadata (``custom_data``; e.g. how it was made)."""
        self._writer.set_custom_data(key, str(value))

    def write(self, connection: Any, log_time_ns: int, data: bytes) -> None:
        """Append one serialized (CDR) message received at ``log_time_ns``."""
        self._writer.write(connection, int(log_time_ns), data)
        self.counts[connection.topic] = self.counts.get(connection.topic, 0) + 1

    def commit(self) -> Path:
        """Finish the file and move the bag to ``out``; returns ``out``."""
        if self._open:
            self._writer.close()
            self._open = False
        os.replace(self._partial / self.out.name, self.out)
        shutil.rmtree(self._partial, ignore_errors=True)
        return self.out

    def discard(self) -> None:
        """Drop everything written; nothing is left at ``out`` or in the partial folder."""
        if self._open:
            self._open = False
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - the data is thrown away anyway
                pass
        shutil.rmtree(self._partial, ignore_errors=True)

    def __enter__(self) -> AtomicBagWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.commit()
        else:
            self.discard()
