"""TrainerHooks: what plugins and callbacks see of a trainer: its hook manager (the global
plugins plus its own callbacks), callback registration in delira's styles, and the merging
of what hooks return into ``trainer.state``. :class:`~epochal.trainer.AbstractNetworkTrainer`
builds on it; the loop that fires the hooks lives there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from epochal.callbacks import (
    AbstractCallback,
    BatchCallbackChain,
    CallbackChain,
    is_hook_plugin,
)
from epochal.errors import PluginError
from epochal.plugins import (
    EpochalPluginManager,
    build_trainer_plugin_manager,
    get_plugin_manager,
)

__all__ = ["TrainerHooks"]


class TrainerHooks:
    """A trainer's plugins and callbacks.

    Args:
        callbacks: callbacks registered with :meth:`register_callback`.
        plugin_manager: the global plugins to start from (default: the process-wide one).
    """

    state: dict[str, Any]

    def __init__(
        self,
        callbacks: Iterable[object] | None = None,
        plugin_manager: EpochalPluginManager | None = None,
    ) -> None:
        self._callbacks: list[object] = []
        self._plugin_manager = build_trainer_plugin_manager(plugin_manager or get_plugin_manager())
        self._callback_chain = CallbackChain()
        self._plugin_manager.register(self._callback_chain, "epochal.trainer-callbacks")
        self._refresh_hooks()
        for callback in callbacks or ():
            self.register_callback(callback)

    @property
    def plugin_manager(self) -> EpochalPluginManager:
        """This trainer's hook manager: the global plugins plus its callbacks."""
        return self._plugin_manager

    @property
    def callbacks(self) -> list[object]:
        """The registered callbacks, in registration order (a copy)."""
        return list(self._callbacks)

    def _refresh_hooks(self) -> None:
        self._hooks = self._plugin_manager.hook
        batch_hook = self._hooks.epochal_at_batch_end
        # Backends test this for None per batch: no plugin, no call, no cost.
        self._batch_end_hook = batch_hook if batch_hook.get_hookimpls() else None

    def register_callback(self, callback: object) -> None:
        """Put ``callback`` on this trainer's hooks.

        Accepts an :class:`AbstractCallback`, any object with both
        ``at_epoch_begin`` and ``at_epoch_end`` (delira style), or a pluggy
        plugin whose methods are marked ``@epochal.hookimpl``.
        """
        index = len(self._callbacks)
        plugin_name = f"callback-{index}-{type(callback).__name__}"
        if isinstance(callback, AbstractCallback) or (
            callable(getattr(callback, "at_epoch_begin", None))
            and callable(getattr(callback, "at_epoch_end", None))
        ):
            self._callback_chain.add(callback, self._state_key(callback))
            if self._callback_chain.has_batch_callbacks and not self._plugin_manager.has_plugin(
                "epochal.trainer-batch-callbacks"
            ):
                self._plugin_manager.register(
                    BatchCallbackChain(self._callback_chain), "epochal.trainer-batch-callbacks"
                )
            self._callbacks.append(callback)
            self._refresh_hooks()
            return
        if not is_hook_plugin(callback):
            missing = [
                name
                for name in ("at_epoch_begin", "at_epoch_end")
                if not callable(getattr(callback, name, None))
            ]
            raise AssertionError(
                f"cannot register {callback!r} as a callback: it is not an "
                f"epochal.AbstractCallback and has no {' and no '.join(missing)} method. "
                "Subclass epochal.AbstractCallback, define at_epoch_begin and at_epoch_end, "
                "or implement epochal_* hooks marked with @epochal.hookimpl."
            )
        if self._plugin_manager.register_checked(callback, plugin_name) is None:
            return
        self._callbacks.append(callback)
        self._refresh_hooks()

    def _state_key(self, callback: object) -> str:
        """Where a callback's state lives in checkpoints: its ``state_key``, else its class
        name (``Name-2``, ``Name-3`` for repeats), so that adding another kind of callback
        on resume does not move anyone's state."""
        explicit = getattr(callback, "state_key", None)
        if isinstance(explicit, str) and explicit:
            return explicit
        name = type(callback).__name__
        repeats = sum(type(other).__name__ == name for other in self._callbacks)
        return name if repeats == 0 else f"{name}-{repeats + 1}"

    def _merge_hook_results(self, results: Iterable[object], hook_name: str) -> None:
        for result in results:
            if result is None:
                continue
            if not isinstance(result, Mapping):
                raise TypeError(
                    f"a plugin's {hook_name} returned {type(result).__name__}; "
                    "return a dict (merged into trainer.state) or None"
                )
            self.state.update(result)

    def _collect_plugin_state(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for part in self._hooks.epochal_state_dict(trainer=self):
            if not part:
                continue
            for key, value in part.items():
                if key in merged:
                    raise PluginError(
                        f"two plugins returned the state key {key!r} from epochal_state_dict; "
                        "each plugin must use a key of its own"
                    )
                merged[key] = value
        return merged
