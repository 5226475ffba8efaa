"""The trusted side of a sandboxed run: a supervisor that forks the untrusted program and reports its fate.

This file is never imported by the suite; ``suite.sandbox`` passes its source to
``python -S -s -c`` inside the sandbox, so it may use only the standard library
and must start fast (no ``json``: the job arrives as ``marshal`` from the
evaluator, the report leaves as plain text).

Why a supervisor and a child: a process cannot vouch for itself once untrusted
code has run in it (``os._exit(0)``, an ``atexit`` hook, a patched ``sys.exit``
all fake a clean exit). So the supervisor forks first; only the supervisor holds
the report pipe and the evaluator's nonce (read from stdin *after* the fork, so
the child never sees it), and it reports the child's real wait status plus the one
line the child wrote on a private pipe. "Passed" needs that line to be exactly
``ok <token>`` and the child to exit 0 right after; everything else is a failure.

Tampering defences in the child: the test runs in its own namespace (built from
the trusted prompt, never from the completion's globals); interpreter state that a
completion could poison (builtins, already-imported modules, ``sys.modules``,
import hooks, trace/profile hooks, timers and signal handlers, recursion limit,
this harness's globals) is restored before the test and after every call of the
candidate; threads still running after the program or a call fail the run (they
could poison that state mid-assert); and the candidate's return value is rebuilt
from built-in types, so an object whose ``__eq__`` always says True cannot pass an
``assert candidate(x) == y``. A program written against this file's internals
(reading the harness's frames or memory) could still forge the child's line: that
is a deliberate attack, not a plausible completion, and the sandbox contains it.
"""
import _signal
import _thread
import builtins
import gc
import marshal
import os
import resource
import sys

_write, _exit, _read, _close = os.write, os._exit, os.read, os.close
_settrace, _setprofile, _getframe = sys.settrace, sys.setprofile, sys._getframe
_gc_disable, _gc_collect, _gc_callbacks = gc.disable, gc.collect, gc.callbacks
_builtins = builtins.__dict__


def _read_exact(fd, n):
    data = b""
    while len(data) < n:
        chunk = _read(fd, n - len(data))
        if not chunk:
            raise EOFError("the evaluator closed stdin early")
        data += chunk
    return data


def _set_limits(limits):
    """Resource limits of the child and of everything it forks: setrlimit before any untrusted code."""
    pairs = [(resource.RLIMIT_AS, limits["memory_bytes"]), (resource.RLIMIT_FSIZE, limits["file_bytes"]),
             (resource.RLIMIT_NOFILE, limits["open_files"]), (resource.RLIMIT_CORE, 0),
             (resource.RLIMIT_CPU, limits["cpu_s"])]
    if limits["processes"]:
        pairs.append((resource.RLIMIT_NPROC, limits["processes"]))
    for which, value in pairs:
        _, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        top = value
        if which == resource.RLIMIT_CPU and (hard == resource.RLIM_INFINITY or value < hard):
            top = value + 1  # SIGXCPU at the soft limit, SIGKILL a second later
        resource.setrlimit(which, (value, top))


def _identities(mapping):
    """Keys and values by identity: comparing them never calls the program's ``__eq__`` or ``__hash__``."""
    return list(map(id, mapping)), list(map(id, mapping.values()))


class _State:
    """Interpreter state a completion could poison to make a test pass; captured before it runs.

    Restoring never runs the program's code: builtins come back first (with dict methods only),
    objects are compared by identity, and whatever is replaced is kept alive in ``graveyard`` so
    no ``__del__`` runs halfway through. Timers and signal handlers are reset, garbage is
    collected while the program's finalizers can still do no harm, and automatic collection stays
    off so no finalizer runs in the middle of an assert. A full restore (every module) runs before
    the test; after each call of the candidate, only this harness's globals, ``sys`` and what the
    test can reach by name are checked (``watch``), which keeps a test with a hundred calls fast.
    """

    def __init__(self, program):
        self.builtins = _builtins.copy()
        self.saved = {}
        for d in [sys.modules, sys.path_importer_cache, globals()] + [
                m.__dict__ for m in sys.modules.values() if isinstance(getattr(m, "__dict__", None), dict)]:
            if d is not _builtins and d is not program:
                self.saved[id(d)] = (d, dict(d), _identities(d))
        self.hot = [self.saved[id(d)] for d in (sys.modules, sys.path_importer_cache, sys.__dict__, globals())]
        self.lists = [(lst, list(lst)) for lst in (sys.meta_path, sys.path_hooks, sys.path, _gc_callbacks)]
        self.signals = [(n, _signal.getsignal(n)) for n in range(1, _signal.NSIG)]
        self.recursion = sys.getrecursionlimit()
        self.graveyard = []

    def watch(self, namespace):
        """Check, after every call, the modules the test reaches by name (``math``, ``random.randint``)."""
        for value in list(namespace.values()):
            module = value if type(value) is type(sys) else sys.modules.get(getattr(value, "__module__", None) or "")
            key = id(getattr(module, "__dict__", None))
            if key in self.saved and all(key != id(entry[0]) for entry in self.hot):
                self.hot.append(self.saved[key])

    def restore(self, everything=True):
        self.graveyard.append(_builtins.copy())
        _builtins.clear()
        _builtins.update(self.builtins)
        _settrace(None)
        _setprofile(None)
        for live, saved, identities in (self.saved.values() if everything else self.hot):
            if _identities(live) != identities:
                self.graveyard.append(list(live.items()))
                live.clear()
                live.update(saved)
        for live, saved in self.lists:  # import hooks, paths, gc callbacks: mutated in place or not
            if len(live) != len(saved) or any(a is not b for a, b in zip(live, saved)):
                self.graveyard.append(live[:])
                live[:] = saved
        _signal.alarm(0)
        for timer in (_signal.ITIMER_REAL, _signal.ITIMER_VIRTUAL, _signal.ITIMER_PROF):
            _signal.setitimer(timer, 0)
        for number, handler in self.signals:
            if _signal.getsignal(number) is not handler:
                _signal.signal(number, _signal.SIG_DFL if handler is None else handler)
        sys.setrecursionlimit(self.recursion)
        _gc_collect(0)
        _gc_disable()
        if _thread._count():
            raise RuntimeError("the program left %d thread(s) running" % _thread._count())


_EXACT = (type(None), bool, int, float, complex, str, bytes)


def _plain(value):
    """The candidate's result rebuilt from built-in types, or TypeError: its own __eq__ never reaches the test."""
    kind = type(value)
    if kind in _EXACT:
        return value
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, list):
        return [_plain(v) for v in list.__iter__(value)]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in tuple.__iter__(value))
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in dict.items(value)}
    if isinstance(value, frozenset):
        return frozenset(_plain(v) for v in frozenset.__iter__(value))
    if isinstance(value, set):
        return {_plain(v) for v in set.__iter__(value)}
    raise TypeError("the candidate returned a %s, not a built-in value" % kind.__name__)


def _guard(candidate, state):
    def guarded(*args, **kwargs):
        try:
            result = candidate(*args, **kwargs)
        finally:
            state.restore(everything=False)
            _getframe(1).f_trace = None
        return _plain(result)
    return guarded


def _judge(job):
    """Run the program; return only if it (and its check, if any) finished without raising."""
    program = type(sys)("__main__")
    program.__dict__["__builtins__"] = builtins
    if job["test"] is not None:  # like the official HumanEval harness: a completion's `if __name__ == ...` stays off
        program.__dict__["__name__"] = "__candidate__"
    sys.modules["__main__"] = program  # `import __main__` finds the program, never this harness
    state = _State(program.__dict__)  # the program's own globals are its business, never restored
    exec(compile(job["source"], "<program>", "exec"), program.__dict__)
    if job["test"] is None:
        return
    _gc_collect()  # the program's finalizers run now, before the restore, not during the test
    state.restore()
    if job["entry_point"] not in program.__dict__:
        raise NameError("the program does not define %r" % job["entry_point"])
    candidate = _guard(program.__dict__[job["entry_point"]], state)
    tests = {"__name__": "__test__", "__builtins__": builtins}
    exec(compile(job["context"], "<context>", "exec"), tests)
    tests[job["entry_point"]] = candidate
    exec(compile(job["test"], "<test>", "exec"), tests)
    state.watch(tests)
    state.restore()
    tests[job["check"]](candidate)


def _describe(exc):
    try:
        where, tb = "", exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename in ("<program>", "<context>", "<test>"):
                where = " (%s line %d)" % (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
            tb = tb.tb_next
        text = str(exc)
        return "%s%s%s" % (type(exc).__name__, ": " + text[:300] if text else "", where)
    except BaseException:
        return "an exception that cannot be described"


def _child(job, channel, token):
    """Never returns: exit 0 after writing ``ok <token>``, or 1 after ``raised <description>``."""
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)  # the nonce is still waiting in the stdin pipe: this process must never read it
    _close(devnull)
    _close(job["report_fd"])
    _set_limits(job["limits"])
    try:
        _judge(job)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are failures too
        _write(channel, ("raised " + _describe(exc)).encode("utf-8", "replace")[:2000])
        _exit(1)
    _write(channel, b"ok " + token)
    _exit(0)


def _drop_privileges(uid):
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _wait_and_report(pid, inbox, token, report_fd):
    nonce = _read_exact(0, 32)
    _close(0)
    _, status = os.waitpid(pid, 0)
    os.set_blocking(inbox, False)
    try:
        message = _read(inbox, 4096)
    except BlockingIOError:
        message = b""
    how = "signal %d" % os.WTERMSIG(status) if os.WIFSIGNALED(status) else "exit %d" % os.WEXITSTATUS(status)
    verdict = "ok" if message == b"ok " + token else "no"
    detail = message[7:].decode("utf-8", "replace") if message.startswith(b"raised ") else ""
    report = "%s\n%s\n%s\n%s" % (nonce.decode("ascii", "replace"), how, verdict, detail.replace("\n", " ")[:1000])
    _write(report_fd, report.encode("utf-8", "replace"))


def main():
    job = marshal.loads(_read_exact(0, int(_read_exact(0, 16), 16)))
    if job["uid"] is not None:
        _drop_privileges(job["uid"])
    for name in job["preload"]:
        try:
            __import__(name)
        except ImportError:
            pass  # the program will say so itself
    token = os.urandom(16).hex().encode()
    inbox, channel = os.pipe()
    pid = os.fork()
    if pid == 0:
        _close(inbox)
        _child(job, channel, token)
    _close(channel)
    _wait_and_report(pid, inbox, token, job["report_fd"])
    _exit(0)


if __name__ == "__main__":
    main()
