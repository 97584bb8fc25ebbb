# The in-sandbox half of a Python code context (package interpreter).
#
# It is started as `python3 -u -c <this source>`; its stdin and stdout carry
# the protocol: one JSON object per line, binary data as base64. The first
# thing it does is move the protocol off fds 0/1/2, so that the code it runs
# may print anything, close or dup the standard fds and start subprocesses
# without breaking or forging the framing:
#   - the real stdin/stdout are dup'ed to private close-on-exec fds;
#   - fd 0 becomes /dev/null;
#   - fds 1 and 2 become pipes that threads here read and forward as
#     "stream" messages, so even a subprocess's output is captured.
#
# Host -> program: {"type":"execute","id":N,"code":"..."}
#                  {"type":"interrupt","id":N}
#                  {"type":"shutdown"}
# Program -> host: {"type":"ready","runtime":"python","version":"3.11.2",
#                   "rich":true,"mode":"ipython","pid":123}
#                  {"type":"stream","id":N,"name":"stdout"|"stderr","data":B64}
#                  {"type":"result","id":N,"main":bool,"data":{MIME: value}}
#                  {"type":"error","id":N,"name":..,"value":..,"traceback":..}
#                  {"type":"end","id":N}
#                  {"type":"fatal","message":..}  (startup failed)
# Everything a cell produces comes between its execute and its end; output
# written by background threads between cells is dropped.

import os
import sys
import json
import signal
import threading
import select
import fcntl
import termios
import importlib.util
import importlib.machinery

from binascii import b2a_base64 as _b64


class _State:
    cell = None  # id of the running cell, None between cells
    in_user = False  # the main thread is running user code
    pending = False  # an interrupt arrived while not in user code
    early = None  # the last cell an interrupt was asked for
    error_sent = False
    shown = set()  # ids of matplotlib figures displayed in this cell
    mpl = False  # our matplotlib backend has been loaded


S = _State()
MAIN = threading.main_thread().ident
BACKEND = "module://_csdk_mpl"
BINARY = ("image/png", "image/jpeg", "application/pdf")

# --- the private channel ----------------------------------------------------

# os.dup makes non-inheritable fds (PEP 446): subprocesses never get them.
PIN = os.dup(0)
POUT = os.dup(1)
NULL = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
R_OUT, W_OUT = os.pipe()
R_ERR, W_ERR = os.pipe()
_LOCK = threading.Lock()


def send(msg):
    data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
    with _LOCK:
        view = memoryview(data)
        try:
            while view:
                n = os.write(POUT, view)
                view = view[n:]
        except OSError:
            # The host is gone: nothing left to serve.
            os._exit(0)


def _std_files():
    # As with -u: no buffer between print and the pipe, so output streams as
    # it is produced. closefd=False: user code closing sys.stdout does not
    # close fd 1 (and restore_std makes new ones for the next cell).
    import io

    def w(fd):
        return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False),
                                encoding="utf-8", errors="backslashreplace",
                                line_buffering=True, write_through=True)

    sys.stdin = sys.__stdin__ = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8")
    sys.stdout = sys.__stdout__ = w(1)
    sys.stderr = sys.__stderr__ = w(2)


def restore_std():
    """Undo what the previous cell did to fds 0/1/2 and sys.std*."""
    for src, fd in ((NULL, 0), (W_OUT, 1), (W_ERR, 2)):
        try:
            os.dup2(src, fd)  # inheritable: subprocesses write to our pipes
        except OSError:
            pass
    try:
        ok = (sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__
              and sys.stdin is sys.__stdin__ and not sys.stdout.closed
              and not sys.stderr.closed and not sys.stdin.closed)
    except Exception:
        ok = False
    if not ok:
        _std_files()
    if signal.getsignal(signal.SIGINT) is not _on_sigint:
        signal.signal(signal.SIGINT, _on_sigint)


class Capture(threading.Thread):
    """Reads one of the fd 1/2 pipes and forwards it as stream messages.

    drain() writes a random marker through the pipe's private write end and
    waits until this thread has read it: everything written to the pipe
    before then has been forwarded, so output that precedes a result reaches
    the host before it."""

    def __init__(self, name, rfd, wfd):
        super().__init__(name="csdk-" + name, daemon=True)
        self.stream, self.rfd, self.wfd = name, rfd, wfd
        self.marker = None
        self.seen = threading.Event()
        self.busy = False

    def run(self):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        hold = b""
        poll = select.poll()
        poll.register(self.rfd, select.POLLIN)
        while True:
            try:
                # Wait for data before taking it, with busy set in between:
                # drain's fast path relies on "nothing unread in the pipe and
                # not busy" meaning "everything forwarded".
                poll.poll()
                self.busy = True
                chunk = os.read(self.rfd, 65536)
            except OSError:
                return
            if not chunk:
                return
            data = hold + chunk if hold else chunk
            hold = b""
            m = self.marker
            if m is not None:
                i = data.find(m)
                if i >= 0:
                    self.forward(data[:i])
                    data = data[i + len(m):]
                    self.marker = None
                    self.seen.set()
                else:
                    # Keep back a tail that may be the marker's beginning.
                    for k in range(min(len(m) - 1, len(data)), 0, -1):
                        if data.endswith(m[:k]):
                            hold, data = data[-k:], data[:-k]
                            break
            self.forward(data)
            self.busy = bool(hold)

    def idle(self):
        """Everything written to the pipe so far has been forwarded."""
        if self.busy:
            return False
        try:
            n = fcntl.ioctl(self.rfd, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return False
        return n == b"\0\0\0\0" and not self.busy

    def forward(self, data):
        cell = S.cell
        if data and cell is not None:
            send({"type": "stream", "id": cell, "name": self.stream,
                  "data": _b64(data, newline=False).decode()})


CAPS = (Capture("stdout", R_OUT, W_OUT), Capture("stderr", R_ERR, W_ERR))


def drain():
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass
    # Usually nothing is in flight and the round trip through the reader
    # threads (two thread switches per pipe) can be skipped.
    wait = [c for c in CAPS if not c.idle()]
    for c in wait:
        c.seen.clear()
        c.marker = b"\0csdk:" + os.urandom(12).hex().encode() + b"\0"
        os.write(c.wfd, c.marker)
    for c in wait:
        c.seen.wait(10)


# --- interrupts ---------------------------------------------------------------


def _on_sigint(signum, frame):
    # Only user code is interrupted; anywhere else (our own bookkeeping,
    # writing a frame) the interrupt waits for the next entry to user code
    # of the same cell, so it can never cut a message in half.
    if S.in_user:
        S.pending = False
        raise KeyboardInterrupt
    S.pending = True


class protect:
    """Runs our code called from user code (display) uninterruptibly."""

    def __enter__(self):
        self.prev, S.in_user = S.in_user, False

    def __exit__(self, *exc):
        S.in_user = self.prev
        if self.prev and S.pending:
            S.pending = False
            raise KeyboardInterrupt


def interrupt(cell):
    if cell is None:
        return
    # A cell still in the queue is interrupted as it starts: main() checks
    # S.early after setting S.cell, and this checks S.cell after setting
    # S.early, so one of the two sees the other.
    S.early = cell
    if cell == S.cell:
        # To the main thread itself: a process-directed signal may land on
        # another thread and then would not cut short a blocking call
        # (time.sleep, a lock, a wait) in the main one.
        signal.pthread_kill(MAIN, signal.SIGINT)


# --- results ----------------------------------------------------------------


def wire(bundle):
    """A MIME bundle as JSON: binary types base64, text types str."""
    out = {}
    for mime, v in bundle.items():
        if v is None:
            continue
        if mime in BINARY:
            if isinstance(v, (bytes, bytearray, memoryview)):
                v = _b64(bytes(v), newline=False).decode()
            elif not isinstance(v, str):
                continue
        elif mime == "application/json" or mime.endswith("+json"):
            if isinstance(v, (bytes, str)):
                try:
                    v = json.loads(v)
                except ValueError:
                    continue
        elif isinstance(v, (bytes, bytearray)):
            v = bytes(v).decode("utf-8", "replace")
        elif not isinstance(v, str):
            continue
        out[mime] = v
    return out


def emit_result(bundle, main):
    with protect():
        data = wire(bundle)
        if not data:
            return
        drain()
        msg = {"type": "result", "id": S.cell, "main": bool(main), "data": data}
        try:
            send(msg)
        except (TypeError, ValueError):  # a JSON value that is not JSON
            msg["data"] = {k: v for k, v in data.items() if isinstance(v, str)}
            send(msg)


def report_error(name, value, tb):
    with protect():
        if S.error_sent:
            return
        S.error_sent = True
        drain()
        send({"type": "error", "id": S.cell, "name": name, "value": value,
              "traceback": tb})


def fig_png(fig):
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    S.shown.add(id(fig))
    return buf.getvalue()


def flush_figures(display):
    """Shows the figures the cell left open and closes them, as
    matplotlib-inline does at the end of a Jupyter cell."""
    plt = sys.modules.get("matplotlib.pyplot")
    if not S.mpl or plt is None:
        return
    try:
        import matplotlib
        if matplotlib.get_backend() != BACKEND:
            return
        from matplotlib._pylab_helpers import Gcf
        for m in Gcf.get_all_fig_managers():
            fig = m.canvas.figure
            if id(fig) not in S.shown:
                display(fig)
    except Exception:
        import traceback
        traceback.print_exc()
    finally:
        S.shown.clear()
        try:
            plt.close("all")
        except Exception:
            pass


# Matplotlib: a backend of our own (Agg underneath) whose show() displays
# the open figures. MPLBACKEND is not set because subprocesses would inherit
# it and fail to find the module; instead an import hook sets rcParams when
# matplotlib is first imported (unless the user chose a backend).
_BACKEND_SRC = """
from matplotlib.backends.backend_agg import FigureCanvasAgg as FigureCanvas
from matplotlib.backend_bases import FigureManagerBase as FigureManager
def show(*args, **kwargs):
    _csdk_show()
"""


class _Loader:
    def __init__(self, real=None):
        self.real = real

    def create_module(self, spec):
        return self.real.create_module(spec) if self.real else None

    def exec_module(self, mod):
        if self.real is None:  # _csdk_mpl itself
            mod.__dict__["_csdk_show"] = _show_figures
            exec(_BACKEND_SRC, mod.__dict__)
            S.mpl = True
            return
        self.real.exec_module(mod)
        try:
            mod.rcParams["backend"] = BACKEND
        except Exception:
            pass

    def __getattr__(self, name):
        return getattr(self.real, name)


class _Finder:
    hooked = False

    def find_spec(self, name, path=None, target=None):
        if name == "_csdk_mpl":
            return importlib.util.spec_from_loader(name, _Loader())
        if name == "matplotlib" and not self.hooked:
            self.hooked = True
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
            return spec
        return None

    def invalidate_caches(self):
        pass


def _show_figures():
    flush_figures(DISPLAY)


# --- the two ways of running a cell -----------------------------------------


def plain_format(obj):
    """A MIME bundle for obj without IPython: the _repr_*_ conventions."""
    data = {}
    if not isinstance(obj, type):
        meths = (("text/html", "_repr_html_"), ("text/markdown", "_repr_markdown_"),
                 ("image/svg+xml", "_repr_svg_"), ("image/png", "_repr_png_"),
                 ("image/jpeg", "_repr_jpeg_"), ("text/latex", "_repr_latex_"),
                 ("application/json", "_repr_json_"),
                 ("application/javascript", "_repr_javascript_"),
                 ("application/pdf", "_repr_pdf_"))
        try:
            f = getattr(obj, "_repr_mimebundle_", None)
            if callable(f):
                b = f()
                if isinstance(b, tuple):
                    b = b[0]
                if isinstance(b, dict):
                    data.update(b)
        except Exception:
            pass
        for mime, name in meths:
            try:
                f = getattr(obj, name, None)
                if callable(f) and mime not in data:
                    v = f()
                    if isinstance(v, tuple):
                        v = v[0]
                    if v is not None:
                        data[mime] = v
            except Exception:
                pass
        t = type(obj)
        if t.__name__ == "Figure" and t.__module__ == "matplotlib.figure":
            try:
                data["image/png"] = fig_png(obj)
            except Exception:
                pass
    try:
        data["text/plain"] = repr(obj)
    except Exception:
        data["text/plain"] = object.__repr__(obj)
    return data


class Plain:
    """Standard library only: a module namespace, ast to split off the last
    expression, tracebacks from the traceback module."""

    rich = False

    def __init__(self):
        import types
        import builtins
        mod = types.ModuleType("__main__")
        mod.__builtins__ = builtins
        mod.display = builtins.display = self.display
        sys.modules["__main__"] = mod
        self.ns = mod.__dict__
        self.loop = None

    def display(self, *objs, **kwargs):
        for o in objs:
            emit_result(plain_format(o), False)

    def _await(self, coro):
        import asyncio
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        return self.loop.run_until_complete(coro)

    def error(self, e, tb=None):
        import traceback
        tb = e.__traceback__ if tb is None else tb
        while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<cell-"):
            tb = tb.tb_next
        text = "".join(traceback.format_exception(type(e), e, tb))
        report_error(type(e).__name__, str(e), text)

    def run(self, code, cell):
        import ast
        import linecache
        fn = "<cell-%d>" % cell
        linecache.cache[fn] = (len(code), None, code.splitlines(True), fn)
        flags = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
        try:
            tree = ast.parse(code, fn, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            body = compile(tree, fn, "exec", flags=flags, dont_inherit=True)
            tail = compile(last, fn, "eval", flags=flags, dont_inherit=True) if last else None
        except (SyntaxError, ValueError, OverflowError) as e:
            self.error(e)
            return
        co = 0x80  # inspect.CO_COROUTINE
        try:
            S.in_user = True
            try:
                if S.pending:
                    S.pending = False
                    raise KeyboardInterrupt
                r = eval(body, self.ns)
                if body.co_flags & co:
                    self._await(r)
                val = None
                if tail is not None:
                    val = eval(tail, self.ns)
                    if tail.co_flags & co:
                        val = self._await(val)
            finally:
                S.in_user = False
        except BaseException as e:
            self.error(e)
            return
        if val is not None:
            self.ns["_"] = val
            emit_result(plain_format(val), True)
        flush_figures(self.display)


def make_ipython():
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from traitlets.config import Config

    class Hook(DisplayHook):
        # The last expression's value: no "Out[n]:" on stdout, a main result.
        def write_output_prompt(self):
            pass

        def compute_format_data(self, result):
            # A number or a string needs only text/plain, and asking every
            # one of IPython's formatters costs about half a millisecond.
            t = type(result)
            if t in SCALARS:
                f = self.shell.display_formatter.formatters
                key = ("builtins", t.__name__)
                if not any(t in x.type_printers or key in x.deferred_printers
                           for x in f.values()):
                    return {"text/plain": f["text/plain"](result)}, {}
            return super().compute_format_data(result)

        def write_format_data(self, format_dict, md_dict=None):
            emit_result(format_dict, True)

        def finish_displayhook(self):
            pass

    class Pub(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None,
                    update=False, **kwargs):
            emit_result(data, False)

        def clear_output(self, wait=False):
            pass

    SCALARS = (int, float, complex, bool, str, bytes)
    ki = compile("raise KeyboardInterrupt", "<interrupt>", "exec")

    class Shell(InteractiveShell):
        def _showtraceback(self, etype, evalue, stb):
            report_error(getattr(etype, "__name__", str(etype)), str(evalue),
                         self.InteractiveTB.stb2text(stb))

        async def run_code(self, code_obj, result=None, *, async_=False):
            if S.pending:  # interrupted before the user code started
                S.pending = False
                code_obj, async_ = ki, False
            S.in_user = True
            try:
                return await super().run_code(code_obj, result, async_=async_)
            finally:
                S.in_user = False

    c = Config()
    c.HistoryManager.enabled = False  # no sqlite file, no history thread
    c.InteractiveShell.colors = "NoColor"
    shell = Shell.instance(config=c, displayhook_class=Hook, display_pub_class=Pub)
    # !cmd through subprocess with fds 1/2 inherited (our pipes) rather than
    # pexpect and a pty, which sandboxes may lack.
    shell.system = shell.system_raw
    shell.display_formatter.formatters["image/png"].for_type_by_name(
        "matplotlib.figure", "Figure", fig_png)

    from IPython.display import display

    class Rich:
        rich = True

        def display(self, *objs):
            display(*objs)

        def run(self, code, cell):
            shell.run_cell(code, store_history=True)
            flush_figures(display)

    return Rich()


# --- main -------------------------------------------------------------------


def reader(queue):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    buf = b""
    while True:
        try:
            chunk = os.read(PIN, 1 << 20)
        except OSError:
            chunk = b""
        if not chunk:
            # The host closed our stdin: it is done with us, even while a
            # cell runs.
            os._exit(0)
        buf += chunk
        while True:
            i = buf.find(b"\n")
            if i < 0:
                break
            line, buf = buf[:i], buf[i + 1:]
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            t = msg.get("type")
            if t == "execute":
                queue.put(msg)
            elif t == "interrupt":
                interrupt(msg.get("id"))
            elif t == "shutdown":
                os._exit(0)


def main():
    import queue as _q

    os.dup2(NULL, 0)
    os.dup2(W_OUT, 1)
    os.dup2(W_ERR, 2)
    _std_files()
    signal.signal(signal.SIGINT, _on_sigint)
    for c in CAPS:
        c.start()
    if "MPLBACKEND" not in os.environ:
        sys.meta_path.insert(0, _Finder())
    global DISPLAY
    mode = "ipython"
    try:
        backend = make_ipython()
    except Exception:  # no IPython (or a broken one): the standard library
        backend, mode = Plain(), "plain"
    DISPLAY = backend.display
    q = _q.Queue()
    threading.Thread(target=reader, args=(q,), name="csdk-requests", daemon=True).start()
    send({"type": "ready", "runtime": "python", "version": "%d.%d.%d" % sys.version_info[:3],
          "rich": backend.rich, "mode": mode, "pid": os.getpid()})
    while True:
        msg = q.get()
        cell = msg.get("id")
        S.pending = S.error_sent = False
        S.shown.clear()
        S.cell = cell
        if S.early == cell:
            S.pending = True
        try:
            restore_std()
            backend.run(msg.get("code") or "", cell)
        except BaseException as e:  # a stray interrupt in our own code
            report_error(type(e).__name__, str(e), "%s: %s\n" % (type(e).__name__, e))
        try:
            drain()
        except BaseException:
            pass
        S.cell = None
        send({"type": "end", "id": cell})
    os._exit(0)


DISPLAY = None
try:
    main()
except BaseException:
    # Startup failed: say why on the channel rather than die silently (fd 2
    # is already our pipe and nobody reads it before a cell runs).
    import traceback
    send({"type": "fatal", "message": traceback.format_exc()})
    os._exit(1)
