"""Per-task cheap checks: what a row's key is, and the task's own problems (one function per task name).

Each function reads the raw rows (a missing column is bad input: one SftlabError naming the file and line,
as in `sftlab train`), appends its findings to the result and returns the `Rows` the shared checks use.
"""

from __future__ import annotations

from typing import Any

from sftlab.data.readers import Table, require_columns
from sftlab.datacheck.checks import CheckResult, Rows, is_blank, label_balance, ordered
from sftlab.datacheck.findings import Finding
from sftlab.errors import SftlabError


def _lengths(tokenizer: Any, texts: list[str], pairs: list[str] | None = None) -> list[int]:
    if not texts:
        return []
    encoded = tokenizer(texts, pairs, add_special_tokens=True, truncation=False, verbose=False)
    return [len(ids) for ids in encoded["input_ids"]]


def _truncation(result: CheckResult, table: Table, split: str, indices: list[int], lengths: list[int],
                limit: int, kind: str, what: str, key: str) -> None:  # fmt: skip
    for index, length in zip(indices, lengths, strict=True):
        if length > limit:
            result.findings.append(Finding(kind, split, index, table.where(index),
                                           f"{what} has {length} tokens, {key}={limit}", float(length)))  # fmt: skip


def classification(
    config: Any, tables: dict[str, Table], tokenizer: Any, result: CheckResult
) -> dict[str, Rows]:
    data = config.data
    rows: dict[str, Rows] = {}
    all_labels: dict[str, list[Any]] = {}
    for split in ordered(tables):
        table = tables[split]
        require_columns(table, [data.text_column])
        keys: list[str | None] = []
        labels: list[Any] = []
        texts, pairs, indices = [], [], []
        for index, row in enumerate(table.rows):
            text = row.get(data.text_column)
            pair = row.get(data.text_pair_column) if data.text_pair_column else ""
            label = row.get(data.label_column)
            usable = (
                isinstance(text, str)
                and not is_blank(text)
                and isinstance(pair, str)
                and not (data.text_pair_column and is_blank(pair))
            )
            if not usable:
                column = (
                    data.text_column if not isinstance(text, str) or is_blank(text) else data.text_pair_column
                )
                result.findings.append(
                    Finding("empty_input", split, index, table.where(index), f"empty '{column}'")
                )
                keys.append(None)
            else:
                keys.append(f"{text}\n{pair}" if data.text_pair_column else text)
                texts.append(text)
                pairs.append(pair)
                indices.append(index)
            if isinstance(label, list):
                labels.append(tuple(sorted(str(item).strip() for item in label)))
            elif is_blank(label):
                result.findings.append(Finding("empty_target", split, index, table.where(index),
                                               f"missing or empty '{data.label_column}'"))  # fmt: skip
                labels.append(None)
            else:
                labels.append(
                    str(int(label)) if isinstance(label, float) and label.is_integer() else str(label).strip()
                )
        lengths = _lengths(tokenizer, texts, pairs if data.text_pair_column else None)
        result.lengths[split] = lengths
        _truncation(
            result,
            table,
            split,
            indices,
            lengths,
            data.max_length,
            "truncated_input",
            "the input",
            "data.max_length",
        )
        rows[split] = Rows(keys, labels, [[key] if key is not None else [] for key in keys])
        all_labels[split] = labels
    label_balance(tables, all_labels, result)
    return rows


def token_classification(
    config: Any, tables: dict[str, Table], tokenizer: Any, result: CheckResult
) -> dict[str, Rows]:
    from sftlab.evaluation.entities import entity_spans, iob1_to_iob2, split_tag

    data = config.data
    rows: dict[str, Rows] = {}
    raw: dict[str, list[tuple[int, list[str], list[str]]]] = {}
    starts_with_inside, entity_count = 0, 0
    for split in ordered(tables):
        table = tables[split]
        keys: list[str | None] = []
        sentences: list[tuple[int, list[str], list[str]]] = []
        for index, row in enumerate(table.rows):
            words = row.get(data.tokens_column)
            tags = row.get(data.tags_column)
            if tags is None and "fields" in row:
                tags = row["fields"][data.conll_tag_field]
            if (
                not isinstance(words, list)
                or not words
                or any(not isinstance(w, str) or not w.strip() for w in words)
            ):
                result.findings.append(Finding("empty_input", split, index, table.where(index),
                                               f"'{data.tokens_column}' must be a non-empty list of words"))  # fmt: skip
                keys.append(None)
                continue
            keys.append(" ".join(words))
            if (
                not isinstance(tags, list)
                or len(tags) != len(words)
                or not all(isinstance(t, str) for t in tags)
            ):
                result.findings.append(Finding("empty_target", split, index, table.where(index),
                                               f"'{data.tags_column}' must be a list of {len(words)} tags, one per word"))  # fmt: skip
                continue
            tags = [tag.strip() for tag in tags]
            bad = [tag for tag in tags if split_tag(tag)[0] not in ("B", "I", "O")]
            if bad:
                result.findings.append(Finding("invalid_tags", split, index, table.where(index),
                                               f"tag {bad[0]!r} is not O, B-TYPE or I-TYPE"))  # fmt: skip
                continue
            sentences.append((index, words, tags))
            previous = "O"
            for tag in tags:
                prefix, kind = split_tag(tag)
                if prefix == "B" or (prefix == "I" and split_tag(previous)[1] != kind):
                    entity_count += 1
                    starts_with_inside += prefix == "I"
                previous = tag
        raw[split] = sentences
        rows[split] = Rows(keys, [None] * len(keys), [[key] if key is not None else [] for key in keys])
    # IOB1 files start most entities with I- (B- only between two adjacent entities of one type): that is
    # the IOB1 scheme, which training converts, not an error. In IOB2 every I- that starts an entity is one.
    iob1 = entity_count > 0 and starts_with_inside > entity_count / 2
    if iob1:
        result.notes.append(f"tags look like IOB1 ({starts_with_inside} of {entity_count} entities start with I-); "
                            "training converts them to IOB2")  # fmt: skip
    tag_types: dict[str, list[Any]] = {}
    for split, sentences in raw.items():
        table = tables[split]
        types: list[Any] = [None] * len(table)
        indices, word_lists = [], []
        for index, words, tags in sentences:
            if not iob1:
                previous = "O"
                for position, tag in enumerate(tags):
                    prefix, kind = split_tag(tag)
                    if prefix == "I" and split_tag(previous)[1] != kind:
                        after = "O" if previous == "O" else previous
                        result.findings.append(Finding("invalid_tags", split, index, table.where(index),
                                                       f"word {position + 1} {words[position]!r}: {tag} after {after}",
                                                       None, None, {"position": position}))  # fmt: skip
                        break
                    previous = tag
            iob2 = iob1_to_iob2(tags)
            types[index] = (
                tuple(sorted({kind for kind, _, _ in entity_spans(iob2)})) if entity_spans(iob2) else ()
            )
            rows[split].labels[index] = tuple(iob2)  # type: ignore[index]
            indices.append(index)
            word_lists.append(words)
        tag_types[split] = types
        lengths = (
            [
                len(ids)
                for ids in tokenizer(word_lists, is_split_into_words=True, truncation=False)["input_ids"]
            ]
            if word_lists
            else []
        )
        result.lengths[split] = lengths
        _truncation(
            result,
            table,
            split,
            indices,
            lengths,
            data.max_length,
            "truncated_input",
            "the sentence",
            "data.max_length",
        )
    label_balance(tables, tag_types, result)
    # Entity types only: imbalance between entity types is the nature of NER data, not a problem to flag.
    result.findings = [f for f in result.findings if f.kind != "class_imbalance"]
    return rows


def question_answering(
    config: Any, tables: dict[str, Table], tokenizer: Any, result: CheckResult
) -> dict[str, Rows]:
    from sftlab.tasks.question_answering import flatten_squad

    data = config.data
    rows: dict[str, Rows] = {}
    for split in ordered(tables):
        table = flatten_squad(tables[split])
        tables[split] = table
        require_columns(table, [data.question_column, data.context_column, data.answers_column])
        keys: list[str | None] = []
        texts: list[list[str]] = []
        answers_to_measure: list[tuple[int, str, str]] = []
        for index, row in enumerate(table.rows):
            question, context, answers = (
                row.get(data.question_column),
                row.get(data.context_column),
                row.get(data.answers_column),
            )
            where = table.where(index)
            if (
                not isinstance(question, str)
                or is_blank(question)
                or not isinstance(context, str)
                or is_blank(context)
            ):
                column = (
                    data.question_column
                    if not isinstance(question, str) or is_blank(question)
                    else data.context_column
                )
                result.findings.append(Finding("empty_input", split, index, where, f"empty '{column}'"))
                keys.append(None)
                texts.append([])
                continue
            keys.append(question)
            texts.append([question, context])
            if (
                not isinstance(answers, dict)
                or not isinstance(answers.get("text"), list)
                or not isinstance(answers.get("answer_start"), list)
            ):
                result.findings.append(Finding("empty_target", split, index, where,
                                               f'\'{data.answers_column}\' must be {{"text": [...], "answer_start": [...]}}'))  # fmt: skip
                continue
            if not answers["text"]:
                result.findings.append(Finding("unanswerable", split, index, where, "no answer"))
                continue
            for text, start in zip(answers["text"], answers["answer_start"], strict=False):
                if (
                    not isinstance(text, str)
                    or not text.strip()
                    or not isinstance(start, int)
                    or isinstance(start, bool)
                ):
                    result.findings.append(
                        Finding(
                            "empty_target",
                            split,
                            index,
                            where,
                            "an answer needs text and an integer answer_start",
                        )
                    )
                    break
                if context[start : start + len(text)] != text:
                    found = context.find(text)
                    hint = f"it occurs at {found}" if found >= 0 else "it does not occur in the context"
                    result.findings.append(Finding("answer_not_at_start", split, index, where,
                                                   f"answer {text!r} is not at answer_start {start} ({hint})", None, None,
                                                   {"answer_start": start, "found_at": found}))  # fmt: skip
                    break
                answers_to_measure.append((index, question, text))
        rows[split] = Rows(keys, None, texts)
        # Lengths in tokens: the question plus its context (windows), and each answer against the limits.
        pairs = [
            (row.get(data.question_column), row.get(data.context_column))
            for row, key in zip(table.rows, keys, strict=True)
            if key is not None
        ]
        result.lengths[split] = _lengths(tokenizer, [q for q, _ in pairs], [c for _, c in pairs])
        if answers_to_measure:
            answer_lengths = _lengths(tokenizer, [text for _, _, text in answers_to_measure])
            question_lengths = _lengths(tokenizer, [question for _, question, _ in answers_to_measure])
            reported: set[int] = set()
            for (index, _, _), answer, question in zip(
                answers_to_measure, answer_lengths, question_lengths, strict=True
            ):
                answer -= 2  # [CLS] and [SEP] of the answer encoded alone
                window = data.max_length - question - 1
                if index in reported:
                    continue
                if answer > window:
                    message = f"answer has {answer} tokens, more than the {window} context tokens of a window (data.max_length={data.max_length})"
                elif answer > data.max_answer_length:
                    message = f"answer has {answer} tokens, data.max_answer_length={data.max_answer_length} (never predicted)"
                else:
                    continue
                reported.add(index)
                result.findings.append(
                    Finding("answer_too_long", split, index, table.where(index), message, float(answer))
                )
    return rows


def seq2seq(config: Any, tables: dict[str, Table], tokenizer: Any, result: CheckResult) -> dict[str, Rows]:
    data = config.data
    target_limit = data.max_target_length or data.max_length
    rows: dict[str, Rows] = {}
    for split in ordered(tables):
        table = tables[split]
        require_columns(table, [data.source_column])
        keys: list[str | None] = []
        sources, targets, source_rows, target_rows = [], [], [], []
        for index, row in enumerate(table.rows):
            source, target = row.get(data.source_column), row.get(data.target_column)
            if not isinstance(source, str) or is_blank(source):
                result.findings.append(
                    Finding("empty_input", split, index, table.where(index), f"empty '{data.source_column}'")
                )
                keys.append(None)
            else:
                keys.append(source)
                sources.append(data.source_prefix + source)
                source_rows.append(index)
            if not isinstance(target, str) or is_blank(target):
                result.findings.append(
                    Finding(
                        "empty_target",
                        split,
                        index,
                        table.where(index),
                        f"missing or empty '{data.target_column}'",
                    )
                )
                continue
            targets.append(target)
            target_rows.append(index)
            if isinstance(source, str) and normalize_equal(source, target):
                result.findings.append(Finding("target_equals_source", split, index, table.where(index),
                                               f"'{data.target_column}' is the same text as '{data.source_column}'"))  # fmt: skip
        lengths = _lengths(tokenizer, sources)
        result.lengths[split] = lengths
        _truncation(
            result,
            table,
            split,
            source_rows,
            lengths,
            data.max_length,
            "truncated_input",
            "the source",
            "data.max_length",
        )
        key = "data.max_target_length" if data.max_target_length else "data.max_length"
        _truncation(
            result,
            table,
            split,
            target_rows,
            _lengths(tokenizer, targets),
            target_limit,
            "truncated_target",
            "the target",
            key,
        )
        texts = [
            [str(row.get(data.source_column) or ""), str(row.get(data.target_column) or "")]
            for row in table.rows
        ]
        rows[split] = Rows(keys, None, texts)
    return rows


def normalize_equal(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def causal_lm(config: Any, tables: dict[str, Table], tokenizer: Any, result: CheckResult) -> dict[str, Rows]:
    from sftlab.data.chat import ROLES, encode_conversation, ensure_chat_template, row_format

    ensure_chat_template(tokenizer)
    limit = config.data.max_length
    rows: dict[str, Rows] = {}
    for split in ordered(tables):
        table = tables[split]
        try:
            kind = row_format(table.column_names())
        except SftlabError as error:
            raise SftlabError(f"{table.path}: {error}") from None
        keys: list[str | None] = []
        texts: list[list[str]] = []
        lengths: list[int] = []
        for index, row in enumerate(table.rows):
            where = table.where(index)
            messages = _messages(row, kind)
            if messages is None or not all(
                isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str)
                for m in messages
            ):
                result.findings.append(
                    Finding(
                        "empty_input",
                        split,
                        index,
                        where,
                        "no readable conversation (messages need role and text content)",
                    )
                )
                keys.append(None)
                texts.append([])
                continue
            prompt = "\n".join(m["content"] for m in messages if m["role"] != "assistant")
            answers = [m["content"] for m in messages if m["role"] == "assistant"]
            texts.append([m["content"] for m in messages])
            if not prompt.strip():
                result.findings.append(Finding("empty_input", split, index, where, "empty prompt"))
                keys.append(None)
            else:
                keys.append(prompt)
            if not answers or messages[-1]["role"] != "assistant":
                result.findings.append(Finding("no_assistant_turn", split, index, where,
                                               "no assistant turn" if not answers else "the last message is not the assistant's"))  # fmt: skip
                continue
            if any(not answer.strip() for answer in answers):
                result.findings.append(Finding("empty_target", split, index, where, "empty assistant answer"))
                continue
            if prompt.strip() and answers[-1].strip() == messages[-2]["content"].strip():
                result.findings.append(
                    Finding(
                        "target_equals_source",
                        split,
                        index,
                        where,
                        "the answer repeats the message before it",
                    )
                )
            try:
                full = encode_conversation(tokenizer, [{"role": m["role"], "content": m["content"]} for m in messages],
                                           True, 10**9, where)  # fmt: skip
            except SftlabError:
                continue
            length = len(full["input_ids"])
            lengths.append(length)
            if length > limit:
                cut = sum(label != -100 for label in full["labels"][limit:])
                trained = sum(label != -100 for label in full["labels"])
                if cut:
                    result.findings.append(Finding(
                        "truncated_target", split, index, where,
                        f"completion cut by data.max_length={limit}: {cut} of its {trained} answer tokens lie beyond (conversation: {length} tokens)",
                        cut / trained,
                    ))  # fmt: skip
                else:
                    result.findings.append(Finding("truncated_input", split, index, where,
                                                   f"conversation has {length} tokens, data.max_length={limit}", float(length)))  # fmt: skip
        result.lengths[split] = lengths
        rows[split] = Rows(keys, None, texts)
    return rows


def _messages(row: dict[str, Any], kind: str) -> list[dict[str, Any]] | None:
    def text(column: str) -> str:
        value = row.get(column)
        return value if isinstance(value, str) else ""

    if kind == "messages":
        messages = row.get("messages")
        return messages if isinstance(messages, list) and messages else None
    if kind == "prompt":
        messages = [{"role": "user", "content": text("prompt")}]
        return (
            [*messages, {"role": "assistant", "content": text("completion")}]
            if "completion" in row
            else messages
        )
    instruction = text("instruction") + (f"\n\n{text('input')}" if text("input").strip() else "")
    messages = [{"role": "user", "content": instruction}]
    return [*messages, {"role": "assistant", "content": text("output")}] if "output" in row else messages
