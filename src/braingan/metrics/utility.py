"""Downstream utility of a conditional generator: train a small classifier on slices, test it on real ones.

Train-on-synthetic, test-on-real (GAN-train, Shmelkov et al. 2018) is how a conditional generator's
value is reported in medical imaging: a CNN trained on N generated slices per class is tested on
the real held-out subjects' slices, beside the same CNN trained on the real training slices and on
real + generated. The classifier is small and trained from scratch (no downloaded weights); every
draw (weights, batches) comes from its own seeded generator, so a result repeats exactly on the
same machine and the caller's random state is left alone.

    SliceClassifier    uint8 [N, C, R, R] -> logits [N, K]: 4 conv blocks (3x3, leaky ReLU, 2x2
                       average pooling), global average pooling, a linear layer
    train_classifier   Adam, `steps` minibatches drawn with replacement, class-balanced
    scores             accuracy, balanced accuracy (mean per-class recall), ROC AUC (binary:
                       of the second class's probability; K > 2: one-vs-rest, macro mean)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm


@dataclass
class UtilityOptions:
    steps: int = 600  # optimizer steps
    batch: int = 64  # images per step
    lr: float = 1e-3  # Adam's learning rate
    width: int = 32  # channels of the first conv block (doubled after each of the first three)
    seed: int = 0  # seeds the weights and the batches


class SliceClassifier(nn.Module):
    """A small CNN for slices of any power-of-two size >= 16: [N, C, R, R] in [-1, 1] -> [N, K] logits."""

    def __init__(self, channels: int, classes: int, width: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        cin = channels
        for k in range(4):
            cout = width * 2 ** min(k, 2)
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2), nn.AvgPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def _float(images: torch.Tensor) -> torch.Tensor:  # uint8 [N, C, R, R] -> float [-1, 1]
    return images.float() / 127.5 - 1.0


def train_classifier(
    images: torch.Tensor,  # uint8 [N, C, R, R]
    labels: torch.Tensor,  # [N] class indices 0..K-1
    classes: int,  # K
    opt: UtilityOptions | None = None,
    device: torch.device | str = "cpu",
    desc: str | None = None,  # a progress bar with this name; None = none
) -> SliceClassifier:
    """A SliceClassifier trained on the images; batches draw every class equally often."""
    opt = opt or UtilityOptions()
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"need as many labels as images, and some images: {len(images)} images, {len(labels)} labels")
    labels = labels.long()
    present = [k for k in range(classes) if bool((labels == k).any())]
    if len(present) < 2:
        raise ValueError(f"a classifier needs images of two classes or more, got classes {present}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(opt.seed)
        model = SliceClassifier(images.shape[1], classes, opt.width).to(device)
    generator = torch.Generator().manual_seed(opt.seed + 1)
    by_class = [torch.nonzero(labels == k).flatten() for k in present]
    optimizer = torch.optim.Adam(model.parameters(), lr=opt.lr)
    model.train()
    for _ in tqdm(range(opt.steps), desc=desc, unit="step", disable=desc is None, leave=False):
        which = torch.randint(len(by_class), (opt.batch,), generator=generator)  # [batch] a class each
        pick = torch.empty(opt.batch, dtype=torch.long)
        for k, members in enumerate(by_class):
            chosen = which == k
            pick[chosen] = members[torch.randint(len(members), (int(chosen.sum()),), generator=generator)]
        x, y = _float(images[pick]).to(device), labels[pick].to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def predict(model: SliceClassifier, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Class probabilities [N, K] of uint8 images [N, C, R, R]."""
    device = next(model.parameters()).device
    out = [
        F.softmax(model(_float(images[i : i + batch]).to(device)), dim=1).cpu() for i in range(0, len(images), batch)
    ]
    return torch.cat(out)


def scores(probabilities: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """accuracy, balanced_accuracy and auc of probabilities [N, K] against labels [N]."""
    from torchmetrics.functional.classification import binary_auroc, multiclass_auroc

    labels = labels.long()
    predicted = probabilities.argmax(dim=1)
    present = sorted(set(labels.tolist()))
    recalls = [float((predicted[labels == k] == k).float().mean()) for k in present]
    k = probabilities.shape[1]
    if k == 2:
        auc = float(binary_auroc(probabilities[:, 1], labels))
    else:
        auc = float(multiclass_auroc(probabilities, labels, num_classes=k, average="macro"))
    return {
        "accuracy": float((predicted == labels).float().mean()),
        "balanced_accuracy": float(np.mean(recalls)),
        "auc": auc,
    }


def utility_study(
    generated: tuple[torch.Tensor, torch.Tensor],  # uint8 [M, C, R, R], labels [M]: N per class from G
    real_train: tuple[torch.Tensor, torch.Tensor],  # the real training slices and labels
    test: tuple[torch.Tensor, torch.Tensor, Sequence[str]],  # the real held-out slices, labels, their subjects
    classes: int,  # K
    opt: UtilityOptions | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict:
    """The same classifier trained on generated, real, and real + generated slices, each tested on `test`.

    Returns {"test": {"subjects", "slices", "slices_per_class"}, "train_on": {name: {"slices", accuracy,
    balanced_accuracy, auc}}, "options": ...}; the test set's subjects never appear in training.
    """
    opt = opt or UtilityOptions()
    test_x, test_y, subjects = test
    sets = {
        "generated": generated,
        "real": real_train,
        "real+generated": (torch.cat([real_train[0], generated[0]]), torch.cat([real_train[1], generated[1]])),
    }
    out: dict = {
        "test": {
            "subjects": len(set(subjects)),
            "slices": len(test_y),
            "slices_per_class": [int((test_y == k).sum()) for k in range(classes)],
        },
        "train_on": {},
        "options": asdict(opt),
    }
    for name, (x, y) in sets.items():
        model = train_classifier(x, y, classes, opt, device, desc=f"utility: train on {name}" if progress else None)
        out["train_on"][name] = {"slices": len(y), **scores(predict(model, test_x), test_y)}
    return out
