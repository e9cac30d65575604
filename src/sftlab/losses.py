"""Classification losses, each returned as a *sum* over the batch (the loop divides by the example count).

Normalization: the training loss is (1/n) * sum_i w[y_i] * loss_i over the n examples of an optimizer
step, i.e. the summed weighted loss divided by the number of examples, not by the sum of their weights
(torch's `reduction="mean"` divides by the weights' sum). Dividing by the count keeps the contract that
K accumulated micro-batches give exactly the update of one batch K times larger, because the count of a
step is known before any forward pass; the weights' sum would need the whole step first.
"""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F


def auto_class_weights(label_ids: list[int], num_labels: int) -> list[float]:
    """Inverse-frequency weights: w_c = n / (C * n_c), n examples, C classes, n_c examples of class c.

    The mean weight over the training examples is then exactly 1 (sum_c n_c * w_c = n), so the loss keeps
    its scale; a class twice as rare weighs twice as much. A class absent from train gets weight 0.
    """
    counts = Counter(label_ids)
    total = len(label_ids)
    return [total / (num_labels * counts[c]) if counts[c] else 0.0 for c in range(num_labels)]


def classification_loss_sum(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float | None = None,
) -> torch.Tensor:
    """Summed cross-entropy (optionally class-weighted and label-smoothed) or focal loss.

    Focal loss (Lin et al. 2017): -w[y] * (1 - p_y)^gamma * log p_y; gamma 0 is (weighted) cross-entropy.
    """
    logits = logits.float()
    if focal_gamma is None:
        return F.cross_entropy(
            logits, labels, weight=class_weights, label_smoothing=label_smoothing, reduction="sum"
        )
    log_p = F.log_softmax(logits, dim=-1).gather(1, labels.unsqueeze(1)).squeeze(1)
    loss = -((1.0 - log_p.exp()) ** focal_gamma) * log_p
    if class_weights is not None:
        loss = loss * class_weights[labels]
    return loss.sum()
