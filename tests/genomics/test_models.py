"""Tokenizers, model shapes and sizes, causality and padding, heads, windowed inference, baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.genomics import baselines, inference
from services.genomics.models import PRESETS, GenomicsConfig, build_model, mask_tokens, preset
from services.genomics.tokenizer import BEACON, HYENA, reverse_complement
from services.genomics.wide import kmer_frequencies, kmer_tf, position_onehot, smooth_idf


# ---------------------------------------------------------------------------------------------- tokenizers
@pytest.mark.parametrize("tok", [HYENA, BEACON])
def test_tokenizer_round_trip_and_specials(tok):
    seq = "ACGTNNACGT"
    ids = tok.encode(seq)
    assert tok.decode(ids) == seq
    assert len(ids) == len(seq) + tok.special_count()
    assert tok.encode(seq, add_special=False) == [tok.id(c) for c in seq]
    assert set(tok.special_ids).isdisjoint(tok.base_ids)


def test_published_vocabularies():
    assert HYENA.vocab_size == 12 and HYENA.base_ids == [7, 8, 9, 10, 11] and HYENA.pad_id == 4
    assert HYENA.encode("AC") == [7, 8, 1]  # [SEP] ends LM sequences
    assert BEACON.vocab_size == 10 and BEACON.tokens[4:9] == ("A", "T", "C", "G", "N")
    assert BEACON.encode("AT") == [0, 4, 5, 2]  # <cls> A T <eos>


def test_padding_sides_and_refusals():
    ids, mask = HYENA.batch(["ACG", "A"], add_special=False)
    assert ids[1].tolist() == [4, 4, 7] and mask[1].tolist() == [False, False, True]  # left
    ids, mask = BEACON.batch(["ACG", "A"])
    assert ids[1].tolist() == [0, 4, 2, 1, 1] and mask[1].tolist() == [True, True, True, False, False]  # right
    with pytest.raises(ValueError, match="position 2"):
        HYENA.encode("ACU")
    with pytest.raises(ValueError, match="more than length"):
        HYENA.batch(["ACGT"], length=3, add_special=False)


def test_reverse_complement():
    assert reverse_complement("AACGTN") == "NACGTT"
    assert reverse_complement(reverse_complement("GATTACA")) == "GATTACA"


# ---------------------------------------------------------------------------------------------- sizes
@pytest.mark.parametrize(
    ("name", "published_m"),
    [("tiny-1k", 0.44), ("tiny-1k-d256", 1.6), ("small-32k", 3.3), ("medium-160k", 6.6), ("large-1m", 6.6),
     ("beacon-b", 86.0)],
)  # fmt: skip
def test_parameter_counts_match_the_published_models(name, published_m):
    with torch.device("meta"):
        model = build_model(PRESETS[name])
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert count == pytest.approx(published_m, rel=0.03), f"{name}: {count:.3f} M"


def test_transformer_comparator_has_the_same_shape():
    hyena = build_model(preset("tiny-1k"))
    transformer = build_model(preset("tiny-1k", arch="transformer"))
    assert transformer.config.d_model == 128 and len(transformer.blocks) == len(hyena.blocks) == 2
    ratio = sum(p.numel() for p in transformer.parameters()) / sum(p.numel() for p in hyena.parameters())
    assert 0.8 < ratio < 1.1


# ---------------------------------------------------------------------------------------------- behaviour
def _small(arch: str, **kw) -> GenomicsConfig:
    head = "mlm" if arch == "beacon" else "lm"
    return GenomicsConfig(arch=arch, d_model=32, n_layer=2, num_heads=4, l_max=64, embed_dropout=0.0, head=head, **kw)


@pytest.mark.parametrize("arch, attention", [("hyena", ""), ("transformer", ""), ("transformer", "sigmoid"),
                                             ("lightning", "")])  # fmt: skip
def test_causal_models_do_not_look_ahead(arch, attention):
    model = build_model(_small(arch, attention=attention)).eval()
    ids, mask = HYENA.batch(["ACGTACGTAC", "ACGTACGTTT"], add_special=False)
    logits = model(ids, mask)
    assert torch.allclose(logits[0, :8], logits[1, :8], atol=1e-5)
    assert not torch.allclose(logits[0, 8:], logits[1, 8:], atol=1e-5)


@pytest.mark.parametrize("arch, attention", [("hyena", ""), ("transformer", ""), ("beacon", ""), ("beacon", "sigmoid"),
                                             ("lightning", "")])  # fmt: skip
def test_padding_does_not_change_the_pooled_output(arch, attention):
    cfg = _small(arch, attention=attention)
    model = build_model(GenomicsConfig(**{**cfg.to_dict(), "head": "classify", "num_outputs": 3})).eval()
    tok = model.tokenizer
    special = arch == "beacon"
    alone = model(*tok.batch(["ACGTTGCA"], add_special=special))
    padded = model(*tok.batch(["ACGTTGCA", "ACGTTGCAACGTTGCAAC"], add_special=special))[0:1]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_inference_in_token_chunks_gives_the_same_hidden_states(monkeypatch):
    from services.genomics.models import Mlp

    model = build_model(preset("tiny-1k")).eval()
    ids = torch.randint(7, 11, (2, 300))
    with torch.no_grad():
        whole = model.hidden(ids)
        calls = []
        hidden = Mlp._hidden
        monkeypatch.setattr(Mlp, "_hidden", lambda self, x: calls.append(len(x)) or hidden(self, x))
        monkeypatch.setattr(Mlp, "chunk_tokens", 64)
        chunked = model.hidden(ids)
    assert calls == [64] * 9 + [600 - 9 * 64] + [64] * 9 + [600 - 9 * 64]  # 2 blocks x 10 chunks of 2 x 300
    assert torch.allclose(chunked, whole, atol=1e-6, rtol=1e-5)


def test_heads_shapes_and_backbone_transfer():
    lm = build_model(_small("hyena"))
    ids, mask = HYENA.batch(["ACGTAC", "AC"], add_special=False)
    assert lm(ids, mask).shape == (2, 6, 16)
    tagger = lm.with_head("tag", 2, ["non", "coding"], task="coding")
    assert tagger(ids, mask).shape == (2, 6, 2)
    assert torch.equal(tagger.blocks[0].mlp.fc1.weight, lm.blocks[0].mlp.fc1.weight)
    classifier = lm.with_head("classify", 3, ["a", "b", "c"], pooling="last")
    assert classifier(ids, mask).shape == (2, 3)
    beacon = build_model(_small("beacon")).with_head("regress", 1)
    ids, mask = BEACON.batch(["ACGU".replace("U", "T"), "A"])
    assert beacon(ids, mask).shape == (2, 1)


@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
def test_pooling_reads_real_tokens_only(pooling):
    model = build_model(_small("hyena")).with_head("classify", 2, ["a", "b"], pooling=pooling).eval()
    ids, mask = HYENA.batch(["ACGTAC", "GTA"], add_special=False)  # the second is padded on the left
    with torch.no_grad():
        h = model.hidden(ids, mask)
        pooled = model.pooled(ids, mask, hidden=h)
    for row, n in enumerate((6, 3)):
        real = h[row, -n:]
        expected = {"mean": real.mean(0), "max": real.amax(0), "last": real[-1]}[pooling]
        assert torch.allclose(pooled[row], expected, atol=1e-6)
    with pytest.raises(ValueError, match="pooling"):
        GenomicsConfig(pooling="sum")


@pytest.mark.parametrize("tok", [HYENA, BEACON])
def test_wide_branches_read_the_features_of_the_linear_baselines(tok):
    from sklearn.feature_extraction.text import TfidfVectorizer

    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), n)) for n in (57, 9, 3, 120)]  # padded to 120 (left or right)
    ids, _ = tok.batch(seqs)
    tf = kmer_tf(ids, tok.base_ids[:4], 5)
    ours = kmer_frequencies(ids, tok.base_ids[:4], 5, smooth_idf(tf)).double().numpy()
    reference = TfidfVectorizer(analyzer="char", ngram_range=(1, 5), lowercase=False, sublinear_tf=True,
                                dtype=np.float64).fit_transform(seqs).toarray()  # fmt: skip
    for row, ref in zip(ours, reference):  # the same values (idf fitted on these four); only the column order differs
        assert np.allclose(np.sort(row[row > 0]), np.sort(ref[ref > 0]), atol=1e-6)
    ids, _ = tok.batch(["ACNGT"])
    two_mers = kmer_frequencies(ids, tok.base_ids[:4], 2)[0, 4:]
    assert int((two_mers > 0).sum()) == 2  # AC and GT: no window across N
    # the one-hot of each position, counted from the first base whatever the padding side and special tokens
    aligned = ["ACGTN" * 4, "TTGCA" * 4, "NNACG" * 4]
    ids, _ = tok.batch([*aligned, "ACG"])
    onehot = position_onehot(ids, tok.base_ids, 20).numpy()
    assert np.array_equal(onehot[:3], baselines.onehot(aligned))
    assert np.array_equal(onehot[3, :15], baselines.onehot(["ACG"])[0]) and not onehot[3, 15:].any()


def test_wide_branches_start_silent_and_survive_a_new_head():
    backbone = build_model(_small("hyena"))
    wide = backbone.with_head("classify", 3, ["a", "b", "c"], kmer_features=4, onehot_length=9)
    assert wide.wide.names == ("kmer", "onehot")
    assert wide.wide.kmer.weight.shape == (3, 4 + 16 + 64 + 256) and not wide.wide.kmer.weight.any()
    assert wide.wide.onehot.weight.shape == (3, 9 * 5) and not wide.wide.onehot.weight.any()
    assert torch.equal(wide.wide.kmer_idf, torch.ones(340))  # no idf until the branch is fitted
    plain = backbone.with_head("classify", 3, ["a", "b", "c"])
    plain.out.load_state_dict(wide.out.state_dict())
    ids, mask = HYENA.batch(["ACGTACGGT", "GTA"], add_special=False)
    assert torch.allclose(wide.eval()(ids, mask), plain.eval()(ids, mask))  # zero weights: the deep logits alone
    assert not hasattr(build_model(_small("hyena", kmer_features=4, onehot_length=9)), "wide")  # LM heads have none
    assert not plain.wide.names and not any(k.startswith("wide.") for k in plain.state_dict())
    with pytest.raises(ValueError, match="kmer_features"):
        GenomicsConfig(kmer_features=7)
    with pytest.raises(ValueError, match="onehot_length"):
        GenomicsConfig(onehot_length=2000)


def test_config_refuses_mismatched_heads():
    with pytest.raises(ValueError, match="bidirectional"):
        GenomicsConfig(arch="beacon", head="lm")
    with pytest.raises(ValueError, match="num_outputs"):
        GenomicsConfig(head="classify")
    with pytest.raises(ValueError, match="arch"):
        GenomicsConfig(arch="mamba")


def test_bert_masking_rates():
    ids, mask = BEACON.batch(["ACGT" * 500])
    inputs, targets = mask_tokens(ids, mask, BEACON, generator=torch.Generator().manual_seed(0))
    chosen = targets != -100
    assert 0.12 < chosen.float().mean() < 0.18
    assert not chosen[0, 0] and not chosen[0, -1]  # <cls> and <eos> are never targets
    masked = (inputs == BEACON.mask_id) & chosen
    assert 0.7 < masked.sum() / chosen.sum() < 0.9


# ---------------------------------------------------------------------------------------------- inference
def test_long_sequences_are_windowed_not_cut():
    model = build_model(GenomicsConfig(**{**_small("hyena").to_dict(), "head": "classify", "num_outputs": 2,
                                          "labels": ["a", "b"]})).eval()  # fmt: skip
    rng = np.random.default_rng(0)
    long = "".join(rng.choice(list("ACGT"), size=300))
    result = inference.class_probabilities(model, ["ACGT", long])
    assert result.windows[0] == 1 and result.windows[1] >= 300 // model.config.max_bases + 1
    assert np.allclose(result.values[1].sum(), 1.0)
    tagger = build_model(GenomicsConfig(**{**_small("hyena").to_dict(), "head": "tag", "num_outputs": 2}))
    probs, windows = inference.tag_probabilities(tagger.eval(), long)
    assert probs.shape == (300, 2) and windows > 1 and np.allclose(probs.sum(1), 1.0)


def test_windowed_log_likelihood_scores_every_base_once():
    model = build_model(_small("hyena")).eval()
    rng = np.random.default_rng(1)
    seq = "".join(rng.choice(list("ACGT"), size=200))
    windowed = inference.log_likelihoods(model, [seq]).values[0]
    assert windowed.shape == (199,) and np.all(windowed < 0)
    # the first window (the model's whole context) is scored exactly as one direct pass
    size = model.config.max_bases
    ids, mask = HYENA.batch([seq[:size]], add_special=False)
    direct = model.log_likelihood(ids, mask)[0].numpy()
    assert np.allclose(windowed[: size - 1], direct, atol=1e-5)
    # later bases are scored with the previous half-context as context, not from scratch
    ids, mask = HYENA.batch([seq[size - size // 2 : 2 * size - size // 2]], add_special=False)
    second = model.log_likelihood(ids, mask)[0].numpy()
    assert np.allclose(windowed[size - 1 : size - 1 + len(second) - (size // 2 - 1)], second[size // 2 - 1 :],
                       atol=1e-5)  # fmt: skip


def test_rc_averaging_makes_predictions_strand_symmetric():
    cfg = GenomicsConfig(**{**_small("hyena").to_dict(), "head": "classify", "num_outputs": 2, "rc_average": True})
    model = build_model(cfg).eval()
    seq = "ACGTTGCAAGGCTTAC"
    forward = inference.class_probabilities(model, [seq]).values[0]
    backward = inference.class_probabilities(model, [reverse_complement(seq)]).values[0]
    assert np.allclose(forward, backward, atol=1e-6)


# ---------------------------------------------------------------------------------------------- baselines
def test_markov_baseline_finds_the_true_order():
    from pipelines.genomics import synthetic_genome

    genome = synthetic_genome(40_000, seed=3, order=2)
    table = baselines.markov_table([genome[:35_000]], genome[35_000:], orders=range(1, 6))
    best = min(table, key=lambda r: r["bits_per_base"])
    assert best["k"] in (2, 3)
    assert table[0]["bits_per_base"] > best["bits_per_base"] + 0.05
    assert all(r["bases"] == table[0]["bases"] for r in table)


def test_linear_baselines_learn_positional_and_kmer_signals():
    from pipelines.genomics import synthetic_splice

    data = synthetic_splice(600, seed=1)
    train, test = data[:450], data[450:]
    x, y = [e.sequence for e in train], [e.label for e in train]
    truth = np.array([e.label for e in test])
    onehot = baselines.onehot_logistic(x, y, [e.sequence for e in test])
    assert (onehot.argmax(1) == truth).mean() > 0.9
    kmer = baselines.kmer_tfidf_logistic(x, y, [e.sequence for e in test])
    assert (kmer.argmax(1) == truth).mean() > 0.5  # chance is 1/3
    with pytest.raises(ValueError, match="equal lengths"):
        baselines.onehot(["ACG", "AC"])


def test_orf_rule_marks_long_open_reading_frames_on_both_strands():
    from services.genomics.tokenizer import reverse_complement

    orf = "ATG" + "GCT" * 100 + "TAA"  # 102 codons
    seq = "CC" + orf + "TTTTT"
    mask = baselines.orf_mask(seq)
    assert mask[2 : 2 + len(orf)].all() and mask.sum() == len(orf)
    flipped = baselines.orf_mask(reverse_complement(seq))
    assert np.array_equal(flipped, mask[::-1])
    assert baselines.orf_mask("ATG" + "GCT" * 50 + "TAA").sum() == 0  # too short


def test_beacon_is_post_norm_as_published_and_pre_norm_stays_an_option():
    from services.genomics.models import PRESETS as MODEL_PRESETS

    assert all(cfg.norm == "post" for name, cfg in MODEL_PRESETS.items() if cfg.arch == "beacon")
    torch.manual_seed(0)
    post = build_model(_small("beacon", norm="post")).eval()
    ids = torch.randint(5, 9, (2, 12))
    block = post.blocks[0]
    x = post.norm(post.embedding(ids))  # BERT's embedding LayerNorm, no final one
    x = block.norm1(x + block.mixer(x, torch.ones_like(ids, dtype=torch.bool)))
    x = block.norm2(x + block.mlp(x))
    for other in post.blocks[1:]:
        x = other(x, torch.ones_like(ids, dtype=torch.bool))
    assert torch.allclose(post.hidden(ids), x, atol=1e-6)
    pre = build_model(_small("beacon", norm="pre"))
    assert sum(p.numel() for p in pre.parameters()) == sum(p.numel() for p in post.parameters())
    with pytest.raises(ValueError, match="norm"):
        _small("beacon", norm="middle")


def test_attention_comes_from_the_core_registry_by_name():
    import shared_attention as sa

    cases = [
        ("transformer", "", sa.SoftmaxAttention),
        ("transformer", "sigmoid", sa.SigmoidAttention),
        ("beacon", "sigmoid", sa.SigmoidAttention),
        ("lightning", "", sa.LightningAttention),
    ]
    for arch, attention, layer in cases:
        model = build_model(_small(arch, attention=attention))
        assert isinstance(model.blocks[0].mixer.attn, layer), (arch, attention)
    with pytest.raises(ValueError, match="attention for arch 'lightning' must be one of"):
        GenomicsConfig(arch="lightning", attention="softmax")
