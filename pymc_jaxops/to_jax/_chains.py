"""Where a batch of MCMC chains runs: lockstep on one device, one after another, or sharded.

A per-chain function ``f(chain_args, shared_args)`` becomes a function of arrays with a
leading chain axis. ``"parallel"`` spreads the chains over every device JAX sees (every
process's devices after ``jax.distributed.initialize``) with one ``shard_map`` program;
when chains outnumber devices each device runs its share in lockstep (``jax.vmap``), and the
chain count is padded to a multiple of the device count (padding chains repeat chain 0 and
are dropped). A device that holds one chain runs exactly the per-chain program, which is why
``"parallel"`` draws equal ``"sequential"`` draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

ChainMethod = Literal["parallel", "vectorized", "sequential"]
CHAIN_METHODS: tuple[str, ...] = ("parallel", "vectorized", "sequential")
_AXIS = "chain"


@dataclass(frozen=True)
class ChainLayout:
    method: ChainMethod
    chains: int
    padded: int
    mesh: Mesh | None

    @classmethod
    def build(cls, method: ChainMethod, chains: int) -> ChainLayout:
        if method != "parallel":
            return cls(method, chains, chains, None)
        devices = jax.devices()
        used = min(len(devices), chains)
        padded = -(-chains // used) * used
        return cls(method, chains, padded, Mesh(np.array(devices[:used]), (_AXIS,)))

    @property
    def devices(self) -> int:
        return 1 if self.mesh is None else self.mesh.size

    @property
    def sharding(self) -> NamedSharding | None:
        return None if self.mesh is None else NamedSharding(self.mesh, P(_AXIS))

    def pad(self, tree: Any) -> Any:
        """Append copies of chain 0 so the chain axis has ``padded`` entries."""
        extra = self.padded - self.chains
        if not extra:
            return tree
        return jax.tree.map(
            lambda x: jax.numpy.concatenate([x, jax.numpy.repeat(x[:1], extra, axis=0)]), tree
        )

    def over_chains(self, f: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """Jitted ``f`` over the leading chain axis of its first argument (not its second)."""
        if self.method == "vectorized":
            return jax.jit(jax.vmap(f, in_axes=(0, None)))
        if self.method == "sequential":
            return jax.jit(lambda c, s: jax.lax.map(lambda ci: f(ci, s), c))
        per_device = self.padded // self.devices
        local: Callable[[Any, Any], Any]
        if per_device == 1:

            def one_chain(c: Any, s: Any) -> Any:
                out = f(jax.tree.map(lambda x: x[0], c), s)
                return jax.tree.map(lambda x: x[None], out)

            local = one_chain

        else:
            local = jax.vmap(f, in_axes=(0, None))
        # check_vma=False: loop carries start replicated (zeros) and become per-chain.
        sharded = jax.shard_map(
            local, mesh=self.mesh, in_specs=(P(_AXIS), P()), out_specs=P(_AXIS), check_vma=False
        )
        return jax.jit(sharded)

    def to_host(self, tree: Any) -> Any:
        """NumPy copies of the real (unpadded) chains, gathered from every process."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            tree = multihost_utils.process_allgather(tree, tiled=True)
        return jax.tree.map(lambda x: np.asarray(x)[: self.chains], tree)
