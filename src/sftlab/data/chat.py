"""Instruction data as conversations, rendered with the model's chat template into prompt and answer spans.

Three row formats are read: chat `messages` (a list of {role, content}), `prompt`/`completion`, and
alpaca-style `instruction`/`input`/`output`. Each becomes a list of messages; the chat template turns it
into text, split into spans that are prompt (never trained by default) or answer (an assistant turn,
always ending with the EOS token).
"""

from __future__ import annotations

from typing import Any

from sftlab.errors import SftlabError

ROLES = ("system", "user", "assistant")

# For base models without a chat template (documented in docs/llm-sft.md): Alpaca-style headers, with the
# EOS token closing every answer so the model learns to stop.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
    "{% else %}{{ '### Response:\\n' + message['content'] + eos_token + '\\n\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}"
)


def row_format(columns: list[str]) -> str:
    """Which instruction format a table holds, from its columns."""
    if "messages" in columns:
        return "messages"
    if "prompt" in columns:
        return "prompt"
    if "instruction" in columns:
        return "instruction"
    raise SftlabError(
        f"no instruction columns (columns: {', '.join(columns)}); expected 'messages', "
        "'prompt' (+ 'completion'), or 'instruction' (+ 'input', 'output')"
    )


def _text(row: dict[str, Any], column: str, where: str, required: bool = True) -> str:
    value = row.get(column)
    if value is None or (isinstance(value, float) and value != value):
        if required:
            raise SftlabError(f"{where}: missing '{column}'")
        return ""
    if not isinstance(value, str):
        raise SftlabError(f"{where}: '{column}' must be text, got {type(value).__name__}")
    if required and not value.strip():
        raise SftlabError(f"{where}: empty '{column}'")
    return value


def conversation(row: dict[str, Any], kind: str, where: str, with_answer: bool) -> list[dict[str, str]]:
    """The row as chat messages; with_answer requires (and keeps) the final assistant answer."""
    if kind == "prompt":
        messages = [{"role": "user", "content": _text(row, "prompt", where)}]
        if with_answer:
            messages.append({"role": "assistant", "content": _text(row, "completion", where)})
        return messages
    if kind == "instruction":
        instruction = _text(row, "instruction", where)
        extra = _text(row, "input", where, required=False)
        messages = [
            {"role": "user", "content": f"{instruction}\n\n{extra}" if extra.strip() else instruction}
        ]
        if with_answer:
            messages.append({"role": "assistant", "content": _text(row, "output", where)})
        return messages
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SftlabError(f"{where}: 'messages' must be a non-empty list of {{role, content}} objects")
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise SftlabError(f"{where}: message {number} needs a role ({', '.join(ROLES)}) and content")
        if not isinstance(message.get("content"), str):
            raise SftlabError(f"{where}: message {number} needs text 'content'")
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    if with_answer and messages[-1]["role"] != "assistant":
        raise SftlabError(f"{where}: the last message must be the assistant's answer to train on")
    if not with_answer and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    return messages


def ensure_chat_template(tokenizer: Any) -> None:
    """Give a base model's tokenizer the documented default template (saved with the fine-tuned model)."""
    if getattr(tokenizer, "chat_template", None) is None:
        if tokenizer.eos_token is None:
            raise SftlabError("the model's tokenizer has neither a chat template nor an EOS token")
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE


def render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def spans(tokenizer: Any, messages: list[dict[str, str]]) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, is_answer) spans: each assistant turn's text up to and including
    its end-of-turn marker is an answer; everything else (system, user, headers) is prompt."""
    result: list[tuple[str, bool]] = []
    done = 0
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:index], add_generation_prompt=True)
        through = render(tokenizer, messages[: index + 1])
        if not through.startswith(before) or len(before) < done:
            raise SftlabError(
                "the chat template does not render conversations incrementally; use prompt/completion"
            )
        result.append((before[done:], False))
        result.append((through[len(before) :], True))
        done = len(through)
    return result


def encode_conversation(tokenizer: Any, messages: list[dict[str, str]], completion_only: bool,
                        max_length: int, where: str) -> dict[str, Any]:  # fmt: skip
    """input_ids and labels (-100 where not trained); every answer ends with EOS and is trained on it.

    Pad and EOS are often the same token (SmolLM2: <|im_end|>); padding is masked by the attention mask
    and the labels built here, never by comparing token ids, so the EOS that closes an answer is learned.
    """
    eos = tokenizer.eos_token_id
    input_ids: list[int] = []
    labels: list[int] = []
    prompt_ids: list[int] = []
    parts = spans(tokenizer, messages)
    for position, (text, is_answer) in enumerate(parts):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        after: list[int] = []
        if is_answer:
            prompt_ids = input_ids[:]
            # The answer runs through its EOS; a template's newline after it is prompt for the next turn.
            if eos in ids:
                ids, after = ids[: ids.index(eos) + 1], ids[ids.index(eos) + 1 :]
                after = after if position < len(parts) - 1 else []  # nothing follows the last answer
            else:
                ids = [*ids, eos]
        trained = is_answer or not completion_only
        input_ids.extend(ids)
        labels.extend(ids if trained else [-100] * len(ids))
        input_ids.extend(after)
        labels.extend(after if not completion_only else [-100] * len(after))
    if not input_ids:
        raise SftlabError(f"{where}: no answer to train on")
    # The first token is never predicted (nothing precedes it), in a packed row or alone.
    labels[0] = -100
    input_ids, labels = input_ids[:max_length], labels[:max_length]
    if all(label == -100 for label in labels[1:]):
        raise SftlabError(
            f"{where}: the prompt fills all data.max_length={max_length} tokens, leaving no answer to train on"
        )
    return {"input_ids": input_ids, "labels": labels, "prompt_ids": prompt_ids[:max_length]}
