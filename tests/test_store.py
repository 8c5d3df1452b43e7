"""The run store: atomic writes, checksums, safe loading, the DataFrame view."""

import json
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch

from kdnb import store as store_mod
from kdnb.store import CorruptRecord, Store


def _record(run_id="0123456789abcdef", acc=50.0):
    return {"run_id": run_id, "kind": "run", "status": "done", "final_acc": acc, "best_acc": acc + 1,
            "wall_s": 1.0, "device": "cpu", "code_version": "x",
            "config": {"method": "hinton", "student": "resnet8", "teacher": "resnet26", "seed": 1, "epochs": 2,
                       "data": {"dataset": "cifar10", "noise": 0.4, "imbalance": None}}}


def test_write_read_roundtrip_and_load(tmp_path):
    s = Store(tmp_path)
    s.write(_record())
    assert s.read("0123456789abcdef")["final_acc"] == 50.0
    df = store_mod.load(tmp_path)
    assert len(df) == 1
    for col in store_mod.COLUMNS:
        assert col in df.columns
    row = df.iloc[0]
    assert (row.method, row.student, row.teacher, row.seed, row.noise) == ("hinton", "resnet8", "resnet26", 1, 0.4)


def test_empty_store_loads_with_the_contract_columns(tmp_path):
    df = store_mod.load(tmp_path / "nothing")
    assert df.empty and set(store_mod.COLUMNS) <= set(df.columns)


def test_tampered_record_fails_its_checksum(tmp_path):
    s = Store(tmp_path)
    s.write(_record())
    path = s.record_path("0123456789abcdef")
    rec = json.loads(path.read_text())
    rec["final_acc"] = 99.0
    path.write_text(json.dumps(rec))
    with pytest.raises(CorruptRecord, match="checksum"):
        s.read("0123456789abcdef")
    assert s.done("0123456789abcdef") is None  # treated as missing: the run is redone
    path.write_text(path.read_text()[:40])  # truncated
    with pytest.raises(CorruptRecord, match="JSON"):
        s.read("0123456789abcdef")
    assert store_mod.load(tmp_path).empty


def test_run_ids_cannot_escape_the_store(tmp_path):
    with pytest.raises(ValueError):
        Store(tmp_path).run_dir("../../etc")


def test_interrupted_write_leaves_the_old_record(tmp_path):
    """A writer killed in the middle of a write leaves the previous record intact."""
    s = Store(tmp_path)
    s.write(_record(acc=50.0))
    script = textwrap.dedent(f"""
        import os, kdnb.store as st
        real_replace = os.replace
        def die(*a, **k):
            os._exit(9)  # killed after the temporary file is written, before it is moved in place
        os.replace = die
        st.Store({str(tmp_path)!r}).write({_record(acc=77.0)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == 9
    assert s.read("0123456789abcdef")["final_acc"] == 50.0
    leftovers = [p for p in s.run_dir("0123456789abcdef").iterdir() if p.name != "record.json"]
    assert all(p.name.endswith(".tmp") for p in leftovers)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the point: a file torch.save did not write
def test_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "ck.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(CorruptRecord):
        store_mod.safe_torch_load(path)
    good = tmp_path / "ok.pt"
    store_mod.atomic_torch_save({"w": torch.ones(2), "n": 3}, good)
    assert store_mod.safe_torch_load(good)["n"] == 3


def test_config_hash_is_stable_and_order_free():
    a = store_mod.config_hash({"a": 1, "b": [1, 2], "c": {"x": 0.1}})
    b = store_mod.config_hash({"c": {"x": 0.1}, "b": [1, 2], "a": 1})
    assert a == b and len(a) == 16 and a != store_mod.config_hash({"a": 2, "b": [1, 2], "c": {"x": 0.1}})
