import math

import pytest
import torch
import torch.nn.functional as F

from sftlab.losses import auto_class_weights, classification_loss_sum


def test_auto_class_weights_inverse_frequency():
    # 6 examples: class 0 x3, class 1 x2, class 2 x1 -> w_c = 6 / (3 * n_c)
    assert auto_class_weights([0, 0, 0, 1, 1, 2], 3) == [2 / 3, 1.0, 2.0]
    weights = auto_class_weights([0, 0, 0, 1, 1, 2], 3)
    assert sum(weights[label] for label in [0, 0, 0, 1, 1, 2]) / 6 == pytest.approx(1.0)
    assert auto_class_weights([0, 0], 2) == [0.5, 0.0]  # C counts every label, seen or not


def test_weighted_cross_entropy_is_a_plain_weighted_sum():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    weights = torch.tensor([0.5, 3.0])
    per_example = -F.log_softmax(logits, -1)[torch.arange(3), labels]
    expected = 0.5 * per_example[0] + 3.0 * per_example[1] + 3.0 * per_example[2]
    assert classification_loss_sum(logits, labels, weights) == pytest.approx(float(expected))


def test_focal_loss_by_hand():
    logits = torch.tensor([[math.log(3.0), 0.0]])  # p = [0.75, 0.25]
    gamma = 2.0
    easy = classification_loss_sum(logits, torch.tensor([0]), focal_gamma=gamma)
    hard = classification_loss_sum(logits, torch.tensor([1]), focal_gamma=gamma)
    assert float(easy) == pytest.approx(0.25**2 * -math.log(0.75))
    assert float(hard) == pytest.approx(0.75**2 * -math.log(0.25))
    weighted = classification_loss_sum(logits, torch.tensor([1]), torch.tensor([1.0, 4.0]), focal_gamma=gamma)
    assert float(weighted) == pytest.approx(4 * 0.75**2 * -math.log(0.25))
    zero_gamma = classification_loss_sum(logits, torch.tensor([1]), focal_gamma=0.0)
    assert float(zero_gamma) == pytest.approx(-math.log(0.25))


def test_label_smoothing_by_hand():
    logits = torch.tensor([[math.log(3.0), 0.0]])  # p = [0.75, 0.25]
    loss = classification_loss_sum(logits, torch.tensor([0]), label_smoothing=0.2)
    # target = 0.8 * onehot + 0.2 / 2 everywhere = [0.9, 0.1]
    assert float(loss) == pytest.approx(-(0.9 * math.log(0.75) + 0.1 * math.log(0.25)))
