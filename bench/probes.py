"""Benchmark: the linear and the prototype probe side by side on real birdsong.

    .venv/bin/python -m bench.probes [--placements 8] [--seeds 5]

The corpus of tests/probe_corpus.py, larger: every great tit song placed ``placements``
times into real ambience among other species' calls, embedded with BirdNET V2.4. Probes
train on one bird's windows (all of them, or a random share, as after a few pages of
labeling) and are scored on the other bird's. Prints held-out ROC-AUC, average
precision and training seconds (the linear probe's include choosing C by grouped
cross-validation, as training.py does), beside the reference: query by one example,
the cosine ranking from each training song in turn (mean and best).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
from threadpoolctl import threadpool_limits

from annotations.probes import (
    choose_regularization,
    fit_linear_probe,
    fit_prototype_probe,
    held_out_quality,
    linear_scores,
    prototype_scores,
    unit_rows,
)
from perch_agile.embedded import VAR_DIR
from tests.probe_corpus import embed, load_sources, make_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--placements", type=int, default=8, help="times each song is placed")
    parser.add_argument("--seeds", type=int, default=5, help="random label shares per fraction")
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.25, 0.1])
    args = parser.parse_args()
    corpus = make_corpus(load_sources(VAR_DIR / "cache"), placements=args.placements)
    started = time.perf_counter()
    x = embed(corpus)
    train_side, test, y = ~corpus.held_out, corpus.held_out, corpus.song
    print(
        f"{len(y)} windows ({int(y.sum())} with song), embedded in {time.perf_counter() - started:.0f} s; "
        f"training bird: {int((train_side & y).sum())} song windows of {int(train_side.sum())}, "
        f"held-out bird: {int((test & y).sum())} of {int(test.sum())}"
    )
    print(f"{'labels':>14s} {'probe':>22s} {'ROC-AUC':>8s} {'AP':>6s} {'train s':>8s}")
    # One thread, as train() fits probes.
    with threadpool_limits(limits=1):
        for fraction in args.fractions:
            seeds = range(1 if fraction == 1 else args.seeds)
            rows: dict[str, list[tuple[float, float, float]]] = {}
            for seed in seeds:
                train = train_side & (np.random.default_rng(seed).random(len(y)) < fraction)
                for name, quality, seconds in measure(x, y, train, test, corpus.recording):
                    rows.setdefault(name, []).append((quality.roc_auc, quality.average_precision, seconds))
            for name, values in rows.items():
                auc, ap, seconds = np.mean(values, axis=0)
                labels = f"{fraction:.0%} ({int(train_side.sum() * fraction)})"
                print(f"{labels:>14s} {name:>22s} {auc:8.3f} {ap:6.3f} {seconds:8.3f}")
            linear_auc = np.array([v[0] for v in rows["linear"]])
            prototype_auc = np.array([v[0] for v in rows["prototype"]])
            print(f"{'':>14s} prototype / linear ROC-AUC: worst split {np.min(prototype_auc / linear_auc):.3f}")


def measure(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, groups: np.ndarray):
    """(name, held-out quality, training seconds) of each probe and of the one-example rankings."""
    started = time.perf_counter()
    c = choose_regularization(x[train], y[train], groups[train])
    linear = fit_linear_probe(x[train], y[train], c)
    linear_s = time.perf_counter() - started
    linear_test = linear_scores(x[test], linear.weights[:, None], linear.bias[None])[:, 0]
    yield "linear", held_out_quality(y[test], linear_test), linear_s
    started = time.perf_counter()
    prototype = fit_prototype_probe(x[train], y[train])
    prototype_s = time.perf_counter() - started
    yield "prototype", held_out_quality(y[test], prototype_scores(x[test], prototype)), prototype_s
    one = [held_out_quality(y[test], unit_rows(x[test]) @ unit_rows(x[i])) for i in np.nonzero(train & y)[0]]
    auc, ap = np.mean([(q.roc_auc, q.average_precision) for q in one], axis=0)
    yield "one example (mean)", dataclasses.replace(one[0], roc_auc=float(auc), average_precision=float(ap)), 0.0
    yield "one example (best)", max(one, key=lambda q: q.roc_auc), 0.0


if __name__ == "__main__":
    main()
