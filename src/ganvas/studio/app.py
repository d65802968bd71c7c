"""The studio's page (Gradio): Train, Watch, Explore and Repaint tabs over ``runs.py``,
``watch.py``, ``explore.py`` and ``repaint.py``.

Every handler turns a GanvasError into the same one line the command line prints, shown in
the page; the families, datasets and stylisers listed come from ganvas's registries and the
run folders, never from a list of the studio's own.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local app phones no one

import gradio as gr  # noqa: E402

from ganvas.errors import GanvasError  # noqa: E402
from ganvas.studio import explore, repaint, watch  # noqa: E402
from ganvas.studio.runs import (  # noqa: E402
    LOG_NAME,
    RunView,
    Studio,
    plan_run,
    train_arguments,
)

POLL_SECONDS = 2.0  # how often an open page looks for news in the chosen run
CHART_SECONDS = 10.0  # how often, at most, it redraws the charts of a run that trains
IDLE_SECONDS = 0.05  # how long Gradio's queue sleeps when it has nothing to do
RESTART_WAIT_SECONDS = 300.0  # the longest "stop, then resume" waits for the checkpoint
AUGMENTS = ("auto", "none", "ada", "diffaugment")
COLOR_MODES = ("no", "luminance", "histogram")


def error_line(exc: BaseException) -> str:
    """What the command line would print for ``exc``, as Markdown."""
    if isinstance(exc, GanvasError):
        return f"**ganvas: error:** {exc}"
    if isinstance(exc, OSError) and exc.filename:
        return f"**ganvas: error:** {exc.filename}: {exc.strerror or exc}"
    return (f"**ganvas: internal error:** {type(exc).__name__}: {str(exc)[:200]} (please "
            "report it)")


def _families() -> list[str]:
    from ganvas.models import available_models

    return sorted(available_models())


def _datasets() -> list[str]:
    from ganvas.data.builtin import BUILTIN_DATASETS

    return list(BUILTIN_DATASETS)


def _backbones() -> list[str]:
    from ganvas.style.backbones import backbone_names

    return [name for name in backbone_names() if not name.startswith("tiny")]


class Page:
    """The state one studio process shares between its browser tabs."""

    def __init__(self, runs_dir: str | os.PathLike):
        self.studio = Studio(runs_dir)
        self.models = explore.Models()
        # What the page offers for download (exports, repainted pictures): gone at exit.
        self.work = Path(tempfile.mkdtemp(prefix="ganvas-studio-"))
        atexit.register(shutil.rmtree, self.work, ignore_errors=True)
        self._curves: dict[Path, tuple[watch.CurveReader, Any, watch.Curves]] = {}
        self._lock = threading.Lock()

    def curves(self, folder: Path) -> tuple[tuple[int, float], watch.Curves]:
        """The run's curves, with the (size, time) of metrics.jsonl they were read at;
        only what the file gained since the last call is read."""
        try:
            info = (folder / "metrics.jsonl").stat()
            key = (info.st_size, info.st_mtime)
        except OSError:
            key = (0, 0.0)
        with self._lock:
            reader, held_key, held = self._curves.get(folder, (None, None, None))
            if held_key == key:
                return key, held
            reader = reader or watch.CurveReader(folder)
            reader.update()
            curves = reader.curves()
            self._curves[folder] = (reader, key, curves)
        return key, curves

    def signature(self, name: str | None) -> str:
        """What changes when there is something new to show: the runs and their states,
        and the chosen run's files (status, metrics, samples, log), by size and time."""
        views = self.studio.runs()
        parts = [self.overview(views)]
        if name:
            folder = self.studio.runs_dir / str(name)
            for path in (folder / "status.json", folder / "metrics.jsonl",
                         folder / "samples", folder / LOG_NAME):
                try:
                    info = path.stat()
                    parts.append(f"{info.st_size}:{info.st_mtime_ns}")
                except OSError:
                    parts.append("-")
            chosen = next((v for v in views if v.folder == folder), None)
            if chosen is None or not chosen.running:  # charts held back while it ran
                parts.append("still")
        return "|".join(parts)

    def run_choices(self, views: list[RunView] | None = None) -> list[str]:
        return [view.name for view in (self.studio.runs() if views is None else views)]

    def overview(self, views: list[RunView] | None = None) -> str:
        """Every run, its state and progress, as a Markdown table."""
        views = self.studio.runs() if views is None else views
        if not views:
            return "No runs yet: start one above."
        rows = ["| run | state | step |", "|---|---|---|"]
        for view in views:
            s = view.status
            step = "" if s is None else f"{s.step:,}" + (f" of {s.steps:,}" if s.steps else "")
            rows.append(f"| {view.name} | {view.state} | {step} |")
        return "\n".join(rows)

    def view(self, name: str | None) -> RunView:
        return self.studio.view(self.studio.find(name))


def build(runs_dir: str | os.PathLike) -> gr.Blocks:
    """The studio's page for the runs under ``runs_dir``."""
    page = Page(runs_dir)
    studio = page.studio

    with gr.Blocks(title="ganvas studio", theme=theme(), analytics_enabled=False) as app:
        gr.Markdown(f"# ganvas studio\nRuns in `{Path(runs_dir).resolve()}`. Training runs "
                    "in processes of their own: closing this page never stops them.")
        with gr.Row():
            run = gr.Dropdown(page.run_choices(), value=None, label="Run", scale=4,
                              elem_id="run-choice", allow_custom_value=True)
            refresh = gr.Button("Refresh", scale=1, size="sm")
        timer = gr.Timer(POLL_SECONDS)

        with gr.Tabs():
            with gr.Tab("Train", id="train"):
                with gr.Row():
                    data = gr.Dropdown(_datasets(), value="digits", allow_custom_value=True,
                                       label="Pictures: a folder's path or a built-in dataset",
                                       elem_id="train-data", scale=3)
                    model = gr.Dropdown(["auto", *_families()], value="auto", label="Model",
                                        elem_id="train-model")
                    resolution = gr.Textbox("auto", label="Resolution (64, 128x64 or auto)",
                                            elem_id="train-resolution")
                with gr.Row():
                    steps = gr.Textbox("", label="Steps (empty: the model's default)",
                                       elem_id="train-steps")
                    batch = gr.Textbox("", label="Batch size (empty: auto)",
                                       elem_id="train-batch")
                    augment = gr.Dropdown(list(AUGMENTS), value="auto", label="Augmentation",
                                          elem_id="train-augment")
                    budget = gr.Textbox("", label="Time limit (e.g. 10m; empty: none)",
                                        elem_id="train-time")
                extra = gr.Textbox("", label="More options, as on the command line (e.g. "
                                   "--lr-d 1e-4 --sample-every 200)", elem_id="train-extra")
                with gr.Row():
                    check = gr.Button("Check settings", elem_id="train-check")
                    start = gr.Button("Start training", variant="primary",
                                      elem_id="train-start")
                train_message = gr.Markdown(elem_id="train-message")
                plan = gr.Code(label="What will run (ganvas train --dry-run)",
                               language="yaml", elem_id="train-plan", lines=8, max_lines=20)
                gr.Markdown("### The chosen run")
                with gr.Row():
                    stop = gr.Button("Stop (writes a checkpoint)", variant="stop",
                                     elem_id="run-stop")
                    resume = gr.Button("Resume", elem_id="run-resume")
                    more = gr.Textbox("", label="Extend to this many steps in all",
                                      elem_id="run-extend-steps")
                    extend = gr.Button("Extend", elem_id="run-extend")
                run_message = gr.Markdown(elem_id="run-message")
                gr.Markdown("### Every run")
                runs_table = gr.Markdown(page.overview(), elem_id="runs-table")

            with gr.Tab("Watch", id="watch"):
                with gr.Row():
                    status = gr.Markdown("Choose a run.", elem_id="watch-status")
                    newest = gr.Image(label="Newest samples", type="filepath", format="png",
                                      interactive=False, elem_id="watch-samples", height=320)
                grids = gr.Gallery(label="Every sample grid (a growing model: each size)",
                                   columns=8, height=160, object_fit="contain",
                                   elem_id="watch-grids")
                with gr.Row():
                    plots = {title: gr.LinePlot(x="step", y="value", color="series",
                                                title=title, height=220,
                                                elem_id=f"chart-{i}")
                             for i, title in enumerate(watch.CHARTS)}
                gr.Markdown("### The health monitor's messages")
                events = gr.Markdown(elem_id="watch-events")
                with gr.Row():
                    ask = gr.Button("Ask the doctor", elem_id="watch-doctor")
                    remedy = gr.Button("Resume with the suggested settings",
                                       elem_id="watch-remedy")
                report = gr.Markdown(elem_id="watch-report")
                log = gr.Code(label="What the training process printed (train.log)",
                              elem_id="watch-log", lines=8, max_lines=16)

            with gr.Tab("Explore", id="explore"):
                explore_message = gr.Markdown(elem_id="explore-message")
                with gr.Row():
                    seeds = gr.Textbox("0-7", label="Seeds (e.g. 0-7 or 3,14,15)",
                                       elem_id="explore-seeds")
                    truncation = gr.Slider(0.0, 1.0, value=1.0, step=0.05,
                                           label="Truncation (1: none; lower: more typical)")
                    label = gr.Textbox("", label="Class (a conditional model's)",
                                       elem_id="explore-class")
                    generate = gr.Button("Generate", variant="primary",
                                         elem_id="explore-generate")
                pictures = gr.Gallery(label="Pictures", columns=8, height=300,
                                      elem_id="explore-pictures")
                with gr.Row():
                    one_seed = gr.Number(0, label="Seed", precision=0)
                    show_full = gr.Button("Full size")
                    full = gr.Image(label="At full size", type="pil", format="png",
                                    interactive=False, height=300)
                    full_file = gr.File(label="PNG")
                with gr.Accordion("Style mixing, latent walk, nearest training pictures",
                                  open=False):
                    with gr.Row():
                        rows = gr.Textbox("1,2,3", label="Rows' seeds")
                        columns = gr.Textbox("4,5,6", label="Columns' seeds (their coarse "
                                             "styles)")
                        mix = gr.Button("Mix styles")
                    mixed = gr.Image(label="Style mixing", type="pil", format="png",
                                     interactive=False)
                    with gr.Row():
                        walk_seeds = gr.Textbox("1,2,3", label="Walk through seeds")
                        frames = gr.Number(48, label="Frames", precision=0)
                        walk = gr.Button("Walk")
                    walked = gr.Image(label="Latent walk (GIF)", type="filepath",
                                      interactive=False)
                    near = gr.Button("Nearest training pictures")
                    near_picture = gr.Image(label="Each sample, then its nearest training "
                                            "pictures", type="pil", format="png",
                                            interactive=False)
                    near_text = gr.Markdown()
                with gr.Accordion("Project a photo, export", open=False):
                    with gr.Row():
                        photo = gr.Image(label="Photo", type="filepath", sources=["upload"])
                        project_steps = gr.Number(200, label="Steps", precision=0)
                        project = gr.Button("Project")
                    projected = gr.Image(label="The photo as the model sees it, and the "
                                         "closest picture it draws", type="pil",
                                         format="png", interactive=False)
                    projected_text = gr.Markdown()
                    with gr.Row():
                        fmt = gr.Dropdown(["onnx", "safetensors"], value="onnx",
                                          label="Export format")
                        do_export = gr.Button("Export")
                        exported = gr.File(label="Export (zip)")

            with gr.Tab("Repaint", id="repaint"):
                repaint_message = gr.Markdown(elem_id="repaint-message")
                with gr.Row():
                    content = gr.Image(label="Photo", type="filepath", sources=["upload"],
                                       elem_id="repaint-photo")
                    painting = gr.Image(label="Painting (the style)", type="filepath",
                                        sources=["upload"], elem_id="repaint-painting")
                    painted = gr.Image(label="Repainted", type="pil", format="png",
                                       interactive=False, elem_id="repaint-result")
                with gr.Row():
                    size = gr.Number(512, label="Size (longest side, px)", precision=0,
                                     elem_id="repaint-size")
                    iterations = gr.Number(300, label="Iterations", precision=0,
                                           elem_id="repaint-iterations")
                    style_weight = gr.Textbox("", label="Style weight (empty: tuned)")
                    colors = gr.Dropdown(list(COLOR_MODES), value="no",
                                         label="Keep the photo's colours")
                    backbone = gr.Dropdown(_backbones(), value="vgg16-hed",
                                           label="Feature network (vgg16-hed: offline)")
                paint = gr.Button("Repaint", variant="primary", elem_id="repaint-start")
                progress_text = gr.Markdown(elem_id="repaint-progress")
                painted_file = gr.File(label="Download", elem_id="repaint-file")
                with gr.Row():
                    styliser = gr.Dropdown([str(p) for p in studio.stylisers()], value=None,
                                           allow_custom_value=True,
                                           label="Or a trained styliser folder (ganvas "
                                                 "style-train; an any-style one paints "
                                                 "the painting's style)")
                    paint_fast = gr.Button("Repaint with the styliser")
                with gr.Accordion("A video (with the styliser above, or by optimisation "
                                  "towards the painting)", open=False):
                    with gr.Row():
                        clip = gr.Video(label="Video", sources=["upload"],
                                        elem_id="repaint-video")
                        frame_now = gr.Image(label="The newest frame", type="pil",
                                             format="png", interactive=False)
                        clip_out = gr.Video(label="Repainted video", interactive=False,
                                            elem_id="repaint-video-result")
                    paint_clip = gr.Button("Repaint the video", elem_id="repaint-video-start")
                    clip_progress = gr.Markdown(elem_id="repaint-video-progress")

        # ---- handlers --------------------------------------------------------------------------

        def safe(handler: Callable[..., Any], outputs: int, message_at: int = 0
                 ) -> Callable[..., Any]:
            """Run ``handler``; on an error, only its message slot changes."""
            def wrapped(*args):
                try:
                    return handler(*args)
                except Exception as exc:
                    result = [gr.update()] * outputs
                    result[message_at] = error_line(exc)
                    return tuple(result) if outputs > 1 else result[0]
            return wrapped

        def form_arguments(data_, model_, resolution_, steps_, batch_, augment_, budget_,
                           extra_):
            return train_arguments(data_, model_, resolution_, steps_, batch_, augment_,
                                   budget_, extra_)

        form = [data, model, resolution, steps, batch, augment, budget, extra]

        def on_check(*values):
            planned = plan_run(form_arguments(*values))
            warnings = [x.removeprefix("# warning: ") for x in planned.text.splitlines()
                        if x.startswith("# warning: ")]
            if not warnings:
                return "Settings are fine.", planned.text
            return ("**Warnings** (it can still start):\n" + "\n".join(
                f"- {w}" for w in warnings), planned.text)

        def on_start(*values):
            planned = plan_run(form_arguments(*values))
            folder = studio.start(planned)
            return (f"Started **{folder.name}**; Watch shows it as soon as it has loaded "
                    "its pictures.", planned.text,
                    gr.update(choices=page.run_choices(), value=folder.name))

        check.click(safe(on_check, 2), form, [train_message, plan])
        start.click(safe(on_start, 3), form, [train_message, plan, run])

        def on_stop(name):
            return studio.stop(name)

        def on_resume(name):
            folder = studio.resume(name)
            return f"Resumed **{folder.name}**."

        def on_extend(name, total):
            total = str(total or "").strip()
            if not total:
                raise GanvasError("give the new total of steps to extend to")
            folder = studio.resume(name, ["--steps", total])
            return f"Extending **{folder.name}** to {total} steps."

        stop.click(safe(on_stop, 1), run, run_message)
        resume.click(safe(on_resume, 1), run, run_message)
        extend.click(safe(on_extend, 1), [run, more], run_message)

        def on_poll(name, sent):
            """Re-read the chosen run; send the page only what changed since this tab's
            last poll, and the charts at most every CHART_SECONDS while it trains (drawing
            them is the browser's biggest cost on the trainer's machine)."""
            sent = dict(sent or {})

            def fresh(key: str, signature: Any, make: Callable[[], Any]) -> Any:
                if key in sent and sent[key] == signature:
                    return gr.update()
                sent[key] = signature
                return make()

            views = page.studio.runs()  # once per refresh: every run's status is read
            choices = page.run_choices(views)
            listed = fresh("runs", choices, lambda: gr.update(choices=choices))
            table = page.overview(views)
            overview = fresh("overview", table, lambda: table)
            if not name:
                sent.pop("run", None)
                return (listed, overview, "Choose a run, or start one in Train.", None, [],
                        *[gr.update(value=None)] * len(plots), "", "", sent)
            view = next((v for v in views if v.name == name), None) or page.view(name)
            if sent.get("run") != name:  # another run: everything is new
                sent = {"runs": choices, "overview": table, "run": name}
            key, curves = page.curves(view.folder)
            now = time.monotonic()
            if not view.running or not sent.get("charts drawn") \
                    or now - sent.get("charts at", -1e9) >= CHART_SECONDS:
                charts_key = key
            else:
                charts_key = sent.get("charts key", key)
            if charts_key != sent.get("charts key"):
                sent["charts at"], sent["charts key"] = now, charts_key
                sent["charts drawn"] = not curves.frame("Losses").empty
            grid = watch.newest_grid(view)
            grids = watch.sample_grids(view.folder)
            text = watch.status_markdown(view)
            last_event = curves.events[-1] if curves.events else None
            return (listed, overview, fresh("status", text, lambda: text),
                    fresh("grid", (grid, _mtime(grid)), lambda: grid),
                    fresh("grids", [(g, _mtime(g)) for g, _ in grids], lambda: grids),
                    *[fresh(f"chart {title}", charts_key,
                            lambda title=title: _chart(curves.frame(title)))
                      for title in plots],
                    fresh("events", (len(curves.events), last_event),
                          lambda: watch.events_markdown(curves.events)),
                    fresh("log", _mtime(str(view.folder / LOG_NAME)),
                          lambda: watch.log_tail(view.folder)), sent)

        sent_state = gr.State({})
        poll_outputs = [run, runs_table, status, newest, grids, *plots.values(), events, log,
                        sent_state]

        def poll_safe(name, sent):
            try:
                return on_poll(name, sent)
            except GanvasError as exc:
                return (gr.update(choices=page.run_choices()), gr.update(), error_line(exc),
                        *[gr.update()] * (len(poll_outputs) - 4), {})

        # Each tick only compares what the run folder's files say (their sizes and times)
        # with the last tick's; the page is refreshed when they changed. A tick that finds
        # nothing new sends the browser nothing to draw.
        changed = gr.Textbox(visible=False)

        def on_tick(name, before):
            now = page.signature(name)
            return gr.update() if now == before else now

        timer.tick(on_tick, [run, changed], changed, show_progress="hidden")
        changed.change(poll_safe, [run, sent_state], poll_outputs, show_progress="hidden")
        refresh.click(poll_safe, [run, gr.State({})], poll_outputs)
        run.change(poll_safe, [run, sent_state], poll_outputs, show_progress="hidden")

        def on_doctor(name):
            return watch.doctor(page.studio.find(name)).text

        def on_remedy(name):
            folder = studio.find(name)
            found = watch.doctor(folder)
            if not found.resume_arguments:
                return "The doctor suggests no changes: nothing to resume with."
            if studio.view(folder).running:
                studio.stop(folder)
                deadline = time.monotonic() + RESTART_WAIT_SECONDS
                while studio.view(folder).running and time.monotonic() < deadline:
                    time.sleep(0.5)
            studio.resume(folder, found.resume_arguments)
            return (f"Resumed **{folder.name}** with `{' '.join(found.resume_arguments)}`"
                    "\n\n" + found.text)

        ask.click(safe(on_doctor, 1), run, report)
        remedy.click(safe(on_remedy, 1), run, report)

        # ---- explore -----------------------------------------------------------------------

        def model_of(name, trunc):
            return page.models.get(studio.find(name), trunc)

        def on_generate(name, text, trunc, cls):
            drawn = explore.draw_seeds(model_of(name, trunc), explore.seeds_from(text), cls)
            return f"{len(drawn)} pictures from {name}", drawn

        def on_full(name, seed, trunc, cls):
            picture, path = explore.full_size(model_of(name, trunc), int(seed or 0),
                                              page.work, cls)
            return "", picture, str(path)

        def on_mix(name, rows_, columns_, trunc):
            model_ = model_of(name, trunc)
            return "", explore.style_mixing(model_, explore.seeds_from(rows_, "rows", 8),
                                            explore.seeds_from(columns_, "columns", 8))

        def on_walk(name, text, count, trunc):
            folder = studio.find(name)
            return "", str(explore.walk(folder, explore.seeds_from(text, "walk seeds", 16),
                                        int(count or 0), page.work, trunc))

        def on_near(name):
            picture, summary = explore.nearest(studio.find(name))
            return "", picture, summary

        def on_project(name, picture, count):
            shown, summary = explore.project_photo(model_of(name, 1.0), picture,
                                                   int(count or 0), page.work)
            return "", shown, summary

        def on_export(name, kind):
            return "", str(explore.export(studio.find(name), kind, page.work))

        generate.click(safe(on_generate, 2), [run, seeds, truncation, label],
                       [explore_message, pictures])
        show_full.click(safe(on_full, 3), [run, one_seed, truncation, label],
                        [explore_message, full, full_file])
        mix.click(safe(on_mix, 2), [run, rows, columns, truncation], [explore_message, mixed])
        walk.click(safe(on_walk, 2), [run, walk_seeds, frames, truncation],
                   [explore_message, walked])
        near.click(safe(on_near, 3), run, [explore_message, near_picture, near_text])
        project.click(safe(on_project, 3), [run, photo, project_steps],
                      [explore_message, projected, projected_text])
        do_export.click(safe(on_export, 2), [run, fmt], [explore_message, exported])

        # ---- repaint -----------------------------------------------------------------------

        def on_paint(photo_, painting_, size_, iterations_, weight_, colors_, backbone_):
            try:
                for picture, text, path in repaint.repaint_steps(
                        photo_, painting_, page.work, size=int(size_ or 0),
                        iterations=int(iterations_ or 0), style_weight=weight_,
                        preserve_colors=colors_, backbone=backbone_):
                    yield "", picture, text, None if path is None else str(path)
            except Exception as exc:
                yield error_line(exc), gr.update(), gr.update(), gr.update()

        def on_paint_fast(photo_, folder, painting_, size_):
            picture, path = repaint.repaint_with_styliser(photo_, folder, page.work,
                                                          painting=painting_, size=size_)
            return "", picture, str(path)

        def on_paint_clip(video_, folder, painting_, size_, iterations_, backbone_):
            try:
                for frame, text, path in repaint.repaint_video_steps(
                        video_, page.work, styliser=folder, painting=painting_,
                        size=int(size_ or 0) or None, iterations=int(iterations_ or 0),
                        backbone=backbone_):
                    yield "", frame, text, None if path is None else str(path)
            except Exception as exc:
                yield error_line(exc), gr.update(), gr.update(), gr.update()

        paint_clip.click(on_paint_clip, [clip, styliser, painting, size, iterations, backbone],
                         [repaint_message, frame_now, clip_progress, clip_out])
        paint.click(on_paint, [content, painting, size, iterations, style_weight, colors,
                               backbone], [repaint_message, painted, progress_text,
                                           painted_file])
        paint_fast.click(safe(on_paint_fast, 3), [content, styliser, painting, size],
                         [repaint_message, painted, painted_file])
    app.studio_page = page  # for tests and scripts
    return app


def _mtime(path: str | None) -> float | None:
    try:
        return None if path is None else os.stat(path).st_mtime
    except OSError:
        return None


def _chart(frame) -> Any:
    """A chart's new points; a chart with none (FID without --fid-every) is hidden."""
    return gr.update(value=frame, visible=not frame.empty)


def _quieten_queue(app: gr.Blocks) -> None:
    """Let Gradio's event queue wait 50 ms between looks when it has nothing to do, not the
    1 ms it waits on Linux: a thousand wake-ups a second cost a training run on the same
    cores far more than their CPU time (each one stalls the trainer's threads), and 50 ms
    more before a click is answered is not felt. (Gradio has no option for it: these are
    its queue's attributes, read at every turn of its loops; unknown versions are left
    alone.)"""
    queue = getattr(app, "_queue", None)
    for name, seconds in (("sleep_when_free", IDLE_SECONDS),
                          ("progress_update_sleep_when_free", IDLE_SECONDS)):
        if isinstance(getattr(queue, name, None), (int, float)):
            setattr(queue, name, max(getattr(queue, name), seconds))


def theme() -> gr.themes.Base:
    """Gradio's default look with the system's fonts (nothing fetched from the internet)."""
    return gr.themes.Default(font=["system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def serve(runs_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 7860, *,
          block: bool = True, quiet: bool = False) -> gr.Blocks:
    """Start the studio on ``http://host:port``; with ``block=False`` return once serving."""
    app = build(runs_dir)
    page: Page = app.studio_page
    app.queue(default_concurrency_limit=4)
    _quieten_queue(app)
    app.launch(server_name=host, server_port=port, share=False, inbrowser=False,
               prevent_thread_lock=not block, quiet=quiet, show_error=False,
               allowed_paths=[str(Path(runs_dir).resolve()), str(page.work)],
               ssr_mode=False, show_api=False)
    return app
