"""`make eval` end to end on a tiny CONDITIONAL (ADNI AD/NC) checkpoint: per-class metrics."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import pytest

from braingan.checkpoint import read_info
from braingan.experiment.run import train
from helpers.mri import write_adni
from helpers.runs import REPO, compose, tiny_overrides

CLASSES = ("AD", "NC")
NUM_GEN = 32  # > pr_k per class even for the smaller class; Inception on CPU dominates the run time
METRIC_KEYS = ("fid", "kid_x1e3", "kid_x1e3_std", "precision", "recall", "density", "coverage")
MS_SSIM_KEYS = ("ms_ssim_gen", "ms_ssim_real", "ms_ssim_gen_std", "ms_ssim_real_std")
DC_K = 3  # density/coverage needs more than dc_k real slices per class: the smaller test class has 5
UTILITY_PER_CLASS = 16  # generated slices per class for the utility classifier (its steps: 20)


def _count_on_disk(base, split: str) -> dict[str, int]:
    """Slices per class of one split, counted from the fixture tree itself."""
    return {cls: sum(1 for p in (base / split / cls).iterdir() if p.suffix == ".jpeg") for cls in CLASSES}


def _assert_finite(block: dict, where: str) -> None:
    for key in METRIC_KEYS:
        assert key in block, f"{where}: {key} missing"
        assert isinstance(block[key], float) and math.isfinite(block[key]), f"{where}: {key}={block[key]!r}"
    assert 0.0 <= block["precision"] <= 1.0 and 0.0 <= block["recall"] <= 1.0, where
    assert block["fid"] >= 0.0 and block["kid_x1e3_std"] >= 0.0, where
    assert block["density"] >= 0.0 and 0.0 <= block["coverage"] <= 1.0, where
    for key in MS_SSIM_KEYS:
        assert 0.0 <= block[key] <= 1.0, f"{where}: {key}={block[key]!r}"  # relu-normalized MS-SSIM
    # Disjoint pairs within the block's own images: n // 2 of each side (far below ms_ssim_pairs=1000).
    assert block["ms_ssim_pairs_gen"] == block["num_gen"] // 2 >= 1, where
    assert block["ms_ssim_pairs_real"] == block["num_real"] // 2 >= 1, where


@pytest.mark.slow
def test_make_eval_on_a_conditional_checkpoint_writes_per_class_metrics(tmp_path):
    root = write_adni(tmp_path / "ADNI", per_class=1, slices=6)  # 1 train + 1 test subject per class
    base = root / "AD_NC"
    # Uneven classes in both splits, so a swapped or mixed-up class mask cannot go unnoticed.
    sorted((base / "test" / "NC").iterdir())[0].unlink()
    sorted((base / "train" / "AD").iterdir())[-1].unlink()
    test_counts, train_counts = _count_on_disk(base, "test"), _count_on_disk(base, "train")
    assert test_counts["AD"] != test_counts["NC"] and train_counts["AD"] != train_counts["NC"]

    run = train(compose(tiny_overrides(tmp_path, base, 0.008, dataset="adni")))  # one step of 8, 32 px
    ckpt = run / "checkpoints" / "last.ckpt"
    info = read_info(ckpt)
    assert info.net.c_dim == 2 and info.format_version == 2
    assert info.class_names == list(CLASSES)

    cache = tmp_path / "cache"
    args = (
        f"num_gen={NUM_GEN} batch_size=32 kid_subsets=10 dc_k={DC_K} real=test progress=false cache_dir={cache} "
        f"utility=true utility_per_class={UTILITY_PER_CLASS} utility_steps=20"
    )
    proc = subprocess.run(
        ["make", "-s", "eval", f"CKPT={ckpt}", f"ARGS={args}"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "class AD" in proc.stdout and "class NC" in proc.stdout
    metrics = json.loads((run / "eval" / "metrics.json").read_text())

    # Overall: generated vs the test split, all classes together.
    _assert_finite(metrics["metrics"], "metrics")
    assert metrics["metrics"]["num_real"] == sum(test_counts.values())
    assert metrics["metrics"]["num_gen"] == NUM_GEN
    s = metrics["settings"]
    assert s["real"] == "test" and s["num_real"] == sum(test_counts.values()) and s["num_gen"] == NUM_GEN
    assert s["class_names"] == list(CLASSES) and s["resolution"] == 32
    assert s["dc_k"] == DC_K and s["ms_ssim_scales"] == 2 and s["ms_ssim_kernel"] == 11
    # The floor: the training split vs the held-out (= test) split.
    _assert_finite(metrics["floor"], "floor")
    assert metrics["floor"]["num_real"] == sum(train_counts.values())
    assert metrics["floor"]["num_gen"] == sum(test_counts.values())

    # Per class: every class present, its real set = that class's test slices on disk, and the
    # generated images split in the real set's class proportions.
    per_class = metrics["per_class"]
    assert sorted(per_class) == sorted(CLASSES)
    total = sum(test_counts.values())
    for cls in CLASSES:
        _assert_finite(per_class[cls], f"per_class.{cls}")
        assert per_class[cls]["num_real"] == test_counts[cls], cls
        assert abs(per_class[cls]["num_gen"] - NUM_GEN * test_counts[cls] / total) <= 1, cls
    assert sum(per_class[cls]["num_gen"] for cls in CLASSES) == NUM_GEN
    # Each class's metrics are computed on its own subset, not copies of the overall numbers.
    assert per_class["AD"]["fid"] != per_class["NC"]["fid"]
    assert all(per_class[cls]["fid"] != metrics["metrics"]["fid"] for cls in CLASSES)
    assert per_class["AD"]["ms_ssim_real"] != per_class["NC"]["ms_ssim_real"]  # each class's own pairs

    # Utility: trained on generated, real and both; tested on the held-out subjects (one per class here).
    u = metrics["utility"]
    assert u["test"] == {"subjects": 2, "slices": total, "slices_per_class": [test_counts[c] for c in CLASSES]}
    assert u["generated_per_class"] == UTILITY_PER_CLASS
    slices = {name: r["slices"] for name, r in u["train_on"].items()}
    real_train = sum(train_counts.values())
    assert slices == {"generated": 2 * UTILITY_PER_CLASS, "real": real_train, "real+generated": real_train + 32}
    for name, r in u["train_on"].items():
        assert all(0.0 <= r[k] <= 1.0 for k in ("accuracy", "balanced_accuracy", "auc")), name
    assert "utility: tested on" in proc.stdout and "real+generated" in proc.stdout

    # TensorBoard: the numbers at the checkpoint's step, and columns of the run's HPARAMS tab.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    assert s["tensorboard"] == [
        "Eval/fid",
        "Eval/kid_x1e3",
        "Eval/precision",
        "Eval/recall",
        "Eval/density",
        "Eval/coverage",
    ]
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("Eval/fid")] == [(8, pytest.approx(metrics["metrics"]["fid"]))]
    content = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    columns = {m.name.tag for m in HParamsPluginData.FromString(content).experiment.metric_infos}
    assert {"Eval/fid", "Eval/coverage", "Loss/G"} <= columns


@pytest.mark.slow
def test_utility_is_refused_in_one_line_without_classes_or_with_one_held_out_class(
    tiny_demo_run, tiny_adni_run, tmp_path
):
    from braingan.eval import evaluate
    from braingan.utils.errors import UsageError

    with pytest.raises(UsageError, match=r"utility=true needs a conditional model"):
        evaluate(tiny_demo_run / "checkpoints" / "last.ckpt", utility=True, out=tmp_path, progress=False)
    with pytest.raises(UsageError, match=r"utility_per_class=0 and utility_steps=600 must be whole numbers >= 1"):
        evaluate(tiny_adni_run / "checkpoints" / "last.ckpt", utility=True, utility_per_class=0, out=tmp_path)
    run = tmp_path / "one_class"  # a copy whose manifest holds AD subjects only among the held-out ones
    shutil.copytree(tiny_adni_run, run)
    manifest = (run / "manifest.csv").read_text().splitlines()
    header, rows = manifest[0], manifest[1:]
    split, cls = header.split(",").index("split"), header.split(",").index("class")
    kept = [r for r in rows if r.split(",")[split] == "train" or r.split(",")[cls] == "AD"]
    (run / "manifest.csv").write_text("\n".join([header, *kept]) + "\n")
    with pytest.raises(UsageError, match=r"held-out subjects have only class AD") as error:
        evaluate(run / "checkpoints" / "last.ckpt", utility=True, out=tmp_path, progress=False)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "metrics.json").exists()  # refused before any work
