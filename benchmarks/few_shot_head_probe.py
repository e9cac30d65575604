"""Is the head or the encoder behind a few-shot score? Reads a saved sftlab few-shot model of
`benchmarks/few_shot.py` and trains other heads on the very features its head reads.

    python benchmarks/few_shot_head_probe.py sms_spam 8 0      # dataset, per label, seed of a finished run

Prints the test score of the saved head, of scikit-learn's LogisticRegression (SetFit's head) at three
C values, of the head stage's logistic solver (head_l2_c 1: full-batch Adam, coupled L2 1/(n C), 300 steps
at 3e-2, linear decay) with its agreement with sklearn's predictions, and of a few other torch heads
(AdamW / SGD, full batch), all on the same pooled features.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from few_shot import draw  # noqa: E402

HEADS = [("adamw", 1e-2, 25, 0.01), ("adamw", 1e-2, 200, 0.01), ("adamw", 1e-3, 200, 0.01),
         ("sgd", 1.0, 200, 0.0), ("sgd", 1.0, 500, 1e-2), ("sgd", 0.1, 500, 0.0)]  # fmt: skip


def main(dataset: str, shots: int, seed: int) -> None:
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sftlab.evaluation.metrics import classification_metrics

    folder = f"runs/benchmarks/few_shot/{dataset}-{shots}-{seed}-sftlab/model"
    texts, labels, test_texts, test_labels = draw(dataset, shots, seed)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    train_y = torch.tensor([names.index(label) for label in labels])
    test_y = [names.index(label) for label in test_labels]

    def features(batch: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([
                model.base_model(**tokenizer(batch[i : i + 64], padding=True, truncation=True, max_length=64,
                                             return_tensors="pt")).pooler_output
                for i in range(0, len(batch), 64)
            ])  # fmt: skip

    def score(predicted: torch.Tensor) -> str:
        metrics = classification_metrics(test_y, [int(p) for p in predicted], names)
        return f"accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['f1_macro']:.4f}"

    train_x, test_x = features(texts), features(test_texts)
    with torch.no_grad():
        print("saved sftlab head:", score(model.classifier(test_x).argmax(-1)))
    for c in (1.0, 0.1, 10.0):
        head = LogisticRegression(C=c, max_iter=1000).fit(train_x.numpy(), train_y.numpy())
        print(f"LogisticRegression C={c}:", score(torch.tensor(head.predict(test_x.numpy()))))
    reference = LogisticRegression(C=1.0, max_iter=1000).fit(train_x.numpy(), train_y.numpy())
    reference_predicted = torch.tensor(reference.predict(test_x.numpy()))
    torch.manual_seed(seed)
    head = torch.nn.Linear(train_x.shape[1], len(names))
    penalty = (2.0 if len(names) == 2 else 1.0) / len(train_y)  # sftlab.recipes.few_shot, C = 1
    optimizer = torch.optim.Adam([{"params": [head.weight], "weight_decay": penalty},
                                  {"params": [head.bias], "weight_decay": 0.0}], lr=3e-2)  # fmt: skip
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / 300)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(head(train_x), train_y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        predicted = head(test_x).argmax(-1)
    agreement = (predicted == reference_predicted).float().mean()
    print(
        f"logistic head (head_l2_c 1): {score(predicted)}, same prediction as sklearn C=1 on {agreement:.2%}"
    )
    for name, lr, steps, decay in HEADS:
        torch.manual_seed(seed)
        head = torch.nn.Linear(train_x.shape[1], len(names))
        torch.nn.init.normal_(head.weight, std=0.02)
        torch.nn.init.zeros_(head.bias)
        optimizer = (torch.optim.AdamW if name == "adamw" else torch.optim.SGD)(
            head.parameters(), lr=lr, weight_decay=decay
        )
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(head(train_x), train_y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            print(
                f"{name} lr {lr} {steps} full-batch steps, weight decay {decay}:",
                score(head(test_x).argmax(-1)),
            )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
