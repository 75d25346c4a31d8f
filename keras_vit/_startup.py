"""Start-up of the package and of the `keras-vit` command, with the standard library only.

TensorFlow's native libraries log through Abseil, which writes every message
logged before `absl::InitializeLog()` to stderr whatever `TF_CPP_MIN_LOG_LEVEL`
says ("All log messages before absl::InitializeLog() is called are written to
STDERR", "I0000 ... port.cc] oneDNN custom operations are on", "Could not find
cuda drivers"). `native_logs_filtered` holds back, while the frameworks load,
the native log lines below the level `TF_CPP_MIN_LOG_LEVEL` asks for, and passes
every other line (Python warnings, errors) through unchanged.

`launched_as_cli` tells the package that it is imported by the `keras-vit`
command, which then reads its arguments (and answers `--help`) before it loads
TensorFlow.
"""

import contextlib
import os
import re
import sys
import tempfile
import threading
import time

# "I0000 00:00:1796218914.385188    6063 port.cc:153] message": Abseil's (and glog's) prefix.
# The seconds field holds the Unix time where Abseil has no local time yet ("00:00:1796218914.385188").
_NATIVE_LINE = re.compile(r"^(?P<severity>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\s\]]+:\d+\] ")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# Lines that continue the message of the native line before them.
_CONTINUATIONS = ("To enable the following instructions:",)


def min_log_level():
    """`TF_CPP_MIN_LOG_LEVEL` as an int: 0 (everything, TensorFlow's default) to 3 (fatal errors only)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def filter_native_logs(text, level):
    """`text` without the native log lines of a severity below `level` (0 info, 1 warning, 2 error)."""
    kept = []
    dropped = False
    for line in text.splitlines(keepends=True):
        match = _NATIVE_LINE.match(line)
        if match:
            dropped = _SEVERITY[match.group("severity")] < level
        elif line.startswith(_ABSL_PREAMBLE):
            dropped = level >= 1
        elif not (dropped and line.startswith(_CONTINUATIONS)):
            dropped = False
        if not dropped:
            kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def native_logs_filtered(level=None):
    """Within the block, what is written to file descriptor 2 (native libraries and Python alike) goes to a
    temporary file; on leaving, it is written to stderr without the native log lines below `level`
    (default: `TF_CPP_MIN_LOG_LEVEL`). A no-op at level 0 or where stderr has no file descriptor."""
    level = min_log_level() if level is None else level
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):
        saved = None
    if level <= 0 or saved is None:
        if saved is not None:
            os.close(saved)
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = filter_native_logs(capture.read().decode("utf-8", "replace"), level)
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()


class _WriteWatcher:
    """A text stream that passes everything to `stream` and sets `event` on its first write."""

    def __init__(self, stream, event):
        self._stream = stream
        self._event = event

    def write(self, text):
        if text:
            self._event.set()
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class Heartbeat:
    """Status lines of a command that has nothing else to show yet.

    `say(text)` writes `[PREFIX] text` at once (not in the form `keras-vit CMD: ...` of the command's own
    messages and errors); then, every `every` seconds, the same line with the seconds
    since the start, until `watch()`ed stdout or stderr get their first write (the command's own output or
    progress bar) or `stop()`. The lines go to the file descriptor stderr had at the start, so that a
    redirection of stderr meanwhile (`native_logs_filtered`) does not hold them back.
    """

    def __init__(self, prefix, every=8.0):
        self.prefix, self.every = prefix, every
        self.start = time.monotonic()
        self._text = None
        self._due = None  # when the line of `say(..., delay)` is to be written
        self._last = self.start
        self._lock = threading.Lock()
        self._output = threading.Event()
        self._done = threading.Event()
        self._saved = None
        try:
            sys.stderr.flush()
            self._fd = os.dup(sys.stderr.fileno())
        except (AttributeError, OSError, ValueError):
            self._fd = None
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _write(self, line):
        if self._fd is not None:
            os.write(self._fd, (line + "\n").encode("utf-8", "replace"))
        else:
            sys.__stderr__.write(line + "\n")
            sys.__stderr__.flush()

    def say(self, text, delay=0.0):
        """Writes `[PREFIX] text` now, or after `delay` seconds unless `say` or `stop` come first."""
        with self._lock:
            self._text = text
            if delay > 0:
                self._due = time.monotonic() + delay
                return
            self._due = None
            self._last = time.monotonic()
            self._write(f"[{self.prefix}] {text}")

    @property
    def pending(self):
        """Whether the line of `say(..., delay)` is still to be written."""
        return self._due is not None

    def _beat(self):
        while not self._done.wait(0.1):
            if self._output.is_set():
                return
            with self._lock:
                now = time.monotonic()
                if self._due is not None and now >= self._due:
                    self._due, self._last = None, now
                    self._write(f"[{self.prefix}] {self._text}")
                elif self._due is None and self._text is not None and now - self._last >= self.every:
                    self._last = now
                    self._write(f"[{self.prefix}] {self._text} ({now - self.start:.0f} s)")

    def watch(self):
        """From now on the heartbeat ends at the first write to `sys.stdout` or `sys.stderr`."""
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = _WriteWatcher(sys.stdout, self._output)
        sys.stderr = _WriteWatcher(sys.stderr, self._output)

    def stop(self):
        self._done.set()
        self._thread.join()
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
            self._saved = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def launched_as_cli():
    """True in the process of the `keras-vit` command: its console script, or `python -m keras_vit.cli`."""
    argv = list(getattr(sys, "orig_argv", []))
    for i, arg in enumerate(argv[:-1]):
        if arg == "-m" and argv[i + 1] in ("keras_vit.cli", "keras_vit.cli.__main__"):
            return True
    if any(arg in ("-mkeras_vit.cli", "-mkeras_vit.cli.__main__") for arg in argv):
        return True
    main = getattr(sys.modules.get("__main__"), "__file__", None) or ""
    name = os.path.basename(main).lower()
    return name in ("keras-vit", "keras-vit.exe", "keras-vit-script.py")
