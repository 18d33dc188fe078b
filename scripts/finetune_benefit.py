"""Does fine-tuning help? A measurement with the real entry points, on the demo data (CPU is enough).

The demo data's pseudo-subjects are split into two disjoint groups A and B (alternate subjects,
each keeping its train/validate/test split). A model is trained on A; then, for the same number
of kimg on B, one model is fine-tuned from it (init=) and one is trained from scratch. Both B
runs are evaluated by `python -m braingan.eval` against the same real set (B's training slices,
the same N generated images, the same seed). Prints a table and writes <out>/finetune_benefit.json.

    .venv/bin/python scripts/finetune_benefit.py [out=/tmp/finetune_benefit] [subjects=40] [kimg_a=16] [kimg_b=4]
        [model=tiny] [resolution=32] [num_gen=1000] [freeze_d=0]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

DEFAULTS = {
    "out": "/tmp/finetune_benefit",
    "subjects": 40,
    "kimg_a": 16,
    "kimg_b": 4,
    "model": "tiny",
    "resolution": 32,
    "batch_size": 16,
    "num_gen": 1000,
    "freeze_d": 0,
    "seed": 0,
}


def split_groups(demo: Path, out: Path) -> tuple[Path, Path]:
    """Two OASIS-layout folders of hard links: alternate pseudo-subjects of the demo data (A: even, B: odd)."""
    groups = (out / "group_A", out / "group_B")
    subjects = sorted({p.name.split("_")[1] for p in demo.glob("keras_png_slices_*/case_*.png")})
    for image in sorted(demo.glob("keras_png_slices_*/case_*.png")):
        group = groups[subjects.index(image.name.split("_")[1]) % 2]
        target = group / image.parent.name / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(image, target)
    return groups


def run(module: str, args: list[str], log: Path) -> float:
    """`python -m braingan.<module> args`, its output in `log`; the seconds it took (fails loudly)."""
    started = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, "-m", f"braingan.{module}", *args], stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"{module} {' '.join(args)} failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - started


def main(argv: list[str]) -> None:
    opt = dict(DEFAULTS)
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in opt:
            raise SystemExit(f"finetune_benefit: unknown setting {key}; settings: {', '.join(opt)}")
        opt[key] = type(DEFAULTS[key])(value)
    out = Path(str(opt["out"]))
    out.mkdir(parents=True, exist_ok=True)
    from braingan.data.demo import build_demo_dataset

    demo = out / "demo"
    build_demo_dataset(demo, num_subjects=int(opt["subjects"]), progress=False)
    group_a, group_b = split_groups(demo, out)
    common = [
        "experiment=cpu",
        f"model={opt['model']}",
        f"resolution={opt['resolution']}",
        f"batch_size={opt['batch_size']}",
        f"seed={opt['seed']}",
        "dataset=oasis",
        f"dataset.cache_dir={out / 'cache'}",
        "schedule.image_kimg=1",
        "schedule.snapshot_kimg=1000",
    ]
    runs = {
        "A (source)": [f"dataset.root={group_a}", f"kimg={opt['kimg_a']}", f"hydra.run.dir={out / 'run_A'}"],
        "B from scratch": [f"dataset.root={group_b}", f"kimg={opt['kimg_b']}", f"hydra.run.dir={out / 'run_B_scratch'}"],
        "B fine-tuned from A": [
            f"dataset.root={group_b}",
            f"kimg={opt['kimg_b']}",
            f"hydra.run.dir={out / 'run_B_finetuned'}",
            f"init={out / 'run_A' / 'checkpoints' / 'last.ckpt'}",
            f"model.freeze_d={opt['freeze_d']}",
        ],
    }
    results = {}
    for name, args in runs.items():
        folder = Path(args[2].split("=", 1)[1])
        seconds = run("train", common + args, out / f"{folder.name}.train.log")
        entry = {"train_seconds": round(seconds, 1), "kimg": opt["kimg_a"] if name.startswith("A") else opt["kimg_b"]}
        if name.startswith("B"):
            ckpt = folder / "checkpoints" / "last.ckpt"
            eval_args = [
                f"ckpt={ckpt}",
                f"num_gen={opt['num_gen']}",
                "floor=false",
                f"seed={opt['seed']}",
                f"cache_dir={out / 'cache'}",
                "progress=false",
            ]
            entry["eval_seconds"] = round(run("eval", eval_args, out / f"{folder.name}.eval.log"), 1)
            metrics = json.loads((folder / "eval" / "metrics.json").read_text())
            entry.update({k: metrics["metrics"][k] for k in ("fid", "kid_x1e3", "precision", "recall", "num_real")})
            entry["num_gen"] = metrics["settings"]["num_gen"]
        results[name] = entry
        print(name, json.dumps(entry), flush=True)
    (out / "finetune_benefit.json").write_text(json.dumps({"settings": opt, "results": results}, indent=2) + "\n")
    print(f"\n{'run':22s} {'kimg':>5s} {'FID':>8s} {'KIDx1e3':>8s} {'prec':>6s} {'recall':>6s} {'train s':>8s}")
    for name, e in results.items():
        if "fid" in e:
            print(
                f"{name:22s} {e['kimg']:5g} {e['fid']:8.2f} {e['kid_x1e3']:8.2f} {e['precision']:6.3f} "
                f"{e['recall']:6.3f} {e['train_seconds']:8.1f}"
            )
    b = results["B from scratch"], results["B fine-tuned from A"]
    print(f"same real set: {b[0]['num_real']} slices of group B; {b[0]['num_gen']} generated each")


if __name__ == "__main__":
    main(sys.argv[1:])
