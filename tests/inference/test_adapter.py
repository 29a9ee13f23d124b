"""Every task's Predictor adapter provides the whole `TaskAdapter` interface the Predictor and the sinks use."""

from __future__ import annotations

import pytest

from mobilevision.inference.adapter import MEMBERS, TaskAdapter, check_adapter
from mobilevision.tasks.table import TASKS, load


def test_the_members_are_read_off_the_protocol() -> None:
    assert set(MEMBERS) == {
        "drawn_folder",
        "video_suffix",
        "writes_results",
        "prepare",
        "run",
        "result",
        "classes",
        "draw",
        "results",
        "save",
    }


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_adapter_class_has_every_member(name: str) -> None:
    cls = load(TASKS[name].inference)
    missing = [
        member for member in MEMBERS if not hasattr(cls, member) and member not in cls.__init__.__code__.co_names
    ]
    assert not missing, f"{cls.__name__} lacks {missing}"


def test_an_incomplete_adapter_is_refused_naming_what_it_lacks() -> None:
    class Half:
        drawn_folder = "annotated"

        def prepare(self, image):  # noqa: ANN001, ANN201
            return image

    with pytest.raises(TypeError, match="Half is not a Predictor adapter: it lacks video_suffix, writes_results, run"):
        check_adapter(Half())
    assert not isinstance(Half(), TaskAdapter)
