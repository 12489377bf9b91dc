"""n2g-site: Neuron to Graph (N2G) for every MLP neuron of a language model, published as a static site."""

__version__ = "0.1.0"
