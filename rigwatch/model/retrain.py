"""Training data for challengers that are bad on purpose.

A champion/challenger comparison has to reject a challenger that learnt nothing;
:func:`shuffled_labels` makes the data for one. Data for a good challenger,
retrained after a sensor change, comes from :func:`loadgen.scenarios.recalibrated`.
"""

from __future__ import annotations

import numpy as np

from rigwatch.data.columns import Dataset

__all__ = ["shuffled_labels"]


def shuffled_labels(dataset: Dataset, seed: int) -> Dataset:
    """*dataset* with every cycle given the condition labels of another, seeded random cycle.

    The sensors stay as they are and whole label rows move together, so the class
    counts (and :func:`~rigwatch.model.train`'s stratified split) are unchanged,
    but the labels no longer depend on the sensors. A model trained on the result
    learns nothing: measured on the real data, early stopping keeps ~1 round, mean
    confidence ~0.34 (below the scorer's ``uncertain`` threshold) and log loss
    ~ln 3 for every seed; its accuracy on real readings is chance but swings with
    the seed (0.02-0.50 over 60 seeds, 0.31 for seed 1), as near-equal
    probabilities decide it.

    Examples
    --------
    >>> labels = np.tile([3, 100, 0, 130, 0], (6, 1))
    >>> labels[:, 0] = [3, 3, 20, 20, 100, 100]
    >>> shuffled = shuffled_labels(Dataset(np.arange(6), np.zeros((6, 17)), labels, "doc"), seed=1)
    >>> sorted(shuffled.cool_cond.tolist()), shuffled.source
    ([3, 3, 20, 20, 100, 100], 'doc (labels shuffled, seed=1)')
    """
    order = np.random.default_rng(seed).permutation(len(dataset))
    return Dataset(
        dataset.cycle,
        dataset.sensors,
        dataset.labels[order],
        f"{dataset.source} (labels shuffled, seed={seed})",
    )
