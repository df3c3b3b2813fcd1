"""Write a tiny llama-architecture chat model (GGUF) for llama.cpp's server, from a vocab-only file.

No package ships chat weights, and no model hub is reachable from the test machines; the
`llama-cpp-python` sdist ships vocab-only GGUF files (`vendor/llama.cpp/models/`). This copies
the tokenizer of one of them into a model of 2 layers and width 64 with seeded random weights
and a chat template: llama.cpp's server loads it and answers in its real request/response
shapes, grammars and `usage`, in about a tenth of a second a call. The text is nonsense; the
tests care about what the server does with requests, not what the model says.

Runs in the model servers' venv (numpy and `gguf`), not the project's:
    python scripts/tiny_gguf.py VOCAB.gguf OUT.gguf
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import gguf
import numpy as np

LAYERS = 2
WIDTH = 64
FEED_FORWARD = 128
HEADS = 4
CONTEXT = 2048
SEED = 7
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)


def copy_tokenizer(reader: gguf.GGUFReader, writer: gguf.GGUFWriter) -> int:
    """Copy every `tokenizer.*` key; return the vocabulary size."""
    size = 0
    for field in reader.fields.values():
        if not field.name.startswith("tokenizer."):
            continue
        value: Any = field.contents()
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_array(field.name, value)
            if field.name == "tokenizer.ggml.tokens":
                size = len(value)
        else:
            writer.add_key_value(field.name, value, kind)
    if size == 0:
        raise SystemExit("the vocab file has no tokenizer.ggml.tokens")
    return size


def main(vocab: Path, out: Path) -> None:
    reader = gguf.GGUFReader(vocab)
    writer = gguf.GGUFWriter(out, "llama")
    writer.add_name("surgeflow-tiny-test")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(WIDTH)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(WIDTH // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocab_size = copy_tokenizer(reader, writer)
    writer.add_vocab_size(vocab_size)
    writer.add_chat_template(CHAT_TEMPLATE)

    random = np.random.default_rng(SEED)

    def weights(*shape: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        return (random.standard_normal(shape) * 0.02).astype(np.float32)

    ones = np.ones(WIDTH, dtype=np.float32)
    writer.add_tensor("token_embd.weight", weights(vocab_size, WIDTH))
    for i in range(LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", weights(WIDTH, WIDTH))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weights(FEED_FORWARD, WIDTH))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weights(FEED_FORWARD, WIDTH))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weights(WIDTH, FEED_FORWARD))
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", weights(vocab_size, WIDTH))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
