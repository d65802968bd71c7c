"""ganvas walk: exactly the asked number of frames, keyframes equal to the seeds' own
pictures, MP4/GIF/folder outputs, frames streamed, and one line for bad input."""

import numpy as np
import pytest
import torch
from PIL import Image

import ganvas
from ganvas.cli.main import main
from ganvas.walk import positions, slerp

TINY = dict(data="digits", resolution=16, batch_size=8, latent_dim=8, steps=2,
            health=False, progress=False, log=lambda m: None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("walk")
    dcgan = ganvas.train(model_options={"base_channels": 8}, out=str(root / "dcgan"), **TINY)
    style = ganvas.train(model="stylegan2", model_options={"base_channels": 4,
                                                          "max_channels": 8, "w_dim": 8},
                         out=str(root / "stylegan2"), **TINY)
    return {"dcgan": dcgan.run_dir, "stylegan2": style.run_dir}


def test_keyframes_fall_on_frames_and_slerp_keeps_its_ends():
    marks = [i for i, (_, u) in enumerate(positions(13, 3, loop=False)) if u == 0]
    assert marks == [0, 6] and positions(13, 3, loop=False)[-1] == (1, 1.0)
    looped = positions(12, 3, loop=True)
    assert [i for i, (_, u) in enumerate(looped) if u == 0] == [0, 4, 8]
    a, b = torch.randn(1, 8), torch.randn(1, 8)
    assert torch.equal(slerp(a, b, 0), a) and torch.equal(slerp(a, b, 1), b)
    middle = slerp(a, b, 0.5)
    assert abs(middle.norm() - (a.norm() + b.norm()) / 2) < 0.5 * a.norm()


@pytest.mark.parametrize("model", ["dcgan", "stylegan2"])
def test_a_walk_through_seeds_has_the_seeds_pictures_as_keyframes(runs, tmp_path, capsys,
                                                                  model):
    run = runs[model]
    assert main(["walk", str(run), "--seeds", "3,8,21", "--frames", "13", "--scale", "1",
                 "-o", str(tmp_path / "frames")]) == 0
    frames = sorted((tmp_path / "frames").glob("frame*.png"))
    assert len(frames) == 13
    assert main(["generate", str(run), "--seeds", "3,8,21", "--out", str(tmp_path / "g")]) == 0
    for index, seed in ((0, 3), (6, 8), (12, 21)):
        walked = np.asarray(Image.open(frames[index]).convert("L"))
        own = np.asarray(Image.open(tmp_path / "g" / f"seed{seed:04d}.png").convert("L"))
        assert np.array_equal(walked, own), (index, seed)
    assert not np.array_equal(np.asarray(Image.open(frames[3])),
                              np.asarray(Image.open(frames[0])))  # it moves in between


def test_gif_and_mp4_hold_exactly_the_frames_asked_for(runs, tmp_path, capsys):
    run = runs["stylegan2"]
    assert main(["walk", str(run), "--seeds", "1,2", "--frames", "9", "--loop",
                 "-o", str(tmp_path / "walk.gif")]) == 0
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.n_frames == 9 and gif.size == (256, 256)  # 8 px enlarged to 256
    pytest.importorskip("av")
    import av

    assert main(["walk", str(run), "--random", "--seconds", "1", "--fps", "12",
                 "-o", str(tmp_path / "walk.mp4")]) == 0
    with av.open(str(tmp_path / "walk.mp4")) as video:
        decoded = sum(1 for _ in video.decode(video=0))
        assert decoded == 12 and video.streams.video[0].width % 2 == 0
    assert not list(tmp_path.glob(".*.tmp*"))


def test_frames_are_streamed_not_kept(runs, tmp_path, monkeypatch):
    """A folder walk holds one frame at a time: the writer never sees a second frame
    before the first is on disk."""
    import ganvas.walk as walk

    written = []
    real = walk._Frames.write

    def write(self, frame):
        written.append(len(list(self.path.glob("frame*.png"))))
        real(self, frame)

    monkeypatch.setattr(walk._Frames, "write", write)
    walk.write_walk(runs["dcgan"], tmp_path / "f", seeds=[1, 2], frames=20, scale=1,
                    progress=False)
    assert written == list(range(20))


@pytest.mark.parametrize("argv, needle", [
    (["--seeds", "4"], "at least two seeds"),
    ([], "give --seeds"),
    (["--seeds", "1,2", "--random"], "give --seeds"),
    (["--seeds", "1,x"], "--seeds"),
    (["--seeds", "1,2,3", "--frames", "2"], "fewer frames than keyframes"),
    (["--seeds", "1,2", "--fps", "0"], "--fps"),
    (["--seeds", "1,2", "-o", "walk.avi"], ".mp4, a .gif or a folder"),
])
def test_bad_walks_are_one_line(runs, tmp_path, capsys, argv, needle):
    if "-o" not in argv:
        argv = [*argv, "-o", str(tmp_path / "w.gif")]
    assert main(["walk", str(runs["dcgan"]), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
