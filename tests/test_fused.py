"""Fused multi-seed training equals separate runs; a member's data does not depend on its group; the teacher
cache equals on-the-fly teacher logits (perf-notes §8 correctness gate 1, §7.2, §7.8)."""

import numpy as np
import pytest
import torch

from kdnb.bench import benchmark
from kdnb.data import DeviceData, Split, crop_flip, reflect_pad, to_float
from kdnb.models import build

fused = benchmark("fused")


def _data(n=40, seed=0):
    rng = np.random.RandomState(seed)
    return DeviceData(Split(rng.randint(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.randint(0, 10, n)), "cpu")


def test_fused_hinton_step_equals_separate_steps_in_fp64():
    r = fused.check_equivalence("resnet8", "resnet26", n=3, method="hinton", dtype=torch.float64, steps=2)
    assert r["grad_rel"] < 1e-10 and r["param_rel"] < 1e-10
    assert r["bn_abs"] < 1e-12  # running mean/var and num_batches_tracked
    assert r["loss_abs"] < 1e-10


def test_fused_baseline_step_equals_separate_steps_in_fp64():
    r = fused.check_equivalence("resnet8", n=2, method="baseline", dtype=torch.float64, steps=2)
    assert max(r["grad_rel"], r["param_rel"], r["bn_abs"]) < 1e-10


def test_fused_step_in_fp32_is_close():
    r = fused.check_equivalence("resnet8", "resnet26", n=3, method="hinton", dtype=torch.float32, steps=1)
    assert r["grad_rel"] < 1e-3 and r["param_rel"] < 1e-3 and r["bn_abs"] < 1e-5


def test_member_stream_is_independent_of_the_group():
    data, bs = _data(), 16

    def gens(seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    alone = list(data.batches(bs, gens([7])[0]))
    solo = list(fused.member_batches(data, gens([7]), bs))
    group = list(fused.member_batches(data, gens([3, 7, 11]), bs))
    assert len(alone) == len(solo) == len(group) == 3  # 16 + 16 + 8: the remainder batch is kept
    for (x, y), (xs1, ys1), (xs3, ys3) in zip(alone, solo, group, strict=True):
        assert xs3.shape == (3, len(y), 3, 32, 32) and ys3.shape == (3, len(y))
        assert torch.equal(x, xs1[0]) and torch.equal(y, ys1[0])
        assert torch.equal(x, xs3[1]) and torch.equal(y, ys3[1])
    assert not torch.equal(group[0][0][0], group[0][0][1])  # members see different batches


def test_members_round_trip_and_step_reports_per_member_counts():
    torch.manual_seed(0)
    models = [build("resnet8") for _ in range(2)]
    students = fused.FusedStudents(models)
    back = students.member(1, build("resnet8"))
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), models[1].state_dict().values(),
                                                  strict=True))
    data = _data()
    xs, ys = next(fused.member_batches(data, [torch.Generator().manual_seed(s) for s in (0, 1)], 8))
    loss, correct = fused.fused_step(students, fused.sgd(students), None, xs, ys, method="baseline")
    assert loss.dim() == 0 and correct.shape == (2,)
    with pytest.raises(ValueError, match="bss"):
        fused.fused_loss(students, None, xs, ys, method="bss")


def test_teacher_view_logits_equal_on_the_fly_logits():
    torch.manual_seed(0)
    teacher = build("resnet8").double().eval()
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    padded = reflect_pad(x)
    cache = fused.teacher_view_logits(teacher, padded, batch=200)
    assert cache.shape == (3, fused.VIEWS, 10) and fused.VIEWS == 162
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        dy, dx = torch.randint(0, 9, (3,), generator=g), torch.randint(0, 9, (3,), generator=g)
        flip = torch.rand(3, generator=g) < 0.5
        with torch.no_grad():
            live = teacher(to_float(crop_flip(padded, dy, dx, flip)).double())
        torch.testing.assert_close(cache[torch.arange(3), fused.view_index(dy, dx, flip)], live, rtol=1e-9, atol=1e-9)


def test_bf16_members_keep_fp32_weights_and_statistics():
    torch.manual_seed(0)
    models = [build("resnet8") for _ in range(2)]
    data = _data()
    xs, ys = next(fused.member_batches(data, [torch.Generator().manual_seed(s) for s in (0, 1)], 16))
    losses = {}
    for dtype in (None, torch.bfloat16):
        students = fused.FusedStudents([m for m in models], dtype)
        loss, logits = fused.fused_loss(students, None, xs, ys, method="baseline")
        loss.backward()
        losses[dtype] = loss.item()
        assert logits.dtype == (dtype or torch.float32)
        assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in students.parameters())
        assert students.buffers["stem.1.running_mean"].dtype == torch.float32
    assert abs(losses[torch.bfloat16] - losses[None]) < 0.05 * abs(losses[None])
