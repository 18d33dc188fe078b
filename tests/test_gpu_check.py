"""`make gpu-check` (python -m braingan.gpu_check): the dry run end to end on the CPU, the one line
without CUDA, the budget planner, the GPU-test runner and the summary with the official figures."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from braingan.experiment import gpu_tests as gpu_tests_module
from braingan.experiment.gpu_check import GpuCheck, Measured, bench_estimate, fastest, train_plan
from braingan.experiment.gpu_tests import SOURCE_TESTS_DIR, find_tests, run_gpu_tests
from braingan.experiment.phases import ERROR, FAILED, OK, SKIPPED, Budget, Phase, run_phases
from braingan.reporting.gpu_report import format_summary, markdown
from braingan.reporting.references import reference_for
from braingan.utils.errors import UsageError
from helpers.runs import DEMO_SUBJECTS, PAPER_256, REPO, run_tool

GUESS = {"setup_s": 30, "sec_per_kimg": {"paper": 35, "base": 18}, "compile_s": 120}
BENCH_NAMES = [
    f"bench {label} {p}" for label in ("paper/32", "base/64") for p in ("32-true", "bf16-mixed", "16-mixed")
] + ["bench base/64 compile"]

# A tests folder of our own: one GPU test passes, one skips, one test without the marker is left out.
TESTS = {
    "conftest.py": "def pytest_configure(config):\n    config.addinivalue_line('markers', 'gpu: needs CUDA')\n",
    "test_fake_gpu.py": (
        "import time\nimport pytest\n\n"
        "@pytest.mark.gpu\ndef test_passes():\n    assert True\n\n"
        "@pytest.mark.gpu\ndef test_skips():\n    pytest.skip('no device here')\n\n"
        "def test_not_marked():\n    raise AssertionError('not selected')\n"
    ),
}


def write_tests(folder, extra: dict[str, str] | None = None):
    folder.mkdir(parents=True)
    for name, text in {**TESTS, **(extra or {})}.items():
        (folder / name).write_text(text)
    return folder


# ---------------------------------------------------------------------------------------------------
# End to end


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, demo_root):
    tmp = tmp_path_factory.mktemp("gpu_check")
    tests = write_tests(tmp / "suite" / "tests")
    out = tmp / "out"
    args = [
        "dry_run=true",
        f"out={out}",
        f"gpu_check.tests={tests}",
        f"dataset.root={demo_root}",
        f"dataset.demo_subjects={DEMO_SUBJECTS}",
        f"dataset.cache_dir={tmp / 'cache'}",
    ]
    # One thread: on a busy 2-core machine two OpenMP threads per process slow every step tenfold.
    proc = run_tool("gpu_check", args, cwd=tmp, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return proc, out, tmp


@pytest.mark.slow
def test_dry_run_runs_every_phase_and_writes_the_json_and_the_markdown(dry_run):
    proc, out, tmp = dry_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    result = json.loads((out / "gpu_check.json").read_text())
    names = [r["name"] for r in result["phases"]]
    assert names == ["environment", "gpu tests", "data", *BENCH_NAMES, "train base/64"]
    assert [r["name"] for r in result["phases"] if r["status"] != OK] == []
    assert result["dry_run"] is True and result["exit_code"] == 0 and result["budget_s"] == 480
    assert result["finished"] is True
    assert all(r["wall_s"] is not None and r["wall_s"] >= 0 for r in result["phases"])
    env = result["environment"]
    assert env["torch"] == torch.__version__ and env["cpu_cores"] == os.cpu_count()
    assert env["dataloader_workers"] == 0  # trainer=cpu
    # The GPU tests: one passed, one skipped, the unmarked one not selected; its outcome per test.
    tests = next(r for r in result["phases"] if r["kind"] == "tests")["result"]
    assert tests["counts"] == {"passed": 1, "failed": 0, "error": 0, "skipped": 1}
    assert {t["test"].split("::")[1]: t["outcome"] for t in tests["tests"]} == {
        "test_passes": "passed",
        "test_skips": "skipped",
    }
    assert next(t for t in tests["tests"] if t["outcome"] == "skipped")["message"] == "no device here"
    # Each measurement through make bench's code, at tiny size on the CPU; its own JSON kept beside.
    benches = [r for r in result["phases"] if r["kind"] == "bench"]
    for r in benches:
        c = r["result"]["config"]
        assert (c["model"], c["resolution"], c["batch_size"], c["precision"]) == ("tiny", 32, 8, r["precision"])
        assert r["result"]["sec_per_kimg"] > 0 and r["result"]["reference"] is None and r["estimate_s"] > 0
        assert (out / "bench" / os.path.basename(r["result"]["json"])).is_file()
    compiled = benches[-1]
    assert compiled["compile"] and compiled["result"]["config"]["compile"]
    base = [r for r in benches[:-1] if r["label"] == "base/64"]
    assert compiled["precision"] == min(base, key=lambda r: r["result"]["sec_per_kimg"])["precision"]
    # The short training run: the fastest finite setting, a sample grid, the curves, no checkpoints.
    train = result["phases"][-1]["result"]
    best = min(
        (r for r in benches if r["label"] == "base/64"), key=lambda r: r["result"]["sec_per_kimg"]
    )  # fmt: skip
    assert (train["precision"], train["compile"]) == (best["precision"], best["compile"])
    assert train["kimg"] == pytest.approx(0.032) and train["nonfinite_steps"] == 0
    assert os.path.isfile(train["samples"]) and any(p.endswith("losses.png") for p in train["plots"])
    assert not (out / "train" / "checkpoints").exists()
    # The Markdown summary and the printed table hold the same figures.
    md = (out / "gpu_check.md").read_text()
    assert "## Training speed" in md and "## Phases" in md and "paper/32 as tiny/8" in md
    for r in benches:
        assert f"{r['result']['sec_per_kimg']:.4g}" in proc.stdout and f"{r['result']['sec_per_kimg']:.4g}" in md
    assert f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}" in proc.stdout
    assert sorted(p.name for p in tmp.iterdir()) == ["cache", "out", "suite"]  # nothing in the working directory


def test_without_cuda_the_check_says_so_in_one_line_after_the_environment(tmp_path, monkeypatch, capsys):
    from braingan import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["gpu_check"])
    gpu_check.main()  # returns: exit code 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith(f"software  torch {torch.__version__}") and out[1].startswith("GPU       none")
    assert out[2].startswith("CPU       ") and "DataLoader workers 4" in out[2]  # trainer=gpu's
    assert len(out) == 4 and out[-1].startswith("gpu_check: no CUDA device visible to torch")
    assert "dry_run=true" in out[-1]
    assert list(tmp_path.iterdir()) == []  # nothing measured, nothing written


def test_the_driver_and_the_reason_come_from_one_nvidia_smi_call(tmp_path, monkeypatch):
    """A fake nvidia-smi on PATH (a real program that logs its calls): the driver it reports, and the reason
    from utils/gpu.py only where torch cannot use the GPU, for one nvidia-smi call each time."""
    from braingan.reporting.gpu_report import nvidia_facts

    log = tmp_path / "calls"
    exe = tmp_path / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\necho x >> {log}\necho 'NVIDIA H100 80GB HBM3, 535.104.05'\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert nvidia_facts(cuda=True) == ("535.104.05", None)  # torch uses the GPU: nothing to explain
    driver, reason = nvidia_facts(cuda=False)
    assert driver == "535.104.05" and reason.startswith("nvidia-smi sees 1 GPU (NVIDIA H100 80GB HBM3")
    assert log.read_text().count("x") == 2


def test_tests_are_found_in_a_source_checkout_and_the_setting_is_checked(tmp_path, monkeypatch):
    assert SOURCE_TESTS_DIR == REPO / "tests" and find_tests("auto") == REPO / "tests"
    # Installed from a wheel (no tests/ beside the package): ./tests when run inside the repository, else none.
    monkeypatch.setattr(gpu_tests_module, "SOURCE_TESTS_DIR", tmp_path / "site" / "tests")
    monkeypatch.chdir(REPO)
    assert find_tests("auto") == REPO / "tests"
    monkeypatch.chdir(tmp_path)
    assert find_tests("auto") is None
    assert find_tests(None) is None and find_tests(str(tmp_path)) == tmp_path
    with pytest.raises(UsageError, match="no such folder"):
        find_tests(str(tmp_path / "nowhere"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        find_tests(str(tmp_path / "notes.txt"))


# ---------------------------------------------------------------------------------------------------
# The budget planner


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_phase(name: str, estimate: float, clock: FakeClock, took: float | None = None, **kw) -> Phase:
    def run() -> dict:
        clock.now += estimate if took is None else took
        if kw.get("raises"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
        return {"value": name, **({"failure": kw["failure"]} if kw.get("failure") else {})}

    return Phase(name, "bench", estimate=lambda: estimate, run=run, skip=kw.get("skip", lambda: None))


def test_a_tiny_budget_skips_what_no_longer_fits_and_says_so():
    clock, said, freed = FakeClock(), [], []
    budget = Budget(100, reserve=5, clock=clock)
    phases = [
        fake_phase("a", 10, clock),
        fake_phase("b", 50, clock),
        fake_phase("c", 60, clock),  # 35 s left: skipped
        fake_phase("d", 20, clock),  # fits in what is left
        fake_phase("e", 16, clock),  # 15 s left
        fake_phase("f", 1, clock, skip=lambda: "tests not found, skipped"),
    ]
    records = run_phases(phases, budget, said.append, after=lambda: freed.append(1))
    assert [(r["name"], r["status"]) for r in records] == [
        ("a", OK),
        ("b", OK),
        ("c", SKIPPED),
        ("d", OK),
        ("e", SKIPPED),
        ("f", SKIPPED),
    ]
    c = records[2]
    assert c["reason"] == "needs about 60 s, 35 s of budget_s=100 left" and c["wall_s"] is None
    assert records[4]["reason"] == "needs about 16 s, 15 s of budget_s=100 left"
    assert records[5]["reason"] == "tests not found, skipped" and records[5]["estimate_s"] is None
    assert [r["wall_s"] for r in records if r["status"] == OK] == [10, 50, 20]
    assert records[0]["result"] == {"value": "a"} and len(freed) == 3  # memory freed after every phase that ran
    assert "[gpu_check] c: skipped, needs about 60 s, 35 s of budget_s=100 left" in said


def test_one_failing_phase_is_recorded_and_the_check_goes_on():
    clock = FakeClock()
    broken = Phase("broken", "bench", estimate=lambda: 1 / 0, run=dict)
    phases = [
        broken,  # its estimate raises: an error too
        fake_phase("oom", 1, clock, raises=True),
        fake_phase("nonfinite", 1, clock, failure="3 non-finite steps"),
        fake_phase("fine", 1, clock),
    ]
    records = run_phases(phases, Budget(100, clock=clock), lambda _: None, after=lambda: None)
    assert [r["status"] for r in records] == [ERROR, ERROR, FAILED, OK]
    assert records.pop(0)["reason"] == "ZeroDivisionError: division by zero"
    assert records[0]["reason"] == "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert records[0]["error"].endswith("2.00 GiB\nmore detail")  # the whole message in the JSON
    assert records[1]["reason"] == "3 non-finite steps" and "failure" not in records[1]["result"]


def test_estimates_come_from_the_guesses_then_from_what_was_measured():
    steps = 8 + 32
    first = bench_estimate([], "paper/32", "paper", steps, 32, False, GUESS)
    assert first == pytest.approx(30 + steps * 32 / 1000 * 35)
    assert bench_estimate([], "x/8", "unknown", steps, 8, False, GUESS) == pytest.approx(30 + steps * 8 / 1000 * 35)
    history = [
        Measured("paper/32", "32-true", False, 20.0, 12.0),
        Measured("paper/32", "bf16-mixed", False, 9.0, 8.0),
    ]
    # The slowest sec/kimg of the same configuration, the last measurement's setup.
    assert bench_estimate(history, "paper/32", "paper", steps, 32, False, GUESS) == pytest.approx(
        8 + steps * 32 / 1000 * 20
    )
    # Another configuration: its guess; the first compiled measurement adds the compile guess.
    assert bench_estimate(history, "base/64", "base", steps, 64, True, GUESS) == pytest.approx(
        8 + 120 + steps * 64 / 1000 * 18
    )


def test_the_training_run_takes_what_the_budget_leaves_in_whole_batches_and_at_least_the_minimum():
    kimg, estimate = train_plan(left_s=200, overhead_s=20, sec_per_kimg=6.0, batch_size=64, min_kimg=10)
    assert kimg == pytest.approx(29.952) and round(kimg * 1000) % 64 == 0  # 180 s / 6 sec/kimg = 30 kimg, rounded down
    assert estimate == pytest.approx(20 + kimg * 6.0) and estimate <= 200
    kimg, estimate = train_plan(left_s=50, overhead_s=20, sec_per_kimg=6.0, batch_size=64, min_kimg=10)
    assert kimg == pytest.approx(10.048) and estimate > 50  # the minimum, which the budget then refuses
    assert train_plan(1000, 20, 6.0, 64, 10, kimg=0.032) == (0.032, pytest.approx(20.192))


def test_the_training_setting_is_the_fastest_finite_measurement():
    def rec(label, precision, spk, nonfinite=0, status=OK, compile=False):
        result = {"sec_per_kimg": spk, "nonfinite_steps": nonfinite}
        return {"kind": "bench", "label": label, "precision": precision, "compile": compile, "status": status} | {
            "result": result
        }

    records = [
        rec("base/64", "32-true", 12.0),
        rec("base/64", "16-mixed", 5.0, nonfinite=2),  # fastest, but not finite
        rec("base/64", "bf16-mixed", 7.0),
        rec("base/64", "bf16-mixed", 4.0, status=ERROR),
        rec("paper/32", "bf16-mixed", 3.0),  # another configuration
    ]
    assert fastest(records, "base/64")["precision"] == "bf16-mixed"
    assert fastest(records, "small/16") is None


def test_the_training_run_takes_the_fastest_finite_setting_whose_setup_fits_the_budget():
    from hydra import compose, initialize_config_dir

    from braingan.confdir import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("gpu_check")
    check = GpuCheck(cfg, [], compose=lambda overrides: cfg, say=lambda _: None)
    base = check.configs[1]

    def rec(precision, spk, compile=False, nonfinite=0):
        return {"name": f"bench base/64 {precision}", "kind": "bench", "label": "base/64", "status": OK} | {
            "precision": precision,
            "compile": compile,
            "result": {"sec_per_kimg": spk, "nonfinite_steps": nonfinite},
        }

    check.records = [rec("32-true", 12.0), rec("16-mixed", 4.0, nonfinite=3), rec("bf16-mixed", 6.0)]
    check.records.append(rec("bf16-mixed", 5.0, compile=True))
    check.history = [
        Measured("base/64", "32-true", False, 12.0, 15.0),
        Measured("base/64", "16-mixed", False, 4.0, 15.0),
        Measured("base/64", "bf16-mixed", False, 6.0, 15.0),
        Measured("base/64", "bf16-mixed", True, 5.0, 150.0),  # its setup holds the compilation
    ]
    clock = FakeClock()
    check.budget = Budget(1000, reserve=0, clock=clock)
    assert check.train_estimate(base) <= 1000 and check.training[:2] == ("bf16-mixed", True)  # the fastest finite
    assert check.training[3] == pytest.approx(168.0)  # (1000 - 150 - 10) / 5 kimg, in whole batches of 64
    clock.now = 880  # 120 s left: compiling alone would not fit, 10 kimg eager would (15 + 10 + 60 s)
    estimate = check.train_estimate(base)
    assert check.training[:2] == ("bf16-mixed", False) and check.training[3] == pytest.approx(15.808)
    assert estimate <= 120
    clock.now = 990  # nothing fits: the fastest, which the budget then refuses
    assert check.train_estimate(base) > 10 and check.training[:2] == ("bf16-mixed", True)


# ---------------------------------------------------------------------------------------------------
# The GPU tests runner and the summary


def test_gpu_tests_run_in_a_subprocess_with_one_outcome_per_test(tmp_path):
    failing = "import pytest\n\n@pytest.mark.gpu\ndef test_fails():\n    assert 1 == 2, 'one is not two'\n"
    tests = write_tests(tmp_path / "tests", {"test_more.py": failing})
    result = run_gpu_tests(tests, tmp_path / "out.jsonl", tmp_path / "out.log", timeout_s=120)
    assert result["exit_code"] == 1 and result["counts"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 1}
    failed = next(t for t in result["tests"] if t["outcome"] == "failed")
    assert failed["test"] == "tests/test_more.py::test_fails" and "one is not two" in failed["message"]
    assert result["failure"] == "1 of 3 failed: tests/test_more.py::test_fails"


def test_gpu_tests_that_run_past_their_time_are_stopped_and_what_finished_is_kept(tmp_path):
    slow = "import time, pytest\n\n@pytest.mark.gpu\ndef test_zz_hangs():\n    time.sleep(600)\n"
    tests = write_tests(tmp_path / "tests", {"test_zz.py": slow})
    result = run_gpu_tests(tests, tmp_path / "out.jsonl", tmp_path / "out.log", timeout_s=8)
    assert result["exit_code"] is None and result["failure"].startswith("stopped after")
    assert {t["test"].split("::")[1] for t in result["tests"]} == {"test_passes", "test_skips"}


def test_the_summary_puts_the_official_figures_beside_the_matching_rows():
    paper = dict(PAPER_256)
    ref = reference_for(paper, cuda=True)
    bench = {
        "config": {"model": "paper", "batch_size": 32},
        "sec_per_kimg": 9.28,
        "img_per_s": 107.8,
        "peak_mem_gb": {"allocated": 12.1, "reserved": 14.0},
        "nonfinite_steps": 0,
        "reference": dict(ref, speedup=1.25),
    }
    env = {
        "versions": {"python": "3.12.1", "pytorch-lightning": "2.6.0", "hydra-core": "1.3.2", "braingan": "0.1.0"},
        "torch": "2.11.0+cu128",
        "cuda_build": "12.8",
        "cudnn": 91002,
        "driver": "570.86",
        "cuda_available": True,
        "gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory_gib": 79.19, "capability": "9.0", "multiprocessors": 132}],
        "bf16": True,
        "tf32": True,
        "cpu": "Intel Xeon",
        "cpu_cores": 32,
        "cpu_cores_usable": 16,
        "torch_threads": 16,
        "dataloader_workers": 4,
    }

    def phase(name, kind, status="ok", reason=None, result=None, **facts):
        return {"name": name, "kind": kind, "status": status, "reason": reason, "estimate_s": 30.0} | {
            "wall_s": 28.5,
            "result": result,
            **facts,
        }

    result = {
        "created": "2026-05-01T12:00:00",
        "dry_run": False,
        "budget_s": 480.0,
        "elapsed_s": 470.2,
        "exit_code": 1,
        "json": "out/gpu_check.json",
        "markdown": "out/gpu_check.md",
        "environment": env,
        "phases": [
            phase("bench paper/32 16-mixed", "bench", result=bench, label="paper/32", precision="16-mixed")
            | {"compile": False, "reference": ref},
            phase("bench base/64 32-true", "bench", ERROR, "OutOfMemoryError: CUDA out of memory", label="base/64")
            | {"precision": "32-true", "compile": False, "reference": None},
        ],
    }
    table = format_summary(result)
    row = next(line for line in table.splitlines() if line.strip().startswith("paper/32"))
    assert "9.28" in row and "11.6" in row and "x1.25" in row and "13.6" in row and "12.1" in row
    assert "error [1]" in table and "[1] bench base/64 32-true: OutOfMemoryError: CUDA out of memory" in table
    assert "NVIDIA H100 80GB HBM3: 79.19 GiB, compute capability 9.0" in table and "driver 570.86" in table
    assert "16 usable" in table and "DataLoader workers 4" in table and "exit code 1" in table
    md = markdown(result)
    assert "| paper/32 | 16-mixed | no | 9.28 | 11.6 | x1.25 |" in md
