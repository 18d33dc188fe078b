"""Fine-tuning (`init=<checkpoint>`, `model.freeze_d`): a demo-trained tiny model onto OASIS and ADNI fixture trees."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from braingan.checkpoint import load_checkpoint, read_info
from braingan.experiment.finetune import initialize, network_for_init, read_source
from braingan.experiment.run import train
from braingan.experiment.settings import data_and_configs
from braingan.rundir import RunDir
from braingan.training.module import StyleGAN2Module
from braingan.utils.errors import UsageError
from helpers.mri import write_adni, write_oasis
from helpers.runs import compose, tiny_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def source(tiny_demo_run) -> Path:
    return RunDir(tiny_demo_run).last


@pytest.fixture(scope="module")
def oasis_root(tmp_path_factory) -> Path:
    return write_oasis(tmp_path_factory.mktemp("oasis") / "OASIS") / "keras_png_slices_data"


@pytest.fixture(scope="module")
def adni_root(tmp_path_factory) -> Path:
    return write_adni(tmp_path_factory.mktemp("adni") / "ADNI") / "AD_NC"


@pytest.fixture(scope="module")
def oasis_run(tmp_path_factory, source, oasis_root) -> Path:
    """Two steps of 8 on the OASIS tree from the demo model, D's two highest-resolution blocks frozen."""
    tmp = tmp_path_factory.mktemp("ft_oasis")
    return train(
        compose(tiny_overrides(tmp, oasis_root, 0.016, dataset="oasis", init=str(source), **{"model.freeze_d": 2}))
    )


def _state(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(ckpt)["state_dict"]


def test_at_step_zero_the_taken_tensors_are_the_sources_and_the_class_layers_new(tmp_path, source, adni_root):
    """What train() builds before its first step, for a conditional ADNI run from the unconditional demo model."""
    cfg = compose(tiny_overrides(tmp_path, adni_root, 0.016, dataset="adni", init=str(source)))
    dm, net, train_cfg = data_and_configs(cfg)
    info = read_source(cfg.init, cfg.paths.outputs)
    assert info is not None
    torch.manual_seed(cfg.seed)
    module = StyleGAN2Module(network_for_init(net, info, dm.class_names), train_cfg, dm.data_info())
    new_model = {k: v.clone() for k, v in module.state_dict().items()}
    report = initialize(module, info)
    src, state = _state(source), module.state_dict()
    assert module.net_cfg.c_dim == 2 and module.cur_nimg == 0 and module.batch_idx == 0
    assert len(report.loaded) > 100
    for name in report.loaded:
        assert torch.equal(state[name], src[name]), name
    for name in ("G.mapping.embed.weight", "G_ema.mapping.embed.weight", "D.c_embed.weight", "D.c_mapping.0.weight"):
        assert name in report.fresh and name not in src
        assert torch.equal(state[name], new_model[name]), name  # initialized as in a new model
    assert set(report.loaded) | set(report.fresh) | set(report.rescaled) >= {
        k for k in state if k.startswith(("G.", "D.", "G_ema."))
    }


def test_oasis_finetune_starts_counters_and_optimizers_afresh_and_records_its_source(oasis_run, source):
    run = RunDir(oasis_run)
    record = json.loads(run.init.read_text())
    src_info = read_info(source)
    assert record["checkpoint"] == str(source.resolve()) and record["kimg"] == pytest.approx(src_info.kimg)
    assert record["dataset"] == "demo" and record["freeze_d"] == 2 and record["loaded"] > 100
    assert record["fresh"] == [] and record["skipped"] == []  # unconditional -> unconditional
    info = read_info(run.last)
    assert info.init == record and info.cur_nimg == 16  # 16 images of its own, not the source's + 16
    assert info.run_config["dataset/name"] == "oasis"
    ckpt = load_checkpoint(run.last)
    assert ckpt["braingan"]["batch_idx"] == 2
    for opt in ckpt[
        "optimizer_states"
    ]:  # fresh Adam: 2 main steps + the lazy regularizer's at step 0; the source's 1 step not
        assert max(float(s["step"]) for s in opt["state"].values()) == 3.0


def test_freeze_d_leaves_its_blocks_bit_identical_and_trains_the_rest(oasis_run, source):
    src, tuned = _state(source), _state(RunDir(oasis_run).last)
    frozen = [k for k in src if k.startswith(("D.blocks.0.", "D.blocks.1."))]
    trained = [k for k in src if k.startswith("D.") and k not in frozen and k.endswith("weight")]
    assert frozen and trained
    for name in frozen:
        assert torch.equal(tuned[name], src[name]), name
    assert sum(not torch.equal(tuned[k], src[k]) for k in trained) == len(trained)
    assert not torch.equal(tuned["G.synthesis.blocks.0.conv1.weight"], src["G.synthesis.blocks.0.conv1.weight"])


def test_make_eval_reports_where_a_finetuned_model_started(oasis_run, source, tmp_path):
    from braingan.eval import evaluate, format_table

    result = evaluate(
        RunDir(oasis_run).last,
        num_gen=8,
        floor=False,
        kid_subsets=2,
        cache_dir=str(tmp_path),
        out=tmp_path,
        progress=False,
    )
    assert result["settings"]["init"]["checkpoint"] == str(source.resolve())
    assert f"fine-tuned from {source.resolve()}" in format_table(result) and "on demo" in format_table(result)
    assert json.loads((tmp_path / "metrics.json").read_text())["settings"]["init"]["dataset"] == "demo"


def test_the_ema_goes_on_from_the_sources_g_ema(oasis_run, source):
    """No ramp-up: after two steps at a 1-kimg half-life G_ema is still about the source's G_ema, not G."""
    src, tuned = _state(source), _state(RunDir(oasis_run).last)
    names = [k[len("G_ema.") :] for k in src if k.startswith("G_ema.synthesis.") and k.endswith("weight")]

    def distance(a: str, b: dict, b_prefix: str) -> float:
        return sum(float((tuned[a + n] - b[b_prefix + n]).square().sum()) for n in names) ** 0.5

    assert distance("G_ema.", src, "G_ema.") < 0.05 * distance("G.", src, "G_ema.")


def test_a_resumed_finetune_keeps_its_record_and_trains_on_its_own_weights(oasis_run, oasis_root, source, tmp_path):
    copy = tmp_path / "run"  # the module's oasis_run stays as it was for the other tests
    shutil.copytree(oasis_run, copy)
    run = RunDir(copy)
    before = _state(run.last)
    # The command a resume replays: the run's own overrides, resume= and a longer kimg.
    overrides = tiny_overrides(tmp_path, oasis_root, 0.024, dataset="oasis", init=str(source), resume=str(run.last))
    train(compose(overrides + ["model.freeze_d=2"]))
    info = read_info(run.last)
    assert info.cur_nimg == 24 and info.init is not None and info.init["checkpoint"] == str(source.resolve())
    after = _state(run.last)
    assert torch.equal(after["D.blocks.0.conv0.weight"], before["D.blocks.0.conv0.weight"])  # still frozen
    assert not torch.equal(after["G.synthesis.blocks.0.conv1.weight"], before["G.synthesis.blocks.0.conv1.weight"])
    # It went on from its own step-2 weights: one more step moves G by a little, not back to the source's.
    moved = (after["G.synthesis.blocks.0.conv1.weight"] - before["G.synthesis.blocks.0.conv1.weight"]).norm()
    start = (after["G.synthesis.blocks.0.conv1.weight"] - _state(source)["G.synthesis.blocks.0.conv1.weight"]).norm()
    assert moved < start


def test_conditional_adni_finetune_trains_with_new_class_layers(tmp_path, source, adni_root):
    run = RunDir(train(compose(tiny_overrides(tmp_path, adni_root, 0.016, dataset="adni", init=str(source)))))
    record = json.loads(run.init.read_text())
    assert "G.mapping.embed.weight" in record["fresh"] and "D.epilogue.out.weight" in record["fresh"]
    assert record["rescaled"] == ["G.mapping.layers.0.weight", "G_ema.mapping.layers.0.weight"]
    info = read_info(run.last)
    assert info.net.c_dim == 2 and info.class_names == ["AD", "NC"] and info.init["class_names"] == []


def test_another_network_shape_is_refused_by_tensor_name_or_skipped_with_init_strict_false(
    tmp_path, source, oasis_root
):
    wide = tiny_overrides(tmp_path, oasis_root, 0.008, dataset="oasis", init=str(source), **{"model.channel_max": 64})
    with pytest.raises(UsageError) as refused:
        train(compose(wide))
    message = str(refused.value)
    assert "has shape" in message and "G.synthesis." in message and "model.channel_max 32 -> 64" in message
    assert "init_strict=false" in message and "\n" not in message
    assert not (tmp_path / "run").exists()  # refused before the run folder is written
    run = RunDir(train(compose(wide + ["init_strict=false"])))
    skipped = json.loads(run.init.read_text())["skipped"]
    assert skipped and all(" -> " in s for s in skipped) and any(s.startswith("G.synthesis.") for s in skipped)


def test_another_resolution_is_refused_as_out_of_scope(tmp_path, source, oasis_root):
    with pytest.raises(UsageError, match=r"trained at 32x32 and this run is 64x64: fine-tuning across resolutions"):
        train(compose(tiny_overrides(tmp_path, oasis_root, 0.008, dataset="oasis", init=str(source), resolution=64)))
    with pytest.raises(UsageError, match=r"init=.*manifest.csv is not a braingan checkpoint"):
        train(
            compose(
                tiny_overrides(
                    tmp_path, oasis_root, 0.008, dataset="oasis", init=str(RunDir(source.parent.parent).manifest)
                )
            )
        )


def test_init_last_is_pinned_to_a_file_on_the_command_line(tmp_path, source):
    """Ranks started later, sweep jobs and requeues re-read the command line: init=last must name one file."""
    from braingan.experiment.command import train_arguments

    outputs = tmp_path / "outputs"
    (outputs / "older" / "checkpoints").mkdir(parents=True)
    (outputs / "older" / "checkpoints" / "last.ckpt").write_bytes(source.read_bytes())
    args = train_arguments(["init=last", f"paths.outputs={outputs}", "experiment=cpu"], cuda=False)
    assert f"init={(outputs / 'older' / 'checkpoints' / 'last.ckpt').resolve()}" in args and "init=last" not in args
