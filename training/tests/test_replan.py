import json

import onnx
import pytest

from cmtrain.export import DEFAULT_PLANS, export_onnx, metadata, random_model
from cmtrain.promote import replace_atomically
from cmtrain.replan import merge, with_refinements, with_task_plans

PLANS = {"superres-x4": {"4": {"ts": [26, 28, 31, 33, 39], "start": "estimate", "eta": 0}, "default": 4},
         "inpaint": {"4": {"ts": [35, 36, 37, 38, 39], "start": "estimate", "eta": 0.25}, "default": 4}}


def test_merge_takes_only_the_named_tasks():
    new = {"inpaint": {"1": {"ts": [38, 39], "start": "estimate", "eta": 0}, "default": 1},
           "superres-x4": {"1": {"ts": [37, 39], "start": "estimate", "eta": 0}, "default": 1}}
    got = merge(PLANS, new, ["inpaint"])
    assert got["inpaint"] == new["inpaint"] and got["superres-x4"] == PLANS["superres-x4"]
    with pytest.raises(ValueError, match="no plans for denoise"):
        merge(PLANS, new, ["denoise"])


def test_only_the_task_plans_change_and_bad_plans_are_refused(tmp_path):
    model = random_model("tiny", seed=2)
    path = str(tmp_path / "m.onnx")
    export_onnx(model, path, metadata(model, "t", "MIT", "nothing", DEFAULT_PLANS, PLANS))
    before = onnx.load(path)
    plans = merge(PLANS, {"inpaint": {"1": {"ts": [38, 39], "start": "estimate", "eta": 0}, "default": 1}}, ["inpaint"])
    after = with_task_plans(onnx.load(path), plans)
    replace_atomically(path, lambda t: onnx.save(after, t))
    back = onnx.load(path)
    meta = lambda p: {q.key: q.value for q in p.metadata_props}
    assert json.loads(meta(back)["cm.task_plans"]) == plans
    assert {k: v for k, v in meta(back).items() if k != "cm.task_plans"} == \
        {k: v for k, v in meta(before).items() if k != "cm.task_plans"}
    assert back.graph.SerializeToString() == before.graph.SerializeToString()
    with pytest.raises(ValueError):
        with_task_plans(onnx.load(path), {"inpaint": {"2": {"ts": [0, 39]}}})


def test_a_refinement_is_stored_checked_and_kept_by_a_later_search():
    plans = with_refinements(PLANS, ["inpaint=37,39"])
    assert plans["inpaint"]["refine"] == [37, 39] and "refine" not in PLANS["inpaint"]
    for bad in (["inpaint=39,37"], ["inpaint=37"], ["inpaint=a,39"], ["colorize=37,39"]):
        with pytest.raises(ValueError):
            with_refinements(PLANS, bad)
    # the plan search does not see coarse to fine: a task searched again keeps its refinement
    again = merge(plans, {"inpaint": {"1": {"ts": [38, 39], "start": "estimate", "eta": 0}, "default": 1}}, ["inpaint"])
    assert again["inpaint"]["refine"] == [37, 39] and again["inpaint"]["default"] == 1


def test_a_replanned_model_keeps_the_runs_of_its_lineage(tmp_path):
    from cmtrain import continuous
    runs = tmp_path / "runs"
    for name, lineage in (("mine", {"base": "a" * 64, "promoted": ["b" * 64]}), ("other", {"base": "c" * 64, "promoted": []})):
        (runs / name).mkdir(parents=True)
        (runs / name / "last.pt").write_bytes(b"")
        continuous.write_lineage(str(runs / name), lineage)
    assert continuous.carry_lineage(str(runs), "b" * 64, "d" * 64) == ["mine"]
    assert continuous.carry_lineage(str(runs), "d" * 64, "e" * 64) == ["mine"]      # replanned again
    mine = continuous.read_lineage(str(runs / "mine"))
    assert continuous.of_lineage(mine, "e" * 64) and continuous.origin(mine, "e" * 64) == "b" * 64
    assert not continuous.of_lineage(continuous.read_lineage(str(runs / "other")), "e" * 64)
    # the run resumes for the replanned file (plan() reads the file's sha256)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"weights and other plans")
    continuous.carry_lineage(str(runs), "b" * 64, continuous.sha256(str(model)))
    assert continuous.plan(str(runs / "mine"), str(model))[0][-1] == "--resume"


def test_replan_refine_end_to_end(tmp_path):
    """`replan --refine inpaint=38,39`: no search; the model's plans gain the refinement, everything else stays, the
    committed copy is written, and a run of the model's lineage still resumes from the new file."""
    from cmtrain import continuous, replan
    model = random_model("tiny", seed=3)
    path = str(tmp_path / "m.onnx")
    export_onnx(model, path, metadata(model, "t", "MIT", "nothing", DEFAULT_PLANS, PLANS))
    before = onnx.load(path)
    runs = tmp_path / "runs"
    (runs / "continuous").mkdir(parents=True)
    (runs / "continuous" / "last.pt").write_bytes(b"")
    continuous.write_lineage(str(runs / "continuous"), {"base": continuous.sha256(path), "promoted": []})
    copy = tmp_path / "task_plans.json"
    assert replan.main(["--refine", "inpaint=38,39", "--model", path, "--task-plans", str(copy), "--runs", str(runs)]) == 0
    meta = {q.key: q.value for q in onnx.load(path).metadata_props}
    want = {**PLANS, "inpaint": {**PLANS["inpaint"], "refine": [38, 39]}}
    assert json.loads(meta["cm.task_plans"]) == want and json.loads(copy.read_text()) == want
    assert onnx.load(path).graph.SerializeToString() == before.graph.SerializeToString()
    assert continuous.plan(str(runs / "continuous"), path)[0][-1] == "--resume"
    with pytest.raises(SystemExit):
        replan.main(["--model", path, "--task-plans", str(copy), "--runs", str(runs)])   # nothing to do
