"""Run folders and their files, shared by training and inference.

``checkpoint`` (the trainer's checkpoint format), ``folders`` (numbered run folders),
``metrics`` (``metrics.jsonl``) and ``sources`` (the generator behind a run, a checkpoint or
an exported generator folder). Nothing here imports training code, so generate, eval and
doctor stay light.
"""
