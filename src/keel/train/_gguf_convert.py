"""Run llama.cpp's `convert_hf_to_gguf.py` in this process: `python -m keel.train._gguf_convert DIR ARGS…`.

DIR holds the converter as llama-cpp-python's source distribution ships it (the script and its
`conversion/` package); ARGS are the converter's own. One adjustment, made here rather than in its
code: the converter names a BPE tokenizer's pre-tokenizer by hashing how it splits a probe text,
and refuses tokenizers it has no hash for, such as the byte-level BPE tokenizers Keel trains for its
tiny models. When it refuses, a tokenizer whose `tokenizer.json` declares GPT-2's byte-level
pre-tokenizer (the regex split of `ByteLevel`, nothing else) is named `gpt-2`, the pre-tokenizer
llama.cpp implements for exactly that configuration. Any other unknown tokenizer is still refused.
Run in a child process because the converter configures logging and reads `sys.argv`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["byte_level_gpt2", "main"]


def byte_level_gpt2(tokenizer_json: Path) -> bool:
    """Whether a `tokenizer.json` pre-tokenizes exactly as GPT-2 does (byte-level, with its regex)."""
    try:
        config = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    pre = config.get("pre_tokenizer") or {}
    if pre.get("type") == "Sequence" and len(pre.get("pretokenizers", [])) == 1:
        pre = pre["pretokenizers"][0]
    model = config.get("model") or {}
    return pre.get("type") == "ByteLevel" and pre.get("use_regex", True) is True and model.get("type") == "BPE"


def main(argv: list[str]) -> None:
    """Import the converter from `argv[0]`, adjust its pre-tokenizer lookup, and run it on `argv[1:]`."""
    sys.path.insert(0, argv[0])
    import convert_hf_to_gguf  # type: ignore[import-not-found]  # the converter's own module, from that folder
    from conversion import TextModel  # type: ignore[import-not-found]

    known = TextModel.get_vocab_base_pre

    def pre_tokenizer(self: Any, tokenizer: Any) -> str:
        try:
            return str(known(self, tokenizer))
        except NotImplementedError:
            if byte_level_gpt2(Path(self.dir_model) / "tokenizer.json"):
                return "gpt-2"
            raise

    TextModel.get_vocab_base_pre = pre_tokenizer
    sys.argv = ["convert_hf_to_gguf.py", *argv[1:]]
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main(sys.argv[1:])
