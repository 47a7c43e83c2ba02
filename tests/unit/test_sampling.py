"""The sampling chain on the worked example of concepts.md, and against first principles."""

from __future__ import annotations

import numpy as np
import pytest

from botkit.core.sampling import sample_distribution, softmax

# "Yesterday I went to the cinema to see a ___": film, documental, omelette, love, like.
PROBS = np.array([0.54, 0.36, 0.08, 0.01, 0.01])
LOGITS = np.log(PROBS)


def test_softmax_of_log_probabilities_gives_them_back() -> None:
    assert softmax(LOGITS) == pytest.approx(PROBS)


def test_top_k_two_keeps_film_and_documental_renormalised() -> None:
    cut = sample_distribution(LOGITS, temperature=1.0, top_k=2, top_p=1.0, min_p=0.0)
    assert cut.survivors == 2
    assert cut.final[:2] == pytest.approx([0.6, 0.4])
    assert cut.final[2:].sum() == 0


def test_top_p_095_keeps_the_smallest_prefix_reaching_it() -> None:
    cut = sample_distribution(LOGITS, temperature=1.0, top_k=0, top_p=0.95, min_p=0.0)
    assert cut.survivors == 3
    assert cut.final[:3] == pytest.approx([0.551, 0.367, 0.082], abs=0.001)


def test_low_temperature_sharpens_and_high_flattens() -> None:
    cold = sample_distribution(LOGITS, temperature=0.3, top_k=0, top_p=1.0, min_p=0.0)
    warm = sample_distribution(LOGITS, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    hot = sample_distribution(LOGITS, temperature=1.5, top_k=0, top_p=1.0, min_p=0.0)
    assert cold.final[0] > 0.75 > warm.final[0]
    assert cold.final[2:].sum() < 0.01
    assert hot.final[2:].sum() > warm.final[2:].sum()


def test_min_p_drops_tokens_far_below_the_top() -> None:
    cut = sample_distribution(LOGITS, temperature=1.0, top_k=0, top_p=1.0, min_p=0.1)
    assert cut.survivors == 3  # 0.08 >= 0.054, 0.01 < 0.054


def test_temperature_zero_is_greedy() -> None:
    cut = sample_distribution(LOGITS, temperature=0.0, top_k=40, top_p=0.95, min_p=0.05)
    assert list(cut.final) == [1.0, 0.0, 0.0, 0.0, 0.0]
