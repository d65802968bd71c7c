"""The CPU math library gives the same, accurate numbers from a process's first call on.

MKL's vector math picks its kernels on the first call; when that first call ran on two
threads, one thread sometimes used a less accurate kernel (tanh off by 5e-5 relative in
about one fresh process in seven; this test caught it without the fix in
one run of twenty), so a resumed run drifted from the uninterrupted one.
``resolve_device`` settles the choice first; this checks a fresh process's first tanh.
"""

import subprocess
import sys

FIRST_CALL = """
import torch
from ganvas.utils.device import resolve_device
torch.set_num_threads(2)
resolve_device("cpu")
# values made without the math library (torch.randn would settle it through log and cos)
x = ((torch.arange(6144) * 7919 % 6133) / 6133.0 - 0.5).reshape(8, 16, 16, 3)
x = x.permute(0, 3, 1, 2)  # channels-last, as the generator's output was
y = torch.tanh(x)  # 6,144 values: split between the two threads
exact = torch.tanh(x.double())
error = ((y.double() - exact).abs() / exact.abs().clamp_min(1e-30)).max().item()
print(error)
"""


def test_first_elementwise_call_in_a_fresh_process_is_accurate():
    out = subprocess.run([sys.executable, "-c", FIRST_CALL], capture_output=True,
                         text=True, check=True)
    # float32 keeps 6e-8 relative; 1e-6 leaves 16 ulp of room, the bad kernel was 5e-5 off
    assert float(out.stdout) < 1e-6, out.stdout
