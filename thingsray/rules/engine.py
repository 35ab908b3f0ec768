"""Running rule chains: a tenant's chains as one shard holds them, and a message's way through them.

``TenantRules`` is the tenant's rule engine on one shard (ThingsBoard's RuleChainActors of one
tenant on one node): it loads each chain once (``ChainRuntime``: the chain's nodes, built and
holding their state), keeps it until the chain is saved again, and runs messages through it.

A message's way (``process``) is a walk over the chain's graph, depth first. A node that raises,
or runs past ``node_timeout_s``, routes the message to ``Failure`` with the error in the metadata;
it never stops the walk for other messages. Rule chain input nodes hand the message to another
chain and its output nodes hand it back, under their names, as ThingsBoard does.

``process`` returns once every node has run, with the future of the message's durability: it
resolves when every write the nodes made is committed, and fails when one of them fails. The
device actor awaits ``process`` (so the messages of one device run in order, one at a time) and
acknowledges the device once the future resolves (DESIGN.md section 4).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import thingsray.rules.nodes  # noqa: F401  (fills NODE_TYPES with the catalogue)
from thingsray.rules.model import INPUT_NODE, OUTPUT_NODE, RuleChainMetadata
from thingsray.rules.msg import TbMsg
from thingsray.rules.node import FAILURE, NODE_TYPES, NodeInit, RuleNode
from thingsray.storage.events import rule_node_event

if TYPE_CHECKING:
    from thingsray.rules.runtime_context import EngineServices, RunContext

log = logging.getLogger(__name__)

MAX_STEPS = 10_000
"""Node runs one message may cause (forwarding between chains can loop; a chain itself cannot)."""


class ChainRuntime:
    """One chain's nodes on one shard. Built once per version; in-flight messages finish on the
    version they started with when a newer one replaces it."""

    __slots__ = ("chain_id", "first", "flows", "input_targets", "meta", "name", "nodes", "routes", "tenant_id")

    def __init__(self, tenant_id: uuid.UUID, chain_id: uuid.UUID, name: str, meta: RuleChainMetadata,
                 nodes: list[RuleNode]) -> None:
        self.tenant_id = tenant_id
        self.chain_id = chain_id
        self.name = name
        self.meta = meta
        self.nodes = nodes
        self.first = meta.first_node_index
        self.flows = [_flow_of(spec.type) for spec in meta.nodes]
        self.input_targets = meta.input_targets()
        self.routes: list[dict[str, tuple[int, ...]]] = []
        for index in range(len(meta.nodes)):
            by_relation: dict[str, list[int]] = {}
            for connection in meta.outputs(index):
                by_relation.setdefault(connection.type, []).append(connection.to_index)
            self.routes.append({k: tuple(v) for k, v in by_relation.items()})

    @classmethod
    def build(cls, tenant_id: uuid.UUID, chain_id: uuid.UUID, name: str, meta: RuleChainMetadata,
              init_of: Any) -> ChainRuntime:
        nodes: list[RuleNode] = []
        for spec in meta.nodes:
            node_class = NODE_TYPES[spec.type]
            nodes.append(node_class(dict(spec.configuration or {}), init_of(spec.id or uuid.uuid4())))
        return cls(tenant_id, chain_id, name, meta, nodes)

    async def close(self) -> None:
        for node in self.nodes:
            try:
                await node.close()
            except Exception:
                log.exception("rule node %s of chain %s did not close cleanly", type(node).__name__, self.chain_id)


def _flow_of(node_type: str) -> str | None:
    return "input" if node_type == INPUT_NODE else "output" if node_type == OUTPUT_NODE else None


class TenantRules:
    """A tenant's rule engine on one shard."""

    def __init__(self, tenant_id: uuid.UUID, services: EngineServices) -> None:
        self.tenant_id = tenant_id
        self.services = services
        self._chains: dict[uuid.UUID, ChainRuntime | None] = {}
        self._loading: dict[uuid.UUID, asyncio.Future[ChainRuntime | None]] = {}
        self._root_id: uuid.UUID | None = None
        self._root_known = False
        self.failures = 0
        """Messages routed to Failure with no Failure connection (counted, logged at debug)."""
        self.processed = 0

    # --- chains ----------------------------------------------------------------------------------
    async def root_id(self) -> uuid.UUID | None:
        if not self._root_known:
            self._root_id = await self.services.chains.root_chain_id(self.tenant_id)
            self._root_known = True
        return self._root_id

    async def chain(self, chain_id: uuid.UUID | None) -> ChainRuntime | None:
        """The chain (the tenant's root chain for None), loaded on first use; None when it does
        not exist or belongs to another tenant."""
        if chain_id is None:
            chain_id = await self.root_id()
            if chain_id is None:
                return None
        if chain_id in self._chains:
            return self._chains[chain_id]
        loading = self._loading.get(chain_id)
        if loading is None:
            loading = self._loading[chain_id] = asyncio.get_running_loop().create_future()
            try:
                runtime = await self._load(chain_id)
            except BaseException as exc:
                del self._loading[chain_id]
                loading.set_exception(exc)
                loading.exception()  # retrieved: a waiter may not exist
                raise
            self._chains[chain_id] = runtime
            del self._loading[chain_id]
            loading.set_result(runtime)
            return runtime
        return await asyncio.shield(loading)

    async def _load(self, chain_id: uuid.UUID) -> ChainRuntime | None:
        header = await self.services.db.fetchrow(
            "SELECT name, tenant_id FROM rule_chain WHERE id = $1", chain_id)
        if header is None or header["tenant_id"] != self.tenant_id:
            return None
        meta = await self.services.chains.load(chain_id)
        if meta is None:
            return None
        scripts = self.services.scripts.for_tenant(self.tenant_id)

        def init_of(node_id: uuid.UUID) -> NodeInit:
            return NodeInit(self.tenant_id, chain_id, node_id, scripts)

        runtime = ChainRuntime.build(self.tenant_id, chain_id, header["name"], meta, init_of)
        for node in runtime.nodes:
            start = getattr(node, "start", None)
            if start is not None:
                await start(self.services.context_for(self, runtime, runtime.nodes.index(node)))
        return runtime

    def chain_changed(self, chain_id: uuid.UUID, event: str) -> None:
        """A chain was saved, deleted or made root: the next message uses what is stored now.
        The old nodes are closed once the messages walking them are done (their references keep
        them alive; closing releases timers and connections)."""
        old = self._chains.pop(chain_id, None)
        self._root_known = False
        if old is not None:
            self.services.background(self._close_later(old), what=f"closing rule chain {chain_id}")
        log.info("rule chain %s of tenant %s %s: reloaded on its next message", chain_id, self.tenant_id,
                 event.lower())

    async def _close_later(self, old: ChainRuntime) -> None:
        """Close a replaced chain's nodes once the messages that started on it are surely done
        (every node run is bounded by the node timeout)."""
        await asyncio.sleep((self.services.node_timeout_s or 10.0) + 5.0)
        await old.close()

    async def close(self) -> None:
        chains = [c for c in self._chains.values() if c is not None]
        self._chains.clear()
        for chain in chains:
            await chain.close()

    # --- messages --------------------------------------------------------------------------------
    async def process(self, msg: TbMsg, chain_id: uuid.UUID | None = None, *,
                      device: Any = None, start: tuple[ChainRuntime, int] | None = None) -> asyncio.Future[None]:
        """Run ``msg`` through its chain (``chain_id``, else the tenant's root chain); return the
        future of its durability. ``device`` is the originator's DeviceState when a device actor
        calls (its caches are then updated in place). ``start`` runs from a given node instead of
        the chain's first (messages a node scheduled for itself)."""
        run = self.services.run_context(self, msg, device)
        if start is not None:
            chain, index = start
        else:
            found = await self.chain(chain_id)
            if found is None or found.first is None:
                run.note_unrouted(msg, "no rule chain" if found is None else "an empty rule chain")
                return run.finish()
            chain, index = found, found.first
        await self._walk(run, [(chain, index, msg, ())])
        self.processed += 1
        return run.finish()

    async def _walk(self, run: RunContext, stack: list[tuple[ChainRuntime, int, TbMsg, tuple]]) -> None:
        steps = 0
        timeout = self.services.node_timeout_s
        while stack:
            chain, index, msg, callers = stack.pop()
            steps += 1
            if steps > MAX_STEPS:
                run.fail(RuntimeError(f"message {msg.id} ran through {MAX_STEPS} rule nodes: "
                                      "rule chains forward to each other in a loop"))
                return
            flow = chain.flows[index]
            if flow == "input":
                await self._enter(run, stack, chain, index, msg, callers)
                continue
            if flow == "output":
                if callers:
                    caller, caller_index = callers[-1]
                    self._route(run, stack, caller, caller_index, chain.meta.nodes[index].name, msg,
                                callers[:-1])
                continue
            node = chain.nodes[index]
            spec = chain.meta.nodes[index]
            run.at(chain, index)
            if spec.debug_mode:
                run.debug(rule_node_event(self.tenant_id, spec.id, "IN", msg))
            try:
                if timeout and not node.sync:
                    async with asyncio.timeout(timeout):
                        outputs = await node.process(run, msg)
                else:
                    outputs = await node.process(run, msg)
            except TimeoutError:
                outputs = [(FAILURE, msg.with_metadata(error=f"TimeoutException: {spec.name} did not finish "
                                                       f"within {timeout:g} s"))]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outputs = [(FAILURE, msg.with_metadata(error=_error_text(exc)))]
                if spec.debug_mode or spec.debug_failures:
                    run.debug(rule_node_event(self.tenant_id, spec.id, "OUT", msg, relation=FAILURE,
                                              error=_error_text(exc)))
            for relation, out in reversed(outputs):
                if spec.debug_mode and relation != FAILURE:
                    run.debug(rule_node_event(self.tenant_id, spec.id, "OUT", out, relation=relation))
                self._route(run, stack, chain, index, relation, out, callers)

    def _route(self, run: RunContext, stack: list, chain: ChainRuntime, index: int, relation: str, msg: TbMsg,
               callers: tuple) -> None:
        targets = chain.routes[index].get(relation)
        if targets:
            for target in reversed(targets):
                stack.append((chain, target, msg, callers))
        elif relation == FAILURE:
            self.failures += 1
            log.debug("rule node '%s' of chain %s routed message %s to Failure (not connected): %s",
                      chain.meta.nodes[index].name, chain.chain_id, msg.id, msg.metadata.get("error"))

    async def _enter(self, run: RunContext, stack: list, chain: ChainRuntime, index: int, msg: TbMsg,
                     callers: tuple) -> None:
        node = chain.nodes[index]
        target_id = chain.input_targets.get(index)
        if getattr(node, "forward_to_default", False):
            target_id = await run.originator_default_chain() or target_id
        target = await self.chain(target_id) if target_id is not None else None
        if target is None or target.first is None:
            error = f"Rule chain [{target_id}] is not found" if target is None else f"Rule chain [{target_id}] is empty"
            self._route(run, stack, chain, index, FAILURE, msg.with_metadata(error=error), callers)
            return
        if any(c.chain_id == target.chain_id for c, _ in callers) and len(callers) > 32:
            run.fail(RuntimeError(f"rule chains call each other deeper than 32 levels at chain {target.chain_id}"))
            return
        stack.append((target, target.first, msg, (*callers, (chain, index))))


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def relations_of(outputs: Iterable[tuple[str, TbMsg]]) -> list[str]:
    return [relation for relation, _ in outputs]
