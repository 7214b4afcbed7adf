"""DNA/RNA sequence data for the genomics models: readers, validation, coding-region labels, windows and
stratified splits.

Every reader returns :class:`Record` objects whose sequence is normalized by :func:`normalize` to the
alphabet ``A C G T N`` (upper case, ``U`` read as ``T``, IUPAC ambiguity codes as ``N``); any other
character raises :class:`SequenceError` naming the file, the record and the 0-based position. Formats:

* FASTA (``.fa .fasta .fna``), FASTQ (``.fastq .fq``, qualities checked and dropped) and GenBank
  (``.gb .gbk .genbank``), parsed with Biopython; each plain or gzipped (recognized by its magic bytes,
  whatever the suffix); :func:`read_sequences` picks the parser from the content, then the suffix;
* uploaded FASTA text (:func:`parse_fasta_text`, for the REST app);
* labelled CSV with a header (GenomicBenchmarks and BEACON exports: ``seq,label``, possibly with an id
  column first);
* GenomicBenchmarks folders: ``root/{train,test}/<class>/*.txt``, one sequence per file;
* UCI splice junctions (``splice.data``: ``EI|IE|N, name, 60-mer``) and E. coli promoters
  (``promoters.data``: ``+|-, name, 57-mer``);
* nRC ncRNA FASTA, where the last word of each header is the family label;
* GenBank CDS annotations as a per-nucleotide 0/1 coding mask (:func:`cds_labels`).

Malformed input raises ``ValueError`` (or its subclass :class:`SequenceError` for bad sequence content)
with the file, the line or record, and what was wrong; Biopython's own parser errors are wrapped so that
the message names the file. Splits (:func:`stratified_split`, :func:`stratified_folds`) are plain numpy
with ``default_rng(seed)``, not scikit-learn, so that they do not change with a scikit-learn upgrade.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from Bio import BiopythonParserWarning, SeqIO
from Bio.SeqIO.FastaIO import SimpleFastaParser
from Bio.SeqIO.QualityIO import FastqGeneralIterator
from Bio.SeqRecord import SeqRecord

ALPHABET = "ACGTN"

FASTA_SUFFIXES = (".fa", ".fasta", ".fna")
FASTQ_SUFFIXES = (".fastq", ".fq")
GENBANK_SUFFIXES = (".gb", ".gbk", ".genbank")
SPLICE_CLASSES = ("EI", "IE", "N")
PROMOTER_CLASSES = ("+", "-")


class SequenceError(ValueError):
    """An invalid or empty sequence. ``record`` names it (with the file, when read from one); ``position``
    is the 0-based index of the first bad character, ``None`` for an empty sequence."""

    def __init__(self, message: str, *, record: str = "", position: int | None = None):
        super().__init__(message)
        self.message = message
        self.record = record
        self.position = position


@dataclass
class Record:
    """One normalized sequence. ``description`` is the header text after the id (FASTA/FASTQ) or the
    DEFINITION line (GenBank); ``label`` is the class, as a string, for labelled data sets."""

    id: str
    sequence: str
    description: str = ""
    label: str | None = None


def normalize(seq: str, *, record: str = "sequence", rna: bool = True) -> str:
    """Upper-case ``seq``, read ``U`` as ``T`` (when ``rna``) and every IUPAC ambiguity code as ``N``.

    Surrounding whitespace is dropped; anything else outside ``A C G T U`` and the IUPAC codes (gaps
    ``-``/``.``, stops ``*``, digits, inner whitespace) raises :class:`SequenceError` with the position
    of the first offending character in ``seq``.
    """
    stripped = seq.strip()
    if not stripped:
        raise SequenceError(f"record {record!r}: empty sequence", record=record)
    out = stripped.translate(_RNA_TABLE if rna else _DNA_TABLE)
    bad = _INVALID.search(out)
    if bad is not None:
        # translate maps one character to one, so positions in `out` are positions in `stripped`
        position = bad.start() + len(seq) - len(seq.lstrip())
        allowed = "A C G T U" if rna else "A C G T"
        raise SequenceError(
            f"record {record!r}: invalid character {seq[position]!r} at position {position} "
            f"(allowed: {allowed}, IUPAC codes, any case)",
            record=record,
            position=position,
        )
    return out


def read_fasta(path: str | Path) -> list[Record]:
    with _open_text(path) as f:
        return _fasta_records(f, str(path))


def parse_fasta_text(text: str) -> list[Record]:
    """Records of uploaded FASTA content, validated like a file (errors name it ``<upload>``)."""
    return _fasta_records(io.StringIO(text), "<upload>")


def read_fastq(path: str | Path) -> list[Record]:
    """FASTQ reads (quality strings are checked for length, then dropped)."""
    records = []
    with _open_text(path) as f:
        try:
            _seek_past_blank_lines(f)
            for i, (title, seq, _quality) in enumerate(FastqGeneralIterator(f)):
                rid, description = _split_title(title)
                records.append(Record(rid, _normalized(seq, rid or f"#{i + 1}", str(path)), description))
        except SequenceError:
            raise
        except (ValueError, EOFError, gzip.BadGzipFile) as e:
            raise ValueError(f"{path}: malformed FASTQ: {e}") from None
    return _nonempty(records, path)


def read_genbank(path: str | Path) -> list[Record]:
    return [
        Record(rec.id, _normalized(_seq_str(rec, path), rec.id or f"#{i + 1}", str(path)), rec.description)
        for i, rec in enumerate(_genbank_records(path))
    ]


def read_sequences(path: str | Path) -> list[Record]:
    """FASTA, FASTQ or GenBank, plain or gzipped: chosen by the first line (``>``, ``@``, ``LOCUS``),
    else by the suffix (a trailing ``.gz`` ignored)."""
    readers = {"fasta": read_fasta, "fastq": read_fastq, "genbank": read_genbank}
    fmt = _sniff(path) or _format_from_suffix(path)
    if fmt is None:
        suffixes = " ".join(FASTA_SUFFIXES + FASTQ_SUFFIXES + GENBANK_SUFFIXES)
        raise ValueError(
            f"{path}: cannot tell the format: the first line starts with none of '>', '@', 'LOCUS' "
            f"and the suffix is none of {suffixes} (optionally .gz)"
        )
    return readers[fmt](path)


def read_labelled_csv(path: str | Path, *, sequence_column: str = "seq", label_column: str = "label") -> list[Record]:
    """CSV with a header (GenomicBenchmarks/BEACON exports). Columns are selected by name; ids come from
    the first column when it is neither the sequence nor the label (BEACON's id or index column), else
    they are the 1-based row numbers. Labels stay strings."""
    records = []
    with _open_text(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in (sequence_column, label_column) if c not in columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; the header has {columns}")
        id_column = columns[0] if columns[0] not in (sequence_column, label_column) else None
        for row_no, row in enumerate(reader, 1):
            line = f"{path}:{reader.line_num}"
            seq, label = row[sequence_column], row[label_column]
            if seq is None or label is None:
                raise ValueError(f"{line}: expected {len(columns)} fields ({columns}), got fewer")
            label = label.strip()
            if not label:
                raise ValueError(f"{line}: empty {label_column!r}")
            rid = row[id_column].strip() if id_column and row[id_column] else str(row_no)
            records.append(Record(rid, _normalized(seq, rid, line), label=label))
    return _nonempty(records, path)


def read_genomic_benchmarks_folder(root: str | Path) -> dict[str, list[Record]]:
    """GenomicBenchmarks layout ``root/{train,test}/<class>/*.txt``, one sequence per file; returns
    ``{"train": [...], "test": [...]}`` with ``label`` = class folder name and ``id`` = ``class/stem``,
    classes in name order and files in natural order (``2.txt`` before ``10.txt``)."""
    root = Path(root)
    out = {}
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            raise ValueError(f"{root}: no {split}/ folder (expected {split}/<class>/*.txt)")
        records = []
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            for file in sorted(class_dir.glob("*.txt"), key=_natural_key):
                with _open_text(file) as f:
                    seq = "".join(line.strip() for line in f)
                rid = f"{class_dir.name}/{file.stem}"
                records.append(Record(rid, _normalized(seq, rid, str(file)), label=class_dir.name))
        out[split] = _nonempty(records, folder)
    return out


def read_uci_splice(path: str | Path) -> list[Record]:
    """UCI primate splice junctions: ``EI|IE|N, name, 60-mer`` (codes D, N, S, R read as N)."""
    return _read_uci(path, SPLICE_CLASSES)


def read_uci_promoters(path: str | Path) -> list[Record]:
    """UCI E. coli promoters: ``+|-, name, 57-mer`` (lower case, tabs before the sequence)."""
    return _read_uci(path, PROMOTER_CLASSES)


def read_nrc_fasta(path: str | Path) -> list[Record]:
    """nRC ncRNA FASTA: the last word of each header is the family (``>RF00001_AF095839_1_346-228 5S_rRNA``)."""
    records = read_fasta(path)
    for rec in records:
        words = rec.description.split()
        if not words:
            raise ValueError(f"{path}: record {rec.id!r}: no family label after the id in the header")
        rec.label = words[-1]
    return records


def cds_labels(record: SeqRecord | str | Path) -> tuple[str, np.ndarray]:
    """The normalized sequence of a GenBank record (or single-record file) and a ``uint8`` mask with 1 on
    every nucleotide covered by a CDS feature on either strand, 0 elsewhere.

    Every part of a join counts (introns stay 0); fuzzy ends (``<1``, ``>500``) are taken at their
    stated position; parts on another record (``J00194.1:100..202``) or with unknown positions are
    skipped, and parts are clipped to the sequence.
    """
    if not isinstance(record, SeqRecord):
        return read_genbank_cds(record)
    name = record.id or record.name or "record"
    seq = normalize(_seq_str(record, name), record=name)
    mask = np.zeros(len(seq), dtype=np.uint8)
    for feature in record.features:
        if feature.type != "CDS" or feature.location is None:
            continue
        for part in feature.location.parts:
            if getattr(part, "ref", None):
                continue
            try:
                start, end = int(part.start), int(part.end)
            except (TypeError, ValueError):  # UnknownPosition
                continue
            mask[max(start, 0) : min(end, len(seq))] = 1
    return seq, mask


def read_genbank_cds(path: str | Path) -> tuple[str, np.ndarray]:
    """:func:`cds_labels` of the one record in a GenBank file."""
    records = _genbank_records(path)
    if len(records) != 1:
        raise ValueError(f"{path}: expected one GenBank record, found {len(records)}")
    try:
        return cds_labels(records[0])
    except SequenceError as e:
        raise SequenceError(f"{path}: {e.message}", record=e.record, position=e.position) from None


def sliding_windows(length: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """``(start, end)`` windows of ``window`` nucleotides covering ``[0, length)``, consecutive ones
    sharing at least ``overlap``. The last window ends at ``length`` (moved left, so sharing more, when the
    stride does not land there); a sequence no longer than ``window`` is one window ``(0, length)``."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if not window > overlap >= 0:
        raise ValueError(f"need window > overlap >= 0, got window={window}, overlap={overlap}")
    if length <= window:
        return [(0, length)]
    starts = list(range(0, length - window + 1, window - overlap))
    if starts[-1] + window < length:
        starts.append(length - window)
    return [(s, s + window) for s in starts]


def stratified_split(labels: Iterable, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices with about ``test_fraction`` of every class in test.

    Each class is shuffled with one ``numpy.random.default_rng(seed)`` (classes in sorted order) and its
    first ``round(n * test_fraction)`` indices go to test, at least one and at most ``n - 1`` for a class
    of two or more, so every class is on both sides; a class of one stays in train.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for idx in _class_indices(labels):
        idx = rng.permutation(idx)
        n_test = min(len(idx) - 1, max(1, round(len(idx) * test_fraction))) if len(idx) > 1 else 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def stratified_folds(labels: Iterable, k: int = 10, seed: int = 0) -> list[np.ndarray]:
    """``k`` disjoint sorted test-index arrays covering every index, each class spread evenly.

    Each class is shuffled (one ``default_rng(seed)``, classes in sorted order) and the concatenation is
    dealt round-robin to the folds, so fold sizes differ by at most one and a class of ``n`` lands
    ``n // k`` or ``n // k + 1`` times in every fold.
    """
    groups = _class_indices(labels)
    n = sum(len(g) for g in groups)
    if not 2 <= k <= n:
        raise ValueError(f"need 2 <= k <= number of samples ({n}), got k={k}")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(g) for g in groups])
    return [np.sort(order[f::k]) for f in range(k)]


# --- helpers ---------------------------------------------------------------------------------------------

_IUPAC_AMBIGUOUS = "RYSWKMBDHVN"
_DNA_TABLE = str.maketrans(
    {**{c: c.upper() for c in "acgt"}, **{c: "N" for c in _IUPAC_AMBIGUOUS + _IUPAC_AMBIGUOUS.lower()}}
)
_RNA_TABLE = {**_DNA_TABLE, ord("U"): "T", ord("u"): "T"}
_INVALID = re.compile(f"[^{ALPHABET}]")
# Biopython only warns on a GenBank file cut short; a silently shorter genome would shift every label
_FATAL_GENBANK_WARNINGS = r"Premature end|Expected sequence length"


def _normalized(seq: str, record: str, where: str) -> str:
    """:func:`normalize`, with ``where`` (file, file:line) in front of the message."""
    try:
        return normalize(seq, record=record)
    except SequenceError as e:
        raise SequenceError(f"{where}: {e.message}", record=e.record, position=e.position) from None


def _open_text(path: str | Path, newline: str | None = None) -> TextIO:
    # by magic bytes: downloads often lose or gain the .gz suffix
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if gzipped:
        return gzip.open(path, "rt", encoding="utf-8-sig", newline=newline)
    return open(path, encoding="utf-8-sig", newline=newline)


def _fasta_records(handle: TextIO, name: str) -> list[Record]:
    records = []
    try:
        lines = _skip_blank_start(handle)
        first = next(lines, None)
        if first is not None and not first.startswith(">"):
            raise ValueError(f"{name}: not FASTA: expected a '>' header line first, got {first.strip()[:40]!r}")
        for i, (title, seq) in enumerate(SimpleFastaParser(itertools.chain([first] if first else [], lines))):
            rid, description = _split_title(title)
            records.append(Record(rid, _normalized(seq, rid or f"#{i + 1}", name), description))
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"{name}: unreadable: {e}") from None
    return _nonempty(records, name)


def _genbank_records(path: str | Path) -> list[SeqRecord]:
    with _open_text(path) as f, warnings.catch_warnings():
        warnings.filterwarnings("error", message=_FATAL_GENBANK_WARNINGS, category=BiopythonParserWarning)
        try:
            records = list(SeqIO.parse(f, "genbank"))
        except (ValueError, BiopythonParserWarning, EOFError, gzip.BadGzipFile) as e:
            raise ValueError(f"{path}: malformed GenBank: {e}") from None
    return _nonempty(records, path)


def _seq_str(rec: SeqRecord, where: str | Path) -> str:
    try:
        return str(rec.seq)
    except Exception as e:  # Bio.Seq.UndefinedSequenceError: a CONTIG-only record has no letters
        raise ValueError(f"{where}: record {rec.id!r} has no sequence ({e})") from None


def _read_uci(path: str | Path, classes: tuple[str, ...]) -> list[Record]:
    records = []
    with _open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = [x.strip() for x in line.split(",")]
            if len(fields) != 3:
                raise ValueError(f"{path}:{line_no}: expected 'class, name, sequence', got {line.strip()[:60]!r}")
            label, name, seq = fields
            if label not in classes:
                raise ValueError(f"{path}:{line_no}: class {label!r} is none of {list(classes)}")
            records.append(Record(name, _normalized(seq, name, f"{path}:{line_no}"), label=label))
    return _nonempty(records, path)


def _split_title(title: str) -> tuple[str, str]:
    parts = title.split(None, 1)
    return (parts[0], parts[1].strip() if len(parts) > 1 else "") if parts else ("", "")


def _skip_blank_start(lines: Iterable[str]) -> Iterator[str]:
    """``lines`` from the first non-blank one on (Biopython reads leading blank lines as a comment)."""
    it = iter(lines)
    for line in it:
        if line.strip():
            return itertools.chain([line], it)
    return iter(())


def _seek_past_blank_lines(f: TextIO) -> None:
    """Move ``f`` to its first non-blank line (Biopython's FASTQ parser wants '@' on the very first)."""
    while True:
        position = f.tell()
        line = f.readline()
        if not line or line.strip():
            f.seek(position)
            return


def _sniff(path: str | Path) -> str | None:
    try:
        with _open_text(path) as f:
            first = next(_skip_blank_start(f), "")
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return None
    if first.startswith(">"):
        return "fasta"
    if first.startswith("@"):
        return "fastq"
    if first.startswith("LOCUS"):
        return "genbank"
    return None


def _format_from_suffix(path: str | Path) -> str | None:
    name = Path(path).name.lower().removesuffix(".gz")
    for fmt, suffixes in (("fasta", FASTA_SUFFIXES), ("fastq", FASTQ_SUFFIXES), ("genbank", GENBANK_SUFFIXES)):
        if name.endswith(suffixes):
            return fmt
    return None


def _nonempty(records: list, where: str | Path) -> list:
    if not records:
        raise ValueError(f"{where}: no records")
    return records


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.stem)]


def _class_indices(labels: Iterable) -> list[np.ndarray]:
    labels = np.asarray(list(labels))
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels must be a non-empty 1-D sequence, got shape {labels.shape}")
    return [np.flatnonzero(labels == c) for c in np.unique(labels)]
