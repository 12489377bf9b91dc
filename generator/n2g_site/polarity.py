"""A neuron's two sides (``--polarity``): which mined windows each side is fitted and scored on, and its sign.

The positive side is what the paper explains: the tokens where a neuron is highest, normalised by A_max (its
best training window). The negative side is the same analysis of -activation: its tokens are the neuron's
most negative ones, from the bottom mined windows, normalised by A_min (the most negative training
activation), so "fires" means activation <= fire_threshold x A_min. Hooks after a GELU reach about -0.17 at
most; a gated MLP's hook (SwiGLU: ``silu(gate) * up``) is signed, and its neurons often go further below 0
than above.
"""

from __future__ import annotations

from .config import UserError
from .store import SIDES, ExampleSet, MinedLayer

__all__ = ["SIDES", "SIGN", "side_windows"]

SIGN = {"positive": 1.0, "negative": -1.0}  # activation x SIGN[side]: the side's peaks are its maxima


def side_windows(mined: MinedLayer, side: str, split: str) -> ExampleSet:
    """The mined windows ``side`` is fitted (``split`` "train") or scored ("heldout") on: the top windows for
    the positive side, the bottom ones for the negative side (a UserError when the file has none). Their
    ``acts`` are raw activations: multiply by ``SIGN[side]``."""
    if side == "positive":
        return mined.train if split == "train" else mined.heldout
    found = mined.bottom_train if split == "train" else mined.bottom_heldout
    if found is None:
        raise UserError(
            f"mine/layer_{mined.layer:02d}.npz has no bottom windows (it was mined before they existed), and the "
            "negative side is fitted and scored on them: delete it and rerun `n2g-site mine`, or fit with "
            "--polarity positive"
        )
    return found
