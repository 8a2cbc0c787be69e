"""One rich progress bar per MCMC chain (draws, divergences, step size), as ``pm.sample`` shows."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["Progress"]


class Progress:
    """Progress bars for ``chains`` chains of ``total`` steps; a no-op when disabled.

    Parameters
    ----------
    enabled : bool
        Whether to show the bars. Only process 0 of a ``jax.distributed`` run shows them,
        so that one terminal does not get a copy per process.
    chains : int
        Number of chains, one bar each.
    total : int
        Steps per chain (warm-up and draws).
    """

    def __init__(self, enabled: bool, chains: int, total: int):
        self.enabled = enabled and jax.process_index() == 0
        self.chains, self.total = chains, total
        self.divergences = np.zeros(chains, dtype=int)

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bars

            self.bar = Bars(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("divergences {task.fields[divergences]}"),
                TextColumn("step size {task.fields[step_size]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self.bar.__enter__()
            self.tasks = [
                self.bar.add_task(
                    f"chain {c} (tune)", total=self.total, divergences=0, step_size="-"
                )
                for c in range(self.chains)
            ]
        return self

    def update(self, n: int, divergences: np.ndarray | None, step_size: Any) -> None:
        """Advance every chain's bar by ``n`` steps.

        Parameters
        ----------
        n : int
            Steps each chain made.
        divergences : numpy.ndarray, optional
            Divergences per chain among those steps; None during the warm-up, whose
            divergences are not counted (as in ``pm.sample``).
        step_size : array_like, optional
            Each chain's step size, once the draws begin (which relabels the bars); None
            during the warm-up.
        """
        if not self.enabled:
            return
        if divergences is not None:
            self.divergences += divergences
        for c, task in enumerate(self.tasks):
            fields: dict[str, Any] = {"divergences": int(self.divergences[c])}
            if step_size is not None:
                fields["step_size"] = f"{float(step_size[c]):.3g}"
                fields["description"] = f"chain {c} (draw)"
            self.bar.update(task, advance=n, **fields)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)
