"""The N2G algorithm (Foote et al., arXiv 2305.19911), free of torch: it sees the model only through
:class:`~n2g_site.n2g.requests.ActivationSource`, so tests drive it with synthetic neurons.

Stages: :mod:`prune` (shortest context that keeps the peak), :mod:`saliency` (occlusion importance of each
context token), :mod:`graph` (lines -> trie), :mod:`predict` (trie -> per-token activations).
"""
