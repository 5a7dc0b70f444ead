"""Cross-Modal BERT with a tiny randomly initialised BERT built from a config (no download)."""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from deqfusion.errors import UserError  # noqa: E402
from deqfusion.fusion.registry import FusionFactory  # noqa: E402
from deqfusion.models.cmbert import (  # noqa: E402
    CrossModalBert,
    CrossModalHead,
    build_cmbert,
    cmbert_param_groups,
    tokenize_texts,
    warmup_linear,
)

WORDS = ["good", "bad", "movie", "the", "was", "really", "not", "i", "liked", "it", "sad", "part", "awesome"]
SEQ = 12


def save_tiny_bert(folder, hidden=32):
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    tok = transformers.BertTokenizer(str(vocab), do_lower_case=True)
    cfg = transformers.BertConfig(vocab_size=5 + len(WORDS), hidden_size=hidden, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    transformers.BertModel(cfg, add_pooling_layer=False).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny")


def _batch(tok, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    texts = [" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (int(k),), generator=g))
             for k in torch.randint(2, 9, (n,), generator=g)]
    enc = tokenize_texts(tok, texts, SEQ)
    audio = torch.randn(n, SEQ, 5, generator=g) * enc["attention_mask"][..., None]
    y = torch.empty(n).uniform_(-3, 3, generator=g)
    return enc, audio, y


def test_tokenize_pads_and_marks(tiny_bert):
    _, tok = build_cmbert(tiny_bert, fusion="cmbert", seq_len=SEQ)
    enc = tokenize_texts(tok, ["good movie", "the movie was really really not good at all " * 3], SEQ)
    assert enc["input_ids"].shape == (2, SEQ)
    assert enc["attention_mask"][0].tolist() == [1, 1, 1, 1] + [0] * (SEQ - 4)  # [CLS] good movie [SEP]
    assert enc["attention_mask"][1].sum() == SEQ  # truncated
    assert enc["input_ids"][0, 0] == tok.cls_token_id


@pytest.mark.parametrize("fusion", ["cmbert", "deq"])
def test_short_training_loss_falls(tiny_bert, fusion):
    torch.manual_seed(0)
    if fusion == "deq":
        fusion = FusionFactory("deq", f_max_iter=20, b_max_iter=20, groups=4, fusion_groups=1)
    model, tok = build_cmbert(tiny_bert, fusion=fusion, seq_len=SEQ, att_dropout=0.0, hidden_dropout=0.0)
    enc, audio, y = _batch(tok)
    opt = torch.optim.AdamW(cmbert_param_groups(model, lr=1e-3, head_lr=1e-2))
    losses = []
    for _ in range(15):
        pred, info = model(enc["input_ids"], enc["attention_mask"], audio, enc["token_type_ids"])
        loss = 0.5 * ((pred - y) ** 2).mean() + 0.01 * info.jac_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert pred.shape == (8,)
    assert losses[-1] < 0.75 * losses[0] and sum(losses[-3:]) < sum(losses[:3])
    if fusion == "deq":
        assert info.forward is not None and info.jac_loss.requires_grad


def test_padding_keys_get_no_attention_and_batch_independence(tiny_bert):
    torch.manual_seed(0)
    model, tok = build_cmbert(tiny_bert, fusion="cmbert", seq_len=SEQ)
    model.eval()
    enc, audio, _ = _batch(tok, n=4)
    with torch.no_grad():
        full, _ = model(enc["input_ids"], enc["attention_mask"], audio, enc["token_type_ids"])
        # changing padded audio positions must not change predictions
        audio2 = audio.clone()
        audio2[enc["attention_mask"] == 0] = 100.0
        padded, _ = model(enc["input_ids"], enc["attention_mask"], audio2, enc["token_type_ids"])
        one, _ = model(enc["input_ids"][:1], enc["attention_mask"][:1], audio[:1], enc["token_type_ids"][:1])
    torch.testing.assert_close(full, padded)
    # per-sample text scaling: a sample's prediction does not depend on its batch
    torch.testing.assert_close(full[:1], one)
    model.head.text_scale = "batch"  # the reference: it does
    with torch.no_grad():
        full_b, _ = model(enc["input_ids"], enc["attention_mask"], audio, enc["token_type_ids"])
        one_b, _ = model(enc["input_ids"][:1], enc["attention_mask"][:1], audio[:1], enc["token_type_ids"][:1])
    assert not torch.allclose(full_b[:1], one_b)


def test_param_groups_follow_the_reference(tiny_bert):
    model, _ = build_cmbert(tiny_bert, fusion=FusionFactory("deq", groups=4, fusion_groups=1), seq_len=SEQ)
    groups = {g["name"]: g for g in cmbert_param_groups(model, lr=2e-5, head_lr=1e-2, weight_decay=0.01)}
    names = {id(p): n for n, p in model.named_parameters()}
    head = {names[id(p)] for p in groups["head"]["params"]}
    assert "head.proj_t.weight" in head and "head.dense.weight" in head and "head.norm.weight" in head
    assert any(n.startswith("head.fusion.") for n in head)
    assert "head.classifier.weight" not in head
    nd = {names[id(p)] for p in groups["no_decay"]["params"]}
    assert all(n.endswith("bias") or "LayerNorm" in n for n in nd)
    assert groups["head"]["lr"] == 1e-2 and groups["no_decay"]["weight_decay"] == 0.0
    # embeddings are frozen as in the reference and in no group
    every = {names[id(p)] for g in groups.values() for p in g["params"]}
    assert not any(n.startswith("bert.embeddings") for n in every)
    assert every == {n for n, p in model.named_parameters() if p.requires_grad}


def test_head_input_checks():
    head = CrossModalHead(16, seq_len=10, fusion="cmbert")
    with pytest.raises(ValueError, match="both must be 10"):
        head(torch.randn(2, 8, 16), torch.randn(2, 8, 5), torch.ones(2, 8))
    with pytest.raises(ValueError, match="only takes"):
        CrossModalHead(16, seq_len=10, fusion="concat")
    with pytest.raises(ValueError, match="text_scale"):
        CrossModalHead(16, seq_len=10, fusion="cmbert", text_scale="global")


def test_missing_bert_folder(tmp_path):
    with pytest.raises(UserError, match="BERT folder not found"):
        build_cmbert(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="cannot load BERT"):
        build_cmbert(tmp_path / "empty")


def test_warmup_linear_schedule():
    f = warmup_linear(100, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == 0.0


def test_wraps_any_bert_module():
    cfg = transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32)
    m = CrossModalBert(transformers.BertModel(cfg), fusion="cmbert", seq_len=6)
    pred, info = m(torch.randint(0, 30, (3, 6)), torch.ones(3, 6, dtype=torch.long), torch.randn(3, 6, 5))
    assert pred.shape == (3,) and float(info.jac_loss) == 0.0
