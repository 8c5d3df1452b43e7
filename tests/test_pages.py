"""The transfer matrix of the Fig. 1 page: computed from weights, stored as a record, read back without them."""

import json

import pytest

from kdnb import pages
from kdnb.study import Params, Study


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    p = Params(profile="test", section="transferability", store=str(store), dataset="synthetic",
               students=["resnet8"], teachers={"resnet8": "resnet8"}, methods=["baseline", "hinton"], seeds=[0, 1],
               teacher_seeds=[100], epochs=1, batch_size=100, device="cpu",
               transfer={"steps": 2, "batch_size": 200})
    study = Study(p)
    return study, study.run(progress=False)


def test_transfer_is_computed_stored_and_read_back_without_weights(grid):
    study, runs = grid
    mat, rec = pages.transfer_for(study, runs, "resnet8")
    assert list(mat.index) == ["baseline", "hinton", "mean"]
    assert list(mat.columns) == ["baseline", "hinton", "mean", "teacher"]
    path = pages.transfer_path(study.params.store, rec["key"])
    stored = json.loads(path.read_text())
    assert stored["kind"] == "transfer" and stored["settings"]["steps"] == 2 and stored["n_images"] == 200
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert sorted(stored["sources"]) == ["baseline", "hinton"] and len(stored["sources"]["hinton"]) == 2
    ids = {r for rs in rec["sources"].values() for r in rs} | {rec["teacher"]}  # the teacher is baseline seed 0
    weights = [study.store.model_path(r) for r in sorted(ids)]
    moved = [w.rename(w.with_suffix(".bak")) for w in weights]  # a committed store: records, no weights
    try:
        again, _ = pages.transfer_for(study, runs, "resnet8")
        assert again.equals(mat) or again.round(6).equals(mat.round(6))
        path.rename(path.with_suffix(".gone"))
        with pytest.raises(pages.TransferUnavailable, match=r"is not stored.*missing for 4 of 4 runs.*model\.pt"):
            pages.transfer_for(study, runs, "resnet8")
    finally:
        for m, w in zip(moved, weights, strict=True):
            m.rename(w)


def test_the_record_key_follows_the_attack_settings(grid):
    study, runs = grid
    ids, teacher = pages.transfer_sources(study, runs, "resnet8")
    p = study.params
    k1 = pages.transfer_key(ids, teacher, pages.transfer_settings(p), p)
    k2 = pages.transfer_key(ids, teacher, {**pages.transfer_settings(p), "eps": 0.01}, p)
    k3 = pages.transfer_key({**ids, "hinton": ids["hinton"][:1]}, teacher, pages.transfer_settings(p), p)
    assert len({k1, k2, k3}) == 3
    with pytest.raises(ValueError, match="unknown transfer setting 'epsilon'"):
        pages.transfer_settings(Params(transfer={"epsilon": 1}))
