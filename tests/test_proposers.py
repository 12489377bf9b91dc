"""The real proposers: the analysed model's own next-token guesses, and a masked LM (tiny, built in-process)."""

import pytest
import torch

from n2g_site.config import FitConfig, UserError
from n2g_site.proposers import MlmProposer, SelfProposer, make_proposer


def test_self_proposer_reads_the_next_token_distribution(tiny_model):
    prompt = tuple([tiny_model.bos_id] + tiny_model.encode(" He lives in Paris and London"))
    out = SelfProposer(tiny_model, batch_tokens=16)([prompt, prompt[:3], prompt], [[2, 4], [], [1]])
    assert [len(o) for o in out] == [2, 0, 1]
    logits = tiny_model.bridge(torch.tensor([prompt[:4]])).float()
    expected = logits[0, 3].softmax(-1).topk(5)
    got = out[0][1][:5]  # position 4 is predicted from the logits at position 3
    assert [t for t, _ in got] == expected.indices.tolist()
    assert [p for _, p in got] == pytest.approx(expected.values.tolist(), rel=1e-4)
    assert all(a[1] >= b[1] for a, b in zip(out[0][0], out[0][0][1:]))  # most likely first


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import DistilBertConfig, DistilBertForMaskedLM, PreTrainedTokenizerFast

    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "he",
        "lives",
        "in",
        "at",
        "near",
        "paris",
        "london",
        "and",
        "the",
        "city",
        "##s",
        ".",
        "big",
    ]
    core = Tokenizer(models.WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(0)
    config = DistilBertConfig(
        vocab_size=len(words), dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=64
    )
    return tokenizer, DistilBertForMaskedLM(config)


def test_mlm_proposer_gives_single_tokens_of_the_analysed_model(tiny_model, tiny_mlm):
    tokenizer, mlm = tiny_mlm
    text = tiny_model.token_strings()
    proposer = MlmProposer(tokenizer, mlm, text, tiny_model.encode, first=1)
    prompt = tuple([tiny_model.bos_id] + tiny_model.encode(" He lives in Paris"))
    k = prompt.index(tiny_model.encode(" in")[0])
    [[candidates]] = proposer([prompt], [[k]])
    assert candidates, "the tiny MLM's words all exist as single SmolLM2 tokens"
    for token, prob in candidates:
        assert 0 < prob <= 1
        assert text[token].startswith(" ")  # keeps the replaced token's leading space
        assert "##" not in text[token] and text[token].strip() in tokenizer.get_vocab()
    paris = prompt.index(tiny_model.encode(" Paris")[0])
    [[capitalised]] = proposer([prompt], [[paris]])
    words = [text[t].strip() for t, _ in capitalised if text[t].strip().isalpha()]
    assert words and all(w[0].isupper() for w in words)  # title case follows the replaced word


def test_auto_falls_back_to_self_offline_and_mlm_fails_clearly(tiny_model, tmp_path):
    text = tiny_model.token_strings()
    cfg = FitConfig(augmenter="auto", mlm_model=str(tmp_path / "no-such-mlm"))
    assert make_proposer(cfg, tiny_model, text, 1024).name == "self"
    with pytest.raises(UserError, match="--mlm-model .* could not be loaded"):
        make_proposer(FitConfig(augmenter="mlm", mlm_model=str(tmp_path / "no-such-mlm")), tiny_model, text, 1024)
    assert make_proposer(FitConfig(augmenter="none"), tiny_model, text, 1024) is None


def _old_self_proposals(model, prompts, positions):
    """The proposer as it was: full logits [B, W, V] to the host, softmax there, top-k per position."""
    out = []
    for prompt, where in zip(prompts, positions):
        if not where:
            out.append([])
            continue
        logits = model.bridge(torch.tensor([prompt[: max(where)]])).float().cpu()
        probs = logits.softmax(dim=-1)
        top = [probs[0, k - 1].topk(32) for k in where]
        out.append([list(zip(t.indices.tolist(), t.values.tolist())) for t in top])
    return out


def test_self_proposer_unembeds_only_the_asked_positions_and_equals_the_full_logits(tiny_model):
    texts = [" He lives in Paris and London", " The city is big and the river is long", " A"]
    prompts = [tuple([tiny_model.bos_id] + tiny_model.encode(t)) for t in texts]
    positions = [[2, 4, 6], [1, 5, 8, 9], [1]]
    unembedded = []
    hook = tiny_model.bridge.unembed.register_forward_hook(lambda m, args, out: unembedded.append(args[0].shape))
    try:
        got = SelfProposer(tiny_model, batch_tokens=4096)(prompts, positions)
    finally:
        hook.remove()
    assert unembedded == [torch.Size([1, 8, tiny_model.bridge.cfg.d_model])]  # 8 positions, not 3 x 9
    want = _old_self_proposals(tiny_model, prompts, positions)
    for a, b in zip(got, want):
        for x, y in zip(a, b):
            assert [t for t, _ in x] == [t for t, _ in y]
            assert [p for _, p in x] == pytest.approx([p for _, p in y], rel=1e-5, abs=1e-9)


def test_self_proposer_without_an_unembedding_hook_picks_positions_from_the_full_logits():
    class Bridge:  # a model that only gives full logits (no unembed.hook_in)
        def parameters(self):
            return iter([torch.zeros(1)])

        def __call__(self, tokens):
            torch.manual_seed(int(tokens.sum()))
            return torch.randn(*tokens.shape, 50)

    class Model:
        bridge, device, d_vocab = Bridge(), torch.device("cpu"), 50

    prompts, positions = [(1, 2, 3, 4, 5), (7, 8, 9)], [[2, 4], [1]]
    got = SelfProposer(Model())(prompts, positions)
    # one batch, sorted by the last position asked: prompt 1's prefix (7), then prompt 0's (1, 2, 3, 4)
    logits = Model.bridge(torch.tensor([[7, 0, 0, 0], [1, 2, 3, 4]]))
    for (i, k), proposals in zip([(1, 2), (1, 4), (0, 1)], [got[0][0], got[0][1], got[1][0]]):
        top = logits[i, k - 1].softmax(-1).topk(32)
        assert [t for t, _ in proposals] == top.indices.tolist()


class _NoBosModel:
    """A stand-in for a model without a doc-start token (bos_id None) and without an unembedding hook: its
    logits at position p are a fixed function of the token there, so each proposal names its context."""

    bos_id = None
    device = torch.device("cpu")

    def __init__(self, vocab: int = 11) -> None:
        self.calls: list[tuple[int, ...]] = []
        self.bridge = self._logits
        self.vocab = vocab

    def _logits(self, tokens: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(tokens.shape))
        return torch.nn.functional.one_hot((tokens + 1) % self.vocab, self.vocab).float() * 10


def test_self_proposer_gives_position_0_no_candidates_without_a_doc_start_token():
    """Position 0 has no left context: no proposals (not the logits of the last position), and a prompt
    whose only asked position is 0 runs nothing and raises nothing."""
    model = _NoBosModel()
    proposer = SelfProposer(model, batch_tokens=64)
    out = proposer([(3, 5, 7), (4, 6), (2, 9, 1)], [[0], [0, 1], [2, 0]])
    assert out[0] == [[]]
    assert out[1][0] == [] and out[1][1][0][0] == 5  # position 1 predicted from token 4 at position 0
    assert out[2][1] == [] and out[2][0][0][0] == 10  # position 2 predicted from token 9 at position 1
    assert all(len(shape) == 2 and shape[1] >= 1 for shape in model.calls)
    assert proposer([(3,)], [[0]]) == [[[]]]
