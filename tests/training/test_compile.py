"""speed.compile: torch.compile'd main phases train exactly like eager ones, with the same checkpoint.

On CPU the backend is aot_eager: dynamo capture and AOTAutograd's forward/backward graphs for
real, without inductor's C++ code generation (minutes on 2 cores). AOTAutograd is also the part
without double backward, so a regularizer routed through the compiled D or G would fail here.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from braingan.checkpoint import load_checkpoint
from braingan.experiment.run import train
from braingan.experiment.settings import build_configs
from braingan.training.module import StyleGAN2Module
from helpers.runs import compose, tiny_overrides

TAGS = ("Loss/G", "Loss/D", "Loss/r1_penalty", "Loss/pl_penalty", "Loss/path_length", "D/real", "D/fake")


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _scalars(run) -> dict[str, list[float]]:
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [e.value for e in acc.Scalars(t)] for t in TAGS}


@pytest.mark.slow
def test_compiled_main_phases_train_like_eager_with_eager_regularizers(tmp_path, demo_root):
    """2 steps, the first with path length and R1: same losses, weights and state-dict keys."""
    extra = {
        "model.r1_interval": 2,
        "model.pl_interval": 2,
        "schedule.log_kimg": 0.008,  # one scalar per step
        "speed.compile_backend": "aot_eager",
    }
    runs, graphs = {}, {}
    for compiled in (False, True):
        before = _graphs()
        runs[compiled] = train(
            compose(tiny_overrides(tmp_path / str(compiled), demo_root, 0.016, **{"speed.compile": compiled, **extra}))
        )
        graphs[compiled] = _graphs() - before
    assert graphs[False] == 0
    # G.synthesis with and without grad, D for G main (input needs grad) and D main (weights do).
    assert graphs[True] == 4, graphs

    eager, fast = _scalars(runs[False]), _scalars(runs[True])
    for tag in TAGS:
        assert len(eager[tag]) == len(fast[tag]) > 0, tag
        np.testing.assert_allclose(fast[tag], eager[tag], rtol=1e-4, atol=1e-6, err_msg=tag)
    a = load_checkpoint(runs[False] / "checkpoints" / "last.ckpt")
    b = load_checkpoint(runs[True] / "checkpoints" / "last.ckpt")
    assert a["braingan"]["batch_idx"] == b["braingan"]["batch_idx"] == 2
    assert list(a["state_dict"]) == list(b["state_dict"])
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, rtol=1e-4, atol=1e-6, msg=k)


def _module(tmp_path, compiled: bool) -> StyleGAN2Module:
    torch.manual_seed(0)
    cfg = compose(
        [
            "model=tiny",
            "resolution=32",
            f"run_dir={tmp_path}",
            f"speed.compile={compiled}",
            "speed.compile_backend=aot_eager",
        ]
    )
    return StyleGAN2Module(*build_configs(cfg))


def test_compiled_forwards_share_weights_and_leave_the_state_dict_alone(tmp_path):
    assert compose(["model=tiny", f"run_dir={tmp_path}"]).speed.compile is False  # off unless asked for
    eager, module = _module(tmp_path, False), _module(tmp_path, True)
    assert eager._fast("D") is eager.D and eager._fast("synthesis") is eager.G.synthesis
    assert module._compiled is None  # nothing compiled before the first use

    D = module._fast("D")
    assert D is not module.D and module._fast("D") is D  # built once
    assert list(module.state_dict()) == list(eager.state_dict())
    assert [n for n, _ in module.named_modules()] == [n for n, _ in eager.named_modules()]
    assert [n for n, _ in module.named_parameters()] == [n for n, _ in eager.named_parameters()]

    img = torch.randn(4, 1, 32, 32)
    out = D(img)
    torch.testing.assert_close(out, module.D(img))
    with torch.no_grad():  # the compiled D reads the module's own weights, also after an update
        module.D.epilogue.out.bias.add_(1.0)
    torch.testing.assert_close(D(img), out + 1.0)
    ws = module.G.mapping(torch.randn(2, module.net_cfg.z_dim))
    torch.testing.assert_close(
        module._fast("synthesis")(ws, noise_mode="const"), module.G.synthesis(ws, noise_mode="const")
    )

    for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        assert clone._compiled is None  # copies compile afresh, around their own modules
        assert list(clone.state_dict()) == list(eager.state_dict())
