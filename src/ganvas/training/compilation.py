"""``--compile``: torch.compile of a network's blocks, in place.

A family's recipe calls its networks in several ways (``forward``, StyleGAN2's ``mapping`` and
``synthesis``, FastGAN's ``reconstruct``), so compiling only ``forward`` would miss most of the
work. Each block (a direct submodule, or each member of a list of them) is compiled instead:
whichever method runs, its arithmetic goes through compiled blocks. Each block's ``forward``
is replaced by its compiled form (``Module.compile()`` compiles ``__call__``, which this
PyTorch's compiler skips as its own code), so the weights keep their names and checkpoints
and exported generators do not change.
"""

from __future__ import annotations

from torch import nn


def compile_blocks(network: nn.Module) -> int:
    """Compile every block of ``network`` that holds weights; returns how many."""
    # The simultaneous update differentiates one graph twice (D's loss, then G's), which a
    # compiled backward that reuses ("donates") its buffers refuses.
    import torch._functorch.config

    torch._functorch.config.donated_buffer = False
    count = 0
    for child in network.children():
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            count += compile_blocks(child)
        elif any(True for _ in child.parameters()):
            child.forward = torch.compile(child.forward)
            count += 1
    return count
