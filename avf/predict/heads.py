"""Output names of a model head taken from a dataset adapter, and the check that orders agree.

An official AVF-MAE++ checkpoint knows only its head size; the class names and their order belong to
the dataset it was fine-tuned on. ``avf model import-official --dataset`` and ``avf predict --dataset``
take them from the adapter (its ``classes``, or ``target_names`` for regression). A head whose names
are known already (a card, an import with ``--classes``) must list them in the adapter's order: the
same classes in another order would relabel every prediction, so that is an error, never a remap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["DatasetHead", "check_head_names", "dataset_head"]


class _LabelledAdapter(Protocol):
    """What a head needs of a dataset adapter (``avf.data.adapters.Adapter``)."""

    name: str
    task: str
    classes: Sequence[str]
    target_names: Sequence[str]


@dataclass(frozen=True)
class DatasetHead:
    dataset: str
    task: Literal["classification", "regression"]
    names: tuple[str, ...]  # class names (classification) or target names (regression), in head order


def dataset_head(adapter: _LabelledAdapter) -> DatasetHead:
    """The head of a model fine-tuned on ``adapter``'s dataset; ``ValueError`` when it has none."""
    if adapter.task == "regression":
        return DatasetHead(adapter.name, "regression", tuple(adapter.target_names))
    if adapter.task != "classification":
        raise ValueError(f"the {adapter.name} adapter has no labels (task {adapter.task}): a model has no head for it")
    if not adapter.classes:
        raise ValueError(f"the {adapter.name} adapter takes its class names from the data; give a card instead")
    return DatasetHead(adapter.name, "classification", tuple(adapter.classes))


def check_head_names(names: tuple[str, ...], head: DatasetHead, where: str) -> None:
    """Raise ``ValueError`` unless ``names`` are ``head.names`` in the same order (``where`` names the model)."""
    if tuple(names) == head.names:
        return
    if len(names) != len(head.names):
        raise ValueError(
            f"{where}: the head has {len(names)} outputs but the {head.dataset} adapter has {len(head.names)} "
            f"({', '.join(head.names)})"
        )
    if sorted(names) == sorted(head.names):
        raise ValueError(
            f"{where}: class order differs: the head is ({', '.join(names)}), the {head.dataset} adapter is "
            f"({', '.join(head.names)}); refusing to relabel the outputs"
        )
    raise ValueError(
        f"{where}: the head's outputs ({', '.join(names)}) are not the {head.dataset} adapter's "
        f"({', '.join(head.names)})"
    )
