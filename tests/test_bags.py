"""fgrasp record / replay: real bags (rosbags MCAP), real rclpy, real perception + planner nodes."""
from __future__ import annotations

import io
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from functional_grasp.bags import catalog
from functional_grasp.bags.bagfile import AtomicBagWriter, BagError, inspect_bag, read_messages, typestore
from functional_grasp.bags.compare import Tolerances, grasp_outputs
from functional_grasp.bags.replay import EXIT_BAD_INPUT, EXIT_OK, EXIT_REGRESSION, expect_matches
from functional_grasp.cli import main as fgrasp
from functional_grasp.report import Reporter
from grasp_common import topics

DATA = Path(__file__).parent / "data" / "bags"
SAMPLE, EXPECTED = DATA / "mug_sim", DATA / "mug_sim_expected"
#: Bound on one replay of the sample bag (start-up ~3 s, planning ~2-5 s on 2 busy cores).
REPLAY_TIMEOUT_S = 120
#: Bound on a recorder subprocess.
RECORD_TIMEOUT_S = 30


def _copy_bag(src: Path, dst: Path, keep=lambda msg: True, change=lambda msg: msg.data) -> Path:
    """Copy the messages of ``src`` that ``keep`` accepts into a new bag, ``change`` giving their bytes."""
    info = inspect_bag(src)
    with AtomicBagWriter(dst) as out:
        conns = {}
        for msg in read_messages(src):
            if not keep(msg):
                continue
            if msg.topic not in conns:
                conns[msg.topic] = out.add_topic(msg.topic, info.topics[msg.topic].msgtype)
            out.write(conns[msg.topic], msg.log_time_ns, change(msg))
    return dst


def _run_fgrasp(*argv: str, timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "functional_grasp.cli", *argv], capture_output=True,
                          text=True, timeout=timeout_s, env=dict(os.environ, MUJOCO_GL="egl"))


# --- replay of the shipped sample through the real nodes ----------------------------------------


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One `fgrasp replay SAMPLE --fast --expect EXPECTED` run (real perception + planner processes)."""
    import random

    out = tmp_path_factory.mktemp("replay") / "out"
    domain = random.Random(os.getpid() + 7).randint(1, 100)
    proc = _run_fgrasp("replay", str(SAMPLE), "--fast", "--out", str(out), "--expect", str(EXPECTED),
                       "--domain-id", str(domain), "--log-dir", str(out.parent / "logs"),
                       timeout_s=REPLAY_TIMEOUT_S)
    return proc, out


def test_sample_bags_are_small_and_complete():
    info = inspect_bag(SAMPLE, catalog.INPUTS)
    assert info.storage == "mcap"
    assert info.topics[topics.COLOR_IMAGE].count >= 3
    size = sum(f.stat().st_size for d in (SAMPLE, EXPECTED) for f in d.iterdir())
    assert size < 4 * 2**20, f"sample bags are {size / 2**20:.1f} MiB; keep them to a few MB"
    ref = grasp_outputs(EXPECTED)
    assert ref.planned and ref.joint_goal and ref.wrist_xyz_m is not None


def test_replay_of_sample_matches_shipped_reference(replayed):
    proc, out = replayed
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    assert "same grasp as" in proc.stdout
    got, ref = grasp_outputs(out), grasp_outputs(EXPECTED)
    assert set(got.joint_goal) == set(ref.joint_goal)
    assert max(abs(got.joint_goal[n] - ref.joint_goal[n]) for n in ref.joint_goal) <= Tolerances().joint_rad
    counts = inspect_bag(out).topics
    assert counts[topics.JOINT_GOAL].count == 1 and counts[topics.PLANNER_STATUS].count == 1
    assert counts[topics.OBJECT_CLOUD].count >= 1
    assert not any(p.name.startswith(".") for p in out.parent.iterdir()), "partial folder left behind"


def test_perturbed_reference_is_reported_as_regression(replayed, tmp_path):
    proc, out = replayed
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    store = typestore()

    def shift_joint4(msg):
        if msg.topic != topics.JOINT_GOAL:
            return msg.data
        goal = store.deserialize_cdr(msg.data, msg.msgtype)
        goal.position = goal.position.copy()  # decoded arrays are read-only views
        goal.position[list(goal.name).index("panda_joint4")] += 0.05  # 5x the joint tolerance
        return bytes(store.serialize_cdr(goal, msg.msgtype))

    perturbed = _copy_bag(EXPECTED, tmp_path / "perturbed", change=shift_joint4)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = expect_matches(out, grasp_outputs(perturbed), Tolerances(), Reporter(stdout, stderr), "perturbed")
    assert code == EXIT_REGRESSION
    table = stdout.getvalue()
    assert "joint goal [rad]" in table and "REGRESSION" in table and "panda_joint4" in table
    assert "max 0.0500 rad" in table
    assert "regression: joint goal [rad]" in stderr.getvalue()


# --- bad bags: clear error, exit 2, nothing started, no output bag --------------------------------


def _replay_bad(bag: Path, tmp_path: Path, capsys) -> str:
    out = tmp_path / "should_not_exist"
    code = fgrasp(["replay", str(bag), "--out", str(out), "--fast"])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT, err
    assert not out.exists() and not any(p.name.startswith(".should_not_exist") for p in tmp_path.iterdir())
    return err


def test_truncated_bag_is_rejected(tmp_path, capsys):
    bag = tmp_path / "truncated"
    shutil.copytree(SAMPLE, bag)
    mcap = next(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) * 6 // 10])
    err = _replay_bad(bag, tmp_path, capsys)
    assert str(bag) in err and "truncated or corrupt" in err


def test_bag_missing_camera_topic_is_rejected(tmp_path, capsys):
    bag = _copy_bag(SAMPLE, tmp_path / "no_depth", keep=lambda m: m.topic != topics.DEPTH_IMAGE)
    err = _replay_bad(bag, tmp_path, capsys)
    assert str(bag) in err and f"no topic {topics.DEPTH_IMAGE} (sensor_msgs/msg/Image)" in err


def test_topic_with_wrong_type_is_rejected(tmp_path, capsys):
    bag = tmp_path / "wrong_type"
    store = typestore()
    with AtomicBagWriter(bag) as out:
        conns = {}
        for msg in read_messages(SAMPLE):
            if msg.topic == topics.DEPTH_IMAGE:
                msgtype = "std_msgs/msg/String"
                data = bytes(store.serialize_cdr(store.types[msgtype](data="not a depth image"), msgtype))
            else:
                msgtype, data = msg.msgtype, msg.data
            if msg.topic not in conns:
                conns[msg.topic] = out.add_topic(msg.topic, msgtype)
            out.write(conns[msg.topic], msg.log_time_ns, data)
    err = _replay_bad(bag, tmp_path, capsys)
    assert f"{topics.DEPTH_IMAGE} has type std_msgs/msg/String, expected sensor_msgs/msg/Image" in err


def test_not_a_bag_is_rejected(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a bag")
    assert "not a rosbag2 bag" in _replay_bad(text, tmp_path, capsys)
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    assert "no metadata.yaml" in _replay_bad(empty, tmp_path, capsys)
    assert "not found" in _replay_bad(tmp_path / "missing", tmp_path, capsys)


def test_reference_without_planner_output_is_rejected(tmp_path, capsys):
    code = fgrasp(["replay", str(SAMPLE), "--expect", str(SAMPLE), "--out", str(tmp_path / "o")])
    assert code == EXIT_BAD_INPUT
    assert f"reference bag {SAMPLE}: no {topics.PLANNER_STATUS}" in capsys.readouterr().err


def test_existing_output_bag_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "existing"
    out.mkdir()
    code = fgrasp(["replay", str(SAMPLE), "--out", str(out)])
    assert code == EXIT_BAD_INPUT and "exists already" in capsys.readouterr().err
    with pytest.raises(BagError, match="exists already"):
        AtomicBagWriter(out)


# --- record from a tiny publisher ----------------------------------------------------------------


class _Lines:
    """Collect a subprocess's stdout lines on a thread (for bounded waits on a line)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(ln) for ln in proc.stdout], daemon=True).start()

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if text in self.lines.get(timeout=0.1):
                    return
            except queue.Empty:
                pass
        raise AssertionError(f"no line containing {text!r} within {timeout_s} s")


def _publish_sample(ros_context, recorder: subprocess.Popen, n_images: int, n_states: int) -> None:
    """Publish a latched status, joint states and small images once the recorder subscribes."""
    import rclpy
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    from functional_grasp.bags.recorder import qos_profile

    node = rclpy.create_node("tiny_publisher", context=ros_context)
    try:
        status = node.create_publisher(String, topics.PLANNER_STATUS, qos_profile("latched"))
        states = node.create_publisher(JointState, topics.JOINT_STATES, qos_profile("state"))
        images = node.create_publisher(Image, topics.COLOR_IMAGE, qos_profile("sensor"))
        status.publish(String(data='{"success": true}'))
        deadline = time.monotonic() + RECORD_TIMEOUT_S
        while (min(p.get_subscription_count() for p in (status, states, images)) == 0
               and time.monotonic() < deadline and recorder.poll() is None):
            time.sleep(0.02)
        for i in range(n_states):
            states.publish(JointState(name=["panda_joint1"], position=[0.1 * i]))
            time.sleep(0.02)
        for i in range(n_images):
            img = Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(12))
            img.header.stamp.sec = i + 1
            images.publish(img)
            time.sleep(0.05)
    finally:
        node.destroy_node()


def _record(tmp_path: Path, domain: int, *extra: str,
            sigint_ignored: bool = False) -> tuple[subprocess.Popen, _Lines, Path]:
    out = tmp_path / "rec"
    topics_arg = ",".join((topics.COLOR_IMAGE, topics.JOINT_STATES, topics.PLANNER_STATUS))
    # stderr goes to a file: an undrained pipe would block the recorder once it fills (a hang, not a failure)
    err = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "functional_grasp.cli", "record", "--out", str(out),
                             "--topics", topics_arg, "--domain-id", str(domain), *extra],
                            stdout=subprocess.PIPE, stderr=err, text=True,
                            env=dict(os.environ, PYTHONFAULTHANDLER="1"),
                            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None)
    proc.err_file = err
    return proc, _Lines(proc), out


def _wait_or_dump(proc: subprocess.Popen, timeout_s: float) -> int:
    """The exit code of ``proc``; if it has not exited within ``timeout_s``, fail with the Python
    stacks of all its threads (``faulthandler``, enabled by :func:`_record`) so a hang says where."""
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        proc.wait(10)
        raise AssertionError(f"the recorder did not exit within {timeout_s} s of Ctrl-C; its threads:\n"
                             + _stderr(proc)[-8000:]) from None


def _stderr(proc: subprocess.Popen) -> str:
    proc.err_file.seek(0)
    return proc.err_file.read()


def _counts(bag: Path) -> dict[str, int]:
    return {name: t.count for name, t in inspect_bag(bag).topics.items()}


def test_record_writes_mcap_with_expected_topics_and_counts(ros_context, ros_domain_id, tmp_path):
    proc, lines, out = _record(tmp_path, ros_domain_id, "--frames", "3", "--duration", str(RECORD_TIMEOUT_S))
    try:
        lines.wait_for("record       started", RECORD_TIMEOUT_S)
        _publish_sample(ros_context, proc, n_images=3, n_states=5)
        assert proc.wait(RECORD_TIMEOUT_S) == 0, _stderr(proc)
    finally:
        proc.kill()
    assert _counts(out) == {topics.COLOR_IMAGE: 3, topics.JOINT_STATES: 5, topics.PLANNER_STATUS: 1}
    assert next(out.glob("*.mcap")).read_bytes()[:5] == b"\x89MCAP"
    meta = (out / "metadata.yaml").read_text()
    assert "storage_identifier: mcap" in meta
    # offered QoS per topic, so `ros2 bag play` replays latched and sensor topics correctly
    assert "durability: transient_local" in meta and "reliability: best_effort" in meta
    status = next(m for m in read_messages(out, [topics.PLANNER_STATUS]))
    assert typestore().deserialize_cdr(status.data, status.msgtype).data == '{"success": true}'


@pytest.mark.parametrize("inherited_sigint", ["default", "ignored"])
def test_ctrl_c_leaves_a_valid_bag(ros_context, ros_domain_id, tmp_path, inherited_sigint):
    """Also when started as a background job of a non-interactive shell (SIGINT ignored on entry)."""
    proc, lines, out = _record(tmp_path, ros_domain_id, sigint_ignored=inherited_sigint == "ignored")
    try:
        lines.wait_for("Ctrl-C stops", RECORD_TIMEOUT_S)
        _publish_sample(ros_context, proc, n_images=2, n_states=3)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        assert _wait_or_dump(proc, 2 * RECORD_TIMEOUT_S) == 0, _stderr(proc)
    finally:
        proc.kill()
    assert _counts(out) == {topics.COLOR_IMAGE: 2, topics.JOINT_STATES: 3, topics.PLANNER_STATUS: 1}
    assert [p.name for p in tmp_path.iterdir()] == ["rec"], "partial folder left behind"


# --- the comparison itself (pure) -----------------------------------------------------------------


def test_comparison_flags_a_moved_wrist_and_a_missing_goal():
    import dataclasses

    import numpy as np
    from scipy.spatial.transform import Rotation

    from functional_grasp.bags.compare import compare_outputs

    ref = grasp_outputs(EXPECTED)
    turned = (Rotation.from_euler("z", 3.0, degrees=True) * Rotation.from_quat(ref.wrist_quat_xyzw)).as_quat()
    moved = dataclasses.replace(ref, wrist_xyz_m=ref.wrist_xyz_m + np.array([0.0, 0.005, 0.0]),
                                wrist_quat_xyzw=turned)
    verdicts = {c.quantity: c for c in compare_outputs(ref, moved)}
    assert verdicts["planner outcome"].ok and verdicts["joint goal [rad]"].ok
    assert not verdicts["wrist position [m]"].ok and verdicts["wrist position [m]"].difference == "5.00 mm"
    assert not verdicts["wrist rotation [xyzw]"].ok and verdicts["wrist rotation [xyzw]"].difference == "3.000 deg"

    failed = dataclasses.replace(ref, planner_status={"success": False, "reason": "no grasp candidate"},
                                 joint_goal=None, wrist_xyz_m=None, wrist_quat_xyzw=None)
    bad = [c.quantity for c in compare_outputs(ref, failed) if not c.ok]
    assert bad == ["planner outcome", "joint goal [rad]", "wrist position [m]", "wrist rotation"]


def test_reference_made_with_another_seed_is_pointed_out():
    from functional_grasp.bags.replay import ReplayConfig, check_inputs

    _, _, warnings = check_inputs(ReplayConfig(bag=SAMPLE, expect=EXPECTED, seed=5))
    assert warnings == ["the reference was made with seed 0, this replay uses 5"]
    assert check_inputs(ReplayConfig(bag=SAMPLE, expect=EXPECTED))[2] == []
