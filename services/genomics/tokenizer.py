"""Single-nucleotide tokenizers for HyenaDNA and BEACON-B.

Both read normalized sequences (``A C G T N``, see :mod:`services.genomics.sequences`) one character
per token, so a model's output at token ``i`` belongs to nucleotide ``i`` and nothing is ever merged or
dropped.

* :data:`HYENA` (HyenaDNA's ``CharacterTokenizer``): ``[CLS]=0 [SEP]=1 [BOS]=2 [MASK]=3 [PAD]=4
  [RESERVED]=5 [UNK]=6``, then ``A C G T N = 7..11`` (12 ids; the embedding pads the table to 16 rows).
  Padding goes on the **left**, so a causal model's last position is always the sequence's last base;
  ``[SEP]`` ends sequences in language-model pretraining.
* :data:`BEACON` (BEACON's RNA-LM vocabulary): ``<cls>=0 <pad>=1 <eos>=2 <unk>=3 A T C G N <mask>=9``.
  Inputs are ``<cls> sequence <eos>``, padded on the right; U was already read as T.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

BASES = "ACGTN"


@dataclass(frozen=True)
class Tokenizer:
    """A character vocabulary with a few special tokens.

    ``bos``/``eos`` are added around each sequence when set (``None``: not added); ``padding_side`` is
    ``"left"`` for causal models and ``"right"`` for encoders.
    """

    name: str
    tokens: tuple[str, ...]
    pad: str
    mask: str
    unk: str
    bos: str | None
    eos: str | None
    padding_side: str

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        return self.tokens.index(token)

    @property
    def pad_id(self) -> int:
        return self.id(self.pad)

    @property
    def mask_id(self) -> int:
        return self.id(self.mask)

    @property
    def base_ids(self) -> list[int]:
        """Ids of ``A C G T N`` in that order."""
        return [self.id(b) for b in BASES]

    @property
    def special_ids(self) -> list[int]:
        return [i for i, t in enumerate(self.tokens) if t not in BASES]

    def encode(self, sequence: str, *, add_special: bool = True) -> list[int]:
        """Ids of a normalized sequence; any character outside ``ACGTN`` is an error (never ``unk``)."""
        lookup = self._lookup()
        try:
            ids = [lookup[c] for c in sequence]
        except KeyError:
            bad = next(i for i, c in enumerate(sequence) if c not in lookup)
            raise ValueError(f"invalid character {sequence[bad]!r} at position {bad}; normalize first") from None
        if add_special:
            if self.bos is not None:
                ids.insert(0, self.id(self.bos))
            if self.eos is not None:
                ids.append(self.id(self.eos))
        return ids

    def decode(self, ids: list[int] | Tensor, *, skip_special: bool = True) -> str:
        values = ids.tolist() if isinstance(ids, Tensor) else ids
        out = [self.tokens[i] for i in values]
        return "".join(t for t in out if not (skip_special and t not in BASES))

    def special_count(self, add_special: bool = True) -> int:
        """Tokens :meth:`encode` adds around a sequence."""
        return int(add_special) * ((self.bos is not None) + (self.eos is not None))

    def batch(
        self, sequences: list[str], *, length: int | None = None, add_special: bool = True
    ) -> tuple[Tensor, Tensor]:
        """``(ids [b, length], mask [b, length])``, padded to ``length`` (the longest when None);
        ``mask`` is True on real tokens. A sequence longer than ``length`` is an error, never cut."""
        encoded = [self.encode(s, add_special=add_special) for s in sequences]
        longest = max((len(e) for e in encoded), default=0)
        length = longest if length is None else length
        if longest > length:
            raise ValueError(f"a sequence has {longest} tokens, more than length={length}")
        ids = torch.full((len(encoded), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), length), dtype=torch.bool)
        for row, e in enumerate(encoded):
            if not e:
                continue
            span = slice(length - len(e), length) if self.padding_side == "left" else slice(0, len(e))
            ids[row, span] = torch.tensor(e)
            mask[row, span] = True
        return ids, mask

    def _lookup(self) -> dict[str, int]:
        return {b: self.id(b) for b in BASES}


HYENA = Tokenizer(
    name="hyenadna",
    tokens=("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]", *BASES),
    pad="[PAD]",
    mask="[MASK]",
    unk="[UNK]",
    bos=None,
    eos="[SEP]",
    padding_side="left",
)

BEACON = Tokenizer(
    name="beacon",
    tokens=("<cls>", "<pad>", "<eos>", "<unk>", "A", "T", "C", "G", "N", "<mask>"),
    pad="<pad>",
    mask="<mask>",
    unk="<unk>",
    bos="<cls>",
    eos="<eos>",
    padding_side="right",
)

_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


def reverse_complement(sequence: str) -> str:
    """Reverse complement of a normalized sequence (``N`` stays ``N``)."""
    return sequence.translate(_COMPLEMENT)[::-1]
