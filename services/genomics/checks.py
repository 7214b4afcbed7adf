"""What the genomics ingress checks before a model call: sequences normalised (a 422 naming the sequence
or record and the position), the request's limits (413), and FASTA uploads (plain or gzipped)."""

from __future__ import annotations

import gzip
import zlib

from services.common.errors import InputError

from .sequences import Record, SequenceError, normalize, parse_fasta_text

MAX_UPLOAD_BYTES = 16 << 20


def validated(sequences: list[str], ids: list[str | None], field: str) -> list[str]:
    """Normalized sequences, or a 422 naming the sequence (or record) and the position."""
    out = []
    for i, (seq, rid) in enumerate(zip(sequences, ids)):
        where = f"{field}.{i}" if rid is None else f"{field}.{i} (record {rid!r})"
        try:
            out.append(normalize(seq, record=rid or f"{field}[{i}]"))
        except SequenceError as e:
            raise InputError(e.message, field=where) from None
    return out


def check_limits(sequences: list[str], *, max_sequences: int, max_bases: int, field: str) -> None:
    if len(sequences) > max_sequences:
        raise InputError(f"{len(sequences)} sequences sent; at most {max_sequences} per request", field=field,
                         status=413, code="payload_too_large")  # fmt: skip
    total = sum(len(s) for s in sequences)
    if total > max_bases:
        raise InputError(f"{total} bases sent; at most {max_bases} per request", field=field, status=413,
                         code="payload_too_large")  # fmt: skip


def read_fasta_upload(raw: bytes) -> list[Record]:
    """FASTA records from an uploaded file (plain or gzipped text)."""
    if raw[:2] == b"\x1f\x8b":
        try:
            decompressor = zlib.decompressobj(wbits=31)
            raw = decompressor.decompress(raw, MAX_UPLOAD_BYTES)
            if decompressor.unconsumed_tail:
                raise InputError(f"the decompressed file is larger than {MAX_UPLOAD_BYTES} bytes", field="file",
                                 status=413, code="payload_too_large")  # fmt: skip
        except (zlib.error, gzip.BadGzipFile) as e:
            raise InputError(f"the gzipped file is corrupt ({e})", field="file") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise InputError(f"the file is not ASCII text (byte {e.start}); send FASTA", field="file") from None
    try:
        return parse_fasta_text(text)
    except SequenceError as e:
        raise InputError(e.message, field=f"file (record {e.record!r})" if e.record else "file") from None
    except ValueError as e:
        raise InputError(str(e), field="file") from None
