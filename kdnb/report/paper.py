"""The numbers reported in the paper, as data.

Source: F. Sarfraz, E. Arani, B. Zonooz, "Knowledge Distillation Beyond Model Compression",
ICPR 2020 (arXiv:2007.01922). Transcribed from the paper's text:

- Table II (teachers), Tables III and IV (CIFAR-10 / CIFAR-100 generalization), Table V (label
  noise) and Table VI (class imbalance): every cell, mean and standard deviation over 5 seeds.
  Table II gives one number per teacher (the best of its seeds), without a standard deviation.
- Fig. 1 (transfer of PGD examples): the figure is a matrix with its values printed in the cells;
  all 10 x 10 cells, the mean row and column and the Teacher column are transcribed. ONE and DML
  are not part of Fig. 1.
- Bold cells are kept as the paper marks them (`BOLD`, and the ``bold`` column). In Tables III and
  IV bold is the best value of a column. In Tables V and VI the paper also colours the results
  below the baseline blue; that colour is rendered as bold in the text we transcribed from, so
  there ``bold`` means "best, or below the baseline".

Names follow kdnb's registries: methods ``baseline, hinton, bss, fitnet, fsp, at, sp, rkd_d,
rkd_a, rkd_da, one, dml``; models ``resnet8`` ... ``wrn40_2``. On CIFAR-100 the paper's ResNets are
kdnb's width-4 ResNets (``resnet8x4`` ...), see book/protocol.md § Models; the paper labels them ResNet-8
etc. In ``teachers``, ``noise`` is the label-noise rate sigma (0 for clean labels) and
``imbalance`` the power-law exponent gamma (NaN for the balanced data set).
"""

from __future__ import annotations

import math

import pandas as pd

SEEDS = 5  # seeds behind every mean and std of Tables III-VI

METHODS = ("baseline", "hinton", "bss", "fitnet", "fsp", "at", "sp", "rkd_d", "rkd_a", "rkd_da", "one", "dml")
METHOD_LABELS = {
    "baseline": "Baseline", "hinton": "Hinton", "bss": "BSS", "fitnet": "FitNet", "fsp": "FSP", "at": "AT",
    "sp": "SP", "rkd_d": "RKD-D", "rkd_a": "RKD-A", "rkd_da": "RKD-DA", "one": "ONE", "dml": "DML",
}
STUDENTS = ("resnet8", "resnet14", "resnet20", "resnet26", "wrn10_2", "wrn16_2", "wrn28_2", "wrn40_2")
STUDENTS_C100 = ("resnet8x4", "resnet14x4", "resnet20x4", "resnet26x4", *STUDENTS[4:])
MODEL_LABELS = {
    "resnet8": "ResNet-8", "resnet14": "ResNet-14", "resnet20": "ResNet-20", "resnet26": "ResNet-26",
    "resnet8x4": "ResNet-8x4", "resnet14x4": "ResNet-14x4", "resnet20x4": "ResNet-20x4",
    "resnet26x4": "ResNet-26x4",
    "wrn10_2": "WRN-10-2", "wrn16_2": "WRN-16-2", "wrn28_2": "WRN-28-2", "wrn40_2": "WRN-40-2",
}
# every name used in this module's frames, for relabelling tables and figures
LABELS = {**METHOD_LABELS, **MODEL_LABELS, "teacher": "Teacher", "mean": "mean",
          "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}

# Table II: (dataset, teacher, noise sigma, imbalance gamma, accuracy %)
TABLE2 = (
    ("cifar10", "resnet26", 0.0, None, 93.83),
    ("cifar10", "wrn40_2", 0.0, None, 95.11),
    ("cifar100", "resnet26x4", 0.0, None, 79.22),
    ("cifar100", "wrn40_2", 0.0, None, 76.06),
    ("cifar10", "wrn40_2", 0.2, None, 82.66),
    ("cifar10", "wrn40_2", 0.4, None, 66.34),
    ("cifar10", "wrn40_2", 0.6, None, 45.97),
    ("cifar10", "wrn40_2", 0.0, 0.2, 78.87),
    ("cifar10", "wrn40_2", 0.0, 0.6, 80.23),
    ("cifar10", "wrn40_2", 0.0, 1.0, 81.13),
    ("cifar10", "wrn40_2", 0.0, 2.0, 84.40),
)

# Table III, CIFAR-10: method -> (mean, std) per student, in the order of STUDENTS
TABLE3 = {
    "baseline": ((87.64, 0.25), (91.44, 0.15), (92.64, 0.18), (93.32, 0.37),
                 (90.62, 0.15), (93.95, 0.18), (94.82, 0.10), (95.01, 0.11)),
    "hinton": ((88.80, 0.16), (92.50, 0.19), (93.25, 0.18), (93.58, 0.10),
               (91.72, 0.12), (94.28, 0.09), (94.97, 0.10), (95.12, 0.10)),
    "bss": ((89.18, 0.43), (91.99, 0.20), (92.92, 0.18), (93.52, 0.08),
            (92.32, 0.21), (94.27, 0.18), (94.72, 0.15), (94.96, 0.20)),
    "fitnet": ((88.89, 0.21), (92.50, 0.10), (93.27, 0.15), (93.58, 0.10),
               (91.65, 0.08), (94.34, 0.11), (94.94, 0.14), (95.10, 0.14)),
    "fsp": ((88.77, 0.41), (92.18, 0.19), (93.29, 0.30), (93.73, 0.16),
            (91.70, 0.26), (94.31, 0.08), (95.06, 0.19), (95.15, 0.19)),
    "at": ((86.07, 0.32), (91.66, 0.16), (92.96, 0.09), (93.32, 0.14),
           (90.99, 0.21), (94.50, 0.18), (95.32, 0.20), (95.39, 0.15)),
    "sp": ((86.62, 0.26), (92.34, 0.19), (93.28, 0.07), (93.70, 0.23),
           (91.27, 0.26), (94.64, 0.17), (95.25, 0.14), (95.35, 0.11)),
    "rkd_d": ((87.48, 0.21), (91.87, 0.19), (92.94, 0.30), (93.56, 0.16),
              (90.99, 0.17), (94.42, 0.15), (95.09, 0.08), (95.31, 0.13)),
    "rkd_a": ((87.32, 0.24), (92.01, 0.14), (93.30, 0.12), (93.67, 0.13),
              (90.98, 0.31), (94.62, 0.14), (95.23, 0.13), (95.36, 0.27)),
    "rkd_da": ((87.14, 0.19), (92.05, 0.20), (93.05, 0.20), (93.73, 0.09),
               (90.92, 0.16), (94.52, 0.11), (95.19, 0.12), (95.41, 0.07)),
    "one": ((89.54, 0.17), (92.30, 0.23), (93.27, 0.16), (93.80, 0.13),
            (87.75, 1.92), (92.80, 0.08), (94.70, 0.18), (95.11, 0.09)),
    "dml": ((87.94, 0.15), (92.20, 0.18), (93.14, 0.06), (93.45, 0.10),
            (91.60, 0.28), (94.38, 0.15), (95.17, 0.10), (95.33, 0.09)),
}

# Table IV, CIFAR-100: method -> (mean, std) per student, in the order of STUDENTS_C100
TABLE4 = {
    "baseline": ((71.78, 0.26), (76.95, 0.43), (77.92, 0.40), (78.82, 0.24),
                 (67.99, 0.55), (72.35, 0.36), (74.93, 0.39), (75.94, 0.12)),
    "hinton": ((72.78, 0.36), (78.18, 0.14), (79.58, 0.22), (79.73, 0.30),
               (67.70, 0.54), (74.12, 0.37), (76.08, 0.36), (77.07, 0.13)),
    "bss": ((73.02, 0.07), (76.96, 0.19), (78.37, 0.27), (78.66, 0.23),
            (69.55, 0.38), (73.04, 0.21), (75.59, 0.24), (76.55, 0.16)),
    "fitnet": ((72.86, 0.28), (78.48, 0.30), (79.55, 0.18), (79.83, 0.34),
               (67.83, 0.47), (72.82, 2.40), (76.31, 0.09), (77.25, 0.15)),
    "fsp": ((72.93, 0.24), (78.34, 0.45), (79.65, 0.18), (79.62, 0.18),
            (67.64, 0.19), (73.86, 0.27), (76.21, 0.14), (77.09, 0.27)),
    "at": ((71.99, 0.08), (76.88, 0.20), (78.35, 0.10), (78.94, 0.34),
           (67.45, 0.27), (72.78, 0.32), (75.51, 0.13), (76.60, 0.13)),
    "sp": ((73.18, 0.24), (78.53, 0.29), (79.76, 0.27), (79.93, 0.29),
           (66.77, 0.27), (73.42, 0.37), (76.52, 0.35), (77.43, 0.14)),
    "rkd_d": ((71.99, 0.23), (77.02, 0.21), (78.23, 0.26), (78.80, 0.28),
              (68.14, 0.34), (72.52, 0.30), (75.48, 0.33), (76.34, 0.29)),
    "rkd_a": ((71.95, 0.33), (76.93, 0.35), (78.51, 0.25), (79.10, 0.18),
              (68.10, 0.31), (72.87, 0.23), (75.50, 0.41), (76.97, 0.17)),
    "rkd_da": ((71.70, 0.19), (77.14, 0.40), (78.64, 0.21), (79.16, 0.11),
               (67.94, 0.37), (72.88, 0.23), (75.73, 0.32), (76.91, 0.22)),
    "one": ((73.30, 0.12), (78.04, 0.07), (79.24, 0.18), (79.74, 0.27),
            (57.38, 2.11), (69.78, 0.94), (74.49, 0.54), (76.89, 0.27)),
    "dml": ((73.57, 0.09), (78.07, 0.20), (79.15, 0.22), (79.32, 0.38),
            (68.99, 0.23), (74.44, 0.25), (76.65, 0.17), (77.65, 0.19)),
}

# Table V, CIFAR-10, WRN-16-2 <- WRN-40-2: method -> (mean, std) per noise rate in NOISE_RATES
NOISE_RATES = (0.0, 0.2, 0.4, 0.6)
TABLE5 = {
    "baseline": ((93.95, 0.18), (79.44, 0.29), (64.47, 1.06), (47.84, 1.81)),
    "hinton": ((94.28, 0.09), (87.23, 0.26), (76.32, 0.87), (58.18, 0.35)),
    "bss": ((94.27, 0.18), (80.28, 0.33), (71.46, 0.20), (47.69, 0.37)),
    "fitnet": ((94.34, 0.11), (87.01, 0.27), (76.73, 0.52), (58.12, 1.00)),
    "fsp": ((94.31, 0.08), (87.14, 0.38), (76.47, 0.24), (58.07, 0.55)),
    "at": ((94.50, 0.18), (79.59, 0.47), (64.46, 0.88), (46.44, 0.78)),
    "sp": ((94.64, 0.17), (83.77, 0.61), (70.32, 0.76), (49.46, 0.57)),
    "rkd_d": ((94.42, 0.15), (79.94, 0.59), (64.05, 0.47), (48.37, 1.62)),
    "rkd_a": ((94.62, 0.14), (80.26, 0.33), (64.61, 1.04), (47.94, 1.14)),
    "rkd_da": ((94.52, 0.11), (80.45, 0.58), (65.10, 1.08), (48.90, 0.52)),
    "one": ((92.80, 0.08), (83.76, 0.40), (68.64, 0.53), (40.49, 1.12)),
    "dml": ((94.38, 0.15), (85.63, 0.33), (76.33, 0.32), (59.89, 1.66)),
}

# Table VI, CIFAR-10, WRN-16-2 <- WRN-40-2: method -> (mean, std) per gamma in IMBALANCE_RATES
IMBALANCE_RATES = (0.2, 0.6, 1.0, 2.0)
TABLE6 = {
    "baseline": ((78.05, 0.58), (78.83, 0.41), (80.09, 0.38), (83.33, 0.24)),
    "hinton": ((79.15, 0.28), (80.08, 0.25), (81.18, 0.51), (83.69, 0.69)),
    "bss": ((78.07, 0.20), (79.22, 0.53), (80.44, 0.24), (82.15, 0.22)),
    "fitnet": ((79.14, 0.28), (80.07, 0.37), (81.15, 0.32), (83.55, 0.32)),
    "fsp": ((79.26, 0.43), (80.03, 0.50), (81.12, 0.43), (83.60, 0.25)),
    "at": ((79.13, 0.40), (80.51, 0.23), (80.96, 0.18), (84.13, 0.32)),
    "sp": ((78.21, 0.73), (79.44, 0.29), (80.33, 0.50), (83.08, 0.29)),
    "rkd_d": ((79.12, 0.26), (80.57, 0.45), (81.48, 0.57), (84.13, 0.42)),
    "rkd_a": ((79.52, 0.51), (80.54, 0.17), (81.52, 0.36), (84.33, 0.42)),
    "rkd_da": ((79.43, 0.41), (80.63, 0.20), (81.50, 0.37), (84.02, 0.21)),
    "one": ((77.48, 1.05), (78.04, 0.86), (79.48, 0.39), (80.88, 1.05)),
    "dml": ((78.99, 0.33), (80.34, 0.66), (81.33, 0.31), (84.06, 0.42)),
}

# cells printed in bold: (method, column), the column being a student, a noise rate or a gamma
BOLD = {
    "III": {("one", "resnet8"), ("hinton", "resnet14"), ("fitnet", "resnet14"), ("rkd_a", "resnet20"),
            ("one", "resnet26"), ("bss", "wrn10_2"), ("sp", "wrn16_2"), ("at", "wrn28_2"),
            ("rkd_da", "wrn40_2")},
    "IV": {("dml", "resnet8x4"), ("sp", "resnet14x4"), ("sp", "resnet20x4"), ("sp", "resnet26x4"),
           ("bss", "wrn10_2"), ("dml", "wrn16_2"), ("dml", "wrn28_2"), ("dml", "wrn40_2")},
    "V": {("sp", 0.0), ("one", 0.0), ("hinton", 0.2), ("fitnet", 0.4), ("at", 0.4), ("rkd_d", 0.4),
          ("bss", 0.6), ("at", 0.6), ("one", 0.6), ("dml", 0.6)},
    "VI": {("rkd_a", 0.2), ("one", 0.2), ("rkd_da", 0.6), ("one", 0.6), ("rkd_a", 1.0), ("one", 1.0),
           ("bss", 2.0), ("sp", 2.0), ("rkd_a", 2.0), ("one", 2.0)},
}

# Fig. 1: success rate (%) of PGD examples crafted on the source (columns) against the target (rows);
# columns TRANSFER_COLUMNS, rows TRANSFER_ROWS. The paper does not say which data set, student
# architecture or seeds the figure uses, nor whether the diagonal is white-box; kdnb's study chooses.
TRANSFER_SOURCES = METHODS[:10]
TRANSFER_COLUMNS = (*TRANSFER_SOURCES, "mean", "teacher")
TRANSFER_ROWS = (*TRANSFER_SOURCES, "mean")
FIG1 = {
    "baseline": (96.65, 67.17, 75.90, 65.73, 66.84, 95.84, 75.78, 94.12, 93.04, 90.41, 82.15, 76.51),
    "hinton": (92.51, 63.85, 68.33, 62.50, 63.16, 93.89, 73.90, 90.47, 89.38, 86.83, 78.48, 71.59),
    "bss": (95.36, 70.67, 81.99, 69.34, 70.79, 96.89, 79.72, 93.63, 92.85, 91.20, 84.25, 84.60),
    "fitnet": (91.88, 62.86, 67.17, 60.68, 62.56, 93.24, 72.73, 89.94, 88.82, 86.41, 77.63, 69.93),
    "fsp": (92.54, 63.68, 68.18, 62.32, 63.21, 93.78, 73.58, 90.21, 89.53, 86.94, 78.40, 71.09),
    "at": (95.58, 68.69, 78.67, 66.72, 67.94, 99.16, 82.36, 94.22, 93.51, 92.23, 83.91, 91.78),
    "sp": (92.54, 63.40, 70.57, 61.63, 62.60, 96.04, 79.24, 90.88, 90.52, 88.73, 79.61, 78.21),
    "rkd_d": (95.76, 66.01, 74.23, 64.57, 65.89, 95.87, 76.59, 94.08, 93.44, 91.04, 81.75, 75.69),
    "rkd_a": (94.95, 65.39, 73.45, 63.60, 65.02, 96.04, 76.94, 93.63, 93.07, 91.05, 81.31, 75.87),
    "rkd_da": (94.57, 65.52, 72.58, 63.84, 64.75, 96.03, 77.69, 93.55, 92.72, 90.78, 81.20, 75.91),
    "mean": (94.23, 65.72, 73.11, 64.09, 65.28, 95.68, 76.85, 92.47, 91.69, 89.56, 80.87, 77.12),
}

_DATASETS = {"cifar10": ("III", TABLE3, STUDENTS), "cifar100": ("IV", TABLE4, STUDENTS_C100)}
_ALIASES = {"cifar10": "cifar10", "cifar-10": "cifar10", "c10": "cifar10",
            "cifar100": "cifar100", "cifar-100": "cifar100", "c100": "cifar100"}


def _dataset(name: str) -> str:
    key = _ALIASES.get(str(name).lower().replace("_", "-"))
    if key is None:
        raise ValueError(f"unknown dataset {name!r}; known: cifar10, cifar100")
    return key


def _long(table: dict, columns: tuple, key: str, bold: set, **fixed) -> pd.DataFrame:
    rows = [{**fixed, key: col, "method": m, "mean": mean, "std": std, "bold": (m, col) in bold}
            for m in METHODS for col, (mean, std) in zip(columns, table[m], strict=True)]
    return pd.DataFrame(rows)


def teachers() -> pd.DataFrame:
    """Table II: one row per teacher; columns experiment, dataset, teacher, noise, imbalance, acc."""
    rows = [{"experiment": "label_noise" if noise else "imbalance" if gamma is not None else "generalization",
             "dataset": ds, "teacher": t, "noise": noise,
             "imbalance": math.nan if gamma is None else gamma, "acc": acc}
            for ds, t, noise, gamma, acc in TABLE2]
    return pd.DataFrame(rows)


def generalization(dataset: str = "cifar10") -> pd.DataFrame:
    """Table III (``cifar10``) or IV (``cifar100``): columns dataset, student, method, mean, std, bold."""
    ds = _dataset(dataset)
    table_id, table, students = _DATASETS[ds]
    df = _long(table, students, "student", BOLD[table_id], dataset=ds)
    return df[["dataset", "student", "method", "mean", "std", "bold"]]


def label_noise() -> pd.DataFrame:
    """Table V (WRN-16-2 <- WRN-40-2, CIFAR-10).

    Columns dataset, student, noise, method, mean, std, bold.
    """
    return _long(TABLE5, NOISE_RATES, "noise", BOLD["V"], dataset="cifar10", student="wrn16_2")


def imbalance() -> pd.DataFrame:
    """Table VI (WRN-16-2 <- WRN-40-2, CIFAR-10).

    Columns dataset, student, imbalance, method, mean, std, bold.
    """
    return _long(TABLE6, IMBALANCE_RATES, "imbalance", BOLD["VI"], dataset="cifar10", student="wrn16_2")


def transfer() -> pd.DataFrame:
    """Fig. 1 as a matrix: index = target (+ ``mean``), columns = source + ``mean`` + ``teacher``.

    ``mean`` column: mean over the 10 sources (Teacher excluded); ``mean`` row: mean over the 10 targets.
    """
    return pd.DataFrame([FIG1[r] for r in TRANSFER_ROWS], index=pd.Index(TRANSFER_ROWS, name="target"),
                        columns=pd.Index(TRANSFER_COLUMNS, name="source"))


def table(name: str) -> pd.DataFrame:
    """A table by the paper's number: ``"II"`` ... ``"VI"`` or ``"fig1"``."""
    funcs = {"II": teachers, "III": lambda: generalization("cifar10"),
             "IV": lambda: generalization("cifar100"), "V": label_noise, "VI": imbalance, "FIG1": transfer}
    key = str(name).upper().removeprefix("TABLE").strip()
    if key not in funcs:
        raise ValueError(f"unknown table {name!r}; known: II, III, IV, V, VI, fig1")
    return funcs[key]()


# §IV's findings, sentence by sentence as the paper words them (math typeset as text: "γ = 2"), keyed by the
# id under which kdnb.report.claims tests each one; a sentence that makes two claims appears under two ids,
# each with the part it tests.
FINDINGS = {
    # §IV-A, opening
    "A-0": ("IV-A", "For the majority of the methods, we see generalization gain over the baseline."),
    # §IV-A1, CIFAR-10 (Table III)
    "A1-H": ("IV-A1", "Hinton consistently improves the performance of the student over the baseline and proves "
                      "effective across varying degrees of capacity gaps."),
    "A1-BSS-low": ("IV-A1", "BSS is effective for lower capacity students"),
    "A1-BSS-hi": ("IV-A1", "providing the highest generalization for WRN-10-2"),
    "A1-BSS-cap": ("IV-A1", "but it adversely affects the performance as the capacity of the model increases."),
    "A1-FF-sim": ("IV-A1", "FitNet and FSP provide similar performance to Hinton"),
    "A1-FF-gain": ("IV-A1", "Both of these methods improve the generalization over the baseline consistently"),
    "A1-FF-occ": ("IV-A1", "however occasionally failing to outperform the Hinton method."),
    "A1-AT-H": ("IV-A1", "AT, fails to improve over Hinton for the ResNet models"),
    "A1-AT8": ("IV-A1", "even decreasing the performance over the baseline for ResNet-8."),
    "A1-AT-W": ("IV-A1", "For higher capacity WRN models, however, AT proves to be much more effective"),
    "A1-AT-top": ("IV-A1", "and is amongst top-performing techniques for WRN-16-2 and WRN-28-2."),
    "A1-REL-top": ("IV-A1", "Relational knowledge distillation methods also show promising results, with SP and "
                            "RKD-A amongst the top performing models for ResNet-20, WRN-16-2 and higher capacity "
                            "variants."),
    "A1-RKDDA": ("IV-A1", "RKD-DA provides the highest generalization for WRN-40-2 and close to the highest value "
                          "for ResNet-26."),
    "A1-REL-gap": ("IV-A1", "However, the effectiveness of these methods drops substantially as the capacity gap "
                            "between the teacher and student increases"),
    "A1-R8": ("IV-A1", "for ResNet-8, all the relational distillation methods decrease the performance over the "
                       "baseline."),
    "A1-ON": ("IV-A1", "Lastly, online distillation demonstrates comparable effectiveness in improving the "
                       "performance of the baseline model to their traditional counterparts which uses a static "
                       "teacher model for supervision."),
    "A1-ONE-R": ("IV-A1", "ONE consistently improves the generalization of the baseline for ResNet models"),
    "A1-ONE-hi": ("IV-A1", "and provides the highest performance for ResNet-8 and ResNet-26."),
    "A1-ONE-W": ("IV-A1", "However, for WRN, it only manages to improve the performance for the higher capacity "
                          "WRN-40-2 model."),
    "A1-DML": ("IV-A1", "DML consistently provides generalization gains over baseline across all the models."),
    # §IV-A2, CIFAR-100 (Table IV)
    "A2-RESP": ("IV-A2", "Response distillation methods are among the most efficient methods across the different "
                         "models."),
    "A2-H": ("IV-A2", "Hinton improves the generalization for all the models except WRN-10-2."),
    "A2-BSS": ("IV-A2", "BSS again proves to be effective on lower capacity models, providing the highest "
                        "generalization for WRN-10-2."),
    "A2-FF": ("IV-A2", "Similar to CIFAR-10, FitNet and FSP provide similar performance to Hinton"),
    "A2-AT": ("IV-A2", "and AT is detrimental for lower capacity models."),
    "A2-REL": ("IV-A2", "Relational knowledge distillation methods exhibit similar behavior as for CIFAR-10, proving "
                        "more effective when the capacity gap is less."),
    "A2-SP": ("IV-A2", "SP provides the highest generalization for ResNet-14 and higher capacity ResNet models."),
    "A2-ONE": ("IV-A2", "Online distillation methods also exhibit similar behavior, with ONE proving to be "
                        "effective on ResNet but failing to improve the performance on WRN except for WRN-40-2."),
    "A2-DML": ("IV-A2", "DML, on the other hand, is particularly effective on WRN, providing the highest "
                        "generalization gains on WRN-16-2 and higher capacity WRN models."),
    # §IV-A3, key insights 1-6
    "A3-1": ("IV-A3", "KD framework is an effective technique which consistently provides generalization gains."),
    "A3-1b": ("IV-A3", "The methods are generally effective and versatile enough to cater to different datasets "
                       "and network architectures even for the higher capacity gap between the student and "
                       "teacher."),
    "A3-1c": ("IV-A3", "KD is not only effective for model compression but also improves the performance of the "
                       "model when the student and the teacher have the same network architecture."),
    "A3-2": ("IV-A3", "The original Hinton method, while simple, is quite effective and versatile, providing "
                      "comparable performance gains to the recently proposed distillation methods."),
    "A3-3a": ("IV-A3", "RKD-A measures the angle formed between triplets of data points and provides similar "
                       "performance to SP."),
    "A3-3b": ("IV-A3", "The results suggest that angular information can capture higher-level structure which aids "
                       "in a performance gain."),
    "A3-4a": ("IV-A3", "Considering AT as a better representative for representation space distillation, the "
                       "constraints put by these methods on the learned representation can be detrimental to the "
                       "performance of the student when the capacity gap is high."),
    "A3-4b": ("IV-A3", "Generally, we observe that the methods which provide more flexibility to the student in "
                       "learning e.g. response distillation and relational KD methods are more versatile and can "
                       "provide higher performance gains."),
    "A3-5": ("IV-A3", "The occasional performance gains with FSP and FitNet over Hinton, highlights the importance "
                      "of better model initialization."),
    "A3-6": ("IV-A3", "This highlights the effectiveness of collaborative learning in improving the generalization "
                      "of the models."),
    # §IV-B, label noise (Table V)
    "B-maj": ("IV-B", "Table V shows that majority of the KD methods improve the generalization of the student "
                      "trained under varying degrees of label corruption over the baseline."),
    "B-H": ("IV-B", "Hinton proves to be an effective method for learning under label noise and provides "
                    "substantial gains in performance."),
    "B-H-hi": ("IV-B", "For a lower noise level (0.2), it provides the highest generalization."),
    "B-FF": ("IV-B", "As observed in section IV-A, FitNet and FSP show similar behavior to Hinton."),
    "B-ONE-lo": ("IV-B", "Amongst the online distillation methods, ONE improves the generalization over the "
                         "baseline for lower noise levels"),
    "B-ONE-hi": ("IV-B", "but significantly harms the performance for higher noise level (0.6)."),
    "B-DML": ("IV-B", "DML is amongst the more effective methods"),
    "B-DML-H": ("IV-B", "and provides performance comparable to Hinton."),
    "B-soft": ("IV-B", "The performance of these methods demonstrate the effectiveness of soft-targets in providing "
                       "useful information about the data points with corrupted labels and mitigating the adverse "
                       "effect of noisy labels."),
    "B-SP": ("IV-B", "Among the relational knowledge distillation methods, SP interestingly performs markedly "
                     "better for lower noise levels"),
    "B-KD": ("IV-B", "The results show that the efficacy of KD extends beyond model compression and offers a "
                     "general-purpose learning framework which is more robust to noisy labels prevalent in "
                     "real-world datasets than standard training."),
    # §IV-C, class imbalance (Table VI)
    "C-all": ("IV-C", "Table VI shows that apart from ONE and BSS (γ = 2), all the other KD methods improve the "
                      "generalization performance of the baseline model."),
    "C-exc": ("IV-C", "apart from ONE and BSS (γ = 2)"),
    "C-RKD": ("IV-C", "In particular, RKD-A and RKD-DA provide the highest generalization across all the γ values"),
    "C-HD": ("IV-C", "followed by Hinton and DML."),
    "C-KD": ("IV-C", "The empirical results show KD methods offer a more effective approach for training models on "
                     "imbalanced datasets."),
    # §IV-D, transferability (Fig. 1)
    "D-1": ("IV-D", "AT achieves significantly higher transferability compared to other KD methods"),
    "D-2": ("IV-D", "AT is followed by BSS which explicitly attempts to match the decision boundary of the teacher "
                    "and therefore has much higher transferability compared to Hinton."),
    "D-3": ("IV-D", "Relational Knowledge Distillation methods provide higher transferability than Hinton, FSP and "
                    "FitNet"),
    "D-3b": ("IV-D", "even though they do not explicitly mimic the representation space or the decision boundary "
                     "which suggest that maintaining the relations between data points implicitly causes the "
                     "internal representation to be similar."),
    "D-4": ("IV-D", "The comparatively lower values for Hinton and related methods (FitNet and FSP) might be "
                    "explained by the effect of the Hinton method in improving the robustness of the model"),
    "D-5": ("IV-D", "The adversarial examples generated with AT, on average, provide the highest transferability to "
                    "the other methods."),
    "D-6": ("IV-D", "Relational knowledge distillation methods achieve higher transferability whereas the methods "
                    "which include the Hinton loss (response distillation methods, FitNet, and FSP) provide "
                    "significantly lower transferability."),
    "D-7": ("IV-D", "On the other hand, these methods show more robustness to black-box attacks generated by the "
                    "other methods."),
}
