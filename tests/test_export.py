"""`make export` (braingan.export_model, braingan.export): the shared tiny runs exported, re-rendered
through `make generate`'s function, loaded in a fresh interpreter without pickles, and broken on purpose."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from braingan import export_model
from braingan import generate as generate_module
from braingan.checkpoint import load_generator
from braingan.data.manifest import read_manifest
from braingan.export import (
    CARD,
    CONFIG,
    TORCHSCRIPT,
    WEIGHTS,
    ExportError,
    load_export,
    load_tensors,
    save_tensors,
    write_export,
)
from helpers.runs import REPO, one_line_exit

MANIFEST = "manifest.csv"


def ckpt_of(run: Path) -> Path:
    return run / "checkpoints" / "last.ckpt"


def run_main(module, tool: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", [tool, *args])
    handlers, level = logging.root.handlers[:], logging.root.level
    try:
        module.main()
    finally:  # Hydra points the root logger at this test's captured stdout: undo that
        logging.root.handlers[:], logging.root.level = handlers, level


def error(module, tool: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    return one_line_exit(lambda: run_main(module, tool, args, monkeypatch), tool)


def images(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_safetensors_files_round_trip_every_dtype_and_a_broken_one_is_one_line(tmp_path: Path) -> None:
    from safetensors import safe_open

    tensors = {
        "w": torch.randn(3, 5),
        "half": torch.randn(4).half(),
        "bf16": torch.randn(2, 2).bfloat16(),
        "scalar": torch.tensor(2.5),
        "int": torch.arange(7),
        "mask": torch.tensor([True, False]),
    }
    path = tmp_path / "t.safetensors"
    save_tensors(tensors, path, {"format": "pt"})
    back = load_tensors(path)
    assert set(back) == set(tensors)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape and torch.equal(back[name], t), name
    with safe_open(str(path), framework="pt") as f:  # the library's own reader sees the metadata
        assert f.metadata() == {"format": "pt"}
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(ExportError, match=r"broken.safetensors is not a readable safetensors file") as error:
        load_tensors(broken)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_an_export_renders_the_checkpoints_images_bit_for_bit(tiny_adni_run: Path, tmp_path: Path) -> None:
    ckpt = ckpt_of(tiny_adni_run)
    info = write_export(ckpt, tmp_path / "export")
    assert sorted(p.name for p in info.folder.iterdir()) == sorted([WEIGHTS, CONFIG, CARD, MANIFEST])
    assert info.class_names == ["AD", "NC"] and info.geometry_dict == {
        "resolution": 32,
        "width": 256,
        "height": 240,
        "fit": "pad",
    }
    config = json.loads((info.folder / CONFIG).read_text())
    assert config["source"]["checkpoint"] == str(ckpt.resolve()) and config["source"]["kimg"] == 0.008
    assert set(config["files"]) == {WEIGHTS, CARD, MANIFEST} and config["init"] is None
    root = tiny_adni_run.parent / "ADNI" / "AD_NC"
    assert config["data"] == {"dataset": "adni", "layout": "adni", "root": str(root), "splits": ["train"], "fit": "pad"}
    # the run's manifest, its paths relative to the data set's folder (the same rows read back below it)
    assert read_manifest(info.folder / MANIFEST, root) == read_manifest(tiny_adni_run / MANIFEST)
    assert not any(Path(r.path).is_absolute() for r in read_manifest(info.folder / MANIFEST))
    kwargs = dict(what=["images"], seeds="0-2", device="cpu", progress=False)
    from_ckpt = generate_module.generate(ckpt=ckpt, out=tmp_path / "a", **kwargs)
    from_export = generate_module.generate(ckpt=info.folder, out=tmp_path / "b", **kwargs)
    a, b = images(from_ckpt), images(from_export)
    assert len(a) == 6 and a == b  # 3 seeds x 2 classes, the same bytes
    default = generate_module.generate(ckpt=info.folder, class_name="NC", **{**kwargs, "seeds": [1]})
    assert default == info.folder / "generate"
    assert (default / "images" / "NC" / "seed0001.png").read_bytes() == a["images/NC/seed0001.png"]


@pytest.mark.slow
def test_an_export_loads_with_json_safetensors_and_the_network_code_alone(tiny_demo_run: Path, tmp_path: Path) -> None:
    ckpt = ckpt_of(tiny_demo_run)
    folder = write_export(ckpt, tmp_path / "export").folder
    G = load_generator(ckpt)
    z = torch.from_numpy(np.random.RandomState(3).randn(2, G.z_dim)).float()
    expected = G(z, None, noise_mode="const").numpy().tobytes().hex()
    script = f"""
import sys, json, torch
def refuse(*args, **kwargs):
    raise AssertionError("torch.load was called")
torch.load = refuse
import numpy as np
from braingan.export import load_export
G, info = load_export({str(folder)!r})
z = torch.from_numpy(np.random.RandomState(3).randn(2, G.z_dim)).float()
with torch.no_grad():
    print(G(z, None, noise_mode="const").numpy().tobytes().hex())
heavy = [m for m in ("braingan.checkpoint", "braingan.experiment", "braingan.training", "hydra", "pytorch_lightning")
         if m in sys.modules]
print(json.dumps(heavy))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    hexed, heavy = done.stdout.strip().splitlines()[-2:]
    assert json.loads(heavy) == []
    assert hexed == expected  # the same floats as the checkpoint's G_ema


@pytest.mark.slow
def test_torchscript_matches_the_eager_generator(tiny_adni_run: Path, tmp_path: Path, monkeypatch) -> None:
    ckpt = ckpt_of(tiny_adni_run)
    out = tmp_path / "export"
    run_main(export_model, "export_model", [f"ckpt={ckpt}", f"out={out}", "torchscript=true"], monkeypatch)
    G, info = load_export(out)
    assert info.torchscript is not None and TORCHSCRIPT in info.files
    assert 0 <= info.torchscript["max_abs_diff"] <= info.torchscript["tolerance"] == 1e-4
    scripted = torch.jit.load(str(out / TORCHSCRIPT))
    z = torch.randn(5, G.z_dim)  # another batch size than traced and checked
    c = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0, 1]), G.c_dim).float()
    with torch.no_grad():
        eager = G(z, c, noise_mode="const")
        assert eager.shape == (5, 1, 32, 32)
        assert (scripted(z, c) - eager).abs().max() <= 1e-4
        assert (G(z, 1 - c, noise_mode="const") - eager).abs().max() > 1e-3  # the class input matters
    message = error(  # a tolerance that no trace meets: refused, and no generator.pt is left behind
        export_model,
        "export_model",
        [f"ckpt={ckpt}", f"out={tmp_path / 'strict'}", "torchscript=true", "tolerance=-1"],
        monkeypatch,
    )
    assert "the TorchScript generator differs from the eager one" in message
    assert not (tmp_path / "strict" / TORCHSCRIPT).exists() and not (tmp_path / "strict" / CONFIG).exists()


@pytest.mark.slow
def test_the_model_card_holds_the_runs_numbers_or_says_not_evaluated(
    tiny_demo_run: Path, tiny_adni_run: Path, tmp_path: Path
) -> None:
    adni = (write_export(ckpt_of(tiny_adni_run), tmp_path / "adni").folder / CARD).read_text()
    assert "Not evaluated" in adni and "not audited" in adni
    assert "ADNI Data Use Agreement" in adni and "Research only, not for diagnosis" in adni
    assert "| train |" in adni and "AD: " in adni and "NC: " in adni

    run = shutil.copytree(tiny_demo_run, tmp_path / "run")  # the shared run stays as it is
    ckpt = ckpt_of(run)
    (run / "eval").mkdir(exist_ok=True)  # the shared run may hold make eval's folder (tests/test_eval.py)
    metric = {"fid": 123.456, "kid_x1e3": 78.9, "kid_x1e3_std": 1.25, "precision": 0.512, "recall": 0.0625}
    metric |= {"density": 0.3141, "coverage": 0.25, "ms_ssim_gen": 0.4321, "ms_ssim_real": 0.2109}
    floor = {"fid": 45.678, "kid_x1e3": 3.21, "kid_x1e3_std": 0.5, "precision": 0.75, "recall": 0.875}
    utility = {
        "test": {"slices": 64, "subjects": 2},
        "generated_per_class": 500,
        "train_on": {"generated": {"slices": 1000, "accuracy": 0.8125, "balanced_accuracy": 0.75, "auc": 0.875}},
    }
    (run / "eval" / "metrics.json").write_text(
        json.dumps(
            {
                "metrics": {**metric, "num_real": 96, "num_gen": 2000},
                "floor": {**floor, "num_real": 96, "num_gen": 64},
                "utility": utility,
                "settings": {
                    "checkpoint": str(ckpt.resolve()),
                    "kimg": 0.008,
                    "real": "train",
                    "truncation_psi": 1.0,
                    "pr_k": 3,
                    "dc_k": 5,
                    "ms_ssim_scales": 2,
                },
            }
        )
    )
    (run / "eval" / "audit.json").write_text(
        json.dumps(
            {
                "near_copy_fraction": 0.0125,
                "heldout_baseline_fraction": 0.01,
                "feature_threshold": 0.9876,
                "pixel_threshold": 0.8765,
                "num_generated": 2000,
                "num_train": 96,
                "num_heldout": 64,
                "checkpoint": str(ckpt.resolve()),
            }
        )
    )
    exported = write_export(ckpt)  # out=None: <run>/export
    assert exported.folder == run / "export"
    card = (exported.folder / CARD).read_text()
    assert (
        "| generated vs real | 123.5 | 78.9 ± 1.2 | 0.512 | 0.0625 | 0.314 | 0.25 | 0.432 | 0.211 | 96 | 2000 |" in card
    )
    assert "density/coverage k=5" in card and "2 scales" in card
    assert "tested on 64 slices of 2 held-out subjects (500 generated slices per class)" in card
    assert "| generated | 1000 | 0.812 | 0.75 | 0.875 |" in card
    assert "| real-vs-real floor: training vs held-out (N generated = held-out) | 45.68 | 3.21 ± 0.5 | 0.75 |" in card
    assert "1.25% of 2000 generated slices are near copies" in card and "held-out baseline 1%" in card
    assert "Not evaluated" not in card and "not audited" not in card
    assert "MNI ICBM152 2009" in card and "| train | 3 | 96 |" in card and "| all | 5 | 160 |" in card


@pytest.mark.slow
def test_bad_exports_and_folders_are_one_line(tiny_demo_run: Path, tmp_path: Path, monkeypatch) -> None:
    ckpt = ckpt_of(tiny_demo_run)
    manifest = tiny_demo_run / "manifest.csv"
    out = tmp_path / "export"
    assert "is not a braingan checkpoint: it is a text file (CSV" in error(
        export_model, "export_model", [f"ckpt={manifest}", f"out={out}"], monkeypatch
    )
    assert not out.exists()
    run_folder = error(export_model, "export_model", [f"ckpt={tiny_demo_run}", f"out={out}"], monkeypatch)
    assert (
        run_folder
        == f"export_model: ckpt={tiny_demo_run} is a folder, not a checkpoint file; it is a run folder: use ckpt={ckpt}"
    )
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("x")
    assert "holds other files and is not an export" in error(
        export_model, "export_model", [f"ckpt={ckpt}", f"out={tmp_path / 'busy'}"], monkeypatch
    )
    write_export(ckpt, out)
    write_export(ckpt, out)  # an earlier export is replaced
    gen = ["progress=false", "what=[images]", "seeds=[0]", f"out={tmp_path / 'gen'}"]

    def generate_error(folder: Path, *extra: str) -> str:
        return error(generate_module, "generate", [f"ckpt={folder}", *gen, *extra], monkeypatch)

    assert "is an export folder already" in error(
        export_model, "export_model", [f"ckpt={out}", f"out={tmp_path / 'again'}"], monkeypatch
    )
    assert generate_error(tiny_demo_run).endswith(f"(it has no config.json); it is a run folder: use ckpt={ckpt}")
    assert generate_error(out, "which=G") == "generate: which=G: an export folder holds G_ema only; leave which unset"
    not_export = tmp_path / "empty"
    not_export.mkdir()
    assert generate_error(not_export) == (
        f"generate: ckpt={not_export} is not a braingan export folder (it has no config.json)"
    )

    missing = shutil.copytree(out, tmp_path / "missing")
    (missing / CARD).unlink()
    assert generate_error(missing) == f"generate: ckpt={missing}: MODEL_CARD.md is missing (config.json lists it)"

    altered = shutil.copytree(out, tmp_path / "altered")
    raw = bytearray((altered / WEIGHTS).read_bytes())
    raw[-1] ^= 1  # one bit of the last weight
    (altered / WEIGHTS).write_bytes(bytes(raw))
    assert generate_error(altered) == (
        f"generate: ckpt={altered}: generator.safetensors was altered (its SHA-256 differs from config.json's)"
    )

    newer = shutil.copytree(out, tmp_path / "newer")
    config = json.loads((newer / CONFIG).read_text())
    (newer / CONFIG).write_text(json.dumps({**config, "format_version": 2}))
    assert generate_error(newer) == f"generate: ckpt={newer} was written by a newer braingan (export format 2); upgrade"
    assert not (tmp_path / "gen").exists()


@pytest.mark.slow
def test_a_fine_tuned_models_card_and_config_name_its_source(tiny_demo_run: Path) -> None:
    import dataclasses

    from braingan.checkpoint import read_info
    from braingan.model_card import model_card

    info = read_info(ckpt_of(tiny_demo_run))
    record = {"checkpoint": "/runs/oasis/checkpoints/kimg_000500.ckpt", "kimg": 500.0, "dataset": "oasis"}
    card = model_card(dataclasses.replace(info, init=record), {"geometry": None}, load_generator(info.path))
    assert f"- Fine-tuned from: {json.dumps(record)}" in card and "native size the model square" in card
    assert "Trained from scratch" in model_card(info, {"geometry": None}, load_generator(info.path))


EVAL_SMALL = dict(num_gen=24, batch_size=24, kid_subsets=10, ms_ssim_pairs=8, progress=False, device="cpu")


def _numbers(result: dict) -> dict:
    return {key: result.get(key) for key in ("metrics", "per_class", "floor")}


@pytest.mark.slow
def test_make_eval_on_an_export_gives_the_checkpoints_numbers_wherever_the_data_now_is(
    tiny_adni_run: Path, tmp_path: Path, monkeypatch
) -> None:
    from braingan import eval as eval_module

    ckpt = ckpt_of(tiny_adni_run)
    root = tiny_adni_run.parent / "ADNI" / "AD_NC"
    folder = write_export(ckpt, tmp_path / "export").folder
    small = {**EVAL_SMALL, "cache_dir": str(tmp_path / "cache")}
    expected = eval_module.evaluate(ckpt, out=tmp_path / "a", **small)
    result = eval_module.evaluate(folder, **small)  # out=None: <folder>/eval, no tb/ to write into
    assert (
        expected["per_class"] and expected["floor"] and expected["metrics"]["density"] == expected["metrics"]["density"]
    )
    assert _numbers(result) == _numbers(expected)
    assert result["settings"]["metrics_json"] == str(folder / "eval" / "metrics.json")
    assert result["settings"]["exported_from"] == str(ckpt.resolve()) and result["settings"]["data_root"] == str(root)
    assert "tensorboard" not in result["settings"] and not (folder / "tb").exists()

    moved = shutil.copytree(root, tmp_path / "moved" / "AD_NC")  # the data set, somewhere else now
    again = eval_module.evaluate(folder, data_root=str(moved), out=tmp_path / "c", floor=False, **small)
    assert again["metrics"] == expected["metrics"] and again["per_class"] == expected["per_class"]
    assert again["settings"]["data_root"] == str(moved)

    args = [f"ckpt={folder}", "num_gen=8", "progress=false", f"cache_dir={tmp_path / 'cache'}"]
    empty = tmp_path / "empty"
    empty.mkdir()
    first = read_manifest(folder / MANIFEST)[0].path
    assert error(eval_module, "eval", [*args, f"data_root={empty}"], monkeypatch) == (
        f"eval: {empty / first} (in ckpt={folder}'s manifest.csv) is not here: "
        "set data_root= to the folder that now holds the adni data set"
    )
    assert error(eval_module, "eval", [*args[1:], f"ckpt={ckpt}", f"data_root={moved}"], monkeypatch) == (
        f"eval: data_root={moved} is for an export folder; a checkpoint's manifest has full paths"
    )
    bare = write_export(ckpt, tmp_path / "bare", manifest=False).folder
    assert not (bare / MANIFEST).exists() and "manifest.csv, not exported" in (bare / CARD).read_text()
    assert error(eval_module, "eval", [*args[1:], f"ckpt={bare}"], monkeypatch) == (
        f"eval: ckpt={bare} holds no manifest.csv (exported with manifest=false), so no real slices to compare "
        f"with: evaluate {ckpt.resolve()} instead"
    )


@pytest.mark.slow
def test_make_eval_on_a_demo_export_builds_the_demo_data_where_this_machine_keeps_it(
    tiny_demo_run: Path, tmp_path: Path, monkeypatch
) -> None:
    from braingan import eval as eval_module

    ckpt = ckpt_of(tiny_demo_run)
    folder = write_export(ckpt, tmp_path / "export").folder
    fresh = tmp_path / "elsewhere" / "demo"  # a machine without the demo data yet (paths.demo)
    cache = tmp_path / "cache"
    small = {**EVAL_SMALL, "real": "heldout", "floor": False}  # the 64 held-out slices only
    expected = eval_module.evaluate(ckpt, out=tmp_path / "a", cache_dir=str(cache), **small)
    settings = [f"{key}={value}" for key, value in small.items()]
    run_main(
        eval_module, "eval", [f"ckpt={folder}", f"paths.demo={fresh}", f"cache_dir={cache}", *settings], monkeypatch
    )
    assert (fresh / ".demo_spec.json").is_file()
    result = json.loads((folder / "eval" / "metrics.json").read_text())
    assert result["settings"]["data_root"] == str(fresh)
    assert _numbers(result) == json.loads(json.dumps(_numbers(expected)))  # the rebuilt slices are the same slices
