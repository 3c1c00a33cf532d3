"""Build the plugin manager, load entry points, isolate broken plugins.

The global manager is created on first use by :func:`get_plugin_manager` (never
at import time); :func:`build_plugin_manager` is the factory for a fresh one,
which is what tests and embedding applications should use. Environment
variables (read when a manager is built):

``EPOCHAL_LOAD_PLUGINS=a,b``     load only these entry-point plugins (empty: none)
``EPOCHAL_DISABLE_PLUGINS=a,b``  never load these (entry-point or distribution names)
``EPOCHAL_STRICT_PLUGINS=1``     a broken plugin is an error instead of a warning
``EPOCHAL_TRACE_PLUGINS=1``      print every hook call to stderr
``EPOCHAL_PLUGIN_IMPORT_NOTICE=S`` name a plugin still importing after S seconds (default 2;
                                 0 never)

A plugin that raises at import, even ``SystemExit`` (``sys.exit()``) or
``KeyboardInterrupt``, is reported and skipped; a Ctrl-C of the user's still
interrupts (:class:`CtrlCWatch` tells the two apart). An import that takes more
than :data:`SLOW_IMPORT_NOTICE_S` seconds (``EPOCHAL_PLUGIN_IMPORT_NOTICE``) gets one line on
stderr naming the plugin and ``EPOCHAL_DISABLE_PLUGINS``, so that a hanging plugin is found.
"""

from __future__ import annotations

import _thread
import difflib
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import IO, Any

import pluggy

from epochal.errors import PluginError
from epochal.plugins import hookspecs
from epochal.plugins.hookspecs import PROJECT_NAME

ENTRY_POINT_GROUP = PROJECT_NAME
DEFAULTS_PLUGIN_NAME = "core"

__all__ = [
    "SLOW_IMPORT_NOTICE_S",
    "BrokenPlugin",
    "CtrlCWatch",
    "EpochalPluginManager",
    "PluginSettings",
    "PluginWarning",
    "build_plugin_manager",
    "build_trainer_plugin_manager",
    "get_plugin_manager",
    "hookimpl_in_traceback",
    "reset_plugin_manager",
]

#: Seconds a plugin may take to import before one line on stderr names it (and the way out).
SLOW_IMPORT_NOTICE_S = 2.0


class PluginWarning(UserWarning):
    """A plugin was skipped because it is broken (see ``epochal plugins``)."""


@dataclass(frozen=True)
class BrokenPlugin:
    """What went wrong with one plugin, for ``epochal plugins`` and warnings."""

    name: str
    stage: str  # "import", "register", "validate", or "<hook name>"
    error: str
    distribution: str | None = None

    def describe(self) -> str:
        where = f" (distribution {self.distribution})" if self.distribution else ""
        return f"plugin {self.name!r}{where} failed at {self.stage}: {self.error}"


def _split_names(value: str | None) -> frozenset[str] | None:
    if value is None:
        return None
    return frozenset(_normalise(part) for part in value.split(",") if part.strip())


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _seconds(value: str | None, default: float) -> float:
    """A number of seconds from an environment variable; unset or not a number: ``default``."""
    try:
        return max(float(value), 0.0) if value and value.strip() else default
    except ValueError:
        return default


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class PluginSettings:
    """The ``EPOCHAL_*_PLUGINS`` variables, parsed once per manager."""

    load: frozenset[str] | None = None
    disable: frozenset[str] = frozenset()
    strict: bool = False
    trace: bool = False
    import_notice_s: float = SLOW_IMPORT_NOTICE_S

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PluginSettings:
        return cls(
            load=_split_names(environ.get("EPOCHAL_LOAD_PLUGINS")),
            disable=_split_names(environ.get("EPOCHAL_DISABLE_PLUGINS")) or frozenset(),
            strict=_truthy(environ.get("EPOCHAL_STRICT_PLUGINS")),
            trace=_truthy(environ.get("EPOCHAL_TRACE_PLUGINS")),
            import_notice_s=_seconds(
                environ.get("EPOCHAL_PLUGIN_IMPORT_NOTICE"), SLOW_IMPORT_NOTICE_S
            ),
        )

    def wants(self, *names: str | None) -> bool:
        """Whether a plugin known by any of ``names`` should be loaded."""
        normalised = {_normalise(n) for n in names if n}
        if normalised & self.disable:
            return False
        return self.load is None or bool(normalised & self.load)


@dataclass
class _PluginOrigin:
    distribution: str | None
    version: str | None


class EpochalPluginManager(pluggy.PluginManager):
    """A pluggy manager that survives broken plugins and remembers them."""

    def __init__(self, settings: PluginSettings | None = None) -> None:
        super().__init__(PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.settings = settings or PluginSettings()
        self.broken: dict[str, BrokenPlugin] = {}
        self.origins: dict[str, _PluginOrigin] = {}

    # -- loading -------------------------------------------------------------

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> int:
        """Import and register every plugin of the entry-point group.

        Each entry point is loaded on its own: one that raises on import or on
        registration is recorded in :attr:`broken`, warned about by name, and
        skipped (raised instead under ``EPOCHAL_STRICT_PLUGINS``).
        """
        from importlib.metadata import entry_points

        loaded = 0
        with CtrlCWatch() as ctrl_c, _SlowImportNotice(self.settings.import_notice_s) as slow:
            for entry_point in entry_points(group=group):
                dist = entry_point.dist
                dist_name = dist.metadata["Name"] if dist is not None else None
                if not self.settings.wants(entry_point.name, dist_name):
                    continue
                if self.is_blocked(entry_point.name):
                    continue
                if self.has_plugin(entry_point.name) or entry_point.name in self.broken:
                    owner = self.origins.get(entry_point.name)
                    other = owner.distribution if owner else "another package"
                    self.report_broken(
                        entry_point.name,
                        "register",
                        f"the name is already taken by {other}; rename the entry point",
                        dist_name,
                    )
                    continue
                origin = _PluginOrigin(dist_name, dist.version if dist is not None else None)
                slow.importing(
                    f"epochal: still importing plugin {entry_point.name!r} (module "
                    f"{entry_point.module}) after {self.settings.import_notice_s:g} s; start with "
                    f"EPOCHAL_DISABLE_PLUGINS={entry_point.name} to skip it\n"
                )
                try:
                    plugin = entry_point.load()
                except BaseException as exc:  # sys.exit() at import is the plugin's failure too
                    if not ctrl_c.raised_by_code(exc):
                        raise  # the user's Ctrl-C
                    self.report_broken(entry_point.name, "import", _describe(exc), dist_name, exc)
                    continue
                finally:
                    slow.done()
                self.origins[entry_point.name] = origin
                if self.register_isolated(plugin, entry_point.name, dist_name) is not None:
                    loaded += 1
        return loaded

    def register_checked(self, plugin: object, name: str) -> str | None:
        """Register ``plugin`` and validate its hooks (``check_pending`` for one plugin).

        Raises :class:`PluginError` naming the plugin and the bad hook, leaving
        the manager as it was. Returns ``None`` when the name is blocked.
        """
        try:
            registered = self.register(plugin, name)
            if registered is not None:
                self._check_plugin_hooks(plugin)
        except (pluggy.PluginValidationError, ValueError) as exc:
            if self.is_registered(plugin):
                self.unregister(plugin)
            raise PluginError(f"plugin {name!r}: {exc}") from exc
        return registered

    def register_isolated(
        self, plugin: object, name: str, distribution: str | None = None
    ) -> str | None:
        """Like :meth:`register_checked`, but a failure is reported and the plugin skipped."""
        try:
            return self.register_checked(plugin, name)
        except PluginError as exc:
            cause = exc.__cause__ or exc
            self.report_broken(name, "register", _describe(cause), distribution, cause)
            return None

    def _check_plugin_hooks(self, plugin: object) -> None:
        """``check_pending`` for one plugin: an unknown ``epochal_*`` hook is an error."""
        for caller in self.get_hookcallers(plugin) or []:
            if caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not impl.optionalhook:
                    known = [n for n in hookspecs.__all__ if n.startswith("epochal_")]
                    close = difflib.get_close_matches(caller.name, known, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise pluggy.PluginValidationError(
                        plugin, f"unknown hook {caller.name!r}{hint}"
                    )

    def report_broken(
        self,
        name: str,
        stage: str,
        error: str,
        distribution: str | None = None,
        cause: BaseException | None = None,
    ) -> None:
        """Record a broken plugin, warn (or raise in strict mode)."""
        broken = BrokenPlugin(name, stage, error, distribution)
        self.broken.setdefault(name, broken)
        message = broken.describe()
        if self.settings.strict:
            raise PluginError(message + " (EPOCHAL_STRICT_PLUGINS is set)") from cause
        warnings.warn(
            message + "; it is skipped, the other plugins keep working", PluginWarning, stacklevel=3
        )

    # -- introspection -------------------------------------------------------

    def unique_name(self, base: str) -> str:
        """``base``, or ``base-2``, ``base-3``... if taken."""
        name, number = base, 1
        while self.has_plugin(name) or name in self.broken:
            number += 1
            name = f"{base}-{number}"
        return name

    def plugin_version(self, name: str) -> str | None:
        origin = self.origins.get(name)
        return origin.version if origin else None

    def plugin_distribution(self, name: str) -> str | None:
        origin = self.origins.get(name)
        return origin.distribution if origin else None

    def hook_names(self, plugin: object) -> list[str]:
        """The hooks ``plugin`` implements, sorted."""
        return sorted(caller.name for caller in self.get_hookcallers(plugin) or [])

    def plugins_implementing(self, hook_name: str) -> list[str]:
        """Names of the plugins that implement ``hook_name``, in call order."""
        caller = getattr(self.hook, hook_name)
        return [impl.plugin_name for impl in reversed(caller.get_hookimpls())]

    # -- tracing -------------------------------------------------------------

    def enable_trace(self, stream: IO[str] | None = None) -> None:
        """Print every hook call (and which plugins answer it) to ``stream``."""
        out = stream if stream is not None else sys.stderr

        def before(hook_name: str, impls: Iterable[Any], kwargs: Mapping[str, Any]) -> None:
            args = ", ".join(f"{k}={_short_repr(v)}" for k, v in kwargs.items())
            names = ", ".join(impl.plugin_name for impl in impls) or "no plugin"
            print(f"epochal trace: {hook_name}({args}) -> [{names}]", file=out, flush=True)

        def after(outcome: Any, hook_name: str, impls: Any, kwargs: Any) -> None:
            if outcome.exception is not None:
                print(
                    f"epochal trace: {hook_name} raised {_describe(outcome.exception)}",
                    file=out,
                    flush=True,
                )

        self.add_hookcall_monitoring(before, after)


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line (pluggy's messages span several); ``SystemExit(3)`` for
    ``sys.exit(3)``."""
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r})"
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe_exception(exc: BaseException) -> str:
    """One line for ``exc``: ``Type: message``, or ``SystemExit(3)`` for ``sys.exit(3)``."""
    return _describe(exc)


class CtrlCWatch:
    """Tells a ``KeyboardInterrupt`` of the user's Ctrl-C from one that code raised itself.

    While entered (in the main thread), SIGINT first marks that it came and then does what it
    did before (Python's default raises ``KeyboardInterrupt``; a handler installed before,
    such as :func:`epochal.loop.interrupt.stop_on_signals`' stop request, runs as it did). A
    handler installed inside (a stop request switching to "stop at once") is left alone on
    exit. Costs two ``signal.signal`` calls, nothing per call of the code watched.
    """

    def __init__(self) -> None:
        self.seen = False
        self._previous: Any = None
        self._installed = False
        #: Whether a Ctrl-C can raise ``KeyboardInterrupt`` here without it being seen.
        self._unknown = False

    def __enter__(self) -> CtrlCWatch:
        try:
            previous = signal.getsignal(signal.SIGINT)
            if previous in (signal.SIG_IGN, signal.SIG_DFL):
                return self  # a Ctrl-C ignores or kills: it never raises KeyboardInterrupt
            if not callable(previous):  # installed outside Python: cannot be wrapped
                self._unknown = True
                return self
            signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: a signal never raises here
            return self
        self._previous, self._installed = previous, True
        return self

    def _handler(self, number: int, frame: FrameType | None) -> Any:
        self.seen = True
        return self._previous(number, frame)

    def __exit__(self, *exc_info: object) -> None:
        if self._installed and signal.getsignal(signal.SIGINT) == self._handler:
            signal.signal(signal.SIGINT, self._previous)
        self._installed = False

    def raised_by_code(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the watched code's own doing: an ``Exception``, a ``SystemExit``,
        or a ``KeyboardInterrupt`` while no Ctrl-C came. Anything else (a Ctrl-C, a stop in
        flight such as :class:`~epochal.loop.interrupt.TrainingInterrupted`) is not."""
        if isinstance(exc, (Exception, SystemExit)):
            return True
        if isinstance(exc, KeyboardInterrupt):
            return not (self.seen or self._unknown)
        return False


class _SlowImportNotice:
    """One background thread that writes a line to stderr when an import takes longer than
    ``delay`` seconds. One thread for all the imports of a loading loop (not a timer per
    plugin), started with the first import without waiting for it to run (``_thread``, not
    ``threading.Thread.start``, which waits: milliseconds on a busy machine), so that fast
    imports cost next to nothing. Like a daemon thread, it never holds up the exit."""

    def __init__(self, delay: float) -> None:
        self._delay = delay
        self._condition = threading.Condition()
        self._pending: tuple[str, float] | None = None  # message, deadline
        self._closed = False
        self._idle = False  # the thread waits for an import without a deadline
        self._started = False

    def __enter__(self) -> _SlowImportNotice:
        return self

    def importing(self, message: str) -> None:
        """An import starts; ``message`` is written if it is still running after the delay
        (a delay of 0: never)."""
        if self._delay <= 0:
            return
        with self._condition:
            self._pending = (message, time.monotonic() + self._delay)
            if not self._started:
                self._started = True
                _thread.start_new_thread(self._watch, ())
            elif self._idle:  # else it wakes at an earlier deadline and sees this one
                self._condition.notify()

    def done(self) -> None:
        with self._condition:
            self._pending = None

    def __exit__(self, *exc_info: object) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()

    def _watch(self) -> None:
        while (message := self._next_due()) is not None:
            try:  # outside the lock: a blocked stderr must not block the imports
                sys.stderr.write(message)
                sys.stderr.flush()
            except (OSError, ValueError, AttributeError):  # no usable stderr: stay silent
                pass

    def _next_due(self) -> str | None:
        """Wait for an import to pass its deadline (its message), or for the end (``None``)."""
        with self._condition:
            while not self._closed:
                if self._pending is None:
                    self._idle = True
                    self._condition.wait()
                    self._idle = False
                    continue
                message, deadline = self._pending
                left = deadline - time.monotonic()
                if left > 0:
                    self._condition.wait(left)
                    continue
                self._pending = None
                return message
            return None


def hookimpl_in_traceback(
    manager: pluggy.PluginManager, traceback: TracebackType | None
) -> tuple[str, str, FrameType] | None:
    """``(plugin name, hook name, frame)`` of the outermost hook implementation of
    ``manager`` that ``traceback`` passes through, or ``None`` when the exception did not come
    through a plugin. Found by the code objects of the implementations (public pluggy API);
    two plugins sharing one method's code are told apart by the frame's ``self``."""
    code_owners: dict[Any, list[tuple[str, str, Any]]] = {}
    for plugin in manager.get_plugins():
        for caller in manager.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                function = getattr(impl.function, "__func__", impl.function)
                code = getattr(function, "__code__", None)
                if code is not None:
                    owner = getattr(impl.function, "__self__", None)
                    code_owners.setdefault(code, []).append((impl.plugin_name, caller.name, owner))
    while traceback is not None:
        frame = traceback.tb_frame
        owners = code_owners.get(frame.f_code)
        if owners:
            this = frame.f_locals.get("self") if len(owners) > 1 else None
            name, hook, _ = next((o for o in owners if o[2] is this), owners[0])
            return name, hook, frame
        traceback = traceback.tb_next
    return None


def plugin_display_name(plugin: object) -> str:
    """A readable name for a plugin object: its module or class name."""
    name = getattr(plugin, "__name__", None)
    return name if isinstance(name, str) else type(plugin).__name__


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def build_plugin_manager(
    *,
    load_entry_points: bool = True,
    environ: Mapping[str, str] | None = None,
    plugins: Iterable[object] = (),
) -> EpochalPluginManager:
    """Make a fresh manager: core defaults, entry points, then ``plugins``.

    ``environ`` defaults to ``os.environ``; pass a dict to test the
    ``EPOCHAL_*_PLUGINS`` variables without touching the process.
    """
    from epochal.plugins import defaults

    settings = PluginSettings.from_environ(os.environ if environ is None else environ)
    manager = EpochalPluginManager(settings)
    for name in settings.disable:
        manager.set_blocked(name)
    if _normalise(DEFAULTS_PLUGIN_NAME) not in settings.disable:
        from epochal import __version__

        manager.origins[DEFAULTS_PLUGIN_NAME] = _PluginOrigin("epochal", __version__)
        manager.register_isolated(defaults, DEFAULTS_PLUGIN_NAME, "epochal")
    if load_entry_points:
        manager.load_entry_points()
    for plugin in plugins:
        manager.register_isolated(plugin, manager.unique_name(plugin_display_name(plugin)))
    # Every plugin was validated on its own above (so that one bad plugin is skipped,
    # not fatal); pluggy's global check confirms nothing unverified slipped through.
    manager.check_pending()
    if settings.trace:
        manager.enable_trace()
    return manager


def build_trainer_plugin_manager(global_manager: EpochalPluginManager) -> EpochalPluginManager:
    """A fresh manager with the global plugins, to which this trainer adds its callbacks."""
    manager = EpochalPluginManager(global_manager.settings)
    manager.origins.update(global_manager.origins)  # which plugins came from entry points
    for name, plugin in global_manager.list_name_plugin():
        if plugin is not None:
            manager.register(plugin, name)
    if global_manager.settings.trace:
        manager.enable_trace()
    return manager


_manager: EpochalPluginManager | None = None


def get_plugin_manager() -> EpochalPluginManager:
    """The process-wide manager, built on first use (the only global state)."""
    global _manager
    if _manager is None:
        _manager = build_plugin_manager()
    return _manager


def reset_plugin_manager() -> None:
    """Forget the process-wide manager; the next :func:`get_plugin_manager` rebuilds it."""
    global _manager
    _manager = None


def single_plugin_caller(manager: pluggy.PluginManager, hook_name: str, plugin_name: str) -> Any:
    """A hook caller that reaches only ``plugin_name``, through pluggy (so tracing sees it)."""
    target = manager.get_plugin(plugin_name)
    others = [p for p in manager.get_plugins() if p is not target]
    return manager.subset_hook_caller(hook_name, remove_plugins=others)


#: Returned by :func:`call_plugin` when the plugin raised.
FAILED: Any = object()


def call_plugin(
    manager: EpochalPluginManager, hook_name: str, plugin_name: str, **kwargs: Any
) -> Any:
    """Call one plugin's implementation of ``hook_name``, isolating its failure.

    Goes through pluggy (so ``EPOCHAL_TRACE_PLUGINS`` sees it). A plugin that raises
    (``sys.exit()`` included) is reported as broken, or the error is raised in strict mode,
    and :data:`FAILED` is returned so that callers can skip what it produced. A
    ``KeyboardInterrupt`` is let through: registration hooks run often, and telling a Ctrl-C
    from a plugin's own would cost a :class:`CtrlCWatch` each time.
    """
    caller = single_plugin_caller(manager, hook_name, plugin_name)
    try:
        return caller(**kwargs)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the plugin's own failure
        manager.report_broken(
            plugin_name, hook_name, _describe(exc), manager.plugin_distribution(plugin_name), exc
        )
        return FAILED
