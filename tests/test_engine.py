import numpy as np
import torch

from n2g_site.engine import BatchedEngine
from n2g_site.n2g.requests import Request


def test_batched_engine_equals_one_request_at_a_time(tiny_model):
    texts = ["The cat sat.", "In Paris the museums open at nine.", "Rivers flow into the sea and on.", "A"]
    seqs = [tuple([tiny_model.bos_id] + tiny_model.encode(t)) for t in texts]
    requests = [Request(layer, neuron, s) for s in seqs for layer in (0, 1) for neuron in (3, 17, 40)]
    requests.append(requests[0])  # a duplicate is answered too
    engine = BatchedEngine(tiny_model, batch_tokens=20)
    batched = engine(requests)
    for req, got in zip(requests, batched):
        ref = tiny_model.mlp_activations(torch.tensor([req.tokens]), [req.layer])[req.layer][0, :, req.neuron]
        np.testing.assert_allclose(got, ref.numpy(), rtol=1e-5, atol=1e-6)
    # one row per distinct (layer, sequence), however many neurons asked
    assert engine.counters.rows == len(seqs) * 2
    assert engine.counters.requests == len(requests)
