"""Every config-group combination composes and instantiates; overrides work like the README says."""

from __future__ import annotations

import itertools
import shutil

import pytest
import pytorch_lightning as pl

from braingan.confdir import CONF_DIR
from braingan.experiment.resume import legacy_overrides, replay_overrides, run_dir_for_resume
from braingan.experiment.settings import build_configs, build_datamodule
from braingan.nn.discriminator import Discriminator
from braingan.nn.synthesis import Generator
from braingan.training.module import StyleGAN2Module
from helpers.runs import REPO, compose

DATASETS = sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
RESOLUTIONS = [32, 64, 128, 256, 512]  # resolution is a plain key: what check_settings accepts below 1024
TRAINERS = sorted(p.stem for p in (CONF_DIR / "trainer").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_groups_hold_the_documented_options():
    assert {"demo", "folder", "oasis", "adni"} <= set(DATASETS)
    assert {"tiny", "small", "base", "paper"} <= set(MODELS)
    assert {"cpu", "gpu"} <= set(TRAINERS)
    assert EXPERIMENTS == ["cpu"]
    assert not (CONF_DIR / "resolution").exists()


@pytest.mark.parametrize("trainer", TRAINERS)
def test_every_combination_composes(trainer):
    for dataset, model, res in itertools.product(DATASETS, MODELS, RESOLUTIONS):
        cfg = compose(
            [f"trainer={trainer}", f"dataset={dataset}", f"model={model}", f"resolution={res}", "run_dir=/tmp/x"]
        )
        assert cfg.resolution == int(res) and cfg.dataset.name == dataset
        net, tc = build_configs(cfg)
        assert net.img_resolution == int(res) and tc.batch_size == cfg.batch_size
        dm = build_datamodule(cfg)
        assert dm.resolution == int(res)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_instantiates_at_every_resolution(model):
    for res in RESOLUTIONS:
        cfg = compose([f"model={model}", f"resolution={res}", "trainer=cpu", "run_dir=/tmp/x"])
        net, _ = build_configs(cfg)
        G = Generator(net)
        assert G.synthesis.blocks[-1].resolution == int(res)
        assert len(Discriminator(net).blocks) == net.resolution_log2 - 2
    # The full LightningModule with its optimizers, and a CPU Trainer, build as well.
    module = StyleGAN2Module(*build_configs(cfg))
    assert len(module.configure_optimizers()) == 2
    assert pl.Trainer(accelerator=cfg.trainer.accelerator, devices=1, logger=False).world_size == 1


def test_paper_and_base_sizes_are_the_official_ones():
    paper = build_configs(compose(["model=paper", "resolution=256", "run_dir=/tmp/x"]))[0]
    base = build_configs(compose(["model=base", "resolution=256", "run_dir=/tmp/x"]))[0]
    assert (paper.channel_base, paper.channel_max, paper.mapping_layers) == (32768, 512, 8)
    assert (base.channel_base, base.mapping_layers) == (16384, 2)
    g = sum(p.numel() for p in Generator(paper).parameters()) / 1e6
    d = sum(p.numel() for p in Discriminator(paper).parameters()) / 1e6
    assert abs(g - 30.0) < 0.1 and abs(d - 28.9) < 0.1  # the official figures, shared/anchors.md


@pytest.mark.parametrize("batch, gamma, ema", [(32, 0.4096, 10.0), (64, 0.2048, 20.0)])
def test_r1_gamma_and_ema_kimg_auto_are_the_official_heuristics(batch, gamma, ema):
    # StyleGAN2-ADA auto: gamma = 0.0002 R^2 / batch, EMA half-life = batch * 10 / 32 kimg (global batch).
    for model in ("base", "small"):
        cfg = compose([f"model={model}", "resolution=256", f"batch_size={batch}", "run_dir=/tmp/x"])
        assert (cfg.model.r1_gamma, cfg.model.ema_kimg) == ("auto", "auto")
        tc = build_configs(cfg)[1]
        assert tc.r1_gamma == pytest.approx(gamma, rel=1e-12) and tc.ema_kimg == pytest.approx(ema, rel=1e-12)
    cfg = compose(
        [
            "model=paper",
            "resolution=256",
            f"batch_size={batch}",
            "model.r1_gamma=auto",
            "model.ema_kimg=auto",
            "run_dir=/tmp/x",
        ]
    )
    tc = build_configs(cfg)[1]
    assert tc.r1_gamma == pytest.approx(gamma, rel=1e-12) and tc.ema_kimg == pytest.approx(ema, rel=1e-12)


def test_model_presets_follow_their_recipes():
    paper_cfg = compose(["model=paper", "resolution=256", "run_dir=/tmp/x"])
    net, tc = build_configs(paper_cfg)
    # config F (--cfg=stylegan2): gamma 10, EMA 10 kimg without ramp-up, lr 0.002, 8 mapping layers.
    assert (tc.r1_gamma, tc.ema_kimg, tc.ema_rampup, tc.lr_g, tc.lr_d) == (10.0, 10.0, None, 0.002, 0.002)
    assert (net.mapping_layers, net.d_mapping_layers, net.channel_base, net.mbstd_group_size) == (8, 8, 32768, 4)
    # auto below 512 px: half width, 2 mapping layers, lr 0.0025, ramp-up 0.05.
    net, tc = build_configs(compose(["model=base", "resolution=256", "run_dir=/tmp/x"]))
    assert (tc.ema_rampup, tc.lr_g, tc.lr_d, net.mapping_layers, net.channel_base) == (0.05, 0.0025, 0.0025, 2, 16384)
    for model in MODELS:  # every preset shares the regularization and optimizer settings of the recipes
        tc = build_configs(compose([f"model={model}", "run_dir=/tmp/x"]))[1]
        assert (tc.pl_weight, tc.pl_decay, tc.pl_batch_shrink, tc.style_mixing) == (2.0, 0.01, 2, 0.9), model
        assert (tc.r1_interval, tc.pl_interval, tc.beta1, tc.beta2) == (16, 4, 0.0, 0.99), model
    # The CPU preset (small at 64 px, batch 16) resolves the heuristics for its own batch.
    tc = build_configs(compose(["experiment=cpu", "run_dir=/tmp/x"]))[1]
    assert tc.r1_gamma == pytest.approx(0.0002 * 64**2 / 16) and tc.ema_kimg == 5.0


@pytest.mark.parametrize("key", ["r1_gamma", "ema_kimg"])
def test_r1_gamma_and_ema_kimg_take_auto_or_a_number(key):
    tc = build_configs(compose(["model=base", f"model.{key}=2", "run_dir=/tmp/x"]))[1]
    assert getattr(tc, key) == 2.0 and isinstance(getattr(tc, key), float)
    for bad in ("sometimes", "true", "-1"):
        with pytest.raises(ValueError, match=f"^model.{key}=") as err:
            build_configs(compose(["model=base", f"model.{key}={bad}", "run_dir=/tmp/x"]))
        assert "\n" not in str(err.value) and "auto" in str(err.value)


def test_cpu_preset_and_command_line_precedence():
    cpu = compose(["experiment=cpu", "run_dir=/tmp/x"])
    assert (cpu.model.channel_base, cpu.resolution, cpu.trainer.accelerator, cpu.batch_size) == (4096, 64, "cpu", 16)
    # trainer=cpu is the hardware alone: the model, resolution and schedule stay the defaults.
    hardware = compose(["trainer=cpu", "run_dir=/tmp/x"])
    assert (hardware.model.channel_base, hardware.resolution, hardware.trainer.accelerator) == (16384, 256, "cpu")
    # Command-line choices beat the preset's defaults, as in `make train ARGS="resolution=128 model=small"`.
    mixed = compose(["experiment=cpu", "resolution=128", "model=paper", "run_dir=/tmp/x"])
    assert mixed.resolution == 128 and mixed.model.mapping_layers == 8
    gpu = compose(["trainer=gpu", "run_dir=/tmp/x"])
    assert gpu.trainer.accelerator == "gpu" and gpu.kimg > cpu.kimg and gpu.resolution == 256


def test_resolution_is_a_plain_number_and_a_bad_one_is_one_line():
    from braingan.experiment.settings import check_settings

    assert compose(["resolution=64", "run_dir=/tmp/x"]).resolution == 64
    for bad, near in (("48", "32 or 64"), ("2048", "1024 or 512")):
        with pytest.raises(
            ValueError, match=f"^resolution={bad} must be one of 32, 64, 128, 256, 512, 1024; nearest: {near}$"
        ):
            check_settings(compose([f"resolution={bad}", "run_dir=/tmp/x"]), 1)


def test_overrides_of_format_1_runs_read_as_they_meant_it():
    # resolution was a group (saved quoted) and trainer=cpu chose the CPU preset.
    assert legacy_overrides(["trainer=cpu", "resolution='64'", "kimg=5"]) == [
        "experiment=cpu",
        "resolution=64",
        "kimg=5",
    ]
    assert legacy_overrides(["trainer=gpu", "resolution=128"]) == ["trainer=gpu", "resolution=128"]
    assert legacy_overrides(["trainer=cpu", "experiment=cpu"]) == ["trainer=cpu", "experiment=cpu"]


def test_a_misspelt_key_in_a_preset_is_refused_with_its_name(tmp_path):
    from omegaconf import open_dict

    from braingan.experiment.settings import check_keys

    cfg = compose(["run_dir=/tmp/x"])
    check_keys(cfg)
    for node, key, hint in (
        ("model", "r1_gama", "model.r1_gamma"),
        ("augment", "targt", "augment.target"),
        ("speed", "chanels_last", "speed.channels_last"),
        ("dataset", "hold_out", "dataset.holdout"),
    ):
        bad = cfg.copy()
        with open_dict(bad):
            bad[node][key] = 1
        with pytest.raises(ValueError, match=f"^{node}.{key}: no such setting; did you mean {hint}\\?$"):
            build_configs(bad)


def test_resume_continues_in_the_checkpoint_folder(tmp_path):
    ckpt = tmp_path / "outputs" / "2026-01-01" / "10-00-00" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    assert run_dir_for_resume(None, "outputs/new") == "outputs/new"
    assert run_dir_for_resume(str(ckpt), "outputs/new") == str(ckpt.parent.parent)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        run_dir_for_resume(str(tmp_path / "missing.ckpt"), "outputs/new")


def test_missing_dataset_root_is_one_clear_line(tmp_path):
    from braingan.data.layouts import DatasetError

    cfg = compose(["dataset=folder", "trainer=cpu", f"run_dir={tmp_path}"])
    dm = build_datamodule(cfg)
    with pytest.raises(DatasetError) as err:
        dm.setup("fit")
    assert "dataset.root" in str(err.value) and "\n" not in str(err.value)
    cfg = compose(["dataset=oasis", f"dataset.root={tmp_path / 'nowhere'}", f"run_dir={tmp_path}"])
    with pytest.raises(DatasetError, match="keras_png_slices_train"):
        build_datamodule(cfg).setup("fit")


def test_resume_replays_the_runs_own_overrides_and_the_command_line_wins(tmp_path):
    run = tmp_path / "outputs" / "2026-01-01" / "10-00-00"
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    shutil.copyfile(REPO / "tests" / "fixtures" / "run_v1" / "checkpoints" / "last.ckpt", ckpt)  # format 1
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text(
        "- trainer=cpu\n- dataset=adni\n- dataset.root=/data/AD_NC\n- resolution=128\n"
        f"- hydra.run.dir={run}\n- run_dir={run}\n"
    )
    args = replay_overrides([f"resume={ckpt}", "kimg=50"])
    # Format 1: trainer=cpu chose the CPU preset then, which is experiment=cpu now.
    assert args == [
        "experiment=cpu",
        "dataset=adni",
        "dataset.root=/data/AD_NC",
        "resolution=128",
        f"resume={ckpt}",
        "kimg=50",
    ]
    cfg = compose(args + ["dataset=oasis"])  # given again on the command line: that wins
    assert cfg.dataset.name == "oasis" and cfg.resolution == 128 and cfg.kimg == 50
    assert replay_overrides(["kimg=5"]) == ["kimg=5"]  # not a resume: unchanged


def test_dataset_classes_as_a_bare_string_is_one_class(tmp_path):
    cfg = compose(["dataset=adni", "dataset.classes=AD", f"run_dir={tmp_path}"])
    assert build_datamodule(cfg).classes == ["AD"]


def test_resolve_ckpt_last_and_missing(tmp_path):
    from braingan.experiment.resume import resolve_ckpt

    ckpt = tmp_path / "outputs" / "a" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    assert resolve_ckpt("last", tmp_path / "outputs") == ckpt
    assert resolve_ckpt(None, tmp_path / "outputs") == ckpt
    with pytest.raises(FileNotFoundError, match="ckpt=nope.ckpt: no such checkpoint file"):
        resolve_ckpt("nope.ckpt")
