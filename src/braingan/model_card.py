"""MODEL_CARD.md of an export: what the model was trained on, how, how well, and what it is for.

Everything is read from the checkpoint (CheckpointInfo) and its run folder: manifest.csv for the
subjects and splits, eval/metrics.json (`make eval`) and eval/audit.json (`make audit`) for the
numbers, which are reported as "not evaluated" / "not audited" when the files do not exist.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch

from .data.manifest import read_manifest
from .rundir import RunDir

# The data's licence by data set name (conf/dataset/<name>.yaml): what the card says about it.
MNI_LICENCE = (
    "Derived from the MNI ICBM152 2009 nonlinear T1 template as shipped by nilearn "
    "(`nilearn.datasets.load_mni152_template`; release a). nilearn's own description of the data gives its "
    'licence as "unknown". The template is distributed by the McConnell Brain Imaging Centre (Montreal '
    "Neurological Institute, McGill University; Fonov et al. 2009, 2011; Collins et al. 1999, "
    "http://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009) under a copyright notice that permits "
    "use, copying, modification and distribution when that notice is kept: cite those papers and check the "
    "notice at the source before redistributing."
)
LICENCES = {
    "demo": MNI_LICENCE,
    "oasis": (
        "OASIS (Open Access Series of Imaging Studies) data: the OASIS Data Use Agreement applies to the data "
        "and to models derived from it (https://sites.wustl.edu/oasisbrains/); acknowledge OASIS as it asks."
    ),
    "adni": (
        "ADNI (Alzheimer's Disease Neuroimaging Initiative) data: the ADNI Data Use Agreement applies "
        "(https://adni.loni.usc.edu/data-samples/access-data/); sharing a model trained on ADNI data may need "
        "ADNI's approval, and publications must follow its acknowledgement policy."
    ),
}
UNKNOWN_LICENCE = "As the data owner's: the model is derived from data whose licence this run does not record."

LIMITATIONS = [
    "Generates single 2-D slices, not volumes: neighbouring slices of one subject are not modelled together.",
    "Learns the population, scanners, protocols and preprocessing of its training data only; it says nothing "
    "about other sites, ages or diseases.",
    "FID, KID and precision/recall use ImageNet Inception-v3 features, which were not made for MRI; low numbers "
    "do not mean anatomically plausible images.",
    "A generator trained on few subjects may reproduce training slices (see the audit); synthetic images can "
    "carry information about the training subjects.",
    "Synthetic images have no clinical ground truth: class-conditional images show what the model learned "
    "of a label, not a diagnosis.",
]


def _splits(manifest: Path) -> list[str]:
    """Markdown table rows: split, subjects, slices (per class) counted from manifest.csv."""
    records = read_manifest(manifest)
    subjects: dict[str, set] = defaultdict(set)
    slices: Counter = Counter()
    classes: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        subjects[r.split].add(r.subject)
        slices[r.split] += 1
        if r.class_name:
            classes[r.split][r.class_name] += 1
    order = [s for s in ("train", "validate", "test") if s in slices] + sorted(
        set(slices) - {"train", "validate", "test"}
    )
    rows = ["| split | subjects | slices | per class |", "|---|---:|---:|---|"]
    for split in order:
        per_class = ", ".join(f"{k}: {v}" for k, v in sorted(classes[split].items())) or "-"
        rows.append(f"| {split} | {len(subjects[split])} | {slices[split]} | {per_class} |")
    total = len({r.subject for r in records})
    rows.append(f"| all | {total} | {len(records)} | |")
    return rows


def _number(value: Any, digits: int = 4) -> str:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if x != x else f"{x:.{digits}g}"


def _metrics_row(name: str, m: dict | None) -> str:
    if not m:
        return f"| {name} | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | | |"
    kid = f"{_number(m.get('kid_x1e3'))} ± {_number(m.get('kid_x1e3_std'), 2)}"
    return (
        f"| {name} | {_number(m.get('fid'))} | {kid} | {_number(m.get('precision'), 3)} | "
        f"{_number(m.get('recall'), 3)} | {_number(m.get('density'), 3)} | {_number(m.get('coverage'), 3)} | "
        f"{_number(m.get('ms_ssim_gen'), 3)} | {_number(m.get('ms_ssim_real'), 3)} | "
        f"{m.get('num_real', '?')} | {m.get('num_gen', '?')} |"
    )


def _utility(utility: dict) -> list[str]:
    """The utility study's rows (make eval utility=true)."""
    test = utility.get("test") or {}
    lines = [
        f"Utility (`utility=true`): a slice classifier trained from scratch on each set below, tested on "
        f"{test.get('slices', '?')} slices of {test.get('subjects', '?')} held-out subjects "
        f"({utility.get('generated_per_class', '?')} generated slices per class).",
        "",
        "| trained on | slices | accuracy | balanced accuracy | AUC |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in (utility.get("train_on") or {}).items():
        lines.append(
            f"| {name} | {r.get('slices', '?')} | {_number(r.get('accuracy'), 3)} | "
            f"{_number(r.get('balanced_accuracy'), 3)} | {_number(r.get('auc'), 3)} |"
        )
    return lines + [""]


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _same_checkpoint(recorded: Any, ckpt: Path) -> str:
    if not recorded or str(recorded) == str(ckpt.resolve()):
        return ""
    return f" Computed on `{recorded}`, not on the exported checkpoint."


def evaluation(run: RunDir, ckpt: Path) -> list[str]:
    """The card's evaluation section from <run>/eval/metrics.json (make eval) and audit.json (make audit)."""
    lines = ["## Evaluation", ""]
    audit_json = run.eval / "audit.json"  # where audit.py writes it
    metrics = _read_json(run.metrics)
    if metrics is None:
        lines += ["Not evaluated (no `eval/metrics.json` in the run folder: `make eval`).", ""]
    else:
        s = metrics.get("settings") or {}
        lines += [
            f"`make eval` ({run.metrics}): generated images vs the run's {s.get('real', 'train')} "
            f"slices, Inception-v3 features, truncation psi {s.get('truncation_psi', 1.0)}, "
            f"{_number(s.get('kimg'))} kimg.{_same_checkpoint(s.get('checkpoint'), ckpt)}",
            "",
            "| | FID | KID x 1e3 | precision | recall | density | coverage | MS-SSIM | MS-SSIM (real) "
            "| N real | N generated |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            _metrics_row("generated vs real", metrics.get("metrics")),
        ]
        floor = metrics.get("floor")
        if floor:
            lines.append(_metrics_row("real-vs-real floor: training vs held-out (N generated = held-out)", floor))
        for name, m in (metrics.get("per_class") or {}).items():
            lines.append(_metrics_row(f"class {name}", m))
        if not floor:
            lines += ["", "No real-vs-real floor (the run has no held-out slices, or eval ran with floor=false)."]
        lines += [
            "",
            f"precision/recall k={s.get('pr_k', '?')}, density/coverage k={s.get('dc_k', '?')}; MS-SSIM: mean over "
            f"random pairs of generated | real slices (higher = less diverse), {s.get('ms_ssim_scales', '?')} scales "
            "(the floor's generated side is the held-out slices).",
            "",
        ]
        if metrics.get("utility"):
            lines += _utility(metrics["utility"])
    audit = _read_json(audit_json)
    if audit is None:
        lines += ["Memorization: not audited (no `eval/audit.json`: `make audit`).", ""]
    else:
        lines += [
            f"Memorization audit (`make audit`, {audit_json}): "
            f"{_number(100 * float(audit.get('near_copy_fraction', float('nan'))), 3)}% of "
            f"{audit.get('num_generated', '?')} generated slices are near copies of a training slice "
            f"(held-out baseline {_number(100 * float(audit.get('heldout_baseline_fraction', float('nan'))), 3)}%; "
            f"thresholds: cosine {_number(audit.get('feature_threshold'))}, pixel correlation "
            f"{_number(audit.get('pixel_threshold'))}; {audit.get('num_train', '?')} training and "
            f"{audit.get('num_heldout', '?')} held-out slices).{_same_checkpoint(audit.get('checkpoint'), ckpt)}",
            "",
        ]
    return lines


def model_card(info, config: dict, G: torch.nn.Module, with_manifest: bool = False) -> str:
    """MODEL_CARD.md for the export of `info` (a checkpoint.CheckpointInfo) with `config` (config.json);
    `with_manifest`: the export folder holds a copy of the run's manifest.csv."""
    run = info.run
    name = str(info.dataset_name or "unknown")
    net, train = info.net, info.train
    classes = ", ".join(info.class_names) if info.class_names and net.c_dim else "none (unconditional)"
    geometry = config.get("geometry")
    native = f"{geometry['width']} x {geometry['height']} (fit={geometry['fit']})" if geometry else "the model square"
    params = sum(p.numel() for p in G.parameters())
    lines = [
        f"# braingan StyleGAN2 generator: {name}, {net.img_resolution} x {net.img_resolution}",
        "",
        "A StyleGAN2 generator of 2-D brain MRI slices trained with braingan. "
        "Load it with `braingan.export.load_export(folder)` (safetensors + JSON, no pickles).",
        "",
        "## Model",
        "",
        f"- Generator: {params:,} parameters, z {net.z_dim}-d, w {net.w_dim}-d, {net.mapping_layers} mapping layers, "
        f"channel_base {net.channel_base}, channel_max {net.channel_max}, {net.img_channels} channel(s)",
        f"- Output: {net.img_resolution} x {net.img_resolution} in [-1, 1]; native size {native}",
        f"- Classes: {classes}",
        f"- Weights: G_ema of `{info.path.resolve()}` at {info.kimg:g} kimg",
    ]
    if info.init:
        lines.append(f"- Fine-tuned from: {json.dumps(info.init, default=str)}")
    else:
        lines.append("- Trained from scratch (not fine-tuned)")
    lines += ["", "## Training data", "", f"- Data set: {name} (root `{info.data.get('root', '?')}`)"]
    lines.append(f"- Splits trained on: {', '.join(info.splits)}")
    if run.manifest.is_file():
        listed = "manifest.csv, also in this folder" if with_manifest else "the run's manifest.csv, not exported"
        lines += [f"- Subjects and slices ({listed}):", "", *_splits(run.manifest)]
    else:
        lines.append("- Subjects and splits: unknown (no manifest.csv in the run folder)")
    augment = train.get("augment") or {}
    lines += [
        "",
        "## Training",
        "",
        f"- Length: {info.kimg:g} kimg shown to D (planned: {train.get('kimg', '?')} kimg)",
        f"- Batch size {train.get('batch_size', '?')}, lr G {train.get('lr_g', '?')}, lr D {train.get('lr_d', '?')}, "
        f"R1 gamma {train.get('r1_gamma', '?')}, path-length weight {train.get('pl_weight', '?')}, "
        f"style mixing {train.get('style_mixing', '?')}, EMA {train.get('ema_kimg', '?')} kimg",
        f"- Augmentation: {augment.get('mode', '?')} (target {augment.get('target', '?')})",
        f"- Seed: {(info.run_config or {}).get('seed', 'not recorded')}",
        "",
        *evaluation(run, info.path),
        "## Intended use",
        "",
        "Research only, not for diagnosis: studying generative models of brain MRI, data augmentation "
        "experiments, teaching. Not for clinical decisions, not as a substitute for real patient data, and "
        "not to be presented as real scans.",
        "",
        "## Known limitations",
        "",
        *[f"- {item}" for item in LIMITATIONS],
        "",
        "## Licence of the data",
        "",
        LICENCES.get(name, UNKNOWN_LICENCE),
        "",
    ]
    return "\n".join(lines)
