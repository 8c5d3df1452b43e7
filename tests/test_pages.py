"""What the pages read from a study: each record once, the teacher seed as the records keep it, and the
transfer matrix of Fig. 1 computed from weights, stored as a record keyed by them, read back without them."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from kdnb import store as store_mod
from kdnb.report import pages
from kdnb.study import (
    Params,
    Study,
    TransferUnavailable,
    load_params,
    teacher_runs,
    transfer_key,
    transfer_settings,
    transfer_sources,
)

ROOT = Path(__file__).resolve().parent.parent

GRID = dict(profile="test", section="transferability", dataset="synthetic", students=["resnet8"],
            teachers={"resnet8": "resnet8"}, methods=["baseline", "hinton"], seeds=[0, 1], teacher_seeds=[100],
            epochs=1, batch_size=100, device="cpu", transfer={"steps": 2, "batch_size": 200})


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    study = Study(Params(store=str(store), **GRID))
    return study, study.run(progress=False)


def test_results_read_each_record_of_the_grid_once_and_no_other(grid, monkeypatch):
    study, _ = grid
    other = "0123456789abcdef"
    study.store.write({"run_id": other, "kind": "run", "status": "done", "config": {"method": "baseline"}})
    reads = []
    real = store_mod.Store.read
    monkeypatch.setattr(store_mod.Store, "read", lambda self, run_id: reads.append(run_id) or real(self, run_id))
    res = Study(study.params).results()
    assert sorted(reads) == sorted(res["run_id"]) and len(reads) == 5  # one teacher, four students
    assert other not in reads
    assert res["history"].map(len).eq(1).all()  # one epoch each, carried for the learning curves


def test_the_teacher_seed_is_the_one_the_students_records_name(grid):
    _, runs = grid
    teacher = runs[runs["role"] == "teacher"]
    assert len(teacher) == 1 and bool(teacher["teaches"].iloc[0])
    st = runs[runs["role"] == "student"].set_index(["method", "seed"])["teacher_run"]
    assert st[("hinton", 0)] == st[("hinton", 1)] == teacher["run_id"].iloc[0]
    assert pd.isna(st[("baseline", 0)])
    own = Params(**{**GRID, "store": grid[0].params.store, "methods": ["baseline"], "seeds": [100], "teachers": {}})
    truns = teacher_runs([own, grid[0].params], train=False)  # the teachers page: its own grid and a section's
    assert list(truns["run_id"]) == list(teacher["run_id"]) and truns["teaches"].tolist() == [True]
    assert truns["teacher"].tolist() == ["resnet8"]


def test_transfer_is_computed_stored_and_read_back_without_weights(grid):
    study, runs = grid
    mat, rec = study.transfer("resnet8", runs)
    assert list(mat.index) == ["baseline", "hinton", "mean"]
    assert list(mat.columns) == ["baseline", "hinton", "mean", "teacher"]
    path = pages_path(study, rec)
    stored = json.loads(path.read_text())
    assert stored["kind"] == "transfer" and stored["settings"]["steps"] == 2 and stored["n_images"] == 200
    assert oct(path.stat().st_mode & 0o777) == "0o644" and "weights_checked" not in stored
    assert sorted(stored["sources"]) == ["baseline", "hinton"] and len(stored["sources"]["hinton"]) == 2
    ids = {r for rs in rec["sources"].values() for r in rs} | {rec["teacher"]}
    assert set(stored["weights"]) == ids and rec["weights_checked"]
    weights = [study.store.model_path(r) for r in sorted(ids)]
    moved = [w.rename(w.with_suffix(".bak")) for w in weights]  # a committed store: records, no weights
    try:
        again, rec2 = study.transfer("resnet8", runs)
        assert again.equals(mat) and not rec2["weights_checked"]
        assert "cannot be checked" in pages.transfer_text("resnet8", rec2, study.params.store)
        legacy = {k: v for k, v in stored.items() if k != "weights"}  # a record made before weight keys
        path.write_text(json.dumps(legacy))
        _, rec3 = study.transfer("resnet8", runs)
        text = pages.transfer_text("resnet8", rec3, study.params.store)
        assert "shown as recorded" in text and rec3["code_version"] in text and "made before" not in text
        path.rename(path.with_suffix(".gone"))
        with pytest.raises(TransferUnavailable, match=r"is not stored.*missing for 5 of 5 runs.*model\.pt"):
            study.transfer("resnet8", runs)
    finally:
        for m, w in zip(moved, weights, strict=True):
            m.rename(w)
        path.with_suffix(".gone").rename(path)


def test_retrained_weights_under_the_same_run_id_are_attacked_anew(grid):
    study, runs = grid
    _, before = study.transfer("resnet8", runs)
    crafted = len(list(study.store.root.glob("transfer/pgd/*.pgd.pt")))
    rid = before["sources"]["hinton"][1]
    path = study.store.model_path(rid)
    original = path.read_bytes()
    state = torch.load(path, weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name] + 0.01  # "retrained": other weights under the same run id
    store_mod.atomic_torch_save(state, path)
    try:
        _, after = study.transfer("resnet8", runs)
        assert after["weights"][rid] != before["weights"][rid] and after["created"] != before["created"]
        assert {k: v for k, v in after["weights"].items() if k != rid} == \
            {k: v for k, v in before["weights"].items() if k != rid}
        assert len(list(study.store.root.glob("transfer/pgd/*.pgd.pt"))) == crafted + 1  # only rid re-crafted
    finally:
        path.write_bytes(original)
    _, restored = study.transfer("resnet8", runs)
    assert restored["weights"] == before["weights"]


def test_the_record_key_follows_the_attack_settings(grid):
    study, runs = grid
    ids, teacher = transfer_sources(runs, "resnet8")
    p = study.params
    k1 = transfer_key(ids, teacher, transfer_settings(p), p)
    k2 = transfer_key(ids, teacher, {**transfer_settings(p), "eps": 0.01}, p)
    k3 = transfer_key({**ids, "hinton": ids["hinton"][:1]}, teacher, transfer_settings(p), p)
    assert len({k1, k2, k3}) == 3
    with pytest.raises(ValueError, match="unknown transfer setting 'epsilon'"):
        transfer_settings(Params(transfer={"epsilon": 1}))


def test_transfer_sources_refuse_students_of_several_teachers():
    runs = pd.DataFrame([{"run_id": f"s{i}", "role": "student", "student": "resnet8", "status": "done",
                          "method": "hinton", "seed": i, "teacher_run": f"t{i}"} for i in range(2)])
    with pytest.raises(ValueError, match="learned from 2 teacher runs"):
        transfer_sources(runs, "resnet8")


def pages_path(study, rec):
    from kdnb.study import transfer_path

    return transfer_path(study.params.store, rec["key"])


def test_paper_protocol_cells_show_finished_and_in_progress_runs(tmp_path):
    from kdnb.report import analysis, tables
    from kdnb.train import train_run

    p = Params(profile="paper", section="generalization", store=str(tmp_path / "store"), dataset="synthetic",
               students=["resnet8"], methods=["baseline"], seeds=[0, 1], epochs=2, batch_size=100, device="cpu")
    study = Study(p)
    done_cfg, partial_cfg = sorted(study.conditions[0].students, key=lambda c: c.seed)
    rec = train_run(done_cfg, study.store, "cpu", progress=False)
    assert train_run(partial_cfg, study.store, "cpu", progress=False, max_epochs=1)["status"] == "partial"
    ck = store_mod.safe_torch_load(study.store.checkpoint_path(partial_cfg.run_id))

    cells = analysis.against_paper(pages.protocol_cells(p)).set_index("seed")
    assert list(cells["state"]) == ["done", "in progress"]
    assert cells.loc[0, "acc"] == rec["final_acc"] and cells.loc[0, "epoch"] == 2
    assert (cells.loc[1, "epoch"], cells.loc[1, "epochs"]) == (1, 2)
    assert cells.loc[1, "acc"] == ck["history"][-1]["test_acc"]
    assert rec["segments"][0]["cpu"] in cells.loc[0, "machine"] and "epochs 0–1" in cells.loc[1, "machine"]
    assert cells.loc[0, "paper_mean"] == 87.64 and cells.loc[0, "diff"] == pytest.approx(rec["final_acc"] - 87.64)
    assert cells.loc[0, "within"] == (abs(rec["final_acc"] - 87.64) <= 0.5) and cells.loc[1, "within"] is None
    text = pages.protocol_text(cells.reset_index(), p)
    assert "*in progress*, epoch 1 of 2" in text and "2 runs" in text
    html = tables.style_protocol(cells.reset_index()).to_html()
    assert "in progress: epoch 1 of 2" in html and "87.64 ± 0.25" in html


def test_ablations_pair_by_seed_and_name_what_is_missing(tmp_path):
    def runs(method, accs, epochs=8):
        return pd.DataFrame([dict(run_id=f"{method}{epochs}{s}", role="student", status="done", method=method,
                                  student="resnet8", seed=s, noise=0.0, imbalance=float("nan"), final_acc=a)
                             for s, a in enumerate(accs)])

    main = pd.concat([runs("baseline", [50.0, 52.0]), runs("one", [55.0, 58.0])], ignore_index=True)
    abl, absent = pages.ablations(tmp_path, main)  # no ablations folder: only the context row, never an error
    assert list(abl["ablation"]) == ["ONE − baseline, main grid"]
    assert abl.loc[0, "mean"] == 5.5 and abl.loc[0, "seeds"] == [0, 1]
    assert absent == [f"this profile defines no ablations (`{tmp_path / 'ablations'}`)"]
    (tmp_path / "ablations").mkdir()  # an empty folder: each ablation is named once, with the files it lacks
    abl, absent = pages.ablations(tmp_path, main)
    assert absent == ["this profile does not define the BSS recipe ablation (`bss_standard.yaml`, "
                      "`bss_official.yaml`)", "this profile does not define the schedule ablation "
                      "(`schedule_control.yaml`, `schedule_reference.yaml`)"]
    text = pages.ablations_text(abl, absent)
    assert "Not shown: this profile does not define the BSS recipe ablation" in text


def test_the_schedule_ablation_is_labelled_by_its_grids_epochs_and_precision(monkeypatch):
    """The subset60 schedule control (90 epochs, bf16) against its reference, the main grid's 60-epoch
    baseline: labels and text read both files, and the reference is the main grid's stored baselines."""
    monkeypatch.chdir(ROOT)  # the files name their stores relative to the working directory
    main = Study(load_params(str(ROOT / "params" / "subset60" / "generalization.yaml"),
                             store=str(ROOT / "results" / "subset60"))).results()
    abl, absent = pages.ablations(ROOT / "params" / "subset60", main)
    row = abl.set_index("file").loc["schedule_control.yaml"]
    assert row["ablation"] == "Baseline, 90 − 60 epochs (bf16)" and row["epochs"] == (90, 60)
    assert "ONE's 90-epoch schedule" in row["question"] and absent == [
        "this profile does not define the BSS recipe ablation (`bss_standard.yaml`, `bss_official.yaml`)"]
    seeds = row["seeds"]  # the committed control seeds; the pair's means and ONE's gain are on them alone
    on = main[(main["role"] == "student") & main["seed"].isin(seeds)].groupby("method")["final_acc"].mean()
    assert seeds and row["b"] == pytest.approx(on["baseline"])  # the reference: the main grid's baselines
    assert row["context_same_seeds"]["mean"] == pytest.approx(on["one"] - on["baseline"])
    text = pages.ablations_text(abl, absent, "bf16")
    assert "Training the baseline for ONE's 90 epochs instead of 60" in text and "different precisions" not in text




def test_the_label_noise_page_says_whether_the_baseline_memorised_the_wrong_labels():
    fit = pd.DataFrame([dict(dataset="cifar10", student="resnet8", noise=0.4, seeds=[0], train_acc=48.3, right=64.0,
                             fits_wrong=False, best_minus_final=0.26, acc=65.27, clean_acc=75.92),
                        dict(dataset="cifar10", student="wrn16_2", noise=0.4, seeds=[0, 1], train_acc=90.0, right=64.0,
                             fits_wrong=True, best_minus_final=5.0, acc=60.0, clean_acc=float("nan"))])
    theirs = pd.DataFrame(dict(method=["baseline"] * 2, noise=[0.0, 0.4], mean=[93.95, 64.47]))
    text = pages.noise_fit_text(fit, theirs)
    assert "**ResNet-8, σ = 0.4** (seed 0): the baseline ends at 48.3 % training accuracy" in text
    assert "below the 64.0 % of them that are right" in text and "no sign that it memorised" in text
    assert "10.65 points below the clean baseline of the same seeds; the paper's WRN-16-2 baseline falls 29.48" in text
    assert "(seeds 0, 1)" in text and "fits at least 26.0 % of the labels that are wrong" in text
    assert pages.noise_fit_text(fit.iloc[:0], theirs) == ""


def test_the_dml_temperature_ablation_belongs_to_the_imbalance_page_and_reads_its_cell(tmp_path):
    """The imbalance page's ablation pairs DML with DML in the γ = 1 cell only; its context is the grid's DML −
    baseline there, and its text says how much of DML's loss the lower temperature wins back."""
    def runs(method, accs, imbalance):
        return pd.DataFrame([dict(run_id=f"{method}{imbalance}{s}", role="student", status="done", method=method,
                                  student="resnet8", seed=s, noise=0.0, imbalance=imbalance, final_acc=a)
                             for s, a in enumerate(accs)])

    main = pd.concat([runs("baseline", [68.0, 69.0], 1.0), runs("dml", [61.0, 63.0], 1.0),
                      runs("baseline", [76.0, 77.0], float("nan")), runs("dml", [75.0, 75.0], float("nan"))],
                     ignore_index=True)
    (tmp_path / "ablations").mkdir()
    abl, absent = pages.ablations(tmp_path, main, "imbalance")
    assert absent == ["this profile does not define the DML temperature ablation (`dml_temperature.yaml`, "
                      "`dml_reference.yaml`)"]  # and nothing of the generalization page's ablations
    context = abl.iloc[0]
    assert context["ablation"] == "DML − baseline, main grid (γ = 1)" and context["mean"] == pytest.approx(-6.5)
    row = dict(file="dml_temperature.yaml", ablation="DML, T = 1 − T = 4 (γ = 1)", mean=5.2, n=2, lo=1.0, hi=9.4,
               context_same_seeds=dict(mean=-6.5, n=2, lo=-9.0, hi=-4.0))
    text = pages.ablations_text(pd.DataFrame([row]), [])
    assert text.startswith("DML, T = 1 − T = 4 (γ = 1), on the same imbalanced set and seeds: +5.20 points")
    assert "the grid's DML against the baseline on those seeds: -6.50 points" in text
    assert "wins back 80% of DML's loss and leaves DML -1.30 points from the baseline" in text


def test_a_new_ablation_is_one_entry_whose_own_sentence_the_page_prints(tmp_path, monkeypatch):
    """An ``Ablation`` carries its sentence: adding one to ``ABLATIONS`` is all the text needs, and rows of
    files that no entry names (the context rows) add nothing."""
    def say(r, precision):
        return f"Mine: {r['mean']:+.1f} in {precision}."

    mine = pages.Ablation("generalization", "my control", "Mine", "mine.yaml", "hinton", "ref.yaml", "hinton",
                          "does it matter", "hinton", say)
    monkeypatch.setattr(pages, "ABLATIONS", (*pages.ABLATIONS, mine))
    rows = pd.DataFrame([dict(file="mine.yaml", mean=1.3), dict(file="", mean=9.0)])
    assert pages.ablations_text(rows, [], "fp32") == "Mine: +1.3 in fp32."
    assert pages.ablations_text(rows.iloc[1:], ["x"]) == "Not shown: x."
