"""What `make gpu-check` reports: the environment it ran in, its printed summary and its Markdown summary.

`environment(num_workers)` gathers the facts (torch, CUDA build, cuDNN, driver, GPUs, bf16/TF32,
CPU cores, DataLoader workers, and, without CUDA, why torch cannot use a GPU nvidia-smi sees);
`format_summary(result)` and `markdown(result)` render the result experiment/gpu_check.py writes,
with the official StyleGAN2 figures (references.py, docs/anchors.md) beside the matching rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from ..utils.gpu import gpu_unusable_reason, nvidia_smi_gpus
from .environment import device_info, versions
from .tables import MISSING, cell, fixed_width, significant

GIB = 2**30
PACKAGES = ("braingan", "torch", "torchvision", "pytorch-lightning", "hydra-core", "numpy")
SPEED_COLUMNS = (
    "configuration",
    "precision",
    "compile",
    "sec/kimg",
    "official",
    "vs official",
    "img/s",
    "peak GiB",
    "official GiB",
    "non-finite",
    "status",
)
PHASE_COLUMNS = ("phase", "status", "estimate s", "wall s", "note")
NUMBERS = {
    "sec/kimg",
    "official",
    "vs official",
    "img/s",
    "peak GiB",
    "official GiB",
    "non-finite",
    "estimate s",
    "wall s",
}


def environment(num_workers: int) -> dict:
    """The software, GPUs and CPU of this machine; `num_workers` = the DataLoader workers the phases use."""
    cuda = torch.cuda.is_available()
    gpus: list[dict[str, Any]] = []
    majors = []  # compute capability: native bf16 and TF32 from sm 8.0 (Ampere) on
    for i in range(torch.cuda.device_count() if cuda else 0):
        p = torch.cuda.get_device_properties(i)
        majors.append(p.major)
        gpus.append(
            {
                "index": i,
                "name": p.name,
                "memory_gib": significant(p.total_memory / GIB, 4),
                "capability": f"{p.major}.{p.minor}",
                "multiprocessors": p.multi_processor_count,
            }
        )
    try:
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except Exception:  # a broken cuDNN install: the tests and the phases will say more
        cudnn = None
    driver, unusable = nvidia_facts(cuda)
    ampere = bool(majors) and majors[0] >= 8
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "versions": versions(PACKAGES),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cudnn": cudnn,
        "driver": driver,
        "cuda_available": cuda,
        "gpus": gpus,
        "bf16": ampere if cuda else None,
        "tf32": ampere if cuda else None,
        "cpu": device_info("cpu")["name"],
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "dataloader_workers": num_workers,
        "gpu_unusable": unusable,
    }


def nvidia_facts(cuda: bool) -> tuple[str | None, str | None]:
    """(the driver version nvidia-smi reports, why torch cannot use a GPU nvidia-smi sees: None with CUDA),
    from one nvidia-smi call."""
    smi = nvidia_smi_gpus()
    return (smi[0].driver if smi else None), (None if cuda else gpu_unusable_reason(gpus=smi))


def _yes(value) -> str:
    return MISSING if value is None else ("yes" if value else "no")


def environment_lines(env: dict) -> list[str]:
    """The environment in three lines."""
    v = env["versions"]
    lines = [
        f"software  torch {env['torch']} (CUDA build {env['cuda_build'] or 'none'}, cuDNN {cell(env['cudnn'])}), "
        f"Lightning {cell(v.get('pytorch-lightning'))}, Hydra {cell(v.get('hydra-core'))}, Python {v['python']}, "
        f"braingan {cell(v.get('braingan'))}"
    ]
    if env["gpus"]:
        g = env["gpus"][0]
        more = f" (+{len(env['gpus']) - 1} more)" if len(env["gpus"]) > 1 else ""
        lines.append(
            f"GPU       {g['name']}{more}: {g['memory_gib']:g} GiB, compute capability {g['capability']}, "
            f"{g['multiprocessors']} SMs; driver {cell(env['driver'])}; bf16 {_yes(env['bf16'])}, TF32 {_yes(env['tf32'])}"
        )
    else:
        why = f" ({env['gpu_unusable']})" if env.get("gpu_unusable") else ""
        lines.append(f"GPU       none visible to torch{why}; driver {cell(env['driver'])}")
    lines.append(
        f"CPU       {env['cpu']}: {env['cpu_cores']} cores ({env['cpu_cores_usable']} usable), "
        f"{env['torch_threads']} torch threads; DataLoader workers {env['dataloader_workers']} (trainer.num_workers)"
    )
    return lines


def _speed_rows(result: dict) -> tuple[list[list[str]], list[str]]:
    """The training-speed table's rows, and the notes its status cells point to ([1] ...)."""
    rows: list[list[str]] = []
    notes: list[str] = []
    for r in result["phases"]:
        if r["kind"] != "bench":
            continue
        res, ref = r["result"] or {}, r.get("reference") or {}
        config = r["label"]
        if result["dry_run"] and res:
            config += f" as {res['config']['model']}/{res['config']['batch_size']}"
        status = r["status"]
        if r["reason"]:
            notes.append(f"[{len(notes) + 1}] {r['name']}: {r['reason']}")
            status += f" [{len(notes)}]"
        mem = res.get("peak_mem_gb") or {}
        speedup = (res.get("reference") or {}).get("speedup")
        rows.append(
            [
                config,
                cell(r["precision"]),
                "yes" if r["compile"] else "no",
                cell(res.get("sec_per_kimg"), ".4g"),
                cell(ref.get("sec_per_kimg"), "g"),
                MISSING if speedup is None else f"x{speedup:g}",
                cell(res.get("img_per_s"), ".4g"),
                cell(mem.get("allocated"), ".3g"),
                cell(ref.get("peak_mem_gb"), "g"),
                cell(res.get("nonfinite_steps")),
                status,
            ]
        )
    return rows, notes


def _phase_rows(result: dict) -> list[list[str]]:
    rows = []
    for r in result["phases"]:
        rows.append(
            [
                r["name"],
                r["status"],
                cell(r["estimate_s"], ".3g"),
                cell(r["wall_s"], ".4g"),
                r["reason"] or _phase_note(r),
            ]
        )
    return rows


def _phase_note(r: dict) -> str:
    res = r["result"] or {}
    if r["kind"] == "tests" and res:
        return tests_line(res)
    if r["kind"] == "data" and res:
        return f"{res['train_slices']} training slices of {res['dataset']} at {res['resolution']}x{res['resolution']}"
    if r["kind"] == "train" and res:
        return train_line(res)
    return ""


def tests_line(res: dict) -> str:
    c = res["counts"]
    line = f"{c['passed']} passed, {c['failed']} failed, {c['error']} errors, {c['skipped']} skipped"
    if not res["tests"]:
        line = "no test is marked gpu" if res["exit_code"] == 5 else "no test finished"
    return line


def train_line(res: dict) -> str:
    setting = f"{res['precision']}" + (" compiled" if res["compile"] else "")
    losses = ", ".join(f"{k.split('/', 1)[1]} {v:g}" for k, v in res["final"].items() if k in ("Loss/G", "Loss/D"))
    return (
        f"{res['model']}/{res['batch_size']} at {res['resolution']}x{res['resolution']}, {setting}: "
        f"{cell(res['kimg'], 'g')} kimg in {res['seconds']:.4g} s ({cell(res['sec_per_kimg'], '.4g')} sec/kimg); "
        f"final {losses or 'losses -'}; non-finite steps {res['nonfinite_steps']}"
        + (f"; {res['note']}" if res.get("note") else "")
    )


def _head(result: dict) -> str:
    dry = ", dry run: every phase at tiny size on the CPU" if result["dry_run"] else ""
    unfinished = "" if result.get("finished", True) else " (unfinished: written after each phase)"
    return (
        f"budget {result['budget_s']:g} s, used {result['elapsed_s']:g} s{dry}{unfinished}; "
        f"exit code {result['exit_code']} (0: everything that ran passed)"
    )


def _reference_note(result: dict) -> str | None:
    refs = [r.get("reference") for r in result["phases"] if r["kind"] == "bench" and r.get("reference")]
    if not refs:
        return None
    return (
        f"official: {refs[0]['source']} (docs/anchors.md); vs official = official sec/kimg / this run's "
        "(above 1: faster); the official code ran FP16 in the 4 highest resolutions: compare the 16-mixed rows"
    )


def format_summary(result: dict) -> str:
    """The table the command prints at the end (without CUDA: the one line that says so)."""
    if "no_cuda" in result:
        return result["no_cuda"]
    lines = environment_lines(result["environment"])
    lines += [f"check     {_head(result)}", "", "training speed (make bench code; peak GiB = allocated, 2^30 bytes)"]
    rows, notes = _speed_rows(result)
    lines += ["  " + line for line in fixed_width(SPEED_COLUMNS, rows, right=NUMBERS)] if rows else ["  -"]
    lines += ["  " + n for n in notes]
    ref = _reference_note(result)
    if ref:
        lines.append("  " + ref)
    lines += ["", "phases"]
    lines += ["  " + line for line in fixed_width(PHASE_COLUMNS, _phase_rows(result), right=NUMBERS)]
    failed = [
        t for r in result["phases"] if r["kind"] == "tests" and r["result"] for t in r["result"]["tests"]
    ]  # fmt: skip
    for t in failed:
        if t["outcome"] in ("failed", "error"):
            lines.append(f"  {t['outcome']}: {t['test']}: {t['message']}")
    lines += ["", f"wrote {result['json']} and {result['markdown']}"]
    return "\n".join(lines)


def _md_table(columns: Sequence[str], rows: list[list[str]]) -> list[str]:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    align = ["---:" if c in NUMBERS else "---" for c in columns]
    return [
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(esc(c) for c in row) + " |" for row in rows),
    ]


def markdown(result: dict) -> str:
    """The short Markdown summary (gpu_check.md)."""
    env = result["environment"]
    out = [f"# braingan GPU check, {result['created']}", ""]
    out += [f"- {line.split(None, 1)[0]}: {line.split(None, 1)[1]}" for line in environment_lines(env)]
    out += [f"- check: {_head(result)}", "", "## Training speed", ""]
    rows, notes = _speed_rows(result)
    out += _md_table(SPEED_COLUMNS, rows) if rows else ["(no measurement)"]
    out += [""] + [f"{n}  " for n in notes]
    ref = _reference_note(result)
    if ref:
        out += ["", ref]
    train = next((r for r in result["phases"] if r["kind"] == "train"), None)
    if train is not None and train["result"]:
        res = train["result"]
        out += ["", "## Training", "", train_line(res) + ".", ""]
        if res["samples"]:
            out.append(f"Sample grid: `{res['samples']}`  ")
        if res["plots"]:
            out.append("Curves: " + ", ".join(f"`{p}`" for p in res["plots"]))
    out += ["", "## Phases", ""]
    out += _md_table(PHASE_COLUMNS, _phase_rows(result))
    tests = [t for r in result["phases"] if r["kind"] == "tests" and r["result"] for t in r["result"]["tests"]]
    if tests:
        out += ["", "## GPU tests", ""]
        out += _md_table(
            ("test", "outcome", "seconds", "message"),
            [[f"`{t['test']}`", t["outcome"], f"{t['seconds']:.3g}", t["message"] or ""] for t in tests],
        )
    return "\n".join(out) + "\n"
