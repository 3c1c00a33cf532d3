"""TrainerHooks: what plugins and callbacks see of a trainer: its hook manager (the global
plugins plus its own callbacks), callback registration in delira's styles, and the merging
of what hooks return into ``trainer.state``. :class:`~epochal.loop.trainer.AbstractNetworkTrainer`
builds on it; the loop that fires the hooks lives there.

Two misbehaviours of plugin code are caught here, before they cost a run its files: state for
a checkpoint that the checkpoint cannot hold (refused before anything is written, naming the
plugin and the value), and ``sys.exit()`` or ``KeyboardInterrupt`` raised by a hook (a
:class:`~epochal.errors.PluginError` naming the plugin and the hook; a Ctrl-C stays one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

from epochal.errors import PluginError
from epochal.loop.callbacks import (
    AbstractCallback,
    BatchCallbackChain,
    CallbackChain,
    is_hook_plugin,
)
from epochal.plugins.manager import (
    CtrlCWatch,
    EpochalPluginManager,
    build_trainer_plugin_manager,
    describe_exception,
    get_plugin_manager,
    hookimpl_in_traceback,
    single_plugin_caller,
)
from epochal.runs.checkpoint_state import describe_holdable, find_unholdable, format_path

__all__ = ["TrainerHooks"]


class TrainerHooks:
    """A trainer's plugins and callbacks.

    Args:
        callbacks: callbacks registered with :meth:`register_callback`.
        plugin_manager: the global plugins to start from (default: the process-wide one).
    """

    state: dict[str, Any]

    #: What this backend's checkpoints hold besides plain data (None, bool, int, float, str,
    #: and lists, tuples and dicts with str keys of those): e.g. its tensor class and ``bytes``.
    #: The state plugins and callbacks return is checked against it before every save, so
    #: that a value the file could not hold is refused before anything is written. A backend
    #: sets it on its trainer class (the core imports no framework for it).
    checkpoint_value_types: ClassVar[tuple[type, ...]] = ()

    def __init__(
        self,
        callbacks: Iterable[object] | None = None,
        plugin_manager: EpochalPluginManager | None = None,
    ) -> None:
        self._callbacks: list[object] = []
        #: The epoch the loop is in (for messages), and the epoch of the last checkpoint_last
        #: written or resumed from.
        self._epoch_now: int | None = None
        self._checkpoint_last_epoch: int | None = None
        self._plugin_manager = build_trainer_plugin_manager(plugin_manager or get_plugin_manager())
        self._callback_chain = CallbackChain()
        self._plugin_manager.register(self._callback_chain, "epochal.loop.trainer-callbacks")
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

    @property
    def batch_end_hook(self) -> Callable[..., Any] | None:
        """The per-batch hook ``epochal_at_batch_end`` to call after each training batch with
        ``(trainer=, epoch=, batch_nr=, losses=, metrics=)``, or ``None`` when no plugin or
        callback implements it: test it once per epoch, and call nothing per batch then."""
        return self._batch_end_hook

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
                "epochal.loop.trainer-batch-callbacks"
            ):
                self._plugin_manager.register(
                    BatchCallbackChain(self._callback_chain), "epochal.loop.trainer-batch-callbacks"
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

    def _collect_plugin_state(self, for_checkpoint: bool = False) -> dict[str, Any]:
        """What plugins and callbacks return from ``epochal_state_dict``, merged. For a
        checkpoint, every value is checked first (:meth:`_check_checkpoint_state`)."""
        merged: dict[str, Any] = {}
        for part in self._hooks.epochal_state_dict(trainer=self):
            if not part:
                continue
            if not isinstance(part, Mapping):
                name = self._state_owner(lambda result, bad=part: result is bad)
                who, way_out = self._culprit(name)
                raise PluginError(
                    f"{who} returned {type(part).__name__} from epochal_state_dict; return a "
                    f"dict {{key: state}} or None. {way_out}."
                )
            for key, value in part.items():
                if key in merged:
                    raise PluginError(
                        f"two plugins returned the state key {key!r} from epochal_state_dict; "
                        "each plugin must use a key of its own"
                    )
                merged[key] = value
        if for_checkpoint:
            self._check_checkpoint_state(merged)
        return merged

    def _check_checkpoint_state(self, merged: dict[str, Any]) -> None:
        """Raise :class:`PluginError` naming the plugin (or callback) and the value when the
        state holds something this backend's checkpoint cannot (an ``object()``; a numpy
        number, which a pickle-free checkpoint loader refuses), before a file is touched, so
        that every checkpoint written before stays as it was."""
        types = tuple(self.checkpoint_value_types)
        found = find_unholdable(merged, types)
        if found is None:
            return
        path, problem = found
        key = path[0] if path else None
        entry = next((e for e in self._callback_chain.entries if e.key == key), None)
        if entry is not None:  # the chain keys each callback's state_dict() by its state key
            who, way_out = self._culprit(None, entry.callback)
            hook, path = "state_dict()", path[1:]
        else:
            name = self._state_owner(lambda result: isinstance(result, Mapping) and key in result)
            who, way_out = self._culprit(name)
            hook = "epochal_state_dict"
        raise PluginError(
            f"{who} returned from {hook} what a checkpoint cannot hold at {format_path(path)}: "
            f"{problem}. A {type(self).__name__} checkpoint holds {describe_holdable(types)}. "
            f"Nothing was written; the checkpoints saved before are kept. {way_out}."
        )

    def _state_owner(self, returned: Callable[[Any], bool]) -> str | None:
        """The plugin whose ``epochal_state_dict`` result satisfies ``returned`` (each plugin
        is called once more, alone: only on the way to an error)."""
        manager = self._plugin_manager
        for name in manager.plugins_implementing("epochal_state_dict"):
            if manager.get_plugin(name) is self._callback_chain:
                continue
            results = single_plugin_caller(manager, "epochal_state_dict", name)(trainer=self)
            if any(returned(result) for result in results):
                return name
        return None

    def _culprit(self, plugin_name: str | None, callback: object = None) -> tuple[str, str]:
        """``(who, what to do)`` for messages about a plugin's or a callback's code."""
        if callback is not None:
            return f"callback {type(callback).__name__!r}", "Fix the callback or turn it off"
        if plugin_name is None:
            return "a plugin", "Fix the plugin"
        if self._plugin_manager.plugin_distribution(plugin_name) is None:  # registered in code
            return f"plugin {plugin_name!r}", "Fix the plugin"
        return (
            f"plugin {plugin_name!r}",
            f"Fix the plugin or skip it (EPOCHAL_DISABLE_PLUGINS={plugin_name})",
        )

    # -- plugin code that exits ------------------------------------------------------

    @contextlib.contextmanager
    def _plugin_code_may_exit(self) -> Iterator[None]:
        """Inside, ``sys.exit()`` or a ``KeyboardInterrupt`` raised by a plugin's hook or a
        callback becomes a :class:`PluginError` naming it and the hook (the CLI: exit 1, one
        line), instead of ending the process quietly with the plugin's exit code. A Ctrl-C of
        the user's stays a ``KeyboardInterrupt``; what no plugin raised is left alone."""
        with CtrlCWatch() as ctrl_c:
            try:
                yield
            except (SystemExit, KeyboardInterrupt) as exc:
                error = self._plugin_exit_error(exc) if ctrl_c.raised_by_code(exc) else None
                if error is None:
                    raise
                raise error from exc

    def _plugin_exit_error(self, exc: BaseException) -> PluginError | None:
        """The error for ``exc`` raised in a hook of this trainer, or ``None`` when its
        traceback passes through no plugin or callback."""
        found = hookimpl_in_traceback(self._plugin_manager, exc.__traceback__)
        if found is None:
            return None
        name, hook, frame = found
        entry = frame.f_locals.get("entry")  # the chains' loops name the callback that runs
        plugin = self._plugin_manager.get_plugin(name)
        if isinstance(plugin, (CallbackChain, BatchCallbackChain)) and entry is not None:
            who, way_out = self._culprit(None, entry.callback)
            hook = hook.removeprefix("epochal_")
        else:
            who, way_out = self._culprit(name)
        when = f" (epoch {self._epoch_now})" if self._epoch_now is not None else ""
        kept = ""
        if getattr(self, "save_path", None) is not None:
            kept = (
                f"; checkpoint_last of epoch {self._checkpoint_last_epoch} is kept"
                if self._checkpoint_last_epoch is not None
                else "; no checkpoint was written yet"
            )
            way_out += ", then resume the run" if self._checkpoint_last_epoch is not None else ""
        return PluginError(
            f"{who} raised {describe_exception(exc)} in {hook}{when}{kept}. {way_out}."
        )
