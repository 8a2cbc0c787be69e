"""PyMC: the functions its chain processes run, their arguments, and a step's compiled logp.

All private on both lines (pymc 5.28 and 6.4). A chain process's arguments are read by
name, bound to the signature of PyMC's ``_Process``, never by position.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

from pymc_jaxops._upstream import multiprocessing as _mp
from pymc_jaxops._upstream._touches import Touch

__all__ = [
    "bind_sample_worker_args",
    "chain_workers",
    "external_nuts_hook",
    "is_chain_worker",
    "is_sample_worker",
    "logp_dlogp_functions",
]

_logger = logging.getLogger("pymc_jaxops")

# Where PyMC keeps the function each chain process runs. A name that moves in another
# version is skipped: its processes then start as PyMC starts them.
_CHAIN_WORKERS = (
    ("pymc.sampling.parallel", "_run_process"),
    ("pymc.smc.parallel", "_run_smc_process"),
    ("pymc.sampling.population", "PopulationStepper._run_secondary"),
)


def _lookup(module_name: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


@functools.cache
def chain_workers() -> tuple[Callable[..., Any], ...]:
    """The functions PyMC's chain processes run (``pm.sample``, SMC, population)."""
    found = []
    for module_name, qualname in _CHAIN_WORKERS:
        try:
            found.append(_lookup(module_name, qualname))
        except (ImportError, AttributeError):
            _logger.debug("pymc_jaxops: no %s.%s in this PyMC", module_name, qualname)
    return tuple(found)


def is_chain_worker(process_obj: Any) -> bool:
    """Whether ``process_obj`` is one of PyMC's chain processes."""
    return _mp.process_target(process_obj) in chain_workers()


def is_sample_worker(process_obj: Any) -> bool:
    """Whether ``process_obj`` is a ``pm.sample`` chain (not SMC's or a population's)."""
    try:
        target = _lookup("pymc.sampling.parallel", "_run_process")
    except (ImportError, AttributeError):
        return False
    return _mp.process_target(process_obj) is target


@functools.cache
def _sample_worker_signature() -> inspect.Signature | None:
    try:
        init = _lookup("pymc.sampling.parallel", "_Process.__init__")
    except (ImportError, AttributeError):
        return None
    parameters = list(inspect.signature(init).parameters.values())[1:]  # without self
    return inspect.Signature(parameters)


def bind_sample_worker_args(args: tuple[Any, ...] | list[Any]) -> inspect.BoundArguments | None:
    """A ``pm.sample`` chain process's arguments by PyMC's names, or None if they do not
    fit the signature this PyMC has (another version: then nothing is read from them)."""
    signature = _sample_worker_signature()
    if signature is None:
        return None
    try:
        bound = signature.bind(*args)
    except TypeError:
        return None
    bound.apply_defaults()
    return bound


def logp_dlogp_functions(step: Any) -> list[tuple[Any, list[str]]]:
    """Each gradient step method's compiled logp+dlogp, with the names of its inputs in the
    order it ravels them (a ``CompoundStep`` holds several)."""
    methods = getattr(step, "methods", [step])
    found = []
    for method in methods:
        fn = getattr(method, "_logp_dlogp_func", None)
        if fn is None:
            continue
        found.append((fn._pytensor_function, [v.name for v in fn._grad_vars]))
    return found


def external_nuts_hook(
    name: str, steer: Callable[[str, Any, dict[str, Any]], dict[str, Any]]
) -> Touch:
    """A touch around the function through which ``pm.sample`` runs nutpie, NumPyro and
    BlackJAX (pymc 6): ``steer(sampler, model, compile_kwargs)`` returns the compile
    keyword arguments to run with (``mode`` chooses nutpie's backend)."""

    def apply() -> Callable[[], None]:
        import pymc.sampling.mcmc as mcmc

        original = mcmc._sample_external_nuts
        signature = inspect.signature(original)

        @functools.wraps(original)
        def hooked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            a = bound.arguments
            a["compile_kwargs"] = steer(a["sampler"], a["model"], dict(a["compile_kwargs"]))
            return original(*bound.args, **bound.kwargs)

        mcmc._sample_external_nuts = hooked

        def undo() -> None:
            mcmc._sample_external_nuts = original

        return undo

    return Touch(name, "pymc", apply, private=True)
