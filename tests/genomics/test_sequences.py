"""Sequence readers on every format (plain and gzipped, malformed files), normalization and its errors,
CDS labels against hand-checked spans of the chloroplast fixture, sliding windows, stratified splits,
and (when ../shared/data is there) the counts of the real data sets."""

from __future__ import annotations

import gzip
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from Bio import SeqIO
from Bio.Seq import Seq, reverse_complement
from Bio.SeqFeature import AfterPosition, BeforePosition, CompoundLocation, SeqFeature, SimpleLocation
from Bio.SeqRecord import SeqRecord

from services.genomics import sequences as sq

DATA = Path(__file__).resolve().parent.parent / "data" / "genomics"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
REAL_FILES = [
    "genomics/splice.data",
    "genomics/promoters.data",
    "genomics/lambda_J02459.fasta",
    "genomics/NC_000932.gb",
]
REAL_FILES += ["rna/nRC_train.fasta", "rna/nRC_test.fasta"]
needs_shared = pytest.mark.skipif(
    not all((SHARED / f).is_file() for f in REAL_FILES), reason="the real data in ../shared/data is not here"
)


# --- normalize --------------------------------------------------------------------------------------------


def test_normalize_case_rna_and_iupac():
    assert sq.normalize("acgtACGT") == "ACGTACGT"
    assert sq.normalize("ACGUu") == "ACGTT"
    assert sq.normalize("ARYSWKMBDHVNrysw" + "kmbdhvnT") == "A" + "N" * 22 + "T"
    assert sq.normalize("  acgt\n") == "ACGT"  # surrounding whitespace is not part of the sequence
    assert set(sq.normalize("acgturyn")) <= set(sq.ALPHABET)


def test_normalize_u_is_invalid_for_dna():
    with pytest.raises(sq.SequenceError, match=r"invalid character 'U' at position 2 \(allowed: A C G T,"):
        sq.normalize("ACUG", rna=False)


@pytest.mark.parametrize("bad, position", [("ACGTX", 4), ("AC-GT", 2), ("A.CG", 1), ("ACG*", 3), ("AC1", 2)])
def test_normalize_names_record_position_and_character(bad, position):
    with pytest.raises(sq.SequenceError) as info:
        sq.normalize(bad, record="seq2")
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.record, err.position) == ("seq2", position)
    assert str(err) == err.message
    assert err.message == (
        f"record 'seq2': invalid character {bad[position]!r} at position {position} "
        "(allowed: A C G T U, IUPAC codes, any case)"
    )


def test_normalize_inner_whitespace_and_empty():
    with pytest.raises(sq.SequenceError, match=r"invalid character ' ' at position 2"):
        sq.normalize("AC GT")
    # the position is in the string as given, leading whitespace included
    with pytest.raises(sq.SequenceError, match=r"invalid character '\\t' at position 4") as info:
        sq.normalize("  AC\tGT")
    assert info.value.position == 4
    for empty in ("", "  \n"):
        with pytest.raises(sq.SequenceError, match=r"^record 'x': empty sequence$") as info:
            sq.normalize(empty, record="x")
        assert info.value.position is None


# --- FASTA, FASTQ, GenBank ------------------------------------------------------------------------------------


def test_fasta_reader_and_gzip_by_magic_bytes(tmp_path):
    plain = sq.read_fasta(DATA / "lambda_J02459_2kb.fasta")
    assert len(plain) == 1
    rec = plain[0]
    assert (rec.id, rec.description, rec.label) == ("J02459", "<Lambda Phage - Snapgene website>", None)
    assert len(rec.sequence) == 2000 and rec.sequence.startswith("GGGCGGCGACCTCGCGGGTT")
    assert sq.read_fasta(DATA / "lambda_J02459_2kb.fasta.gz") == plain
    # gzip without the suffix, and a plain file with a misleading one
    disguised = tmp_path / "lambda.fa"
    shutil.copy(DATA / "lambda_J02459_2kb.fasta.gz", disguised)
    assert sq.read_fasta(disguised) == plain
    lying = tmp_path / "lambda.fa.gz"
    shutil.copy(DATA / "lambda_J02459_2kb.fasta", lying)
    assert sq.read_sequences(lying) == plain


def test_fasta_round_trip_normalizes(tmp_path):
    path = tmp_path / "x.fasta"
    path.write_text("\n>s1 first one\nacgu\nRYN\n\n>s2\nACGT\n")
    records = sq.read_fasta(path)
    assert records == [sq.Record("s1", "ACGTNNN", "first one"), sq.Record("s2", "ACGT")]
    out = tmp_path / "y.fasta"
    out.write_text("".join(f">{r.id} {r.description}\n{r.sequence}\n" for r in records))
    assert sq.read_fasta(out) == records
    assert sq.parse_fasta_text(path.read_text()) == records


def test_fasta_errors_name_file_record_and_position(tmp_path):
    bad = tmp_path / "bad.fasta"
    bad.write_text(">seq1\nACGT\n>seq2\nACGTACGTACGTACGTAXGT\n")
    with pytest.raises(sq.SequenceError) as info:
        sq.read_fasta(bad)
    assert str(info.value).startswith(f"{bad}: record 'seq2': invalid character 'X' at position 17")
    assert (info.value.record, info.value.position) == ("seq2", 17)

    headerless = tmp_path / "headerless.fasta"
    headerless.write_text("ACGT\nACGT\n")
    with pytest.raises(ValueError, match=r"headerless.fasta: not FASTA: expected a '>' header line first"):
        sq.read_fasta(headerless)
    with pytest.raises(sq.SequenceError, match=r"<upload>: record 'b': empty sequence"):
        sq.parse_fasta_text(">a\nAC\n>b\n")
    with pytest.raises(sq.SequenceError, match=r"<upload>: record 'a': invalid character ';' at position 2"):
        sq.parse_fasta_text(">a\nAC\n;comment\nGT\n")
    for empty in ("", "\n \n"):
        with pytest.raises(ValueError, match="no records"):
            sq.parse_fasta_text(empty)
    empty_file = tmp_path / "empty.fa"
    empty_file.write_text("")
    with pytest.raises(ValueError, match=r"empty.fa: no records"):
        sq.read_fasta(empty_file)


def test_fastq_reader_and_errors(tmp_path):
    reads = sq.read_fastq(DATA / "reads.fastq")
    assert [r.id for r in reads] == ["read1", "read2", "read3"]
    assert reads[0].description == "sample=A lane=1"
    assert reads[1].sequence == "ACGTNNACGTNNACGT" and reads[2].sequence == "ACGTTGCA"
    assert sq.read_sequences(DATA / "reads.fastq") == reads

    cases = {
        "@r1\nACGT\n+\nIII\n": "Lengths of sequence and quality values differs",
        "@r1\nACGT\n+\nIIII\n@r2\nAC\n": "End of file without quality",  # truncated record
        "ACGT\n+\nIIII\n": "should start with '@'",
    }
    for i, (text, what) in enumerate(cases.items()):
        path = tmp_path / f"bad{i}.fq"
        path.write_text(text)
        with pytest.raises(ValueError, match=rf"bad{i}.fq: malformed FASTQ: .*{what}"):
            sq.read_fastq(path)
    padded = tmp_path / "padded.fq.gz"
    padded.write_bytes(gzip.compress(b"\n\n" + (DATA / "reads.fastq").read_bytes()))
    assert sq.read_fastq(padded) == reads
    path = tmp_path / "badchar.fq"
    path.write_text("@r1\nAC-T\n+\nIIII\n")
    with pytest.raises(sq.SequenceError, match=r"badchar.fq: record 'r1': invalid character '-' at position 2"):
        sq.read_fastq(path)


@pytest.mark.filterwarnings("ignore::Bio.BiopythonParserWarning")  # the cut feature table also warns
def test_genbank_reader_and_errors(tmp_path):
    records = sq.read_genbank(DATA / "NC_000932_7kb.gb")
    assert len(records) == 1
    assert records[0].id == "NC_000932.1" and len(records[0].sequence) == 7300
    assert records[0].description.startswith("Arabidopsis thaliana chloroplast")
    assert sq.read_sequences(DATA / "NC_000932_7kb.gb") == records

    text = (DATA / "NC_000932_7kb.gb").read_text()
    truncated = tmp_path / "truncated.gb"
    truncated.write_text(text[: text.index("ORIGIN") + 300])  # cut inside the sequence, no '//'
    with pytest.raises(ValueError, match=r"truncated.gb: malformed GenBank: Premature end"):
        sq.read_genbank(truncated)
    cut_features = tmp_path / "cut_features.gb"
    cut_features.write_text(text[: text.index("complement(383") + 14])
    with pytest.raises(ValueError, match=r"cut_features.gb: malformed GenBank"):
        sq.read_genbank(cut_features)
    not_genbank = tmp_path / "not.gb"
    not_genbank.write_text("hello\n")
    with pytest.raises(ValueError, match=r"not.gb: no records"):
        sq.read_genbank(not_genbank)


def test_read_sequences_dispatch(tmp_path):
    fasta = tmp_path / "noext"
    fasta.write_bytes(gzip.compress(b">a\nACGT\n"))
    assert sq.read_sequences(fasta) == [sq.Record("a", "ACGT")]
    # content decides over the suffix
    fastq_named_fasta = tmp_path / "reads.fa"
    shutil.copy(DATA / "reads.fastq", fastq_named_fasta)
    assert len(sq.read_sequences(fastq_named_fasta)) == 3
    # the suffix decides when the content does not tell, and the parser names the problem
    headerless = tmp_path / "x.fasta.gz"
    headerless.write_bytes(gzip.compress(b"ACGT\n"))
    with pytest.raises(ValueError, match="not FASTA"):
        sq.read_sequences(headerless)
    unknown = tmp_path / "x.txt"
    unknown.write_text("ACGT\n")
    with pytest.raises(ValueError, match="cannot tell the format"):
        sq.read_sequences(unknown)


# --- labelled data sets ----------------------------------------------------------------------------------


def test_labelled_csv_beacon_and_genomic_benchmarks_style(tmp_path):
    beacon = sq.read_labelled_csv(DATA / "beacon_sample.csv")
    assert [r.id for r in beacon] == ["rna0", "rna1", "rna2", "rna3", "rna4"]
    assert [r.label for r in beacon] == ["1", "0", "1", "0", "2"]
    assert beacon[0].sequence == "TGCCGCCTGACAAGTCAATGCGAT" and beacon[1].sequence == "CCGTAGGGGCAGCGCAGTATGCCA"

    plain = tmp_path / "gb.csv"
    plain.write_text("seq,label\nacgt,positive\nAAAA,negative\n")
    assert sq.read_labelled_csv(plain) == [
        sq.Record("1", "ACGT", label="positive"),
        sq.Record("2", "AAAA", label="negative"),
    ]
    other = tmp_path / "other.csv"
    other.write_text("sequence,target\nACGT,1\n")
    assert sq.read_labelled_csv(other, sequence_column="sequence", label_column="target")[0].label == "1"
    with pytest.raises(
        ValueError, match=r"missing column\(s\) \['seq', 'label'\]; the header has \['sequence', 'target'\]"
    ):
        sq.read_labelled_csv(other)
    bad = tmp_path / "bad.csv"
    bad.write_text("seq,label\nACGT,1\nACXT,0\n")
    with pytest.raises(sq.SequenceError, match=r"bad.csv:3: record '2': invalid character 'X' at position 2"):
        sq.read_labelled_csv(bad)


def test_genomic_benchmarks_folder(tmp_path):
    splits = sq.read_genomic_benchmarks_folder(DATA / "genomic_benchmarks_demo")
    assert set(splits) == {"train", "test"}
    assert Counter(r.label for r in splits["train"]) == {"negative": 4, "positive": 3}
    assert Counter(r.label for r in splits["test"]) == {"negative": 2, "positive": 2}
    assert [r.id for r in splits["train"]][:4] == ["negative/0", "negative/1", "negative/2", "negative/10"]
    assert all(len(r.sequence) == 40 for s in splits.values() for r in s)
    with pytest.raises(ValueError, match=r"no test/ folder"):
        shutil.copytree(DATA / "genomic_benchmarks_demo" / "train", tmp_path / "train")
        sq.read_genomic_benchmarks_folder(tmp_path)


def test_uci_splice_and_promoters(tmp_path):
    splice = sq.read_uci_splice(DATA / "splice_sample.data")
    assert len(splice) == 14 and Counter(r.label for r in splice) == {"EI": 4, "IE": 6, "N": 4}
    assert all(len(r.sequence) == 60 and set(r.sequence) <= set(sq.ALPHABET) for r in splice)
    first = splice[0]
    assert (first.id, first.label) == ("ATRINS-DONOR-521", "EI") and first.sequence.startswith("CCAGCTGCAT")
    by_id = {r.id: r.sequence for r in splice}
    assert by_id["HUMMHB27B-ACCEPTOR-1202"][0] == "N"  # D
    assert by_id["HUMSPRO-ACCEPTOR-2841"][34] == "N"  # R
    assert by_id["HUMSPRO-ACCEPTOR-3195"][35] == "N"  # S

    promoters = sq.read_uci_promoters(DATA / "promoters_sample.data")
    assert [r.label for r in promoters] == ["+"] * 3 + ["-"] * 3
    assert promoters[0].id == "S10" and promoters[0].sequence.startswith("TACTAGCAATACG")
    assert promoters[3].id == "867"
    assert all(len(r.sequence) == 57 for r in promoters)

    bad = tmp_path / "splice.data"
    bad.write_text("EI, A, ACGT\nXX, B, ACGT\n")
    with pytest.raises(ValueError, match=r"splice.data:2: class 'XX' is none of \['EI', 'IE', 'N'\]"):
        sq.read_uci_splice(bad)
    bad.write_text("EI, A ACGT\n")
    with pytest.raises(ValueError, match=r"splice.data:1: expected 'class, name, sequence'"):
        sq.read_uci_splice(bad)


def test_nrc_fasta_labels_are_last_header_word(tmp_path):
    records = sq.read_nrc_fasta(DATA / "nrc_style.fasta")
    assert [r.label for r in records] == ["5S_rRNA", "5S_rRNA", "tRNA", "tRNA", "miRNA", "miRNA"]
    assert records[0].id == "RF99000_MADEUP0000_1_75" and len(records[0].sequence) == 75
    assert "U" not in "".join(r.sequence for r in records)
    unlabelled = tmp_path / "u.fasta"
    unlabelled.write_text(">only_id\nACGU\n")
    with pytest.raises(ValueError, match=r"record 'only_id': no family label"):
        sq.read_nrc_fasta(unlabelled)


# --- CDS labels --------------------------------------------------------------------------------------------


def test_cds_labels_match_hand_checked_spans():
    seq, mask = sq.read_genbank_cds(DATA / "NC_000932_7kb.gb")
    assert mask.dtype == np.uint8 and mask.shape == (len(seq),) == (7300,)
    assert set(np.unique(mask)) == {0, 1}
    # psbA: complement(383..1444), start codon on the minus strand at its right end, stop at its left end
    assert mask[382:1444].all() and mask[381] == 0 and mask[1444] == 0
    assert reverse_complement(seq[1441:1444]) == "ATG" and reverse_complement(seq[382:385]) == "TAA"
    # psbK: 7017..7202 on the plus strand
    assert mask[7016:7202].all() and mask[7015] == 0 and mask[7202] == 0
    assert seq[7016:7019] == "ATG" and seq[7199:7202] == "TAA"
    # rps16: complement(join(5084..5283,6149..6188)), the intron stays 0
    assert mask[5083:5283].all() and mask[6148:6188].all() and not mask[5283:6148].any()
    # trnK's tRNA join around matK is not a CDS: only matK (2056..3570) is coding there
    assert not mask[1716:2055].any() and mask[2055:3570].all() and not mask[3570:4347].any()
    assert mask.sum() == 1062 + 1515 + 200 + 40 + 186
    assert sq.cds_labels(DATA / "NC_000932_7kb.gb")[1].tolist() == mask.tolist()


def test_cds_labels_fuzzy_ends_joins_and_other_records():
    record = SeqRecord(Seq("acgt" * 10), id="toy")
    record.features = [
        SeqFeature(
            CompoundLocation([SimpleLocation(0, 3, 1), SimpleLocation(BeforePosition(6), AfterPosition(9), 1)]), "CDS"
        ),
        SeqFeature(SimpleLocation(30, 45, -1), "CDS"),  # runs past the end: clipped
        SeqFeature(SimpleLocation(12, 20, 1), "gene"),
        SeqFeature(SimpleLocation(12, 20, 1, ref="OTHER.1"), "CDS"),  # on another record
    ]
    seq, mask = sq.cds_labels(record)
    assert seq == "ACGT" * 10
    expected = np.zeros(40, dtype=np.uint8)
    expected[[0, 1, 2, 6, 7, 8]] = 1
    expected[30:] = 1
    assert mask.tolist() == expected.tolist()


# --- windows and splits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "length, window, overlap", [(100, 30, 10), (101, 30, 10), (90, 30, 0), (31, 30, 29), (1000, 64, 16)]
)
def test_sliding_windows_cover_and_overlap(length, window, overlap):
    windows = sq.sliding_windows(length, window, overlap)
    assert windows[0][0] == 0 and windows[-1][1] == length
    assert all(end - start == window for start, end in windows)
    covered = np.zeros(length, dtype=bool)
    for start, end in windows:
        covered[start:end] = True
    assert covered.all()
    for (s0, e0), (s1, _) in zip(windows, windows[1:]):
        assert s0 < s1 and e0 - s1 >= overlap
    # only the last window may move left (sharing more than `overlap`)
    assert all(e0 - s1 == overlap for (_, e0), (s1, _) in zip(windows[:-1], windows[1:-1]))


def test_sliding_windows_short_and_invalid():
    assert sq.sliding_windows(10, 30, 5) == [(0, 10)]
    assert sq.sliding_windows(30, 30, 5) == [(0, 30)]
    assert sq.sliding_windows(100, 30, 10) == [(0, 30), (20, 50), (40, 70), (60, 90), (70, 100)]
    for window, overlap in ((10, 10), (10, 12), (10, -1)):
        with pytest.raises(ValueError, match="window > overlap >= 0"):
            sq.sliding_windows(100, window, overlap)
    with pytest.raises(ValueError, match="length"):
        sq.sliding_windows(0, 10, 2)


def test_stratified_split_properties():
    labels = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 20 + ["d"])
    train, test = sq.stratified_split(labels, test_fraction=0.2, seed=3)
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
    assert Counter(labels[test].tolist()) == {"a": 10, "b": 6, "c": 4}  # "d" (one sample) stays in train
    again = sq.stratified_split(list(labels), test_fraction=0.2, seed=3)
    assert np.array_equal(again[1], test)
    assert not np.array_equal(sq.stratified_split(labels, test_fraction=0.2, seed=4)[1], test)
    _, small = sq.stratified_split(["x", "x", "y", "y"], test_fraction=0.01)
    assert len(small) == 2  # every class of two or more has at least one test sample
    with pytest.raises(ValueError, match="test_fraction"):
        sq.stratified_split(labels, test_fraction=1.0)


def test_stratified_folds_properties():
    labels = np.array([0] * 23 + [1] * 17 + [2] * 10)
    folds = sq.stratified_folds(labels, k=5, seed=1)
    assert len(folds) == 5
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(len(labels)))  # disjoint and covering
    assert max(len(f) for f in folds) - min(len(f) for f in folds) <= 1
    for fold in folds:
        counts = Counter(labels[fold].tolist())
        assert counts[0] in (4, 5) and counts[1] in (3, 4) and counts[2] == 2
    assert all(np.array_equal(a, b) for a, b in zip(folds, sq.stratified_folds(labels, k=5, seed=1)))
    with pytest.raises(ValueError, match="k"):
        sq.stratified_folds(labels, k=1)
    with pytest.raises(ValueError, match="k"):
        sq.stratified_folds([0, 1], k=3)


# --- the real data sets (skipped without ../shared/data) ----------------------------------------------------


@needs_shared
def test_real_uci_sets():
    splice = sq.read_uci_splice(SHARED / "genomics" / "splice.data")
    assert len(splice) == 3190 and Counter(r.label for r in splice) == {"EI": 767, "IE": 768, "N": 1655}
    assert {len(r.sequence) for r in splice} == {60}
    promoters = sq.read_uci_promoters(SHARED / "genomics" / "promoters.data")
    assert len(promoters) == 106 and Counter(r.label for r in promoters) == {"+": 53, "-": 53}
    assert {len(r.sequence) for r in promoters} == {57}


@needs_shared
def test_real_genomes():
    (lam,) = sq.read_sequences(SHARED / "genomics" / "lambda_J02459.fasta")
    assert len(lam.sequence) == 48514
    record = sq.read_genbank(SHARED / "genomics" / "NC_000932.gb")[0]
    assert len(record.sequence) == 154478
    seq, mask = sq.read_genbank_cds(SHARED / "genomics" / "NC_000932.gb")
    cds = [f for f in SeqIO.read(SHARED / "genomics" / "NC_000932.gb", "genbank").features if f.type == "CDS"]
    assert len(cds) == 85
    assert seq == record.sequence and 0.3 < mask.mean() < 0.7
    # the fixture is this record cut at 7,300 bp
    assert seq[:7300] == sq.read_genbank(DATA / "NC_000932_7kb.gb")[0].sequence


@needs_shared
def test_real_nrc():
    train = sq.read_nrc_fasta(SHARED / "rna" / "nRC_train.fasta")
    test = sq.read_nrc_fasta(SHARED / "rna" / "nRC_test.fasta")
    assert len(train) == 6320 and len(test) == 2600
    counts = Counter(r.label for r in train)
    assert len(counts) == 13 and counts["IRES"] == 320 and set(Counter(r.label for r in test).values()) == {200}
