"""ganvas studio: a local browser app over the commands (``ganvas studio``).

The app (``app.py``, Gradio) is a thin layer over plain modules a script or a test can use
without a browser:

- ``runs.py`` finds the run folders under ``--runs`` and starts, stops and resumes training
  as separate ``ganvas train`` processes (closing the studio never stops a run);
- ``watch.py`` reads a run's ``status.json``, ``metrics.jsonl`` and doctor report;
- ``explore.py`` draws from a trained generator (seeds, truncation, style mixing, walks,
  projection, the nearest training pictures, exports);
- ``repaint.py`` runs style transfer with live progress.

None of them imports training code: training happens in its own process.
"""
