"""cmtrain.continuous: one command starts the default model's run or resumes it, by the shipped model's lineage."""
import json
import os
import signal
import subprocess
import sys
import time

import torch

from cmtrain import continuous
from cmtrain.export import export_onnx, metadata, random_model
from cmtrain.unet import PRESETS
from test_promote import _photos


def _shipped(path, seed):
    model = random_model("tiny", seed)
    export_onnx(model, str(path), metadata(model, f"probe-{seed}", "MIT", "synthetic", {"1": [0, 39]}))
    return path


def _train_args(data):
    return ["--data", str(data), "--crop", "32", "--batch", "4", "--val-percent", "50", "--val-crop", "64",
            "--val-crops", "2", "--ckpt-minutes", "100"]


def test_new_run_then_resume_then_a_new_run_for_another_shipped_model(tmp_path):
    data = _photos(tmp_path / "photos", n=8)
    run = tmp_path / "runs" / "continuous"
    shipped = _shipped(tmp_path / "default.onnx", 1)
    common = ["--run", str(run), "--model", str(shipped), "--student", "none", "--threads", "1", "--foreground", "--"] + _train_args(data)

    assert continuous.main(common + ["--max-steps", "2"]) == 0
    lineage = json.loads((run / "LINEAGE.json").read_text())
    assert lineage["base"] == continuous.sha256(str(shipped)) and lineage["promoted"] == []
    assert (run / "base.onnx").read_bytes() == shipped.read_bytes()       # a private copy: promotion replaces the original
    assert torch.load(run / "last.pt")["step"] == 2
    first = (run / "COMMAND.txt").read_text().splitlines()
    assert "--init-onnx" in first[0] and "--anchor-onnx" in first[0] and "--resume" not in first[0]

    # Same shipped model: the same run goes on from its checkpoint (and keeps its anchor).
    assert continuous.main(common + ["--max-steps", "4"]) == 0
    ckpt = torch.load(run / "last.pt")
    assert ckpt["step"] == 4 and ckpt["args"]["anchor_onnx"] == str(run / "base.onnx")
    assert "--resume" in (run / "COMMAND.txt").read_text().splitlines()[-1]

    # A model promoted from this run is of its lineage too.
    lineage["promoted"].append("f" * 64)
    continuous.write_lineage(str(run), lineage)
    assert continuous.plan(str(run), str(shipped))[0][-1] == "--resume"

    # Another shipped model (a fresh clone, another machine's promotion): the old run is set aside, a new one starts.
    other = _shipped(tmp_path / "other.onnx", 2)
    args, what = continuous.plan(str(run), str(other))
    assert "--init-onnx" in args and "set aside" in what
    assert (tmp_path / "runs" / "continuous.1" / "last.pt").exists() and not (run / "last.pt").exists()
    assert json.loads((run / "LINEAGE.json").read_text())["base"] == continuous.sha256(str(other))


def test_background_start_is_niced_in_its_own_group_and_stops_cleanly_on_sigterm(tmp_path):
    data = _photos(tmp_path / "photos", n=8)
    run = tmp_path / "run"
    shipped = _shipped(tmp_path / "default.onnx", 1)
    out = subprocess.run([sys.executable, "-m", "cmtrain.continuous", "--run", str(run), "--model", str(shipped),
                          "--student", "none", "--threads", "1", "--hours", "1", "--"] + _train_args(data),
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(continuous.__file__))),
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    pid = int((run / "PID").read_text())
    try:
        assert f"PID {pid}" in out and f"kill -STOP -{pid}" in out
        assert os.getpgid(pid) == pid != os.getpgid(0)                 # its own process group
        assert int(open(f"/proc/{pid}/stat").read().split(")")[1].split()[16]) == 19     # nice 19
        if os.path.exists(f"/proc/{pid}/autogroup"):      # and its session's group yields to the others too
            assert open(f"/proc/{pid}/autogroup").read().split()[-1] == "19"
        # A second start while it runs starts nothing.
        again = subprocess.run([sys.executable, "-m", "cmtrain.continuous", "--run", str(run), "--model", str(shipped),
                                "--student", "none"],
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(continuous.__file__))),
                               stdout=subprocess.PIPE, text=True, check=True).stdout
        assert "already training" in again and str(pid) in again
        # Checked: from here on the test's own run need not yield to a busy machine (where allowed), or it may not
        # reach its first step before the deadline.
        try:
            os.setpriority(os.PRIO_PROCESS, pid, 0)
            with open(f"/proc/{pid}/autogroup", "w") as f:
                f.write("0")
        except OSError:
            pass
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "loss.csv").exists():
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        os.killpg(pid, signal.SIGTERM)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
        raise AssertionError("SIGTERM did not stop the run")
    # SIGTERM: a checkpoint is written before it stops.
    assert torch.load(run / "last.pt")["step"] >= 1
    assert "stopped at step" in (run / "train.log").read_text()


def test_the_committed_current_run_names_a_preset_and_none_overrides_it(tmp_path):
    """training/current-run.json is what `npm run train` trains; it must name a real preset (or null)."""
    student = continuous.current_student()
    assert student is None or student in PRESETS
    (tmp_path / "current.json").write_text('{"student": "tiny-s2d", "why": "a test"}')
    assert continuous.current_student(str(tmp_path / "current.json")) == "tiny-s2d"
    assert continuous.current_student(str(tmp_path / "missing.json")) is None


def test_paths_are_read_from_where_npm_was_started(monkeypatch, tmp_path):
    """`npm run train:promote -- --run training/runs/x` runs in training/: a relative path is taken from npm's
    INIT_CWD (else the working folder); an absolute one as it is."""
    from cmtrain.continuous import from_invocation
    monkeypatch.setenv("INIT_CWD", str(tmp_path))
    assert from_invocation("training/runs/x") == os.path.join(str(tmp_path), "training", "runs", "x")
    assert from_invocation("/abs/run") == "/abs/run" and from_invocation(None) is None
    monkeypatch.delenv("INIT_CWD")
    assert from_invocation("runs/x") == os.path.join(os.getcwd(), "runs", "x")
