"""False promotions between real models of equal accuracy, measured over seeded replays.

The champion (seed 42) and challengers trained on the same real data with other seeds
score every cycle; each replay draws 4,000 labelled pairs (cycles with replacement, in a
seeded order, as the pump replays them) and looks at the cumulative verdict after every
100 pairs, as the accuracy processor does per window. A challenger judged ``better`` at
any look would be promoted by the gate: that is a false promotion, none of these
challengers being more accurate than the champion.
"""

from __future__ import annotations

import numpy as np

from rigwatch.data import CLASSES
from rigwatch.model import train
from rigwatch.model.compare import BETTER, PairedCounts, compare

CHALLENGER_SEEDS = range(1, 11)
REPLAYS, PAIRS, LOOK_EVERY = 20, 4_000, 100


def test_equally_accurate_real_challengers_are_almost_never_promoted(real_dataset, real_model) -> None:
    x, y = real_dataset.features(), np.searchsorted(CLASSES, real_dataset.cool_cond)
    champion = real_model.predict_proba(x)
    promoted = decided = runs = 0
    for seed in CHALLENGER_SEEDS:
        challenger = train(real_dataset, seed=seed, num_threads=1).predict_proba(x)
        for replay in range(REPLAYS):
            rows = np.random.default_rng(replay).integers(0, len(y), PAIRS)
            total, verdicts = PairedCounts(), set()
            for first in range(0, PAIRS, LOOK_EVERY):
                r = rows[first : first + LOOK_EVERY]
                total += PairedCounts.from_arrays(
                    champion[r].argmax(axis=1) == y[r],
                    challenger[r].argmax(axis=1) == y[r],
                    -np.log(np.maximum(champion[r, y[r]], 1e-15)),
                    -np.log(np.maximum(challenger[r, y[r]], 1e-15)),
                )
                verdicts.add(compare(total).verdict)
            runs += 1
            promoted += BETTER in verdicts
            decided += len(verdicts) > 1
    print(
        f"\n{promoted} of {runs} replays would promote an equally trained challenger;"
        f" {decided} decided either way"
    )
    # The test's bound is alpha = 0.05 per run; these runs share models, so allow its sampling error.
    assert promoted / runs <= 0.05 + 3 * (0.05 * 0.95 / runs) ** 0.5
