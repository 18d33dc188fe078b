"""The StyleGAN2 LightningModule: G, D, G_ema and ADA under manual optimization.

One training step = one batch of reals, run through up to four phases as in StyleGAN2:
G main (non-saturating loss), G reg (lazy path length, every `pl_interval` batches),
D main (logistic loss, with the ADA statistic), D reg (lazy R1, every `r1_interval` batches).
Time is counted in images shown to D (`cur_nimg`, global over all processes).

Several processes (training/distributed.py): each takes batch_size / world_size images per
step; gradients are averaged over the ranks before every optimizer step, so the learning rate,
R1 gamma and path-length weight mean the same at any GPU count. The path-length mean, the ADA
statistic and the tracked w averages are reduced too, and every checkpoint proves (by digests of
all weights and buffers) that the ranks still agree.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from ..checkpoint import hyperparameters, training_state, write_training_state
from ..data.fit import Geometry
from ..nn.augment import AugmentPipe, ada_step
from ..nn.config import NetworkConfig
from ..nn.discriminator import Discriminator
from ..nn.synthesis import Generator
from ..utils.errors import UsageError
from . import losses
from .config import TrainConfig
from .distributed import (
    all_reduce_mean_,
    all_reduce_sum,
    diverged,
    flat_gradients,
    gather_objects,
    is_distributed,
    missing_grads,
    state_digests,
)
from .ema import ema_beta, update_ema

# The Adam implementation: fused (one kernel for all tensors) because it skips a step on the device
# (`found_inf`, see _opt_step). An optimizer state holds these flags, so older checkpoints' are
# replaced on loading (on_load_checkpoint).
ADAM = {"fused": True, "foreach": None}


class NonFiniteLossError(RuntimeError):
    """Raised after `max_nonfinite` steps in a row produced a non-finite loss."""


def _set_requires_grad(module: torch.nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


class StyleGAN2Module(pl.LightningModule):
    ada_stat: torch.Tensor  # buffers, registered in __init__
    nonfinite_counts: torch.Tensor
    pl_mean: torch.Tensor

    def __init__(
        self,
        net: dict | NetworkConfig,  # network hyperparameters
        train: dict | TrainConfig,  # training hyperparameters
        data: dict
        | None = None,  # what generation needs about the data: class_names, geometry (SliceDataModule.data_info)
    ):
        super().__init__()
        self.net_cfg = net if isinstance(net, NetworkConfig) else NetworkConfig.from_dict(net)
        self.train_cfg = train if isinstance(train, TrainConfig) else TrainConfig.from_dict(train)
        self.data_info = dict(data or {})
        # Plain dicts in the checkpoint, so the networks rebuild from the file alone.
        self.save_hyperparameters(
            hyperparameters(self.net_cfg.to_dict(), self.train_cfg.to_dict(), self.data_info), logger=False
        )
        self.automatic_optimization = False

        self.G = Generator(self.net_cfg)
        self.D = Discriminator(self.net_cfg)
        self.G_ema = copy.deepcopy(self.G).eval()
        _set_requires_grad(self.G_ema, False)
        tc = self.train_cfg
        if not 0 <= tc.freeze_d <= len(self.D.blocks):
            raise UsageError(
                f"model.freeze_d={tc.freeze_d} must be between 0 and the {len(self.D.blocks)} blocks of D at "
                f"{self.net_cfg.img_resolution}x{self.net_cfg.img_resolution}"
            )
        if tc.augment.mode not in ("ada", "fixed", "none"):
            raise UsageError(f"augment.mode must be ada, fixed or none, got {tc.augment.mode!r}")
        self.augment_pipe = AugmentPipe(**tc.augment.pipe, p_init=tc.augment.p) if tc.augment.mode != "none" else None

        # Training state that must survive a resume lives in buffers (saved in the state dict).
        self.register_buffer("pl_mean", torch.zeros([]))
        self.register_buffer("ada_stat", torch.zeros(2))  # [sum of sign(D(real)), count] since the last p update
        # Skipped steps [total, current run, longest run], counted on the device (int64); the total
        # goes into checkpoints through the training state, not the state dict.
        self.register_buffer("nonfinite_counts", torch.zeros(3, dtype=torch.int64), persistent=False)
        # Conditional: one grid row per class (row k holds class k), num_samples // c_dim per row
        # (at least one), so every class is shown.
        c_dim = self.net_cfg.c_dim
        self.sample_rows = c_dim if c_dim > 0 else None
        per_row = max(1, tc.num_samples // c_dim) if c_dim > 0 else tc.num_samples
        num_samples = per_row * max(c_dim, 1)
        g = torch.Generator().manual_seed(tc.sample_seed)
        self.register_buffer("sample_z", torch.randn(num_samples, self.net_cfg.z_dim, generator=g))
        self.register_buffer("sample_c", torch.arange(num_samples) // per_row)  # [num_samples] class of each
        self.cur_nimg = 0  # images shown to D so far (all processes)
        self.prev_nimg = 0  # cur_nimg before the last step (callbacks fire on crossing a tick)
        self.batch_idx = 0  # training steps so far (drives the lazy intervals)
        self.last_good_ckpt: str | None = None  # set by the checkpoint callback
        self.run_config: dict | None = None  # the run's flattened settings, saved in checkpoints (train.py)
        self.init_source: dict | None = None  # a fine-tuned run: where its weights started (init=), saved too
        self._pending_rng: dict | None = None
        self._grads_checked: set[str] = set()  # phases whose first backward was checked for missing gradients
        self._stats: dict[str, list[torch.Tensor]] = {}  # name -> [value, weight] per record, on the device
        self.last_stats: dict[str, float] = {}  # what pop_stats returned last (the progress bar shows it)
        # speed.compile: torch.compile'd G.synthesis and D, built on first use (see _fast).
        self._compiled: dict[str, Callable] | None = None
        self._tick_time = time.perf_counter()
        self._tick_nimg = 0

    # ------------------------------------------------------------------------------------------
    # Helpers

    @property
    def cur_kimg(self) -> float:
        return self.cur_nimg / 1000.0

    @property
    def geometry(self) -> Geometry | None:
        """Native size and fit policy of the training images; None when not known."""
        g = self.data_info.get("geometry")
        return Geometry.from_dict(g) if g else None

    @property
    def ada_p(self) -> float:
        return float(self.augment_pipe.p) if self.augment_pipe is not None else 0.0

    def _one_hot(self, labels: torch.Tensor) -> torch.Tensor | None:
        if self.net_cfg.c_dim == 0:
            return None
        return F.one_hot(labels.long(), self.net_cfg.c_dim).float()

    def _run_mapping(self, z: torch.Tensor, c: torch.Tensor | None, update_emas: bool) -> torch.Tensor:
        """Mapping with style mixing: with probability p, ws after a random cutoff come from a second z."""
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.train_cfg.style_mixing > 0:
            num_ws = ws.shape[1]
            cutoff = torch.randint(1, num_ws, [], device=ws.device)
            cutoff = torch.where(torch.rand([], device=ws.device) < self.train_cfg.style_mixing, cutoff, num_ws)
            mix = (torch.arange(num_ws, device=ws.device) >= cutoff)[None, :, None]
            ws = torch.where(mix, self.G.mapping(torch.randn_like(z), c, update_emas=False), ws)
        return ws

    def _fast(self, name: str) -> Callable:
        """The forward of the main phases: G.synthesis ('synthesis') or D ('D'), compiled under speed.compile.

        The compiled callables wrap the eager modules and share their parameters, and live in a
        plain dict (not registered as submodules): state_dict keys, checkpoints, the EMA and the
        gradient averaging are the same with compile on or off. Built on first use, so __init__
        and G_ema's copy never see them. Path length and R1 never use them: they take gradients
        with create_graph=True, and AOTAutograd has no double backward.
        """
        eager = self.G.synthesis if name == "synthesis" else self.D
        if not self.train_cfg.compile:
            return eager
        if self._compiled is None:
            # dynamic=False: the main phases see one batch shape per rank (drop_last), so one
            # static graph per grad mode / requires_grad pattern; no symbolic shapes.
            tc = self.train_cfg
            opts: dict[str, Any] = {"backend": tc.compile_backend, "dynamic": False}
            if tc.compile_backend == "inductor" or tc.compile_mode != "default":
                opts["mode"] = tc.compile_mode  # the modes are inductor's; other backends reject them
            self._compiled = {"synthesis": torch.compile(self.G.synthesis, **opts), "D": torch.compile(self.D, **opts)}
        return self._compiled[name]

    def __getstate__(self) -> dict:
        # A copy or pickle of the module compiles afresh on first use (the compiled wrappers
        # hold the original modules and dynamo's caches).
        state = super().__getstate__()
        state["_compiled"] = None
        return state

    def _run_D(self, img: torch.Tensor, c: torch.Tensor | None, fast: bool = False) -> torch.Tensor:
        """Augment, then D; fast = the compiled D of the main phases (speed.compile), else the eager one."""
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return (self._fast("D") if fast else self.D)(img, c)

    def _record(self, name: str, value: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """Adds the mean of `value` to statistic `name`; `weight` (a [] 0/1 tensor) leaves a step out.

        Kept on the device as [value, weight] pairs; turned into floats only when the logger asks
        (pop_stats), so recording never waits for the GPU.
        """
        v = value.detach().float().mean()
        if weight is None:  # [v, 1] in one kernel: this runs several times a step
            pair = F.pad(v.reshape(1), (0, 1), value=1.0)
        else:
            w = weight.float()
            pair = torch.stack([torch.where(w > 0, v, 0.0), w])
        self._stats.setdefault(name, []).append(pair)

    def _passes(self, total: int) -> list[tuple[slice, float]]:
        """A phase's batch of `total` images as forward passes of at most `batch_gpu` images: (rows, share).

        The passes take every k-th image (strided), so a minibatch-std group, which takes every
        (N / group)-th image of its pass, holds the same images as in one pass over the whole
        batch whenever the group size divides `batch_gpu`. Each pass's loss is weighted by its
        share of the batch: the accumulated gradient is the gradient of the whole batch's mean loss.
        """
        per_pass = self.train_cfg.batch_gpu or total
        k = max(1, min(total, math.ceil(total / per_pass)))
        return [(slice(r, None, k), len(range(r, total, k)) / total) for r in range(k)]

    def _backward(self, phase: _PhaseSums, loss: torch.Tensor, share: float) -> None:
        """Backward of one forward pass's loss times its share of the phase's batch."""
        self.manual_backward(loss * share if share != 1.0 else loss)
        phase.bad = phase.bad | ~torch.isfinite(loss.detach())

    def _opt_step(self, opt, phase: str, bad: torch.Tensor, net: torch.nn.Module | None = None) -> torch.Tensor:
        """Averages and cleans the gradients, then steps unless the loss was non-finite; returns ok as a [] bool.

        Nothing here waits for the GPU. The gradients of the step travel as one flat tensor,
        with the phase's non-finite-loss flag as its last element: one all-reduce under several
        processes (one rank's NaN skips the step on all of them), one nan_to_num. The skip itself
        happens on the device: the fused Adam takes the flag as `found_inf` and leaves weights,
        moments and step count untouched. A finite loss can still give non-finite gradients
        (double backward of R1 / path length): those are replaced as in StyleGAN2-ADA so one bad
        element cannot poison Adam's moments. Under 16-mixed the gradient scaler must see an
        overflow, so they are left alone; a non-finite loss poisons them so the scaler skips the
        step, but keeps its scale (a smaller scale cannot help a forward pass that overflowed,
        and would starve the next steps' FP16 gradients); a step the scaler skips is counted. The first backward of a main
        phase must reach every trainable parameter of `net` (no silent unused parameter; the
        regularizers legitimately skip some, e.g. output biases).
        """
        if net is not None and phase not in self._grads_checked:
            self._grads_checked.add(phase)
            missing = missing_grads(net.named_parameters())
            if missing:
                raise RuntimeError(f"{phase}: no gradient reached {', '.join(missing)}; the loss does not use them")
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return ~bad
        grads, flat, bad = flat_gradients(params, bad)
        scaler = getattr(self.trainer.precision_plugin, "scaler", None) if self._trainer is not None else None
        if scaler is not None:
            flat.masked_fill_(bad, math.nan)
            loss_bad, bad = bad, bad | ~torch.isfinite(flat).all()
        else:
            torch.nan_to_num(flat, nan=0.0, posinf=1e5, neginf=-1e5, out=flat)
        torch._foreach_copy_(grads, [g.view_as(p) for g, p in zip(flat.split([p.numel() for p in params]), params)])
        optimizer = getattr(opt, "optimizer", opt)  # Lightning's wrapper holds the torch optimizer
        if scaler is not None:  # the scaler hands the fused Adam its own found_inf
            with keep_scale_if(scaler, loss_bad):
                opt.step()
        else:
            optimizer.found_inf = bad.float()
            try:
                opt.step()
            finally:
                del optimizer.found_inf
        return ~bad

    # ------------------------------------------------------------------------------------------
    # Lightning hooks

    def configure_optimizers(self):
        tc = self.train_cfg
        opts = []
        for params, lr, interval in (
            (self.G.parameters(), tc.lr_g, tc.pl_interval if tc.pl_weight > 0 else 0),
            (self.D.parameters(), tc.lr_d, tc.r1_interval if tc.r1_gamma > 0 else 0),
        ):
            ratio = losses.lazy_regularization_ratio(interval)
            opts.append(
                torch.optim.Adam(params, lr=lr * ratio, betas=(tc.beta1**ratio, tc.beta2**ratio), eps=1e-8, **ADAM)
            )
        return opts

    def forward(
        self, z: torch.Tensor, c: torch.Tensor | None = None, truncation_psi: float = 1.0, noise_mode: str = "const"
    ):
        """Images from the EMA generator: [N, z_dim] -> [N, img_channels, R, R] in about [-1, 1]."""
        return self.G_ema(z, c, truncation_psi=truncation_psi, noise_mode=noise_mode)

    def on_train_start(self) -> None:
        if self._pending_rng is not None:
            _set_rng_state(self._pending_rng)
            self._pending_rng = None
        elif is_distributed():
            # Same initial weights everywhere (seeded, then broadcast); from here on each rank
            # draws its own latents, noise and augmentations.
            world, rank = self.trainer.world_size, self.global_rank
            seed = (torch.initial_seed() % 2**31) * world + rank
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
        self._tick_time, self._tick_nimg = time.perf_counter(), self.cur_nimg
        self.G_ema.eval()

    def training_step(self, batch, batch_idx):
        tc = self.train_cfg
        real, labels = batch  # [N, C, R, R] uint8 (or float in [-1, 1]), [N]
        if real.dtype == torch.uint8:  # the loader ships bytes; convert here, on the device
            real = real.to(torch.float32) / 127.5 - 1.0
        n, device = real.shape[0], real.device
        passes = self._passes(n)  # forward passes of at most batch_gpu images; one when batch_gpu is None
        c_real = self._one_hot(labels)
        c_gen = self._one_hot(labels.roll(1)) if c_real is not None else None
        opt_g, opt_d = self.optimizers()
        do_pl = tc.pl_weight > 0 and tc.pl_interval > 0 and self.batch_idx % tc.pl_interval == 0
        do_r1 = tc.r1_gamma > 0 and (tc.r1_interval <= 0 or self.batch_idx % tc.r1_interval == 0)
        ok = torch.ones((), dtype=torch.bool, device=device)  # every phase's step was taken
        if tc.compile:  # a new step for CUDA graphs (compile_mode=reduce-overhead); no-op otherwise
            torch.compiler.cudagraph_mark_step_begin()

        # G main: non-saturating loss through the (augmented) discriminator.
        _set_requires_grad(self.G, True)
        _set_requires_grad(self.D, False)
        z = torch.randn(n, self.net_cfg.z_dim, device=device)
        opt_g.zero_grad(set_to_none=True)
        phase = _PhaseSums(device)
        for rows, share in passes:
            c = _rows(c_gen, rows)
            fake = self._fast("synthesis")(self._run_mapping(z[rows], c, update_emas=False))
            loss = losses.g_nonsaturating_loss(self._run_D(fake, c, fast=True))
            self._backward(phase, loss, share)
            phase.add(share, **{"Loss/G": loss})
        ok = ok & self._opt_step(opt_g, "G main", phase.bad, self.G)
        phase.record(self)

        # G reg: lazy path-length regularization on a smaller batch (eager: double backward). The
        # running mean moves once per forward pass, as in StyleGAN2-ADA.
        if do_pl:
            m = max(n // tc.pl_batch_shrink, 1)
            z = torch.randn(m, self.net_cfg.z_dim, device=device)
            c_pl = c_gen[:m] if c_gen is not None else None
            opt_g.zero_grad(set_to_none=True)
            phase, pl_mean = _PhaseSums(device), self.pl_mean
            for rows, share in self._passes(m):
                ws = self._run_mapping(z[rows], _rows(c_pl, rows), update_emas=False)
                lengths = losses.g_path_lengths(self.G.synthesis(ws), ws)
                batch_mean = lengths.detach().mean().reshape(1)
                all_reduce_mean_([batch_mean])  # one running mean for all ranks
                penalty, pl_mean = losses.g_path_length_penalty(lengths, pl_mean, tc.pl_decay, batch_mean=batch_mean[0])
                pl_mean = pl_mean.detach()
                self._backward(phase, penalty.mean() * tc.pl_weight * tc.pl_interval, share)
                phase.add(share, **{"Loss/pl_penalty": penalty, "Loss/path_length": lengths})
            step_ok = self._opt_step(opt_g, "G path length", phase.bad)
            self.pl_mean.copy_(torch.where(step_ok, pl_mean, self.pl_mean))
            ok = ok & step_ok
            phase.record(self)

        # D main: logistic loss on generated and real images. Only finite logits count toward
        # ADA's statistic (a NaN would make r_t NaN); summed over the ranks every step, so the
        # statistic, and p, are the same on all of them.
        _set_requires_grad(self.G, False)
        self._set_d_trainable()
        z = torch.randn(n, self.net_cfg.z_dim, device=device)
        opt_d.zero_grad(set_to_none=True)
        phase = _PhaseSums(device)
        ada = torch.zeros(2, device=device)  # [sum of sign(D(real)), count] of this step
        for rows, share in passes:
            c_g, c_r = _rows(c_gen, rows), _rows(c_real, rows)
            with torch.no_grad():
                fake = self._fast("synthesis")(self._run_mapping(z[rows], c_g, update_emas=True))
            d_fake = self._run_D(fake, c_g, fast=True)
            d_real = self._run_D(real[rows], c_r, fast=True)
            loss = losses.d_logistic_loss(d_real, d_fake)
            self._backward(phase, loss, share)
            phase.add(share, **{"Loss/D": loss, "D/real": d_real, "D/fake": d_fake})
            finite = torch.isfinite(d_real.detach())
            ada = ada + torch.stack([torch.where(finite, d_real.detach().sign(), 0).sum(), finite.sum().float()])
        ok = ok & self._opt_step(opt_d, "D main", phase.bad, self.D)
        self.ada_stat += all_reduce_sum(ada)
        phase.record(self)

        # D reg: lazy R1 on reals (augmented like every D input; eager D: double backward).
        if do_r1:
            opt_d.zero_grad(set_to_none=True)
            phase = _PhaseSums(device)
            for rows, share in passes:
                real_r = real[rows].detach().requires_grad_(True)
                penalty = losses.d_r1_penalty(self._run_D(real_r, _rows(c_real, rows)), real_r)
                self._backward(phase, penalty.mean() * (tc.r1_gamma / 2) * max(tc.r1_interval, 1), share)
                phase.add(share, **{"Loss/r1_penalty": penalty})
            ok = ok & self._opt_step(opt_d, "D R1", phase.bad)
            phase.record(self)
        _set_requires_grad(self.G, False)

        # Bookkeeping: EMA, counters, ADA.
        self.prev_nimg = self.cur_nimg
        self.cur_nimg += tc.batch_size
        self.batch_idx += 1
        # The tracked w averages moved with each rank's own latents: average them. For w_avg
        # (lerp is linear) this equals tracking the global batch mean; w_avg_class moves only
        # for the classes in each rank's batch, so rare classes track a little more slowly.
        all_reduce_mean_(list(self.G.mapping.buffers()))
        # A fine-tuned run's G_ema starts as the source's: no ramp-up, which would replace it by G at once
        # (StyleGAN2-ADA turns the ramp-up off for a transfer, too).
        rampup = tc.ema_rampup if self.init_source is None else None
        update_ema(self.G_ema, self.G, ema_beta(tc.batch_size, tc.ema_kimg, self.cur_nimg, rampup))
        if tc.augment.mode == "ada" and self.batch_idx % tc.augment.interval == 0:
            self._update_ada_p()
        self._track_nonfinite(ok)
        if self.cur_nimg >= tc.kimg * 1000:
            self.trainer.should_stop = True

    def frozen_d_blocks(self) -> list[torch.nn.Module]:
        """D's blocks that Freeze-D leaves untrained: the first `freeze_d` from the highest resolution."""
        return list(self.D.blocks[: self.train_cfg.freeze_d])

    def _set_d_trainable(self) -> None:
        """D's parameters take gradients, except those of the frozen blocks (no gradient: Adam never moves them)."""
        _set_requires_grad(self.D, True)
        for block in self.frozen_d_blocks():
            _set_requires_grad(block, False)

    def _update_ada_p(self) -> None:
        """One ADA controller step on the device; skipped (p kept) when no finite real logit was seen."""
        assert self.augment_pipe is not None  # augment.mode == "ada" builds one
        stat = self.ada_stat  # [sum of signs, count], already summed over the ranks
        seen = stat[1] > 0
        rt = stat[0] / stat[1].clamp(min=1.0)
        tc = self.train_cfg
        new_p = ada_step(
            self.augment_pipe.p, rt, tc.augment.target, tc.batch_size * tc.augment.interval, tc.augment.kimg
        )
        self.augment_pipe.p.copy_(torch.where(seen, new_p, self.augment_pipe.p.double()))
        self._record("ADA/rt", rt, weight=seen)
        self.ada_stat.zero_()

    def _track_nonfinite(self, ok: torch.Tensor) -> None:
        """Counts skipped steps on the device: [total, current run, longest run]; checked by check_nonfinite."""
        bad = (~ok).long()
        total, in_row, longest = self.nonfinite_counts.unbind()
        in_row = (in_row + bad) * bad
        self.nonfinite_counts.copy_(torch.stack([total + bad, in_row, torch.maximum(longest, in_row)]))

    @property
    def nonfinite_total(self) -> int:
        """Steps skipped for a non-finite loss so far (reads the device counter)."""
        return int(self.nonfinite_counts[0])

    @nonfinite_total.setter
    def nonfinite_total(self, value: int) -> None:
        self.nonfinite_counts.zero_()
        self.nonfinite_counts[0] = int(value)

    def check_nonfinite(self, counts: list[int] | None = None) -> None:
        """Stops the run once `max_nonfinite` steps in a row were skipped; `counts` = nonfinite_counts read already.

        Called at the logging cadence and before every checkpoint (the only places that read the
        device counters), so the stop comes at the first of those after the run of bad steps; no
        weight moved on a skipped step in between, and no checkpoint is written after one.
        """
        total, _, longest = counts if counts is not None else self.nonfinite_counts.tolist()
        if longest >= self.train_cfg.max_nonfinite:
            where = self.last_good_ckpt or "none written yet"
            raise NonFiniteLossError(
                f"{longest} training steps in a row had a non-finite loss (seen at {self.cur_kimg:.3f} kimg, "
                f"{total} in total); stopping. Last good checkpoint: {where}"
            )

    # ------------------------------------------------------------------------------------------
    # Statistics for the logger callback

    def pop_stats(self) -> dict[str, float]:
        """Means of everything recorded since the last call (over all ranks), plus progress and speed.

        The one place, with checkpoints, where the training loop reads the device: all of it in
        one transfer. Stops the run after too many non-finite steps (check_nonfinite).
        Collective under several processes: every rank calls it at the same step.
        """
        names = sorted(k for k, v in self._stats.items() if v)
        device = self.nonfinite_counts.device
        sums = torch.stack([torch.stack(self._stats[k]).sum(0) for k in names]) if names else torch.zeros(0, 2)
        sums = sums.to(device)
        all_reduce_mean_([sums])  # [K, 2] weighted sums and weights, averaged over the ranks
        p = self.augment_pipe.p if self.augment_pipe is not None else torch.zeros(())
        host = torch.cat([sums.flatten(), self.nonfinite_counts.double(), p.to(device).double().reshape(1)]).tolist()
        k = len(names)
        counts = [int(v) for v in host[2 * k : 2 * k + 3]]
        out = {name: host[2 * i] / host[2 * i + 1] for i, name in enumerate(names) if host[2 * i + 1] > 0}
        self._stats = {}
        now = time.perf_counter()
        dt, dn = now - self._tick_time, self.cur_nimg - self._tick_nimg
        if dn > 0 and dt > 0:
            out["Speed/img_per_s"] = dn / dt
            out["Speed/sec_per_kimg"] = dt / dn * 1000
        self._tick_time, self._tick_nimg = now, self.cur_nimg
        out["Progress/kimg"] = self.cur_kimg
        out["ADA/p"] = host[-1]
        out["Progress/nonfinite_steps"] = float(counts[0])
        self.last_stats = out
        self.check_nonfinite(counts)
        return out

    # ------------------------------------------------------------------------------------------
    # Checkpoint state beyond the state dict

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Called on every rank (the strategy writes rank 0's dict): collectives are safe here.
        self.check_nonfinite()  # no checkpoint after too many skipped steps in a row
        rng = gather_objects(_get_rng_state())
        several = len(rng) > 1
        write_training_state(
            checkpoint,
            cur_nimg=self.cur_nimg,
            batch_idx=self.batch_idx,
            nonfinite_total=self.nonfinite_total,
            rng=rng[0],
            run_config=self.run_config,
            init=self.init_source,
            rng_per_rank=rng if several else None,
            rank_digests=self.check_ranks_agree() if several else None,
        )

    def check_ranks_agree(self) -> list[dict[str, str]]:
        """Digests of every weight and buffer on every rank; raises if any rank diverged."""
        mine = state_digests(self)
        mine["cur_nimg"] = str(self.cur_nimg)
        per_rank = gather_objects(mine)
        bad = diverged(per_rank)
        if bad:
            raise RuntimeError(
                f"the {len(per_rank)} ranks disagree at {self.cur_kimg:.3f} kimg on {len(bad)} tensors: {', '.join(bad[:10])}"
            )
        return per_rank

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Lightning restores the optimizers after this hook: with this code's Adam (see ADAM).
        for optimizer in checkpoint.get("optimizer_states") or []:
            for group in optimizer.get("param_groups", []):
                group.update(ADAM)
        state = training_state(checkpoint)
        self.cur_nimg = state.cur_nimg
        self.prev_nimg = self.cur_nimg
        self.batch_idx = state.batch_idx
        self.nonfinite_total = state.nonfinite_total
        self.init_source = state.init
        # Applied at on_train_start, after Lightning has finished its own set-up. Each rank
        # continues its own stream; with another number of processes, rank 0's plus the rank.
        per_rank = state.rng_per_rank
        rank = self.global_rank if self._trainer is not None else 0
        world = self.trainer.world_size if self._trainer is not None else 1
        if per_rank is not None and len(per_rank) == world:
            self._pending_rng = per_rank[rank]
        elif world == 1 or rank == 0:
            self._pending_rng = state.rng
        else:
            self._pending_rng = None  # on_train_start seeds this rank afresh


class _PhaseSums:
    """What one phase gathers over its forward passes, on the device: the non-finite flag and weighted means."""

    def __init__(self, device: torch.device):
        self.bad = torch.zeros((), dtype=torch.bool, device=device)  # some pass had a non-finite loss
        self.sums: dict[str, torch.Tensor] = {}  # statistic -> sum over passes of share * mean

    def add(self, share: float, **values: torch.Tensor) -> None:
        for name, value in values.items():
            v = value.detach().float().mean() * share
            self.sums[name] = self.sums[name] + v if name in self.sums else v

    def record(self, module: StyleGAN2Module) -> None:
        for name, value in self.sums.items():
            module._record(name, value)


class keep_scale_if:
    """Restores a GradScaler's scale and growth tracker after a step when `flag` ([] bool) is set, on the device."""

    def __init__(self, scaler, flag: torch.Tensor):
        self.scaler, self.flag = scaler, flag

    def __enter__(self) -> None:
        self.saved = [t.clone() for t in self._state()]

    def __exit__(self, *exc) -> None:
        for t, saved in zip(self._state(), self.saved):
            t.copy_(torch.where(self.flag, saved, t))

    def _state(self) -> list[torch.Tensor]:
        # GradScaler keeps both as device tensors, created by the first scale() (manual_backward).
        return [self.scaler._scale, self.scaler._growth_tracker]


def _rows(t: torch.Tensor | None, rows: slice) -> torch.Tensor | None:
    return t[rows] if t is not None else None


def _get_rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
