"""Entry point: `python -m braingan.audit [ckpt=...]` (what `make audit` runs).

The memorization audit (data-copying test, see metrics/audit.py): generated slices of the
checkpoint's EMA generator against the run's training slices, calibrated by the held-out
subjects' slices from its manifest, in Inception-feature space (cosine) and pixel space
(correlation). Writes <run>/eval/audit.json (near-copy fraction, thresholds, per-subject counts
of near copies) and audit_closest.png (the closest generated | training pairs), and prints a summary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from . import cli
from .checkpoint import load_generator, read_info
from .confdir import CONF_DIR
from .experiment.resume import resolve_ckpt
from .metrics.audit import data_copying_audit
from .metrics.features import extract_features
from .metrics.inception import InceptionFeatures
from .metrics.sources import generated_batches, real_set, sample_labels
from .utils.device import resolve_device
from .utils.errors import UsageError
from .utils.images import save_grid
from .utils.io import atomic_path


def audit(
    ckpt: str | Path,
    *,
    num_gen: int = 2000,
    percentile: float = 99.0,
    truncation_psi: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "auto",
    extractor: str | None = None,
    num_pairs: int = 8,
    cache_dir: str | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    generator=None,  # optional stand-in: callable(labels [N]) -> uint8 [N, 1, R, R] (tests)
) -> dict:
    """Runs the audit, writes audit.json and the closest-pairs figure, returns the summary
    (keyword arguments: conf/audit.yaml's keys)."""
    ckpt = Path(ckpt)
    dev = resolve_device(device)
    info = read_info(ckpt)
    cache = Path(cache_dir).expanduser() if cache_dir else None
    net = InceptionFeatures(extractor, batch_size=batch_size).to(dev)

    def real(which: str) -> dict | None:
        return real_set(
            info.run, which, info.splits, info.resolution, info.fit, net, cache, batch_size, progress, info.channels
        )

    train, held = real("train"), real("heldout")
    if train is None or held is None:
        raise UsageError("the audit needs training and held-out subjects' slices in the run's manifest")
    G = load_generator(ckpt).to(dev)
    labels = sample_labels(train["labels"], num_gen, max(G.c_dim, 1), seed)
    if generator is None:
        gen_img = torch.cat(list(generated_batches(G, labels, batch_size, seed, truncation_psi, dev)))
    else:
        gen_img = generator(labels)
    gen_feat = extract_features(net, gen_img, batch_size, progress=progress, desc="generated")
    train_img, held_img = train["images"], held["images"]
    train_records, held_records = train["records"], held["records"]
    result = data_copying_audit(
        torch.from_numpy(gen_feat),
        torch.from_numpy(train["features"]),
        torch.from_numpy(held["features"]),
        gen_img,
        train_img,
        held_img,
        [r.subject for r in train_records],
        percentile,
    )
    out_dir = Path(out) if out else info.run.eval
    out_dir.mkdir(parents=True, exist_ok=True)
    closest = result.closest(min(num_pairs, len(gen_img)))
    pairs = torch.stack([gen_img[closest], train_img[result.gen_nearest[closest]]], dim=1)  # [P, 2, C, R, R]
    save_grid(pairs.flatten(0, 1).float() / 127.5 - 1, out_dir / "audit_closest.png", rows=len(closest))
    summary = result.summary() | {
        "checkpoint": str(ckpt.resolve()),
        "percentile": percentile,
        "num_train": len(train_records),
        "num_heldout": len(held_records),
        "extractor_sha256": net.sha256,
        "seed": seed,
        "truncation_psi": truncation_psi,
        "figure": str(out_dir / "audit_closest.png"),
    }
    with atomic_path(out_dir / "audit.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


@hydra.main(config_path=str(CONF_DIR), config_name="audit", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    with cli.user_errors("audit"):
        # conf/audit.yaml's keys are audit's arguments
        settings = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
        s = audit(resolve_ckpt(settings.pop("ckpt"), settings.pop("paths")["outputs"]), **settings)
    print(
        f"near copies: {s['near_copy_fraction']:.1%} of {s['num_generated']} generated slices "
        f"(held-out baseline {s['heldout_baseline_fraction']:.1%}; thresholds: cosine {s['feature_threshold']:.4f}, "
        f"pixel correlation {s['pixel_threshold']:.4f})"
    )
    top = list(s["copies_per_subject"].items())[:10]
    if top:
        print("near copies per training subject: " + ", ".join(f"{k}: {v}" for k, v in top))
    print(f"closest pairs (generated | training): {s['figure']}")


def main() -> None:
    cli.hydra_entry("audit", "audit", _hydra_main)


if __name__ == "__main__":
    main()
