from __future__ import annotations

from types import SimpleNamespace

from mobilevision.data.sampler import ResumableSampler, train_sampler


def _trainer(global_step: int) -> SimpleNamespace:
    return SimpleNamespace(world_size=1, global_rank=0, global_step=global_step, accumulate_grad_batches=1)


def _passes(sampler: ResumableSampler, n: int) -> list[list[tuple[int, int]]]:
    return [list(iter(sampler)) for _ in range(n)]


def test_resume_continues_the_unbroken_order_mid_epoch_and_at_epoch_ends() -> None:
    data = list(range(20))  # batch 4: 5 batches per epoch
    unbroken = _passes(train_sampler(data, _trainer(0), 4), 3)
    assert len({tuple(p) for p in unbroken}) == 3  # a new order (and new augmentation seeds) every epoch
    # Resumed after 7 optimizer steps: epoch 1, its first 2 batches already trained on.
    mid = _passes(train_sampler(data, _trainer(7), 4), 2)
    assert mid[0] == unbroken[1][8:] and mid[1] == unbroken[2]
    # Resumed from a checkpoint written at the end of epoch 0 (5 steps): epoch 1 from its start.
    end = _passes(train_sampler(data, _trainer(5), 4), 1)
    assert end[0] == unbroken[1]


def test_lightning_epoch_calls_do_not_move_the_order() -> None:
    data = list(range(12))
    a, b = train_sampler(data, _trainer(0), 4), train_sampler(data, _trainer(0), 4)
    b.set_epoch(7)  # Lightning's count can be off by one after an epoch-end resume; the sampler keeps its own
    assert list(iter(a)) == list(iter(b))
    assert sorted(i for i, _ in iter(a)) == data
