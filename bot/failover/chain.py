"""Which models a turn may try, in order (docs/failover.md §8): the session's model, the fallbacks, the primary last."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from bot.errors import TurnStopped
from bot.failover.reasons import Reason
from bot.models.refs import ModelRef


def dedupe(refs: Iterable[ModelRef]) -> list[ModelRef]:
    """Keep the first occurrence of each ref, in order."""
    seen: set[ModelRef] = set()
    out: list[ModelRef] = []
    for ref in refs:
        if ref not in seen:
            seen.add(ref)
            out.append(ref)
    return out


def candidate_chain(
    session_model: ModelRef | None, *, primary: ModelRef, fallbacks: Sequence[ModelRef]
) -> list[ModelRef]:
    """The session's model (override, else primary), then the fallbacks, then the primary appended last."""
    first = session_model if session_model is not None else primary
    return dedupe([first, *fallbacks, primary])


@dataclass(frozen=True)
class ChainPlan:
    """The chain for one turn, and whether image routing replaced the session's usual chain."""

    chain: tuple[ModelRef, ...]
    image_routed: bool = False


NO_VISION_MESSAGE = (
    "The current model cannot see images, and no image model is configured "
    "(agents.defaults.imageModel). Switch with /model to a model that accepts images."
)


def plan_chain(
    session_model: ModelRef | None,
    *,
    primary: ModelRef,
    fallbacks: Sequence[ModelRef],
    image_primary: ModelRef | None,
    image_fallbacks: Sequence[ModelRef],
    has_images: bool,
    accepts_images: Callable[[ModelRef], bool],
) -> ChainPlan:
    """Plan the turn's chain; images the session's model cannot see go to the image chain, for this turn."""
    chain = candidate_chain(session_model, primary=primary, fallbacks=fallbacks)
    if not has_images or accepts_images(chain[0]):
        return ChainPlan(tuple(chain))
    if image_primary is None:
        raise TurnStopped(Reason.BAD_REQUEST, NO_VISION_MESSAGE)
    return ChainPlan(tuple(dedupe([image_primary, *image_fallbacks])), image_routed=True)
