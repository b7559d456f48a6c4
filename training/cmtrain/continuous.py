"""Training that never stops: start (or resume) the default model's CPU run in the background.

  npm run train -- [--hours 24] [--threads N] [--foreground]          (from the repository root)
  python3 -m cmtrain.continuous [--hours 24] ...                       (from training/)

Which run: training/current-run.json names a student preset or none. With none (or --student none), the plain run
of the shipped model in runs/continuous/; with a preset (or --student PRESET), that faster architecture distilled from
the shipped model in runs/student-PRESET/ (cmtrain.student starts it; the shipped model is the target at every noise
level). Either folder's lineage file says which models/default.onnx it grew from (sha256) and which
shipped models it has since produced (cmtrain.promote adds them): when the shipped model is one of those, the run
resumes from its own last.pt (same data order, optimiser and EMA); when models/default.onnx is anything else (a fresh
clone, a model promoted on another machine), the old folder is set aside as runs/continuous.N and a new run starts
from the shipped weights (--init-onnx), with the shipped model as the anchor above sigma 2 (its one-step samples are
kept, TRAINING.md "What the second model taught us").

The recipe is the one of the current default's last stage, aimed at where warm-started edits query the network:
EDM's weighted squared error (the posterior mean), ln t ~ N(-1.2, 1.5^2) (two thirds of the crops between sigma
0.07 and 1.3), the anchor above sigma 2, lr 3e-4 after 100 warm-up steps, batch 32 of 32x32 crops, bfloat16
autocast where the CPU has native bfloat16 (1.28x the steps here, the same losses: training/README.md), and no
dropout: the small model underfits an endless stream of crops, and from the same checkpoint 600 steps without dropout
gained twice what 600 steps with the preset's 0.1 did (+0.04 against +0.02 dB at sigma 0.1 and 0.2, 2026-12-07), while
lr 6e-4 or 1e-4 and 64x64 crops in batches of 8 gained nothing more. Since 2026-12-08 the recipe is edit-aware
(cmtrain.edits): 15% of the crops under sigma 1 are the CLI's own start of superres x2/x4/x8 or colorize plus the
noise, the start's error capped at half the noise level, target the photo. The plain recipe had stopped moving (its
validation flat over its last 1,450 steps); this one shows the network what the edits hand it (training/README.md).

The process is started with nohup, setsid (its own process group: `kill -STOP -PGID` pauses it while a benchmark is
timed, `kill -CONT -PGID` resumes it) and nice 19, its session's scheduling group too (anything else on the machine
comes first), and checkpoints every --ckpt-minutes; it is safe to kill at any moment (SIGTERM checkpoints first;
after SIGKILL the steps since the last checkpoint are done again on resume). Its PID is written to runs/continuous/PID,
its output to train.log.
"""
import argparse
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))      # training/
ROOT = os.path.dirname(HERE)
RUN = os.path.join(HERE, "runs", "continuous")
DEFAULT_MODEL = os.path.join(ROOT, "models", "default.onnx")
LINEAGE = "LINEAGE.json"
# The recipe of a new run (cmtrain.train flags); a resumed run keeps the values it was started with.
RECIPE = ["--crop", "32", "--batch", "32", "--lr", "3e-4", "--warmup", "100", "--pretrain-iters", "100000000",
          "--loss", "mse", "--p-mean", "-1.2", "--p-std", "1.5", "--anchor-above", "2.0", "--ckpt-minutes", "8",
          "--dropout", "0", "--edit-mix", "0.15", "--edit-scale", "0.5"]
# What `npm run train` trains when no --student is given: {"student": PRESET or null, "why": ...}, committed, so that
# every session continues the project's current run with the same one command.
CURRENT = os.path.join(HERE, "current-run.json")


def from_invocation(path):
    """A path as the user wrote it, from where they ran the command: `npm run train...` runs us in training/, and npm
    says where it was started in INIT_CWD (`--run training/runs/x` from the repository root)."""
    if not path or os.path.isabs(path):
        return path
    return os.path.join(os.environ.get("INIT_CWD") or os.getcwd(), path)


def current_student(path: str = CURRENT):
    """The preset the project's current run distils into (None: the plain run of the shipped model)."""
    try:
        with open(path) as f:
            return json.load(f).get("student")
    except (OSError, ValueError):
        return None


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_lineage(run: str) -> dict:
    try:
        with open(os.path.join(run, LINEAGE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def of_lineage(lineage: dict, sha: str) -> bool:
    """Whether the model file `sha` grew from this run: its base, one it promoted, or one of those with other plans
    (cmtrain.replan rewrites the metadata alone; "replanned" maps the new file to the one it was made from)."""
    return sha in [lineage.get("base")] + lineage.get("promoted", []) + list(lineage.get("replanned", {}))


def origin(lineage: dict, sha: str) -> str:
    """The model file whose weights `sha` has: itself, or what it was replanned from, followed back."""
    seen = set()
    while sha in lineage.get("replanned", {}) and sha not in seen:
        seen.add(sha)
        sha = lineage["replanned"][sha]
    return sha


def carry_lineage(runs: str, old: str, new: str) -> list:
    """After cmtrain.replan rewrote the shipped model's plans (the same weights, a new file `new` from `old`): every
    run under `runs` whose lineage holds `old` records `new`, so that it still resumes rather than being set aside."""
    carried = []
    for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
        run = os.path.join(runs, name)
        lineage = read_lineage(run)
        if lineage and old != new and of_lineage(lineage, old):
            lineage.setdefault("replanned", {})[new] = old
            write_lineage(run, lineage)
            carried.append(name)
    return carried


def write_lineage(run: str, lineage: dict) -> None:
    path = os.path.join(run, LINEAGE)
    with open(path + ".tmp", "w") as f:
        json.dump(lineage, f, indent=1)
    os.replace(path + ".tmp", path)


def lower_autogroup(pid: int) -> bool:
    """Give the new session's scheduling group the lowest weight too.

    With the kernel's autogroup scheduling (sched_autogroup_enabled = 1, Debian's default), setsid puts the run in a
    group of its own and the CPU is shared fairly between groups: nice 19 then only ranks the run against itself, and
    the run took 60% of a core beside a test suite (measured). Writing 19 to /proc/PID/autogroup makes the whole group
    yield to everything else. Best effort: False where the kernel has no autogroup or refuses."""
    try:
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write("19")
        return True
    except OSError:
        return False


def _background() -> None:
    """In the child, before exec (so it holds when Popen returns, unlike a `nice` command that had not run yet under
    load): nice 19 and no SIGHUP."""
    os.setpriority(os.PRIO_PROCESS, 0, 19)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def running_pid(run: str):
    """The PID of this run's training process if it is alive, else None."""
    try:
        with open(os.path.join(run, "PID")) as f:
            pid = int(f.read().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return pid if b"cmtrain.train" in f.read() else None
    except OSError:
        return pid


def set_aside(run: str) -> str:
    n = 1
    while os.path.exists(f"{run}.{n}"):
        n += 1
    os.replace(run, f"{run}.{n}")
    return f"{run}.{n}"


def plan(run: str, model: str, student: str = None) -> tuple:
    """(arguments for cmtrain.train, what happens in words). With `student` (a unet preset), a new run trains that
    architecture, started by cmtrain.student from the shipped model, to give the shipped model's answers at every
    noise level (the anchor from sigma_min up: distillation)."""
    shipped = sha256(model)
    lineage = read_lineage(run)
    resumable = os.path.exists(os.path.join(run, "last.pt")) and of_lineage(lineage, shipped)
    if resumable:
        return ["--out", run, "--resume"], f"resuming {run} (shipped model {shipped[:12]} is of this run's lineage)"
    note = ""
    if os.path.exists(run):
        note = f"; the old run (not of the shipped model's lineage) set aside as {set_aside(run)}"
    os.makedirs(run)
    write_lineage(run, {"base": shipped, "base_model": os.path.relpath(model, ROOT), "promoted": [],
                        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    # The run reads its starting and anchor weights from a private copy: models/default.onnx is replaced by promotion.
    base = os.path.join(run, "base.onnx")
    with open(model, "rb") as src, open(base, "wb") as dst:
        dst.write(src.read())
    if student:
        init = os.path.join(run, "base-student.onnx")
        subprocess.check_call([sys.executable, "-m", "cmtrain.student", "--from", base, "--preset", student,
                               "--out", init], cwd=HERE, stdout=subprocess.DEVNULL)
        return (["--out", run, "--init-onnx", init, "--anchor-onnx", base] + RECIPE + ["--anchor-above", "0.002"],
                f"new run {run}: a {student} student of {os.path.relpath(model, ROOT)} ({shipped[:12]}){note}")
    return (["--out", run, "--init-onnx", base, "--anchor-onnx", base] + RECIPE,
            f"new run {run} from {os.path.relpath(model, ROOT)} ({shipped[:12]}){note}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m cmtrain.continuous", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=24.0, help="wall-clock hours this invocation trains (default 24)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (default: 1 to every core, whichever trains faster as the load changes)")
    p.add_argument("--run", help="run folder (default runs/continuous, or runs/student-PRESET with --student)")
    p.add_argument("--student", metavar="PRESET",
                   help="train a faster architecture (e.g. small-s2d) to give the shipped model's answers (cmtrain.student); "
                        "'none' for the plain run (default: training/current-run.json says which)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="the shipped model (default ../models/default.onnx)")
    p.add_argument("--foreground", action="store_true", help="train in this process (for tests and debugging)")
    p.add_argument("--dry-run", action="store_true", help="say what would run, start nothing")
    p.add_argument("extra", nargs="*", help="more cmtrain.train flags, after --")
    a = p.parse_args(argv)
    a.run, a.model = from_invocation(a.run), from_invocation(a.model)
    if a.hours <= 0:
        p.error(f"Expected a positive number of hours but received {a.hours}")
    a.student = current_student() if a.student is None else (None if a.student == "none" else a.student)
    if a.student:
        from .unet import PRESETS       # torch: only for a student (the launcher otherwise starts in 0.02 s, not 1 s)
        if a.student not in PRESETS:
            p.error(f"--student: expected one of {', '.join(sorted(PRESETS))} but received {a.student}")
    run = os.path.abspath(a.run or (os.path.join(HERE, "runs", f"student-{a.student}") if a.student else RUN))
    pid = running_pid(run)
    if pid is not None:
        print(f"already training: PID {pid} ({run}/train.log); stop it with: kill -TERM -{os.getpgid(pid)}")
        return 0
    if a.dry_run:
        shipped = sha256(a.model)
        lineage = read_lineage(run)
        ok = os.path.exists(os.path.join(run, "last.pt")) and of_lineage(lineage, shipped)
        print(("would resume " if ok else "would start a new run in ") + run)
        return 0
    cores = os.cpu_count() or 1
    threads = a.threads or cores
    args, what = plan(run, os.path.abspath(a.model), a.student)
    # Without --threads: between 1 and every core, whichever trains faster as the machine's load changes.
    cmd = [sys.executable, "-m", "cmtrain.train"] + args + ["--threads", str(a.threads or -cores),
                                                             "--minutes", f"{a.hours * 60:g}", "--bf16", "auto"] + a.extra
    with open(os.path.join(run, "COMMAND.txt"), "a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {shlex.join(cmd)}\n")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if a.foreground:
        return subprocess.call(cmd, cwd=HERE, env=env)
    log = open(os.path.join(run, "train.log"), "ab")
    proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_background)
    with open(os.path.join(run, "PID"), "w") as f:
        f.write(f"{proc.pid}\n")
    lower_autogroup(proc.pid)
    print(f"{what}\ntraining in the background for up to {a.hours:g} h: PID {proc.pid}, log {run}/train.log\n"
          f"pause: kill -STOP -{proc.pid}   resume: kill -CONT -{proc.pid}   stop: kill -TERM -{proc.pid}\n"
          f"promote its best checkpoint: npm run train:promote")
    return 0


if __name__ == "__main__":
    sys.exit(main())
