"""The run recorder (paddle_palm.engine.recorder): what it says when VisualDL is asked for but missing."""

import sys

from paddle_palm.engine.recorder import RunRecorder


def test_visualdl_asked_for_but_missing_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "visualdl", None)  # importing it raises ImportError
    messages = []
    recorder = RunRecorder(str(tmp_path), visualdl=True, log=messages.append)
    recorder.open()
    recorder.open()  # said once, not at every call
    assert len(messages) == 1 and "pip install visualdl" in messages[0], messages
    assert recorder.vdl is None
    recorder.add_loss(10, 0.5, 1)  # the run goes on without it
    recorder.add_epoch({"epoch": 1, "train_loss": 0.5})
    recorder.write()
    assert (tmp_path / "loss.png").is_file() and (tmp_path / "history.csv").is_file()


def test_visualdl_not_asked_for_or_not_the_writer_says_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "visualdl", None)
    messages = []
    RunRecorder(str(tmp_path), visualdl=False, log=messages.append).open()
    RunRecorder(str(tmp_path), writer=False, visualdl=True, log=messages.append).open()
    assert messages == []
