"""Search some tasks' plans again for the shipped model, keeping its weights and every other task's plans.

  npm run train:replan -- --tasks inpaint             (from the repository root)
  npm run train:replan -- --refine inpaint=37,39      (store coarse to fine's refinement, bench/refinesearch.mjs)
  python3 -m cmtrain.replan [--tasks inpaint] [--refine TASK=TS] [--rounds 1] [--model ../models/default.onnx] [--dry-run]

For when the way a task samples changed after its model was promoted (say, the CLI's default fill), so that the plans
stored in the model (`cm.task_plans`) were chosen for something the CLI no longer runs. It runs the same search as
promotion (`bench/plansearch.mjs --start model --rounds R --tasks ...`, on the validation photos), merges the tasks'
new plans into the model's cm.task_plans (checked as export checks them), and writes only the metadata: the file is
replaced atomically, training/results/task_plans.json with it, and the int8 variant is made again (it names the float
file it was made from by its SHA-256). The model's name, weights and history stay as they were.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import onnx

from .continuous import HERE, carry_lineage, from_invocation, sha256
from .export import check_task_plans, merge_task_plans
from .promote import ROOT, TASK_PLANS, replace_atomically, requantize


def with_task_plans(proto, task_plans: dict):
    """The model with its cm.task_plans replaced (every other metadata entry, and the graph, as they were)."""
    check_task_plans(task_plans)
    props = {p.key: p.value for p in proto.metadata_props}
    if "cm.task_plans" not in props:
        raise ValueError("the model has no cm.task_plans to change")
    for p in proto.metadata_props:
        if p.key == "cm.task_plans":
            p.value = json.dumps(task_plans)
    return proto


def merge(old: dict, new: dict, tasks: list) -> dict:
    """old's plans with those of `tasks` taken from new (each must be there; merge_task_plans)."""
    missing = [t for t in tasks if t not in new]
    if missing:
        raise ValueError(f"the search gave no plans for {', '.join(missing)}")
    return merge_task_plans(old, {t: new[t] for t in tasks})


def with_refinements(plans: dict, refine: list) -> dict:
    """plans with each "TASK=TS" of `refine` stored as that task's "refine" (the task must have plans)."""
    out = {t: dict(v) for t, v in plans.items()}
    for item in refine:
        task, _, ts = item.partition("=")
        if task not in out:
            raise ValueError(f"--refine {item}: the model stores no plans for {task!r}")
        try:
            out[task]["refine"] = [int(t) for t in ts.split(",")]
        except ValueError:
            raise ValueError(f"--refine {item}: expected TASK=grid indices, e.g. inpaint=37,39") from None
    check_task_plans(out)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m cmtrain.replan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="", help="comma-separated tasks of cm.task_plans to search again (e.g. inpaint,denoise)")
    p.add_argument("--refine", action="append", default=[], metavar="TASK=TS",
                   help="store a task's coarse-to-fine refinement (grid indices, e.g. inpaint=37,39: what "
                        "bench/refinesearch.mjs chose); repeatable; with or without --tasks")
    p.add_argument("--model", default=os.path.join(ROOT, "models", "default.onnx"))
    p.add_argument("--rounds", type=int, default=1, help="refinement rounds of the search (default 1, as promotion)")
    p.add_argument("--task-plans", default=TASK_PLANS, help="the committed copy of the plans, rewritten with the model")
    p.add_argument("--runs", default=os.path.join(HERE, "runs"), help="training runs whose lineage follows the model")
    p.add_argument("--dry-run", action="store_true", help="search and print; change nothing")
    a = p.parse_args(argv)
    a.model, a.task_plans, a.runs = from_invocation(a.model), from_invocation(a.task_plans), from_invocation(a.runs)
    tasks = [t for t in a.tasks.split(",") if t]
    if not tasks and not a.refine:
        p.error("give --tasks to search, or --refine TASK=TS to store")
    proto = onnx.load(a.model)
    old = json.loads({q.key: q.value for q in proto.metadata_props}.get("cm.task_plans", "{}"))
    plans = old
    if tasks:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "task_plans.json")
            subprocess.run(["node", os.path.join(ROOT, "bench", "plansearch.mjs"), "--model", a.model, "--start", "model",
                            "--rounds", str(a.rounds), "--tasks", ",".join(tasks), "--out", out],
                           check=True, stdout=subprocess.DEVNULL)
            with open(out) as f:
                found = json.load(f)
        plans = merge(old, found, tasks)
    plans = with_refinements(plans, a.refine)
    changed = list(dict.fromkeys(tasks + [r.split("=")[0] for r in a.refine]))
    for t in changed:
        print(f"{t}: {json.dumps(old.get(t))}\n  -> {json.dumps(plans[t])}")
    if a.dry_run:
        return 0
    proto = with_task_plans(proto, plans)
    before = sha256(a.model)
    replace_atomically(a.model, lambda t: onnx.save(proto, t))
    carried = carry_lineage(a.runs, before, sha256(a.model))
    if carried:
        print(f"the same weights: {', '.join(carried)} still resume from it (LINEAGE.json \"replanned\")")
    replace_atomically(a.task_plans, lambda t: open(t, "w").write(json.dumps(plans) + "\n"))
    requantize(a.model)
    print(f"{a.model}: cm.task_plans of {', '.join(changed)} replaced; {a.task_plans} written; int8 variant made again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
