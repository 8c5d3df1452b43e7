"""The conventional KD loop, written the way RepDistiller and the authors' lab code train (perf-notes §4, §8 C0).

A torchvision-style Dataset over uint8 HWC arrays, PIL RandomCrop(32, pad 4, reflect) + flip + ToTensor in a
DataLoader, eager fp32, ``.to(device)`` every step, ``loss.item()`` and accuracy ``.item()`` every step.
Images stay in [0, 1] without standardisation, as in kdnb (book/protocol.md § Data), so both loops see the
same inputs. This file is the reference of the speed benchmark (``kdnb.bench``); it is not used for training.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from kdnb.losses import hinton_kd


class ArrayDataset(Dataset):
    """CIFAR-style dataset over uint8 (N, 32, 32, 3) images: PIL image, then the transform."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform=None):
        self.x, self.y, self.transform = x, np.asarray(y, dtype=np.int64), transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.x[i])
        return (self.transform(img) if self.transform else img), int(self.y[i])


def train_transform() -> transforms.Compose:
    return transforms.Compose([transforms.RandomCrop(32, padding=4, padding_mode="reflect"),
                               transforms.RandomHorizontalFlip(), transforms.ToTensor()])


def make_loader(x: np.ndarray, y: np.ndarray, batch_size: int = 128, num_workers: int = 0, train: bool = True,
                seed: int = 0) -> DataLoader:
    """RepDistiller's loader: shuffled, augmented, no pin_memory; the test loader is ToTensor only."""
    tf = train_transform() if train else transforms.ToTensor()
    return DataLoader(ArrayDataset(x, y, tf), batch_size=batch_size, shuffle=train, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(seed), persistent_workers=num_workers > 0)


def endless(loader: DataLoader, full_only: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches over as many epochs as asked; the benchmark times full batches only."""
    while True:
        for x, y in loader:
            if not full_only or len(y) == loader.batch_size:
                yield x, y


def hinton_step(student: nn.Module, teacher: nn.Module | None, opt: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor, device: torch.device, alpha: float = 0.9, T: float = 4.0) -> tuple[float, float]:
    """One step as in RepDistiller's ``train_distill``: copy, forward, loss, two host syncs, backward, SGD.

    ``teacher=None`` is the baseline (cross-entropy only). Returns (loss, top-1 %) as Python floats.
    """
    x, y = x.to(device), y.to(device)
    logits = student(x)
    if teacher is None:
        loss = F.cross_entropy(logits, y)
    else:
        with torch.no_grad():
            t_logits = teacher(x)
        loss = (1 - alpha) * F.cross_entropy(logits, y) + alpha * hinton_kd(logits, t_logits, T)
    acc = (logits.argmax(1) == y).float().mean() * 100
    loss_v, acc_v = loss.item(), acc.item()  # AverageMeter.update(loss.item()), top1.update(acc[0])
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss_v, acc_v


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    """RepDistiller's ``validate``: per-batch ``.to(device)`` and ``.item()``; accuracy in %."""
    model.eval()
    correct, n = 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        correct += (model(x).argmax(1) == y).sum().item()
        n += len(y)
    model.train()
    return 100.0 * correct / max(n, 1)


def sgd(model: nn.Module, lr: float = 0.1) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
