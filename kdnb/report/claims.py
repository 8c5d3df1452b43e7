"""The paper's findings (§IV), one row each, tested on the paper's own tables and on kdnb's committed stores.

A finding is the paper's sentence (``paper.FINDINGS``) and a test of what the words say: a tree whose leaves
are contrasts of test accuracies (or of Fig. 1's transfer rates), each with the direction the words claim
(``>`` 0, ``<`` 0, ``≈`` 0 within a margin), and whose nodes say how many of their children must hold:
"all" / "consistently" (every cell), "any" ("occasionally", "can be"), a majority, or a rank ("highest":
the method minus each other method; "amongst the top": beats all but a third of them).

Evidence comes from one source at a time: the paper's means ± std over 5 seeds (an unpaired interval,
Welch's degrees of freedom), or one of kdnb's stores (``REGIMES``, most faithful first) with the seed variance
pooled over the store's cells (a two-way method × seed model per cell, its residual variance pooled), or a
stored transfer matrix (a binomial interval over the attacked images). ``RULE`` on the page states the rule.

A leaf's 95 % interval [lo, hi] becomes a score interval that is above zero when the leaf holds (for ``<``
its mirror; for ``≈`` the margin minus the distance from zero); a node that needs q of its n children
takes the q-th largest of their lower and of their upper bounds (q = n: the minimum, an intersection-union
test). The verdict is *agrees* when the root's score interval lies above zero, *disagrees* when it lies
below, *too noisy* otherwise, *no data* when the source has none of the cells.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kdnb.report import paper
from kdnb.report.analysis import (
    against_paper,
    balanced,
    condition_label,
    label,
    memorisation_clause,
    model_order,
    names,
    noise_fit,
    params_images_text,
    students,
    t975,
    two_way_residual,
)
from kdnb.report.grids import load_grids, load_params_file, section_files, stored_transfer_path, transfer_seeds

# ---------------------------------------------------------------------------------------------
# Cells, leaves, nodes

C10, C100 = "cifar10", "cifar100"
COND = "{s}"  # the student of the label-noise and imbalance grids: the paper's WRN-16-2, kdnb's own
PAPER_COND = "wrn16_2"  # Tables V and VI (§IV-B, §IV-C)
R10, W = paper.STUDENTS[:4], paper.STUDENTS[4:]
R100 = paper.STUDENTS_C100[:4]
KD = paper.METHODS[1:]  # the eleven distillation methods
TEACHER_KD = tuple(m for m in KD if m not in ("one", "dml"))  # the nine that learn from a teacher
RELATIONAL = ("sp", "rkd_d", "rkd_a", "rkd_da")
HINTON_LOSS = ("hinton", "bss", "fitnet", "fsp")  # "response distillation methods, FitNet, and FSP" (§IV-D)
TRANSFER_KD = paper.TRANSFER_SOURCES[1:]
MARGIN_SHARE = 0.5  # "≈": within ± half the effect at stake (the reference gain), on the same evidence
PAPER_TRANSFER_N = 8000  # Fig. 1 gives no image count: the 10,000 test images, ~80 % correct for both models
VERDICTS = ("agrees", "disagrees", "too noisy", "no data")
VERDICT_TEXT = {"agrees": "agrees", "disagrees": "disagrees", "too noisy": "inconclusive: too noisy",
                "no data": "not testable: no data"}
PAPER_TEXT = {"agrees": "shown by its own numbers", "disagrees": "the paper's own numbers do not show this: "
              "they show the opposite", "too noisy": "the paper's own numbers do not show this (within their "
              "noise)", "no data": "no table"}

Cell = tuple  # (dataset, student, noise, imbalance); student may be COND
Key = tuple  # (*cell, method) for accuracies; ("transfer", target, source) for Fig. 1


def cell(student: str, dataset: str = C10, noise: float = 0.0, imbalance: float | None = None) -> Cell:
    return (dataset, student, float(noise), None if balanced(imbalance) else float(imbalance))


def cell_text(c: Cell) -> str:
    """``ResNet-8``, ``WRN-10-2 (CIFAR-100)``, ``{s}, σ = 0.4``: a cell as a row names it."""
    ds, s, noise, gamma = c
    text = s if s == COND else label(s)
    text += " (CIFAR-100)" if ds == C100 else ""
    cond = condition_label(noise, gamma, clean="")
    return f"{text}, {cond}" if cond else text


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One contrast: the mean over its available ``blocks`` (one per cell: ((key, weight), ...)) of
    Σ weight × accuracy, claimed ``>`` 0, ``<`` 0 or ``≈`` 0 (within MARGIN_SHARE × |``reference``|, a
    contrast of the same form)."""

    label: str
    blocks: tuple
    expect: str = ">"
    reference: tuple = ()


@dataclasses.dataclass(frozen=True)
class Node:
    """``quota`` of its ``children`` must hold: all, any, majority, top-third or top-half (a method that
    ranks in the top third of the n + 1 methods beats all but ⌊(n + 1) / 3⌋ − 1 of the n others)."""

    quota: str
    children: tuple


def _quota(quota: str, n: int) -> int:
    share = {"top-third": 1 / 3, "top-half": 1 / 2}
    if quota == "all":
        return n
    if quota == "any":
        return 1
    if quota == "majority":
        return n // 2 + 1
    if quota in share:
        return max(1, n - (math.floor(share[quota] * (n + 1) + 1e-9) - 1))
    raise ValueError(f"unknown quota {quota!r}; valid: all, any, majority, top-third, top-half")


def _mean_terms(methods: Sequence[str] | str, c: Cell, weight: float) -> list[tuple]:
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    return [((*c, m), weight / len(methods)) for m in methods]


def _block(*parts: list[tuple]) -> tuple:
    total: dict[Key, float] = {}
    for part in parts:
        for k, w in part:
            total[k] = total.get(k, 0.0) + w
    return tuple((k, w) for k, w in total.items() if w)


def diff_block(a: Sequence[str] | str, b: Sequence[str] | str, c: Cell) -> tuple:
    return _block(_mean_terms(a, c, 1.0), _mean_terms(b, c, -1.0))


def gain_block(m: Sequence[str] | str, c: Cell) -> tuple:
    return diff_block(m, "baseline", c)


def _what(a: Sequence[str] | str) -> str:
    a = (a,) if isinstance(a, str) else tuple(a)
    return label(a[0]) if len(a) == 1 else f"mean({names(a)})"


def diff(a: Sequence[str] | str, b: Sequence[str] | str, c: Cell, expect: str = ">", reference: tuple = ()) -> Leaf:
    """``mean(a) − mean(b)`` in cell ``c``."""
    return Leaf(f"{cell_text(c)}: {_what(a)} − {_what(b)}", (diff_block(a, b, c),), expect, reference)


def gain(m: Sequence[str] | str, c: Cell, expect: str = ">") -> Leaf:
    """``mean(m) − baseline`` in cell ``c``."""
    return diff(m, "baseline", c, expect)


def gain_change(m: Sequence[str] | str, frm: Cell, to: Cell, expect: str) -> Leaf:
    """(gain of ``m`` in ``to``) − (gain in ``frm``): a trend across capacity, noise or imbalance."""
    blk = _block(*[[(k, w) for k, w in gain_block(m, to)], [(k, -w) for k, w in gain_block(m, frm)]])
    return Leaf(f"{_what(m)}'s gain: {cell_text(to)} − {cell_text(frm)}", (blk,), expect)


def mean_over(lbl: str, blocks: Sequence[tuple], expect: str = ">", reference: Sequence[tuple] = ()) -> Leaf:
    """A contrast averaged over the cells of ``blocks`` that the evidence holds."""
    return Leaf(lbl, tuple(blocks), expect, tuple(reference))


def beats(m: str, c: Cell, quota: str = "all", others: Sequence[str] | None = None) -> Node:
    """``m`` minus each other method in ``c`` (``quota`` all: the highest)."""
    others = [o for o in (others if others is not None else paper.METHODS) if o != m]
    return Node(quota, tuple(diff(m, o, c) for o in others))


def every(leaves: Sequence[Leaf | Node]) -> Node:
    return Node("all", tuple(leaves))


def t_cell(target: str, source: str) -> Key:
    return ("transfer", target, source)


def t_diff(a: str, b: str, source: str = "teacher", expect: str = ">") -> Leaf:
    """Fig. 1: examples from ``source`` against targets ``a`` and ``b``: rate(a) − rate(b)."""
    return Leaf(f"{paper.LABELS.get(source, source)}'s examples: on {label(a)} − on {label(b)}",
                (((t_cell(a, source), 1.0), (t_cell(b, source), -1.0)),), expect)


def t_source_diff(a: str, b: str, expect: str = ">") -> Leaf:
    """Fig. 1's mean row: examples crafted on ``a`` minus on ``b``, each averaged over the ten targets."""
    tg = paper.TRANSFER_SOURCES
    blk = _block([(t_cell(t, a), 1 / len(tg)) for t in tg], [(t_cell(t, b), -1 / len(tg)) for t in tg])
    return Leaf(f"mean over targets: from {label(a)} − from {label(b)}", (blk,), expect)


def t_target_diff(a: str, b: str, expect: str = "<") -> Leaf:
    """Targets ``a`` and ``b`` under the black-box attacks of every other source: mean rate difference."""
    src = [s for s in paper.TRANSFER_SOURCES if s not in (a, b)]
    blk = _block([(t_cell(a, s), 1 / len(src)) for s in src], [(t_cell(b, s), -1 / len(src)) for s in src])
    return Leaf(f"attacked from the other sources: {label(a)} − {label(b)}", (blk,), expect)


@dataclasses.dataclass(frozen=True)
class Finding:
    id: str
    claim: str  # a short headline in plain words (plot rows, the table's first line)
    test: str  # what is computed, in words
    tree: Node

    @property
    def section(self) -> str:
        return paper.FINDINGS[self.id][0]

    @property
    def words(self) -> str:
        return paper.FINDINGS[self.id][1]


def leaves(tree: Leaf | Node) -> list[Leaf]:
    return [tree] if isinstance(tree, Leaf) else [x for c in tree.children for x in leaves(c)]


# ---------------------------------------------------------------------------------------------
# The findings. Cells of Table III (C10), Table IV (C100), Tables V-VI (COND at σ or γ), Fig. 1 (transfer).


def _c10(s: str) -> Cell:
    return cell(s)


def _c100(s: str) -> Cell:
    return cell(s, C100)


def _per_student(cells: Sequence[Cell], make: Callable[[Cell], Any]) -> list:
    return [make(c) for c in cells]


ALL10 = [_c10(s) for s in paper.STUDENTS]
ALL100 = [_c100(s) for s in paper.STUDENTS_C100]
NOISE = [cell(COND, noise=s) for s in paper.NOISE_RATES[1:]]
GAMMA = [cell(COND, imbalance=g) for g in paper.IMBALANCE_RATES]
SMALLEST_LARGEST = ((_c10("resnet8"), _c10("resnet26")), (_c10("wrn10_2"), _c10("wrn40_2")))
SMALLEST_LARGEST_100 = ((_c100("resnet8x4"), _c100("resnet26x4")), (_c100("wrn10_2"), _c100("wrn40_2")))


def _similar(a: str, b: str, cells: Sequence[Cell], reference: str, what: str) -> Leaf:
    """``a`` − ``b`` averaged over ``cells`` ≈ 0, within MARGIN_SHARE × ``reference``'s mean gain there."""
    return mean_over(f"{what}: {label(a)} − {label(b)}, mean over cells", [diff_block(a, b, c) for c in cells], "≈",
                     [gain_block(reference, c) for c in cells])


def _findings() -> tuple[Finding, ...]:
    F = Finding
    maj_gains = lambda c: Node("majority", tuple(gain(m, c) for m in KD))  # noqa: E731
    fams = [("CIFAR-10", ALL10), ("CIFAR-100", ALL100)]
    out = [
        F("A-0", "Most methods gain over the baseline", "a majority of the 11 methods have a mean gain (over the "
          "students of Tables III and IV) above zero",
          Node("majority", tuple(mean_over(f"{label(m)}: gain, mean over cells", [gain_block(m, c) for c in
                                                                                   ALL10 + ALL100]) for m in KD))),
        # §IV-A1
        F("A1-H", "Hinton beats the baseline on every CIFAR-10 student", "Hinton − baseline > 0 in every cell of "
          "Table III (the lowest cell decides)", every(_per_student(ALL10, lambda c: gain("hinton", c)))),
        F("A1-BSS-low", "BSS helps the smallest students", "BSS − baseline > 0 on ResNet-8 and WRN-10-2",
          every([gain("bss", _c10("resnet8")), gain("bss", _c10("wrn10_2"))])),
        F("A1-BSS-hi", "BSS is the best method on WRN-10-2", "BSS − each other method > 0 on WRN-10-2 (best minus "
          "runner-up)", beats("bss", _c10("wrn10_2"))),
        F("A1-BSS-cap", "BSS's gain shrinks as capacity grows", "BSS's gain on the largest student of each family "
          "minus its gain on the smallest < 0",
          every([gain_change("bss", a, b, "<") for a, b in SMALLEST_LARGEST])),
        F("A1-FF-sim", "FitNet and FSP perform like Hinton (CIFAR-10)", "FitNet − Hinton and FSP − Hinton, each "
          "averaged over Table III's students, within ± half Hinton's mean gain",
          every([_similar(m, "hinton", ALL10, "hinton", "CIFAR-10") for m in ("fitnet", "fsp")])),
        F("A1-FF-gain", "FitNet and FSP beat the baseline on every student", "FitNet − baseline and FSP − baseline > "
          "0 in every cell of Table III", every([gain(m, c) for m in ("fitnet", "fsp") for c in ALL10])),
        F("A1-FF-occ", "FitNet or FSP sometimes fall below Hinton", "FitNet − Hinton or FSP − Hinton < 0 in at "
          "least one cell of Table III", Node("any", tuple(diff(m, "hinton", c, "<") for m in ("fitnet", "fsp")
                                                           for c in ALL10))),
        F("A1-AT-H", "AT stays below Hinton on every ResNet", "AT − Hinton < 0 on each ResNet",
          every([diff("at", "hinton", _c10(s), "<") for s in R10])),
        F("A1-AT8", "AT falls below the baseline on ResNet-8", "AT − baseline < 0 on ResNet-8",
          every([gain("at", _c10("resnet8"), "<")])),
        F("A1-AT-W", "AT beats the baseline on the larger WRNs", "AT − baseline > 0 on WRN-16-2, WRN-28-2 and "
          "WRN-40-2", every([gain("at", _c10(s)) for s in W[1:]])),
        F("A1-AT-top", "AT is among the top methods on WRN-16-2 and WRN-28-2", "AT beats all but three of the "
          "other 11 methods (top third of 12) on each", every([beats("at", _c10(s), "top-third")
                                                                 for s in ("wrn16_2", "wrn28_2")])),
        F("A1-REL-top", "SP and RKD-A are among the top on ResNet-20+ and WRN-16-2+", "SP and RKD-A each in the top "
          "third of the 12 methods on ResNet-20, ResNet-26, WRN-16-2, WRN-28-2 and WRN-40-2",
          every([beats(m, _c10(s), "top-third") for m in ("sp", "rkd_a")
                 for s in ("resnet20", "resnet26", "wrn16_2", "wrn28_2", "wrn40_2")])),
        F("A1-RKDDA", "RKD-DA is best on WRN-40-2, near best on ResNet-26", "RKD-DA − each other method > 0 on "
          "WRN-40-2; RKD-DA in the top third on ResNet-26",
          every([beats("rkd_da", _c10("wrn40_2")), beats("rkd_da", _c10("resnet26"), "top-third")])),
        F("A1-REL-gap", "Relational methods gain less with a larger capacity gap", "the relational methods' mean "
          "gain on the smallest student minus on the teacher-sized one < 0, in each family",
          every([gain_change(RELATIONAL, b, a, "<") for a, b in SMALLEST_LARGEST])),
        F("A1-R8", "Every relational method falls below the baseline on ResNet-8", "SP, RKD-D, RKD-A and RKD-DA − "
          "baseline < 0 on ResNet-8, each", every([gain(m, _c10("resnet8"), "<") for m in RELATIONAL])),
        F("A1-ON", "Online methods gain about as much as teacher-based ones", "mean gain of ONE and DML minus mean "
          "gain of the 9 teacher-based methods, averaged over Table III, within ± half the latter",
          mean_over("CIFAR-10: mean(ONE, DML) − mean(teacher-based), mean over cells",
                    [diff_block(("one", "dml"), TEACHER_KD, c) for c in ALL10], "≈",
                    [gain_block(TEACHER_KD, c) for c in ALL10])),
        F("A1-ONE-R", "ONE beats the baseline on every ResNet", "ONE − baseline > 0 on each ResNet",
          every([gain("one", _c10(s)) for s in R10])),
        F("A1-ONE-hi", "ONE is the best method on ResNet-8 and ResNet-26", "ONE − each other method > 0 on "
          "ResNet-8 and on ResNet-26", every([beats("one", _c10("resnet8")), beats("one", _c10("resnet26"))])),
        F("A1-ONE-W", "On WRNs ONE helps only WRN-40-2", "ONE − baseline < 0 on WRN-10-2, 16-2 and 28-2, > 0 on "
          "WRN-40-2", every([*[gain("one", _c10(s), "<") for s in W[:3]], gain("one", _c10("wrn40_2"))])),
        F("A1-DML", "DML beats the baseline on every CIFAR-10 student", "DML − baseline > 0 in every cell of "
          "Table III", every(_per_student(ALL10, lambda c: gain("dml", c)))),
        # §IV-A2
        F("A2-RESP", "Response methods are among the most efficient (CIFAR-100)", "mean gain of Hinton and BSS "
          "minus mean gain of the other 9 methods, averaged over Table IV's students, > 0",
          mean_over("CIFAR-100: mean(Hinton, BSS) − mean(others), mean over cells",
                    [diff_block(("hinton", "bss"), [m for m in KD if m not in ("hinton", "bss")], c)
                     for c in ALL100])),
        F("A2-H", "Hinton beats the baseline on every CIFAR-100 student but WRN-10-2", "Hinton − baseline > 0 on "
          "the 7 other students of Table IV", every([gain("hinton", c) for c in ALL100 if c[1] != "wrn10_2"])),
        F("A2-BSS", "BSS helps the smallest students and is best on WRN-10-2 (CIFAR-100)", "BSS − baseline > 0 on "
          "ResNet-8 and WRN-10-2; BSS − each other method > 0 on WRN-10-2",
          every([gain("bss", _c100("resnet8x4")), gain("bss", _c100("wrn10_2")), beats("bss", _c100("wrn10_2"))])),
        F("A2-FF", "FitNet and FSP perform like Hinton (CIFAR-100)", "FitNet − Hinton and FSP − Hinton, each "
          "averaged over Table IV's students, within ± half Hinton's mean gain",
          every([_similar(m, "hinton", ALL100, "hinton", "CIFAR-100") for m in ("fitnet", "fsp")])),
        F("A2-AT", "AT hurts the smallest students (CIFAR-100)", "AT − baseline < 0 on ResNet-8 and WRN-10-2",
          every([gain("at", _c100("resnet8x4"), "<"), gain("at", _c100("wrn10_2"), "<")])),
        F("A2-REL", "Relational methods gain more with a smaller gap (CIFAR-100)", "the relational methods' mean "
          "gain on the teacher-sized student minus on the smallest > 0, in each family",
          every([gain_change(RELATIONAL, a, b, ">") for a, b in SMALLEST_LARGEST_100])),
        F("A2-SP", "SP is best on ResNet-14, 20 and 26 (CIFAR-100)", "SP − each other method > 0 on each",
          every([beats("sp", _c100(s)) for s in R100[1:]])),
        F("A2-ONE", "ONE helps ResNets, hurts WRNs but WRN-40-2 (CIFAR-100)", "ONE − baseline > 0 on each ResNet and "
          "WRN-40-2, < 0 on WRN-10-2, 16-2, 28-2",
          every([*[gain("one", _c100(s)) for s in R100], *[gain("one", _c100(s), "<") for s in W[:3]],
                 gain("one", _c100("wrn40_2"))])),
        F("A2-DML", "DML is best on WRN-16-2, 28-2 and 40-2 (CIFAR-100)", "DML − each other method > 0 on each",
          every([beats("dml", _c100(s)) for s in W[1:]])),
        # §IV-A3
        F("A3-1", "KD gains in every cell, every method", "each of the 11 methods − baseline > 0 in every cell of "
          "Tables III and IV", every([gain(m, c) for c in ALL10 + ALL100 for m in KD])),
        F("A3-1b", "Most methods help even the highest-gap students", "a majority of the 11 methods gain on "
          "ResNet-8 and WRN-10-2, in each data set",
          every([maj_gains(c) for c in (_c10("resnet8"), _c10("wrn10_2"), _c100("resnet8x4"), _c100("wrn10_2"))])),
        F("A3-1c", "KD helps a student of the teacher's own architecture", "mean gain of the 9 teacher-based "
          "methods > 0 on ResNet-26 and WRN-40-2 (the teachers' architectures), in each data set",
          every([gain(TEACHER_KD, c) for c in (_c10("resnet26"), _c10("wrn40_2"), _c100("resnet26x4"),
                                               _c100("wrn40_2"))])),
        F("A3-2", "Hinton's gain is comparable to the newer methods'", "Hinton − mean of the other 10 methods, "
          "averaged over a table's students, within ± half Hinton's mean gain, in each data set",
          every([mean_over(f"{ds}: Hinton − mean(the other 10), mean over cells",
                           [diff_block("hinton", KD[1:], c) for c in cells], "≈",
                           [gain_block("hinton", c) for c in cells]) for ds, cells in fams])),
        F("A3-3a", "RKD-A performs like SP", "RKD-A − SP, averaged over a table's students, within ± half SP's mean "
          "gain, in each data set", every([_similar("rkd_a", "sp", cells, "sp", ds) for ds, cells in fams])),
        F("A3-3b", "Angular relations (SP, RKD-A) beat distances (RKD-D)", "mean(SP, RKD-A) − RKD-D > 0 in every "
          "cell of Tables III and IV", every([diff(("sp", "rkd_a"), "rkd_d", c) for c in ALL10 + ALL100])),
        F("A3-4a", "AT can hurt when the capacity gap is high", "AT's gain on the smallest student minus on the "
          "teacher-sized one < 0 in at least one family and data set",
          Node("any", tuple(gain_change("at", b, a, "<") for a, b in SMALLEST_LARGEST + SMALLEST_LARGEST_100))),
        F("A3-4b", "Flexible methods (response, relational) gain more than AT", "mean gain of Hinton, BSS, SP and "
          "RKD-D/A/DA minus AT's, averaged over a table's students, > 0, in each data set",
          every([mean_over(f"{ds}: mean(response, relational) − AT, mean over cells",
                           [diff_block(("hinton", "bss", *RELATIONAL), "at", c) for c in cells])
                 for ds, cells in fams])),
        F("A3-5", "FitNet or FSP occasionally beat Hinton", "FitNet − Hinton or FSP − Hinton > 0 in at least one "
          "cell of Tables III and IV", Node("any", tuple(diff(m, "hinton", c) for m in ("fitnet", "fsp")
                                                         for c in ALL10 + ALL100))),
        F("A3-6", "Online distillation improves generalization", "a majority of the ONE and DML cells of Tables III "
          "and IV gain over the baseline", Node("majority", tuple(gain(m, c) for m in ("one", "dml")
                                                                  for c in ALL10 + ALL100))),
        # §IV-B
        F("B-maj", "Most methods gain at every noise rate", "a majority of the 11 methods − baseline > 0, at each σ",
          every([maj_gains(c) for c in NOISE])),
        F("B-H", "Hinton gains at every noise rate", "Hinton − baseline > 0 at each σ",
          every([gain("hinton", c) for c in NOISE])),
        F("B-H-hi", "Hinton is best at σ = 0.2", "Hinton − each other method > 0 at σ = 0.2",
          beats("hinton", NOISE[0])),
        F("B-FF", "FitNet and FSP behave like Hinton under noise", "FitNet − Hinton and FSP − Hinton within ± half "
          "Hinton's gain, at each σ", every([diff(m, "hinton", c, "≈", (gain_block("hinton", c),))
                                             for m in ("fitnet", "fsp") for c in NOISE])),
        F("B-ONE-lo", "ONE gains at low noise", "ONE − baseline > 0 at σ = 0.2 and 0.4",
          every([gain("one", c) for c in NOISE[:2]])),
        F("B-ONE-hi", "ONE falls below the baseline at σ = 0.6", "ONE − baseline < 0 at σ = 0.6",
          every([gain("one", NOISE[2], "<")])),
        F("B-DML", "DML is among the more effective methods under noise", "DML in the top half of the 12 methods "
          "(beats all but five others) at each σ", every([beats("dml", c, "top-half") for c in NOISE])),
        F("B-DML-H", "DML is comparable to Hinton under noise", "DML − Hinton within ± half Hinton's gain, at each σ",
          every([diff("dml", "hinton", c, "≈", (gain_block("hinton", c),)) for c in NOISE])),
        F("B-soft", "Soft-target methods gain more under noise than AT and relational ones", "mean gain of Hinton, "
          "FitNet, FSP, DML minus mean gain of AT, SP, RKD-D/A/DA > 0, at each σ",
          every([diff(("hinton", "fitnet", "fsp", "dml"), ("at", *RELATIONAL), c) for c in NOISE])),
        F("B-SP", "SP beats the other relational methods at low noise", "SP − RKD-D, SP − RKD-A, SP − RKD-DA > 0 at "
          "σ = 0.2 and 0.4", every([beats("sp", c, "all", ["rkd_d", "rkd_a", "rkd_da"]) for c in NOISE[:2]])),
        F("B-KD", "KD's gain grows with label noise", "mean gain of the 11 methods at σ minus on clean labels > 0, "
          "at each σ", every([gain_change(KD, cell(COND), c, ">") for c in NOISE])),
        # §IV-C
        F("C-all", "Every method but ONE (and BSS at γ = 2) gains under imbalance", "each method but ONE − baseline "
          "> 0 at each γ, BSS at γ = 2 excepted",
          every([gain(m, c) for c in GAMMA for m in KD if m != "one" and not (m == "bss" and c[3] == 2.0)])),
        F("C-exc", "ONE (every γ) and BSS (γ = 2) fall below the baseline", "ONE − baseline < 0 at each γ; BSS − "
          "baseline < 0 at γ = 2", every([*[gain("one", c, "<") for c in GAMMA], gain("bss", GAMMA[3], "<")])),
        F("C-RKD", "RKD-A or RKD-DA is the best method at every γ", "at each γ, RKD-A or RKD-DA beats each method "
          "other than the two",
          every([Node("any", (beats("rkd_a", c, "all", [m for m in paper.METHODS if m != "rkd_da"]),
                              beats("rkd_da", c, "all", [m for m in paper.METHODS if m != "rkd_a"])))
                 for c in GAMMA])),
        F("C-HD", "Hinton and DML rank next after RKD-A/DA", "Hinton and DML each beat every method other than "
          "RKD-A, RKD-DA and each other, at each γ",
          every([beats(m, c, "all", [o for o in paper.METHODS if o not in ("rkd_a", "rkd_da", "hinton", "dml")])
                 for m in ("hinton", "dml") for c in GAMMA])),
        F("C-KD", "Most methods gain at every imbalance ratio", "a majority of the 11 methods − baseline > 0, at "
          "each γ", every([maj_gains(c) for c in GAMMA])),
        # §IV-D (Fig. 1)
        F("D-1", "Teacher examples transfer best to AT", "teacher column: AT − each other KD student > 0",
          every([t_diff("at", m) for m in TRANSFER_KD if m != "at"])),
        F("D-2", "Teacher examples transfer second best to BSS", "teacher column: BSS − each KD student but AT > 0",
          every([t_diff("bss", m) for m in TRANSFER_KD if m not in ("at", "bss")])),
        F("D-3", "Teacher examples transfer more to relational students than to Hinton, FitNet, FSP", "teacher "
          "column: each relational student − each of Hinton, FitNet, FSP > 0",
          every([t_diff(r, h) for r in RELATIONAL for h in ("hinton", "fitnet", "fsp")])),
        F("D-3b", "Relational students are closer to the teacher than the baseline is", "teacher column: each "
          "relational student − the no-KD baseline > 0", every([t_diff(r, "baseline") for r in RELATIONAL])),
        F("D-4", "Hinton, FitNet, FSP receive the least transfer from the teacher", "teacher column: each of "
          "Hinton, FitNet, FSP − each other student < 0",
          every([t_diff(h, o, expect="<") for h in ("hinton", "fitnet", "fsp")
                 for o in paper.TRANSFER_SOURCES if o not in ("hinton", "fitnet", "fsp")])),
        F("D-5", "AT's examples transfer best on average", "mean row: from AT − from each other source > 0",
          every([t_source_diff("at", m) for m in paper.TRANSFER_SOURCES if m != "at"])),
        F("D-6", "Relational examples transfer more than Hinton-loss ones", "mean row: from each relational "
          "source − from each of Hinton, BSS, FitNet, FSP > 0",
          every([t_source_diff(r, h) for r in RELATIONAL for h in HINTON_LOSS])),
        F("D-7", "Hinton-loss students resist black-box attacks best", "each of Hinton, BSS, FitNet, FSP as a "
          "target − each of AT, SP, RKD-D/A/DA, under the other sources' examples < 0",
          every([t_target_diff(h, o) for h in HINTON_LOSS for o in ("at", *RELATIONAL)])),
    ]
    return tuple(out)


FINDINGS: tuple[Finding, ...] = _findings()


# ---------------------------------------------------------------------------------------------
# Evidence: the paper's tables, a kdnb store, a transfer matrix


@dataclasses.dataclass
class Estimate:
    est: float
    se: float
    df: float

    def interval(self) -> tuple[float, float]:
        if not math.isfinite(self.se) or not self.df > 0:
            return -math.inf, math.inf
        q = 1.959964 if math.isinf(self.df) else t975(int(self.df)) if self.df >= 1 else math.inf
        return self.est - q * self.se, self.est + q * self.se


class Evidence:
    """Where a finding's cells are read: ``cells`` (key → (mean, variance of the mean, df of that variance)),
    ``pooled`` (one variance shared by every cell, its df: kdnb's seeds), ``student`` (who COND stands for)."""

    def __init__(self, name: str, cells: Mapping[Key, tuple[float, float, float]], student: str | None = None,
                 pooled: bool = False):
        self.name, self.cells, self.student, self.pooled = name, dict(cells), student, pooled

    def key(self, k: Key) -> Key:
        return k if k[0] == "transfer" or k[1] != COND else (k[0], self.student, *k[2:])

    def has(self, block: tuple) -> bool:
        return all(self.key(k) in self.cells for k, _ in block)

    def estimate(self, blocks: Sequence[tuple]) -> Estimate | None:
        """The mean over the available ``blocks`` of Σ weight × cell mean, its standard error and df (the
        pooled df, or Welch-Satterthwaite over the cells' own)."""
        use = [b for b in blocks if self.has(b)]
        if not use:
            return None
        w: dict[Key, float] = {}
        for b in use:
            for k, x in b:
                w[self.key(k)] = w.get(self.key(k), 0.0) + x / len(use)
        est = sum(x * self.cells[k][0] for k, x in w.items())
        parts = [(x * x * self.cells[k][1], self.cells[k][2]) for k, x in w.items() if x]
        var = sum(p for p, _ in parts)
        if self.pooled:
            df = parts[0][1] if parts else 0.0
        else:
            den = sum(p * p / d for p, d in parts if d > 0 and p > 0)
            df = var * var / den if den > 0 else math.inf
        return Estimate(est, math.sqrt(var) if var >= 0 else math.nan, df)

    def cells_of(self, blocks: Sequence[tuple]) -> list[Key]:
        return [self.key(k) for b in blocks if self.has(b) for k, _ in b]


def paper_evidence() -> Evidence:
    """The paper's Tables III-VI (mean, std²/5, 4 df per cell) and Fig. 1 (a binomial variance over
    PAPER_TRANSFER_N images; no seeds)."""
    cells: dict[Key, tuple[float, float, float]] = {}
    frames = [paper.generalization(C10), paper.generalization(C100),
              paper.label_noise().assign(imbalance=None), paper.imbalance().assign(noise=0.0)]
    for f in frames:
        for r in f.itertuples(index=False):
            noise = getattr(r, "noise", 0.0)
            gamma = getattr(r, "imbalance", None)
            c = cell(r.student, r.dataset, noise, None if gamma is None or pd.isna(gamma) else gamma)
            cells.setdefault((*c, r.method), (r.mean, r.std**2 / paper.SEEDS, paper.SEEDS - 1))
    cells.update(_transfer_cells(paper.transfer(), lambda t, s: PAPER_TRANSFER_N))
    return Evidence("paper", cells, PAPER_COND)


def _transfer_cells(mat: pd.DataFrame, n_of: Callable[[str, str], float]) -> dict[Key, tuple[float, float, float]]:
    """Fig. 1 cells as (rate %, binomial variance of the rate over ``n_of(target, source)`` images, ∞ df)."""
    out = {}
    for t in mat.index:
        for s in mat.columns:
            p = mat.loc[t, s]
            if t == "mean" or s == "mean" or pd.isna(p):
                continue
            n = max(n_of(t, s), 1.0)
            out[t_cell(t, s)] = (float(p), float(p) * (100 - float(p)) / n, math.inf)
    return out


def complete_runs(grids: Sequence[Any], load: Callable[[Any], pd.DataFrame]) -> pd.DataFrame:
    """The finished student runs of ``grids`` from seeds that are complete in their cell: a seed counts
    in a section's cell (student, σ, γ) when every method of the section is done there, so each cell is a
    balanced methods × seeds table."""
    frames = []
    for g in grids:
        st = students(load(g))
        if st.empty:
            continue
        want = set(g.methods)
        st = st.assign(_g=st["imbalance"].map(lambda v: -1.0 if balanced(v) else float(v)))
        keep = st.groupby(["dataset", "student", "noise", "_g", "seed"])["method"].transform(
            lambda m, want=want: want <= set(m))
        frames.append(st[keep & st["method"].isin(want)].drop(columns="_g"))
    if not frames:
        return pd.DataFrame(columns=["run_id", "dataset", "student", "noise", "imbalance", "method", "seed",
                                     "final_acc"])
    return pd.concat(frames, ignore_index=True).drop_duplicates("run_id").reset_index(drop=True)


def pooled_variance(runs: pd.DataFrame, metric: str = "final_acc") -> tuple[float, int, pd.DataFrame]:
    """The seed variance pooled over the cells of ``runs`` (``complete_runs``): Σ residual SS / Σ df of a
    two-way method × seed model per cell (dataset, student, σ, γ); and the per-cell means with their seed
    counts (dataset, student, noise, imbalance, method, mean, n)."""
    ss, df, rows = 0.0, 0, []
    if runs.empty:
        return math.nan, 0, pd.DataFrame(columns=["dataset", "student", "noise", "imbalance", "method", "mean", "n"])
    r = runs.assign(_g=runs["imbalance"].map(lambda v: -1.0 if balanced(v) else float(v)))
    for (ds, s, noise, g), c in r.groupby(["dataset", "student", "noise", "_g"]):
        y = c.pivot_table(index="method", columns="seed", values=metric, aggfunc="mean").dropna(axis=1)
        a, d = two_way_residual(y.to_numpy(dtype=float))
        ss, df = ss + a, df + d
        for m, v in y.iterrows():
            rows.append(dict(dataset=ds, student=s, noise=float(noise), imbalance=None if g < 0 else float(g),
                             method=m, mean=float(v.mean()), n=int(v.notna().sum())))
    return (ss / df if df else math.nan), df, pd.DataFrame(rows)


def kdnb_evidence(name: str, runs: pd.DataFrame, student: str | None, matrix: pd.DataFrame | None = None,
                  n_of: Callable[[str, str], float] | None = None) -> tuple[Evidence, float, int]:
    """A store's evidence: cell means over complete seeds, each with the pooled variance / its seeds and the
    pooled df; and the transfer matrix's cells when there is one. Returns (evidence, pooled sd, df)."""
    var, df, means = pooled_variance(runs)
    cells: dict[Key, tuple[float, float, float]] = {
        (*cell(r.student, r.dataset, r.noise, r.imbalance), r.method): (r.mean, var / r.n if df else math.nan, df)
        for r in means.itertuples(index=False)}
    ev = Evidence(name, cells, student, pooled=True)
    if matrix is not None:
        tr = Evidence(name, _transfer_cells(matrix, n_of or (lambda t, s: 1000.0)))
        ev = _Both(ev, tr)
    return ev, math.sqrt(var) if df else math.nan, df


class _Both(Evidence):
    """Accuracy cells (pooled seeds) and transfer cells (binomial) of one store: a leaf reads one kind."""

    def __init__(self, acc: Evidence, transfer: Evidence):
        super().__init__(acc.name, {**acc.cells, **transfer.cells}, acc.student, pooled=True)
        self.acc, self.transfer = acc, transfer

    def _of(self, blocks: Sequence[tuple]) -> Evidence:
        return self.transfer if blocks and blocks[0] and blocks[0][0][0][0] == "transfer" else self.acc

    def estimate(self, blocks: Sequence[tuple]) -> Estimate | None:
        return self._of(blocks).estimate(blocks)


# ---------------------------------------------------------------------------------------------
# Verdicts


def _score(iv: tuple[float, float], est: float, expect: str, margin: float) -> tuple[float, float, float]:
    """A leaf's (L, H, estimate) on the scale where > 0 means it holds."""
    lo, hi = iv
    if expect == ">":
        return lo, hi, est
    if expect == "<":
        return -hi, -lo, -est
    if expect == "≈":
        inner = 0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))
        return margin - max(abs(lo), abs(hi)), margin - inner, margin - abs(est)
    raise ValueError(f"unknown expectation {expect!r}; valid: >, <, ≈")


def evaluate(tree: Leaf | Node, ev: Evidence) -> dict[str, Any] | None:
    """The tree on evidence ``ev``: L, H (score bounds), n (leaves read), held (leaves whose interval lies on
    the claimed side), and the deciding leaf (label, expect, est, lo, hi, margin, cells); None: no data."""
    if isinstance(tree, Leaf):
        e = ev.estimate(tree.blocks)
        if e is None:
            return None
        margin = math.nan
        if tree.expect == "≈":
            ref = ev.estimate(tree.reference)
            if ref is None:
                return None
            margin = MARGIN_SHARE * abs(ref.est)
        lo, hi = e.interval()
        L, H, _ = _score((lo, hi), e.est, tree.expect, margin)
        s = ev.student
        leaf = dict(label=tree.label.replace(COND, label(s) if s else "?"), expect=tree.expect, est=e.est, lo=lo,
                    hi=hi, margin=margin, se=e.se, df=e.df)
        return dict(L=L, H=H, n=1, held=int(L > 0), leaf=leaf, cells=ev.cells_of(tree.blocks))
    kids = [r for r in (evaluate(c, ev) for c in tree.children) if r is not None]
    if not kids:
        return None
    q = _quota(tree.quota, len(kids))
    lo_child = sorted(kids, key=lambda r: r["L"], reverse=True)[q - 1]
    hi_child = sorted(kids, key=lambda r: r["H"], reverse=True)[q - 1]
    decides = hi_child if hi_child["H"] < 0 else lo_child  # the child that settles the verdict, shown on the row
    return dict(L=lo_child["L"], H=hi_child["H"], n=sum(r["n"] for r in kids), held=sum(r["held"] for r in kids),
                leaf=decides["leaf"], cells=[c for r in kids for c in r["cells"]])


def verdict(result: Mapping[str, Any] | None) -> str:
    if result is None:
        return "no data"
    return "agrees" if result["L"] > 0 else "disagrees" if result["H"] < 0 else "too noisy"


# ---------------------------------------------------------------------------------------------
# kdnb's stores, most faithful first

REGIMES = ("paper", "subset60", "mini")  # params/<name>: the paper's protocol, the CPU-scale study, mini
STORE_NAMES = {"paper": "paper-protocol store (results/paper)", "subset60": "subset60 (results/subset60)",
               "mini": "mini (results/mini)"}
SECTIONS = ("generalization", "label_noise", "imbalance")


@dataclasses.dataclass
class Regime:
    """One profile's committed store as evidence."""

    profile: str
    grids: list
    runs: pd.DataFrame  # every finished student run of its grids
    used: pd.DataFrame  # the runs of complete seeds (``complete_runs``)
    evidence: Evidence
    sd: float
    df: int
    matrix: pd.DataFrame | None
    n_images: int = 0

    def describe(self, paper_pair: str = "", section: str = "", cells: Sequence[Key] = ()) -> str:
        """``ResNet-8 ← ResNet-26 (paper: …); 60 epochs, 1,000 training images per class, seeds 0–2``, the
        images of ``section``'s grid where the store has one (its first grid's otherwise), the seeds of the
        accuracy ``cells`` a finding read where given (a section may hold fewer complete seeds than another)."""
        st = self.used if len(self.used) else self.runs
        read = {tuple(k[:4]) for k in cells if k[0] != "transfer"}
        if read and len(st):
            st = st[[cell(r.student, r.dataset, r.noise, r.imbalance) in read for r in st.itertuples(index=False)]]
        g = next((g for g in self.grids if g.section == section), self.grids[0] if self.grids else None)
        archs = sorted(set(st["student"]), key=model_order) if len(st) else (g.students if g else [])
        pairs = ", ".join(f"{label(s)} ← {label(g.teacher_of(s))}" for s in archs) if g else "?"
        seeds = sorted({int(s) for s in st["seed"]}) if len(st) else []
        images = params_images_text(g) if g else "?"
        return (f"{pairs}" + (f" (paper: {paper_pair})" if paper_pair else "")
                + f"; {g.epochs if g else '?'} epochs, {images}, {g.precision if g else ''}, "
                + (f"seed{'s' if len(seeds) > 1 else ''} {_span(seeds)}" if seeds else "no complete seed"))


def _span(seeds: Sequence[int]) -> str:
    if len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _abs(root: Path, store: str) -> str:
    return store if Path(store).is_absolute() else str(root / store)


def load_regime(root: Path, profile: str, store: str | None = None) -> Regime | None:
    """Profile ``profile``'s grids (params/<profile>) read from their store (``store`` overrides it), or None
    when the profile has no params folder."""
    from kdnb.study import Study

    pdir = Path(root) / "params" / profile
    if not pdir.is_dir():
        return None
    grids = [dataclasses.replace(g, store=_abs(root, store or g.store)) for g in load_grids(pdir, SECTIONS)]
    cache: dict[Any, pd.DataFrame] = {}

    def load(g: Any) -> pd.DataFrame:
        key = json.dumps(dataclasses.asdict(g), sort_keys=True, default=str)
        if key not in cache:
            cache[key] = Study(g).results() if Path(g.store).is_dir() else pd.DataFrame()
        return cache[key]

    frames = [load(g) for g in grids]
    runs = pd.concat([f for f in frames if len(f)], ignore_index=True).drop_duplicates("run_id") \
        if any(len(f) for f in frames) else pd.DataFrame(columns=["run_id", "role", "status", "student", "seed"])
    used = complete_runs(grids, load)
    cond = next((g.students[0] for g in grids if g.section in ("label_noise", "imbalance")), None)
    matrix, n_of, n_images = _stored_transfer(root, pdir, store)
    ev, sd, df = kdnb_evidence(profile, used, cond, matrix, n_of)
    return Regime(profile, grids, students(runs), used, ev, sd, df, matrix, n_images)


def _stored_transfer(root: Path, pdir: Path, store: str | None) -> tuple[pd.DataFrame | None, Any, int]:
    """The transfer matrix of the profile's transferability grid as stored, and the images each cell rests
    on: the attacked images × the fraction both models classify correctly (their accuracies' product, a
    lower estimate, as the record keeps the matrix only)."""
    from kdnb import store as store_mod
    from kdnb.study import Study

    for g in load_grids(pdir, ["transferability"]):
        g = dataclasses.replace(g, store=_abs(root, store or g.store))
        if not Path(g.store).is_dir() or not (seeds := transfer_seeds(g, g.seeds)):
            continue
        g = dataclasses.replace(g, seeds=seeds)  # the matrix of the most seeds stored
        res = Study(g).results()
        rec = json.loads(stored_transfer_path(g, res, g.students[0]).read_text())
        teacher = rec.get("teacher")
        m = rec["matrix"]
        mat = pd.DataFrame(m["data"], index=m["index"], columns=m["columns"], dtype=float)
        acc = students(res).groupby("method")["final_acc"].mean() / 100
        t_rec = store_mod.Store(g.store).read_or_none(teacher) if teacher else None
        acc["teacher"] = (t_rec or {}).get("final_acc", 100 * acc.mean()) / 100
        n = int(rec.get("n_images", 0))
        return mat, functools.partial(_images_both_correct, n, acc.to_dict()), n
    return None, None, 0


def _images_both_correct(n: int, acc: Mapping[str, float], target: str, source: str) -> float:
    return n * acc.get(target, 1.0) * acc.get(source, 1.0)


def regimes(root: Path, profile: str | None = None, store: str | None = None) -> list[Regime]:
    """The committed stores in fidelity order (``REGIMES``); a build of another profile (smoke) reads its own
    store only. ``store`` replaces the store of ``profile``."""
    names_ = list(REGIMES) if profile in (None, *REGIMES) else [profile]
    out = [load_regime(root, p, store if p == profile else None) for p in names_]
    return [r for r in out if r is not None]


# ---------------------------------------------------------------------------------------------
# The table


def _cells_text(keys: Sequence[Key]) -> str:
    """The cells a test read, grouped: ``CIFAR-10: ResNet-8, WRN-10-2; σ = 0.4`` or ``Fig. 1: 12 cells``."""
    acc = [k for k in keys if k[0] != "transfer"]
    if not acc:
        return f"Fig. 1: {len(set(keys))} cells"
    parts = []
    for ds in (C10, C100):
        ks = [k for k in acc if k[0] == ds]
        if not ks:
            continue
        archs = names(sorted({k[1] for k in ks}, key=model_order))
        conds = sorted({(k[2], -1.0 if k[3] is None else k[3]) for k in ks})
        cond = ", ".join(condition_label(n, None if g < 0 else g, "clean") for n, g in conds)
        parts.append(f"{label(ds)}: {archs}" + ("" if cond == "clean" else f"; {cond}"))
    return " · ".join(parts)


def _pairs_of(keys: Sequence[Key], teacher_of: Callable[[str], str]) -> str:
    """``ResNet-8 ← ResNet-26``; more than two pairs as a count of students per data set."""
    acc = {(k[0], k[1]) for k in keys if k[0] != "transfer"}
    if len(acc) > 2:
        return " and ".join(f"{sum(d == ds for d, _ in acc)} {label(ds)} students" for ds in (C10, C100)
                            if any(d == ds for d, _ in acc))
    archs = sorted({s for _, s in acc}, key=model_order)
    return ", ".join(f"{label(s)} ← {label(teacher_of(s))}" for s in archs)


def _paper_teacher(s: str) -> str:
    return "resnet26x4" if s.endswith("x4") else "resnet26" if s.startswith("resnet") else "wrn40_2"


def claims_table(regs: Sequence[Regime], findings: Sequence[Finding] = FINDINGS,
                 paper_ev: Evidence | None = None) -> pd.DataFrame:
    """One row per finding: id, section, claim, words, test; the paper's own evidence (paper_est, paper_lo,
    paper_hi, paper_margin, paper_leaf, paper_cells, paper_held, paper_n, paper_verdict); per regime its
    verdict (``v_<profile>``) and, from the most faithful regime that holds the cells, source, est, lo, hi,
    margin, leaf, cells, held, n, on (what it was tested on) and verdict."""
    pev = paper_ev or paper_evidence()
    rows = []
    for f in findings:
        pr = evaluate(f.tree, pev)
        row = dict(id=f.id, section=f.section, claim=f.claim, words=f.words, test=f.test,
                   transfer=leaves(f.tree)[0].blocks[0][0][0][0] == "transfer")
        row.update(_side("paper_", pr, "paper"))
        row["paper_verdict"] = verdict(pr)
        chosen = None
        for r in regs:
            res = evaluate(f.tree, r.evidence)
            row[f"v_{r.profile}"] = verdict(res)
            if chosen is None and res is not None:
                chosen = (r, res)
        if chosen is None:
            row.update(_side("", None, ""), verdict="no data", on="")
        else:
            r, res = chosen
            row.update(_side("", res, r.profile), verdict=verdict(res))
            paper_pair = _pairs_of(pr["cells"], _paper_teacher) if pr else ""
            text = r.describe(section=SECTION_OF[f.id[0]], cells=res["cells"])
            row["on"] = (f"{r.profile}: " + (f"Fig. 1 matrix, {r.n_images:,} attacked images, {text}"
                                            if row["transfer"] else
                                            f"{_pairs_of(res['cells'], r.grids[0].teacher_of)} (paper: "
                                            f"{paper_pair}); {text.split('; ', 1)[1]}"))
        rows.append(row)
    return pd.DataFrame(rows)


SECTION_OF = {"A": "generalization", "B": "label_noise", "C": "imbalance", "D": "transferability"}  # by finding id


def _side(prefix: str, res: Mapping[str, Any] | None, source: str) -> dict[str, Any]:
    if res is None:
        return {f"{prefix}{k}": v for k, v in dict(source=source, est=math.nan, lo=math.nan, hi=math.nan,
                                                     margin=math.nan, expect="", leaf="", cells="", held=0,
                                                     n=0).items()}
    lf = res["leaf"]
    return {f"{prefix}source": source, f"{prefix}est": lf["est"], f"{prefix}lo": lf["lo"], f"{prefix}hi": lf["hi"],
            f"{prefix}margin": lf["margin"], f"{prefix}expect": lf["expect"], f"{prefix}leaf": lf["label"],
            f"{prefix}cells": _cells_text(res["cells"]), f"{prefix}held": res["held"], f"{prefix}n": res["n"]}


def verdict_counts(values: Sequence[str] | pd.Series) -> dict[str, int]:
    v = list(values)
    return {k: v.count(k) for k in VERDICTS}


def evidence_text(est: float, lo: float, hi: float, margin: float, leaf: str, held: int, n: int) -> str:
    """``−1.57 [−2.00, −1.14] (ResNet-8: AT − baseline; 1 of 1 holds)``: the deciding contrast, its interval,
    the margin of a ≈ claim and how many of the contrasts read hold."""
    if pd.isna(est):
        return ""
    iv = "" if not (math.isfinite(lo) and math.isfinite(hi)) else f" [{lo:+.2f}, {hi:+.2f}]"
    m = "" if pd.isna(margin) else f", margin ±{margin:.2f}"
    est = round(est, 2) + 0.0  # no "-0.00"
    return f"{est:+.2f}{iv}{m} ({leaf}; {held} of {n} contrast{'s' if n != 1 else ''} resolved as claimed)"


# ---------------------------------------------------------------------------------------------
# The page's words: the rule, what n seeds resolve, the answer, the headline, the coverage

RULE = (
    "**The rule** (fixed in `kdnb/report/claims.py` before the runs it reads). Each finding is tested as its "
    "words say: *consistently*, *all* or *across all the models* need every cell (the lowest decides); "
    "*highest* needs the method to beat each other method in the cell (best minus runner-up decides); *amongst "
    "the top* needs it to beat all but a third of them; *occasionally* or *can be* need one cell; *majority* "
    "needs more than half; levels are tested as levels (method − baseline in the cell), trends as trends (a "
    "gain in one cell minus the gain in another). Every contrast gets a 95 % interval. **The paper's own "
    "evidence:** its means ± std over 5 seeds, as independent samples (std²/5 per mean, Welch's degrees of "
    "freedom). **kdnb's evidence:** the most faithful committed store that holds the cells (the paper's "
    "protocol, then the 60-epoch CPU-scale study, then mini), using only seeds complete in their cell (every "
    "method of the section done); the seed-to-seed variance is pooled within the store: a two-way method × "
    "seed model per cell, its residual variance pooled over the store's cells, so an interval has the pooled "
    "residual degrees of freedom, not n − 1 (it assumes one seed variance for every method and cell). "
    "**Transfer findings (Fig. 1):** the stored records keep the matrix only (the mean over seed pairs), not "
    "per-image outcomes or per-seed rates, so each cell gets a binomial interval over the images both models "
    "classify correctly (attacked images × the product of the two accuracies): it covers the choice of "
    "images, not the seed-to-seed spread, and is narrower than a full interval; the paper's Fig. 1 gives no "
    f"image count, so its cells are taken to rest on {PAPER_TRANSFER_N:,} images. **Verdict:** *agrees* when "
    "the interval excludes zero on the claimed side (for every cell an *all* needs); *disagrees* when it "
    "excludes zero on the other side; for *similar* / *comparable* (≈), *agrees* when the interval lies within "
    f"± {MARGIN_SHARE:g} × the effect at stake (the reference method's gain over the baseline in the same "
    "cells, on the same evidence: *FitNet performs like Hinton* means FitNet − Hinton stays within half of "
    "Hinton's gain), *disagrees* when it lies wholly outside; otherwise *inconclusive: too noisy*. *Not "
    "testable: no data* when the evidence has none of the cells (CIFAR-100, WRNs, σ = 0.2 or 0.6 where kdnb "
    "ran neither). A finding tested on fewer cells than the paper's names them (e.g. ResNet-8 for 8 students).")


def resolution_text(regs: Sequence[Regime]) -> str:
    """What each store's seeds can resolve: per number of complete seeds n in a cell, the smallest gain
    (method − baseline in one cell) whose interval excludes zero, t(df) × sd × √(2 / n), and the cells
    (data set, student, condition) with that n; against the paper's typical gains."""
    lines = []
    for r in regs:
        keys = ["dataset", "student", "noise", "imbalance"]
        seeds = r.used.groupby(keys, dropna=False)["seed"].nunique() if len(r.used) else pd.Series(dtype=int)
        name = STORE_NAMES.get(r.profile, r.profile)
        if not r.df:
            lines.append(f"- **{name}**: {'no complete seed yet' if seeds.empty else 'one seed, no spread'}: "
                         "nothing can be resolved.")
            continue
        q = t975(r.df)
        parts = []
        for n in sorted(set(seeds), reverse=True):
            where = ", ".join(f"{label(s)} {condition_label(noise, g)}" + ("" if ds == "cifar10" else f" ({label(ds)})")
                              for (ds, s, noise, g), k in seeds.items() if k == n)
            alone = f"; from its {n} seeds alone, {t975(n - 1) * r.sd * math.sqrt(2 / n):.2f}" if n > 1 else ""
            parts.append(f"{q * r.sd * math.sqrt(2 / n):.2f} points with {_n(n, 'seed')} ({where}{alone})")
        lines.append(f"- **{name}**: pooled seed sd {r.sd:.2f} points over {r.df} df (t = {q:.2f}); the smallest "
                     "gain one interval resolves, and the smallest margin a ≈ claim needs to agree, is "
                     + "; ".join(parts) + ".")
    lines.append("- **the paper's own tables**: 5 seeds and cell stds of 0.1–0.4 points resolve gains of "
                 "about 0.3–0.6 points; its ties within that (e.g. ONE − BSS on ResNet-8, +0.36) stay unresolved "
                 "even on its own numbers.")
    return "**What the seeds can resolve.**\n\n" + "\n".join(lines)


def memorisation_text(regs: Sequence[Regime]) -> str:
    """Whether each store's noisy-label baselines memorised the wrong labels (``analysis.noise_fit``), which the
    §IV-B findings presuppose; empty when no store holds a noisy baseline."""
    lines = []
    for r in regs:
        for f in noise_fit(r.runs).itertuples(index=False):
            if pd.isna(f.train_acc):
                continue
            lines.append(f"- **{STORE_NAMES.get(r.profile, r.profile)}**, {label(f.student)} at σ = {f.noise:g}: "
                         f"{memorisation_clause(f)}.")
    if not lines:
        return ""
    return ("**Label noise, memorised or not.** §IV-B rests on networks memorising wrong labels; a store whose "
            "baseline does not memorise them tests distillation under noise without the failure the paper's "
            "teachers guard against, so its §IV-B verdicts answer a narrower question (the label-noise page gives "
            "the numbers beside the paper's).\n\n" + "\n".join(lines))


def protocol_runs(root: Path) -> pd.DataFrame:
    """The finished runs of the paper profile's generalization grids beside Tables III/IV
    (``analysis.against_paper``): student, method, seed, acc, paper_mean, paper_std, diff, within."""

    pdir = Path(root) / "params" / "paper"
    rows = []
    for f in section_files(pdir, "generalization") if pdir.is_dir() else []:
        g = load_params_file(f)[0]
        g = dataclasses.replace(g, store=_abs(root, g.store))
        if not Path(g.store).is_dir():
            continue
        from kdnb.study import Study

        st = students(Study(g).results())
        if st.empty:
            continue
        cells = st.assign(state="done", acc=st["final_acc"])[["student", "method", "seed", "state", "acc"]]
        rows.append(against_paper(cells, g.dataset).assign(dataset=g.dataset))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["dataset", "student", "method", "seed", "acc", "paper_mean", "paper_std", "diff", "within"])


def protocol_line(prot: pd.DataFrame) -> str:
    """The paper-protocol runs as one sentence of numbers."""
    if prot.empty:
        return "No run has finished at the paper's protocol yet."
    groups = []
    for (ds, s, m), g in prot.groupby(["dataset", "student", "method"], sort=False):
        accs = " and ".join(f"{a:.2f}" for a in g.sort_values("seed")["acc"])
        within = int(g["within"].eq(True).sum())
        what = f"{label(s)} {'baseline' if m == 'baseline' else label(m)}"
        groups.append(f"{_n(len(g), what)} ({label(ds)}) {accs} vs the paper's {g['paper_mean'].iloc[0]:.2f} ± "
                      f"{g['paper_std'].iloc[0]:.2f}: {within} of {len(g)} within ±2 std")
    return "; ".join(groups)


def _n(k: int, noun: str) -> str:
    return f"{k} {noun}{'' if k == 1 else 's'}"


def _counts_text(c: Mapping[str, int], paper_side: bool = False) -> str:
    if paper_side:
        return (f"{c['agrees']} shown, {c['disagrees']} contradicted and {c['too noisy']} not resolved by its own "
                "numbers")
    return f"{c['agrees']} agree, {c['disagrees']} disagree, {c['too noisy']} too noisy, {c['no data']} no data"


def answer(table: pd.DataFrame, regs: Sequence[Regime], prot: pd.DataFrame) -> str:
    """The page's opening: three lines of numbers (markdown)."""
    by = {r.profile: r for r in regs}
    reduced = []
    for r in regs:
        if r.profile == "paper":
            continue
        c = verdict_counts(table[f"v_{r.profile}"])
        tested = len(table) - c["no data"]
        reduced.append(f"**{r.profile}** ({r.describe()}" + (f"; {_n(len(r.used), 'run')}): tests {tested} "
                                                            f"findings: {_counts_text(c)}" if tested else
                                                            "): nothing to test yet"))
    paper_c = verdict_counts(table["paper_verdict"])
    best = verdict_counts(table["verdict"])
    at_paper = protocol_line(prot)
    p = by.get("paper")
    tested_paper = (len(table) - verdict_counts(table["v_paper"])["no data"]) if p is not None else 0
    return "\n".join([
        f"1. **At the paper's protocol** (fp32, 200 epochs, all training images): {at_paper}. "
        + (f"It tests {tested_paper} findings." if tested_paper else "No distilled student has finished there, "
           "so no finding is tested at this scale."),
        "2. **At reduced scale** (not the paper's protocol, nor for §IV-B/C its WRN-16-2 ← WRN-40-2: compare "
        "gains, orderings and trends, never accuracies): " + ("; ".join(reduced) or "no store") + ".",
        f"3. **Of the paper's {len(table)} findings**, the paper's tables themselves: {_counts_text(paper_c, True)}; "
        f"kdnb, each read from its most faithful store: {_counts_text(best)}."])


def headline(root: Path) -> str:
    """One short line of numbers for the banner of every page: the paper-protocol runs against the paper,
    the findings on the paper's own numbers, and kdnb's verdicts from its best evidence."""
    regs = regimes(Path(root))
    table = claims_table(regs)
    prot = protocol_runs(Path(root))
    c, p = verdict_counts(table["verdict"]), verdict_counts(table["paper_verdict"])
    at = protocol_line(prot) if len(prot) else "no paper-protocol run yet"
    return (f"Paper protocol: {at}. {len(table)} findings: the paper's own tables show {p['agrees']}; kdnb "
            f"(best store for each): {c['agrees']} agree, {c['disagrees']} disagree, {c['too noisy']} too noisy, "
            f"{c['no data']} not testable (<a href=\"summary.html\">Does it reproduce?</a>).")


def coverage(regs: Sequence[Regime], table: pd.DataFrame) -> pd.DataFrame:
    """Each experiment of the paper beside what each store holds of it and where its findings are read."""
    sections = {"Table III: CIFAR-10": ("A1", "A-0", "A3"), "Table IV: CIFAR-100": ("A2",),
                "Table V: label noise": ("B",), "Table VI: class imbalance": ("C",),
                "Fig. 1: transferability": ("D",)}
    rows = []
    for exp, prefixes in sections.items():
        row = {"experiment": exp, "the paper": SCOPE[exp]}
        for r in regs:
            row[r.profile] = _held(r, exp)
        ids = table[table["id"].str.startswith(prefixes)]
        src = ids.loc[ids["verdict"] != "no data", "source"].value_counts()
        row["findings read from"] = (", ".join(f"{s} ({k})" for s, k in src.items()) if len(src) else "none") + \
            f" of {len(ids)}"
        rows.append(row)
    return pd.DataFrame(rows)


SCOPE = {
    "Table III: CIFAR-10": "8 students × 12 methods, 5 seeds, 200 epochs",
    "Table IV: CIFAR-100": "8 students × 12 methods, 5 seeds, 200 epochs",
    "Table V: label noise": "WRN-16-2 ← WRN-40-2, σ ∈ {0.2, 0.4, 0.6} × 12 methods, 5 seeds",
    "Table VI: class imbalance": "WRN-16-2 ← WRN-40-2, γ ∈ {0.2, 0.6, 1, 2} × 12 methods, 5 seeds",
    "Fig. 1: transferability": "PGD (ε = 0.031, 20 steps) between 10 methods and the teacher",
}


def _held(r: Regime, exp: str) -> str:
    if exp.startswith("Fig. 1"):
        return f"a matrix, {r.n_images:,} attacked images" if r.matrix is not None else "none"
    st = r.runs
    if st.empty:
        return "no finished run"
    imb = ~st["imbalance"].map(balanced)
    part = {"Table III: CIFAR-10": (st["dataset"] == C10) & (st["noise"] == 0) & ~imb,
            "Table IV: CIFAR-100": st["dataset"] == C100, "Table V: label noise": st["noise"] > 0,
            "Table VI: class imbalance": imb}[exp]
    p = st[part]
    if p.empty:
        return "no finished run"
    used = r.used[r.used["run_id"].isin(set(p["run_id"]))]
    return (f"{names(sorted(set(p['student']), key=model_order))}; {_n(len(p), 'finished run')}, "
            f"{_n(p['method'].nunique(), 'method')}; {_n(used['seed'].nunique(), 'complete seed')}")
