"""A user's method as a plugin (book/add-method.md): the DKD example's loss against its formula and the
paper's identity, the loader's refusals, and the example through a smoke study into the report's tables."""

import hashlib
import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from kdnb import cli, losses
from kdnb.methods import METHODS, load_plugin

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "examples/dkd.py"  # plugin paths are relative to the working directory: the checkout's root here


def _example():
    """examples/dkd.py as a module of its own (its functions; its class is registered only in that copy)."""
    spec = importlib.util.spec_from_file_location("dkd_example_under_test", ROOT / EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    before = dict(METHODS)
    spec.loader.exec_module(module)
    METHODS.clear()
    METHODS.update(before)
    return module


dkd = _example()


@pytest.fixture
def registry(monkeypatch):
    """The registry and the loader's cache as they were, after the test; the checkout as working directory."""
    monkeypatch.chdir(ROOT)
    before = dict(METHODS)
    yield
    METHODS.clear()
    METHODS.update(before)
    load_plugin.cache_clear()


# --- the loss ---------------------------------------------------------------------------------------


def test_dkd_terms_by_hand():
    """Three classes, target 0, student uniform. Sample 1: teacher (1/2, 1/4, 1/4), so p̂ agree and only
    TCKD = ½ ln(½ / ⅓) + ½ ln(½ / ⅔) = ½ ln 1.125 is left. Sample 2: teacher (2/6, 3/6, 1/6), so b agree
    (⅓, ⅔) and only NCKD = ¾ ln(¾ / ½) + ¼ ln(¼ / ½) is left. Each term is the batch mean."""
    s = torch.zeros(2, 3, dtype=torch.float64)
    t = torch.tensor([[math.log(2), 0, 0], [math.log(2), math.log(3), 0]], dtype=torch.float64)
    y = torch.tensor([0, 0])
    tckd, nckd = dkd.dkd_terms(s, t, y, T=1.0)
    assert tckd.item() == pytest.approx(0.5 * math.log(1.125) / 2, rel=1e-12)
    assert nckd.item() == pytest.approx((0.75 * math.log(1.5) + 0.25 * math.log(0.5)) / 2, rel=1e-12)
    # at T = 4 the same probabilities (logits × 4) give the same KLs times T² = 16
    tckd4, nckd4 = dkd.dkd_terms(4 * s, 4 * t, y, T=4.0)
    assert (tckd4.item(), nckd4.item()) == pytest.approx((16 * tckd.item(), 16 * nckd.item()), rel=1e-12)
    total = dkd.dkd(s, t, y, alpha=1.0, beta=8.0, T=1.0)
    assert total.item() == pytest.approx(tckd.item() + 8 * nckd.item(), rel=1e-12)


def test_dkd_decomposes_the_kd_loss_as_the_paper_says():
    """DKD's eq. 5, per sample: T²·KL(p^T ‖ p^S) = TCKD + (1 − p_t^T)·NCKD, p_t^T the teacher's target
    probability at temperature T; the left side is kdnb's Hinton term, computed over all classes."""
    g = torch.Generator().manual_seed(0)
    s, t = 3 * torch.randn(16, 10, generator=g, dtype=torch.float64), 3 * torch.randn(16, 10, generator=g,
                                                                                       dtype=torch.float64)
    y = torch.randint(0, 10, (16,), generator=g)
    for i in range(16):
        tckd, nckd = dkd.dkd_terms(s[i:i + 1], t[i:i + 1], y[i:i + 1], T=4.0)
        p_target = torch.softmax(t[i] / 4.0, 0)[y[i]]
        kd = losses.hinton_kd(s[i:i + 1], t[i:i + 1], 4.0)
        assert (tckd + (1 - p_target) * nckd).item() == pytest.approx(kd.item(), rel=1e-10)


def test_dkd_matches_the_masked_softmax_formulation():
    """The authors' way of writing it: the binary split by masking probabilities, the non-target softmax
    by pushing the target logit down by 1000 (its probability then vanishes in float64)."""
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randn(8, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (8,), generator=g)
    T, gt = 4.0, F.one_hot(y, 5).to(torch.float64)
    p_s, p_t = torch.softmax(s / T, 1), torch.softmax(t / T, 1)
    b_s = torch.stack([(p_s * gt).sum(1), (p_s * (1 - gt)).sum(1)], 1)
    b_t = torch.stack([(p_t * gt).sum(1), (p_t * (1 - gt)).sum(1)], 1)
    tckd = (b_t * (b_t.log() - b_s.log())).sum(1).mean() * T * T
    q_t = torch.softmax(t / T - 1000.0 * gt, 1)
    nckd = F.kl_div(F.log_softmax(s / T - 1000.0 * gt, 1), q_t, reduction="sum") * T * T / len(y)
    ours = dkd.dkd(s, t, y, alpha=1.0, beta=8.0, T=T)
    assert ours.item() == pytest.approx((tckd + 8 * nckd).item(), rel=1e-9)


def test_dkd_gradient_reaches_only_the_student_and_stays_finite_for_a_confident_teacher():
    s = torch.randn(4, 10, requires_grad=True)
    t = torch.full((4, 10), -30.0)
    t[:, 0] = 30.0  # p_t = 1 up to e^-60: log(1 - p_t) comes from the non-target logits, not from 1 - p_t
    dkd.dkd(s, t, torch.zeros(4, dtype=torch.long)).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def test_warm_up_is_the_authors_20_of_240_epochs_scaled_to_the_run():
    assert dkd.scaled_warmup(20, 240) == 20 and dkd.scaled_warmup(20, 200) == 17 and dkd.scaled_warmup(20, 2) == 1
    assert [dkd.warmup_weight(e, 20) for e in (0, 9, 19, 100)] == [0.05, 0.5, 1.0, 1.0]


# --- loading ----------------------------------------------------------------------------------------


def _err(capsys, argv) -> str:
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdnb: error: plugin "), lines
    return lines[0]


BAD = {
    "missing.py": (None, "file not found"),
    "empty.py": ("from kdnb.methods import Method\n\nclass Mine(Method):\n    name = 'mine'\n",
                 "registers no method"),
    "clash.py": ("from kdnb.methods import Method, register\n\n@register\nclass Mine(Method):\n    name = 'hinton'\n",
                 "method name 'hinton' is taken by a built-in method"),
    "broken.py": ("from kdnb.methods import Method, register\n\n@register\nclass Mine(Method):\n    name = 'mine'\n\n"
                  "1 / 0\n", "ZeroDivisionError at import: division by zero"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_plugin_is_refused_in_one_line_and_nothing_is_written(tmp_path, capsys, registry, name):
    text, reason = BAD[name]
    plugin = tmp_path / name
    if text is not None:
        plugin.write_text(text)
    store = tmp_path / "store"
    grid = {"dataset": "synthetic", "students": ["resnet8"], "methods": ["baseline"], "epochs": 1,
            "device": "cpu", "store": str(store)}
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({**grid, "plugins": [str(plugin)]}))
    expected = f"kdnb: error: plugin {plugin}: {reason}"
    assert _err(capsys, ["study", str(params)]).startswith(expected)
    params.write_text(yaml.safe_dump(grid))
    assert _err(capsys, ["study", str(params), "--plugin", str(plugin)]).startswith(expected)
    assert _err(capsys, ["train", "--plugin", str(plugin), "--dataset", "synthetic", "--store", str(store)]
                ).startswith(expected)
    assert not store.exists() and "mine" not in METHODS and METHODS["hinton"].plugin is None


def test_a_plugin_registers_its_method_with_its_file_and_hash(registry):
    (cls,) = load_plugin(EXAMPLE)
    sha = hashlib.sha256((ROOT / EXAMPLE).read_bytes()).hexdigest()
    assert METHODS["dkd"] is cls and cls.plugin == {"file": EXAMPLE, "sha256": sha}
    assert load_plugin(EXAMPLE) == [cls]  # loading it again changes nothing


# --- through the study and into the report ----------------------------------------------------------


def test_the_example_runs_through_a_smoke_study_into_the_tables_and_the_transfer_matrix(tmp_path, registry):
    """`kdnb study` with a params file naming the plugin, then the generalization page's tables, its
    runs' CSV and the transfer matrix show DKD, marked as not in the paper, with no paper number."""
    from kdnb.report import book, pages
    from kdnb.study import Study

    store = tmp_path / "store"
    grid = {"profile": "test", "section": "generalization", "store": str(store), "dataset": "synthetic",
            "students": ["resnet8"], "teachers": {"resnet8": "resnet8"}, "methods": ["baseline", "dkd"],
            "plugins": [EXAMPLE], "seeds": [0], "teacher_seeds": [100], "epochs": 1, "batch_size": 32,
            "device": "cpu", "transfer": {"steps": 1}}
    pdir = tmp_path / "params" / "test"
    pdir.mkdir(parents=True)
    (pdir / "generalization.yaml").write_text(yaml.safe_dump(grid))
    out = subprocess.run([sys.executable, "-m", "kdnb.cli", "study", str(pdir / "generalization.yaml"),
                          "--no-progress"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    (rec,) = [json.loads(f.read_text()) for f in store.glob("runs/*/record.json")
              if json.loads(f.read_text())["config"]["method"] == "dkd"]
    sha = hashlib.sha256((ROOT / EXAMPLE).read_bytes()).hexdigest()
    assert rec["status"] == "done" and rec["config"]["plugin"] == {"file": EXAMPLE, "sha256": sha}
    assert {"loss_ce", "loss_tckd", "loss_nckd"} <= set(rec["history"][-1])

    params, dropped = pages.params_from(yaml.safe_load((pdir / "generalization.yaml").read_text()))
    assert params.methods == ["baseline", "dkd"] and dropped == []
    runs = Study(params).run(train=False, progress=False)
    html = "".join(t.to_html() for t in pages.generalization_tables(runs, "cifar10") if hasattr(t, "to_html"))
    rows = [re.findall(r">([^<]*)</td>", r[:r.index("</tr>")]) for r in html.split("dkd (not in the paper)")[1:]]
    assert [f"{rec['final_acc']:.2f}"] in rows  # DKD's row of the accuracy table (one seed: no std)
    assert any(r[-1] == "not in paper" for r in rows)  # and beside the paper, where it has no number
    csv = book.page_runs("01-generalization", pdir, tmp_path)
    assert csv.set_index("method").loc["dkd", "in_paper"] == False  # noqa: E712 (a numpy bool)
    assert csv.set_index("method").loc["baseline", "in_paper"].all()
    mat, _ = Study(params).transfer("resnet8")
    assert {"baseline", "dkd"} <= set(mat.index) and {"baseline", "dkd", "teacher"} <= set(mat.columns)
