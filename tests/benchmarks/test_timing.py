"""`interleaved`: warm-up calls first, then one call of each pipeline per round, stages and end-to-end recorded."""

from __future__ import annotations

from mobilevision.benchmarks.timing import interleaved


def test_pipelines_take_turns_and_every_stage_is_kept() -> None:
    order: list[str] = []

    def pipeline(name: str):  # noqa: ANN202
        def call() -> tuple[str, dict[str, float]]:
            order.append(name)
            return f"{name}{len(order)}", {"forward": 0.5}

        return call

    stages, last = interleaved({"a": pipeline("a"), "b": pipeline("b")}, repeats=3, warmup=2)
    assert order == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert stages["a"]["forward"] == [0.5, 0.5, 0.5] and len(stages["b"]["end_to_end"]) == 3
    assert all(t >= 0 for t in stages["a"]["end_to_end"])
    assert last == {"a": "a9", "b": "b10"}
