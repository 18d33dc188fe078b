"""make eval's numbers in TensorBoard: scalars at the checkpoint's step and columns of the HPARAMS tab."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from braingan.experiment.run import HPARAMS_METRICS, hparams_metric_tags
from braingan.reporting.tensorboard import EVAL_TAGS, write_eval_scalars


def _hparams(folder) -> tuple[dict, set[str], EventAccumulator]:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    return dict(start.hparams), {m.name.tag for m in experiment.metric_infos}, acc


def test_eval_scalars_land_at_the_checkpoints_step_and_become_hparams_columns(tmp_path):
    settings = {"model/r1_gamma": 0.1, "dataset/name": "demo", "schedule/fid_kimg": 50, "schedule/fid_num_gen": 5000}
    metrics = {"fid": 41.5, "kid_x1e3": 12.0, "precision": 0.5, "recall": float("nan"), "density": 0.9}
    written = write_eval_scalars(tmp_path, 128000, metrics, settings, hparams_metric_tags(settings))
    assert written == ["Eval/fid", "Eval/kid_x1e3", "Eval/precision", "Eval/density"]  # NaN and absent: left out
    start, columns, acc = _hparams(tmp_path)
    assert start["dataset/name"].string_value == "demo" and start["model/r1_gamma"].number_value == pytest.approx(0.1)
    assert set(EVAL_TAGS) | set(HPARAMS_METRICS) | {"Metrics/fid5k_train"} == columns
    fid = acc.Scalars("Eval/fid")
    assert [(e.step, e.value) for e in fid] == [(128000, pytest.approx(41.5))]
    assert "Eval/recall" not in acc.Tags()["scalars"]


def test_without_fid_during_training_there_is_no_fid_column_of_it():
    tags = hparams_metric_tags({"schedule/fid_kimg": None, "schedule/fid_num_gen": 5000})
    assert not any(t.startswith("Metrics/fid") for t in tags) and set(EVAL_TAGS) <= set(tags)
    assert tags[: len(HPARAMS_METRICS)] == HPARAMS_METRICS  # the training scalars first, as before
