"""BlackJAX: Stan's window adaptation as init/update/final steps we can run in chunks.

``blackjax.window_adaptation`` runs the whole warm-up as one ``lax.scan``, which cannot be
interrupted or report progress. BlackJAX 1.7.1 (both lines) builds it from a private
engine, ``staged_adaptation._make_engine``, whose init/update/final steps we call one warm-up
step at a time; its public ``window_adaptation.base`` (the same algorithm, without the
gradient argument) is deprecated there with a warning, so it is only the fallback for a
BlackJAX that no longer has the engine.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["WindowAdaptation", "window_adaptation"]


class WindowAdaptation(NamedTuple):
    """Stan's window adaptation of the step size and a diagonal inverse mass matrix.

    Attributes
    ----------
    init : callable
        ``init(position, initial_step_size) -> state``; ``state.step_size`` and
        ``state.inverse_mass_matrix`` are what the next NUTS step uses.
    update : callable
        ``update(state, stage, position, grad, acceptance_rate) -> state`` after one NUTS
        step, with ``stage`` that step's row of ``build_schedule``.
    final : callable
        ``final(state) -> (step_size, inverse_mass_matrix)`` for the draws.
    """

    init: Callable[[Any, Any], Any]
    update: Callable[[Any, Any, Any, Any, Any], Any]
    final: Callable[[Any], tuple[Any, Any]]


def window_adaptation(target_accept: float) -> WindowAdaptation:
    """BlackJAX's Stan window adaptation (diagonal Welford mass matrix) for ``target_accept``.

    Parameters
    ----------
    target_accept : float
        Target acceptance rate of the dual-averaging step-size adaptation.

    Returns
    -------
    WindowAdaptation
        Its init, update and final steps.
    """
    try:
        from blackjax.adaptation.metric_recipes import lookup_recipe
        from blackjax.adaptation.staged_adaptation import _make_engine
    except ImportError:
        return _from_base(target_accept)
    # "welford_diag" is the recipe blackjax.window_adaptation itself uses by default.
    core = lookup_recipe("welford_diag").build_core()
    init, update, final = _make_engine(core, target_acceptance_rate=target_accept)
    return WindowAdaptation(init, update, final)


def _from_base(target_accept: float) -> WindowAdaptation:
    from blackjax.adaptation.window_adaptation import base

    with warnings.catch_warnings():
        # Deprecated in BlackJAX 1.7, where the engine above is used instead.
        warnings.simplefilter("ignore", DeprecationWarning)
        init, update, final = base(True, target_accept)

    def update_without_grad(
        state: Any, stage: Any, position: Any, grad: Any, acceptance_rate: Any
    ) -> Any:
        del grad  # a diagonal Welford estimate reads positions only
        return update(state, stage, position, acceptance_rate)

    return WindowAdaptation(init, update_without_grad, final)
