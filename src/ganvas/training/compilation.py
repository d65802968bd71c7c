"""``--compile``: torch.compile of a network's blocks, in place.

A family's recipe calls its networks in several ways (``forward``, StyleGAN2's ``mapping`` and
``synthesis``, FastGAN's ``reconstruct``), so compiling only ``forward`` would miss most of the
work. Each block (a direct submodule, or each member of a list of them) is compiled instead:
whichever method runs, its arithmetic goes through compiled blocks. Compiling in place keeps
the weights' names, so checkpoints and exported generators do not change.
"""

from __future__ import annotations

from torch import nn


def compile_blocks(network: nn.Module) -> int:
    """Compile every block of ``network`` that holds weights; returns how many."""
    count = 0
    for child in network.children():
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            count += compile_blocks(child)
        elif any(True for _ in child.parameters()):
            child.compile()
            count += 1
    return count
