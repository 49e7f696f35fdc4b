# corral's WSGI runner: the Python half of a `corral -k wsgi` worker.
#
# The Go worker starts it as `python3 -c BOOT ARGS...` and feeds this file on
# stdin (see boot in process.go); the standard library only, Python 3.11 and
# newer. It imports the app (Gunicorn's syntax: module, module:name,
# module:obj.attr, module:factory(literal args)), says "ready" on its end of
# a socketpair (fd CORRAL_WSGI_FD), then serves the requests the Go side
# sends on it, one at a time or, with --threads N, up to N at once, and
# exits when the Go side closes its end. The framing is in
# docs/architecture.md ("The wsgi worker"); in short:
#
#   Go -> Python   request:  <u32 size><u32 id><u32 bodylen> body env
#                  env is "KEY\0VALUE\0KEY\0VALUE" (latin-1), size counts
#                  the whole frame, header included
#   Python -> Go   <u32 size><u32 id><u8 kind> payload
#                  kind R ready (payload: the Python version), X boot error
#                  (payload: one line), W a whole response (<u32 headlen>
#                  head body), H head ("STATUS\0NAME\0VALUE..."), D body
#                  bytes, F a file to send (<i64 offset><i64 count>, the fd
#                  in SCM_RIGHTS), E end (payload: empty, or why the
#                  response broke off)
#
# Go keeps keep-alive, pipelining and slow clients to itself: a request
# arrives whole, and a response is read as fast as it is written.

import ast
import faulthandler
import io
import os
import signal
import socket
import stat
import struct
import sys
import threading
import time
import traceback

_REQ = struct.Struct("<III")
_OUT = struct.Struct("<IIB")
_WHOLE = struct.Struct("<IIBI")
_FILE = struct.Struct("<IIBqq")
_REQ_SIZE = _REQ.size
_RECV = 64 << 10  # under glibc's mmap threshold: no mmap and munmap per read
_QUICK_NS, _QUICK_RUN = 1_000_000, 64

KIND_READY, KIND_ERROR, KIND_WHOLE = ord("R"), ord("X"), ord("W")
KIND_HEAD, KIND_DATA, KIND_FILE, KIND_END = ord("H"), ord("D"), ord("F"), ord("E")

_ERROR_BODY = b"Internal Server Error\n"
_ERROR_HEAD = b"500 Internal Server Error\0Content-Type\0text/plain\0Content-Length\0" + str(len(_ERROR_BODY)).encode()


class BootError(Exception):
    """The app could not be loaded; str() is the one line the Go side shows."""


def load_app(spec):
    """Imports the app named in Gunicorn's syntax and returns the callable."""
    module, _, expr = spec.partition(":")
    if not module:
        raise BootError(f"no module in app {spec!r} (want module:callable)")
    expr = expr or "application"
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise BootError(f"Failed to parse {expr!r} as an attribute name or function call.") from None
    args = kwargs = None
    if isinstance(node, ast.Call):
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
        except ValueError:
            raise BootError(f"Failed to parse arguments as literal values: {expr!r}") from None
        node = node.func
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise BootError(f"Failed to parse {expr!r} as an attribute name or function call.")
    names.append(node.id)
    names.reverse()
    __import__(module)
    obj = sys.modules[module]
    for name in names:
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise BootError(f"Failed to find attribute {'.'.join(names)!r} in {module!r}.") from None
    if args is not None:
        if not callable(obj):
            raise BootError(f"{'.'.join(names)!r} in {module!r} is not callable, so it cannot be a factory")
        obj = obj(*args, **kwargs)
    if obj is None:
        raise BootError(f"Failed to find application object: {expr!r} in {module!r} is None")
    if not callable(obj):
        raise BootError(f"Application object must be callable: {expr!r} in {module!r} is a {type(obj).__name__}")
    return obj


def boot_error_line(exc):
    """The traceback's last lines as one line: the exception, and where."""
    if isinstance(exc, BootError):
        return str(exc)
    only = [l.strip() for l in traceback.format_exception_only(type(exc), exc)]
    msg = " ".join(l for l in only if l and set(l) - set("^~ "))
    tb = traceback.extract_tb(exc.__traceback__)
    runner = os.path.normcase(__file__)
    app_frames = [f for f in tb if os.path.normcase(f.filename) != runner and "importlib" not in f.filename]
    if app_frames and not isinstance(exc, SyntaxError):
        f = app_frames[-1]
        msg += f" (at {f.filename}:{f.lineno} in {f.name}"
        msg += f": {f.line.strip()})" if f.line else ")"
    return msg


_SEQUENCE_ITERATORS = (type(iter([])), type(iter(())))


def cannot_block(it, depth=0):
    """Whether next() on the iterator it only walks a list or tuple: a list
    or tuple iterator, or a wrapper delegating to one (wsgiref.validate's
    IteratorWrapper, Werkzeug's ClosingIterator). Such a body is taken
    whole, one frame; any other is streamed, each chunk sent before the
    next is asked for (a generator may take its time)."""
    if type(it) in _SEQUENCE_ITERATORS:
        return True
    if depth >= 4:
        return False
    inner = getattr(it, "iterator", None)  # wsgiref.validate.IteratorWrapper
    if inner is None:
        args = getattr(getattr(it, "_next", None), "args", None)  # Werkzeug: partial(next, iterator)
        if type(args) is tuple and len(args) == 1:
            inner = args[0]
    return inner is not None and inner is not it and cannot_block(inner, depth + 1)


class FileWrapper:
    """wsgi.file_wrapper: iterates over a file in blocks; the runner hands a
    regular file's descriptor to the Go side instead, which sends it."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        read, size = self.filelike.read, self.blksize
        while True:
            data = read(size)
            if not data:
                return
            yield data


class Responder:
    """Serves requests and writes their responses on one socket. Output
    waits in self.out until flush: responses to the requests of one read go
    out in one write, unless an app streams."""

    def __init__(self, sock, app, base, lock=None):
        self.sock = sock
        self.app = app
        self.base = base
        self.out = []
        self.lock = lock  # threads: one response's frames at a time

    def flush(self):
        if self.out:
            data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
            self.out.clear()
            if self.lock is None:
                self.sock.sendall(data)
            else:
                with self.lock:
                    self.sock.sendall(data)

    def send_file(self, rid, fd, offset, count):
        """Hands fd to the Go side, after everything written before it."""
        frame = _FILE.pack(_FILE.size, rid, KIND_FILE, offset, count)
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))]
        data = b"".join(self.out) + frame
        self.out.clear()
        if self.lock is None:
            self.sock.sendmsg([data], rights)
        else:
            with self.lock:
                self.sock.sendmsg([data], rights)

    def handle(self, rid, data, off, size, bodylen, thread_flush=False):
        """Serves the request framed at data[off:off+size]."""
        env = off + _REQ_SIZE + bodylen
        it = iter(str(data[env:off + size], "latin-1").split("\0"))
        environ = self.base.copy()
        environ.update(zip(it, it))
        environ["wsgi.input"] = io.BytesIO(data[off + _REQ_SIZE:env])
        out = self.out
        # The response's state, shared with start_response and write.
        head = None  # the (status, headers) of start_response
        sent = False  # the head is out (in self.out or on the wire)

        def start_response(status, headers, exc_info=None):
            nonlocal head
            if exc_info:
                try:
                    if sent:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif head is not None:
                raise AssertionError("start_response called a second time without exc_info")
            if type(status) is not str:
                raise TypeError(f"status must be a str, got {type(status).__name__}")
            if type(headers) is not list:
                raise TypeError(f"headers must be a list, got {type(headers).__name__}")
            head = (status, headers)
            return write

        def encode_head():
            status, headers = head
            try:
                parts = [status]
                for name, value in headers:
                    parts.append(name)
                    parts.append(value)
                return "\0".join(parts).encode("latin-1")
            except (TypeError, ValueError) as e:
                raise TypeError(f"bad response head {head!r}: status and header names and values must be latin-1 str") from e

        def send_head(what):
            nonlocal sent
            if head is None:
                raise AssertionError(f"{what} before start_response")
            h = encode_head()
            out.append(_OUT.pack(_OUT.size + len(h), rid, KIND_HEAD) + h)
            sent = True

        def write(chunk):
            # The legacy write(): out at once, as the app may block next.
            if type(chunk) is not bytes:
                raise TypeError(f"write() takes bytes, got {type(chunk).__name__}")
            if not sent:
                send_head("write()")
            if chunk:
                out.append(_OUT.pack(_OUT.size + len(chunk), rid, KIND_DATA))
                out.append(chunk)
            self.flush()

        result = None
        try:
            result = self.app(environ, start_response)
            rtype = type(result)
            chunks = None
            if rtype is list or rtype is tuple:
                chunks = result
            elif not sent and type(getattr(result, "original_iterator", result)) is FileWrapper and self.file_frame(
                rid, getattr(result, "original_iterator", result), head, encode_head
            ):
                # (original_iterator: a FileWrapper behind wsgiref.validate's
                # IteratorWrapper is sent as a file too.)
                return
            else:
                it = iter(result)
                if not sent and cannot_block(it):
                    chunks = list(it)
            if chunks is not None and not sent:
                # The common case: the whole body at hand, one frame.
                if head is None:
                    raise AssertionError("the app returned without calling start_response")
                body = b"".join(chunks)
                h = encode_head()
                out.append(_WHOLE.pack(_WHOLE.size + len(h) + len(body), rid, KIND_WHOLE, len(h)))
                out.append(h)
                out.append(body)
                return
            for chunk in (chunks if chunks is not None else it):
                if type(chunk) is not bytes:
                    raise TypeError(f"the app's iterable yielded a {type(chunk).__name__}, not bytes")
                if not chunk:
                    continue
                if not sent:
                    send_head("a body")
                out.append(_OUT.pack(_OUT.size + len(chunk), rid, KIND_DATA))
                out.append(chunk)
                # The next chunk may be long in coming: send this one.
                self.flush()
            if not sent:
                send_head("the end of the response")
            out.append(_OUT.pack(_OUT.size, rid, KIND_END))
        except Exception as e:
            self.app_error(rid, environ, e, sent)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as e:
                    print(f"Error closing the response of {describe(environ)}:", file=sys.stderr)
                    traceback.print_exception(e, file=sys.stderr)
            if thread_flush:
                self.flush()

    def file_frame(self, rid, wrapper, head, encode_head):
        """Sends a FileWrapper of a regular file as an F frame; False if the
        file is no such thing (then it is iterated)."""
        f = wrapper.filelike
        try:
            fd = f.fileno()
            st = os.fstat(fd)
            offset = f.tell() if hasattr(f, "tell") else os.lseek(fd, 0, os.SEEK_CUR)
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        if head is None:
            raise AssertionError("the app returned without calling start_response")
        count = max(st.st_size - offset, 0)
        declared = False
        for name, value in head[1]:
            if name.lower() == "content-length":
                declared = True
                try:
                    count = min(count, int(value))
                except ValueError:
                    pass
        h = encode_head()
        if not declared:  # so that the Go side can sendfile it whole
            h += b"\0Content-Length\0" + str(count).encode()
        self.out.append(_OUT.pack(_OUT.size + len(h), rid, KIND_HEAD) + h)
        self.send_file(rid, fd, offset, count)
        self.out.append(_OUT.pack(_OUT.size, rid, KIND_END))
        return True

    def app_error(self, rid, environ, exc, sent):
        print(f"Error handling request {describe(environ)}", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)
        if sent:
            # Part of the response is out: the Go side breaks it off.
            msg = f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")[:512]
            self.out.append(_OUT.pack(_OUT.size + len(msg), rid, KIND_END) + msg)
            return
        # Nothing of this response was framed yet (sent is False): a 500
        # goes instead.
        self.out.append(_WHOLE.pack(_WHOLE.size + len(_ERROR_HEAD) + len(_ERROR_BODY), rid, KIND_WHOLE, len(_ERROR_HEAD)))
        self.out.append(_ERROR_HEAD)
        self.out.append(_ERROR_BODY)


def describe(environ):
    return f"{environ.get('REQUEST_METHOD', '?')} {environ.get('REQUEST_URI') or environ.get('PATH_INFO', '?')}"


class Reader:
    """Reads request frames from the socket, whole."""

    def __init__(self, sock):
        self.sock = sock
        self.pending = b""

    def batches(self):
        """Yields (data, frames): the bytes of one read and the frames
        wholly in it, as (id, offset, size, bodylen); ends at end of file."""
        recv = self.sock.recv
        unpack = _REQ.unpack_from
        pending = b""
        while True:
            data = recv(_RECV)
            if not data:
                return
            if pending:
                data = pending + data
            n = len(data)
            if n >= _REQ_SIZE:
                size = unpack(data, 0)[0]
                if size > n:
                    data = self.read_rest(data, size)
                    n = len(data)
            off = 0
            frames = []
            while n - off >= _REQ_SIZE:
                size, rid, bodylen = unpack(data, off)
                if size < _REQ_SIZE + bodylen:
                    raise ValueError(f"bad request frame: size {size}, body {bodylen}")
                if n - off < size:
                    break
                frames.append((rid, off, size, bodylen))
                off += size
            pending = data[off:] if off < n else b""
            yield data, frames

    def read_rest(self, data, size):
        """A large frame: the rest of it read straight into its buffer."""
        buf = bytearray(size)
        buf[:len(data)] = data
        view = memoryview(buf)
        got = len(data)
        while got < size:
            k = self.sock.recv_into(view[got:])
            if not k:
                raise EOFError("the Go side closed in the middle of a request")
            got += k
        return bytes(buf)


def serve(sock, app, base, threads):
    reader = Reader(sock)
    if threads <= 1:
        r = Responder(sock, app, base)
        handle, flush = r.handle, r.flush
        clock = time.monotonic_ns
        # The responses to the requests of one read go out in one write
        # while the app is quick (each of the last _QUICK_RUN requests ran
        # under _QUICK_NS): one system call, and one wake-up of the Go
        # side, for all of them. Otherwise each goes out before the next
        # request's app call, which may take its time.
        quick = 0
        for data, frames in reader.batches():
            for rid, off, size, bodylen in frames:
                if r.out and quick < _QUICK_RUN:
                    flush()
                began = clock()
                handle(rid, data, off, size, bodylen)
                quick = quick + 1 if clock() - began < _QUICK_NS else 0
            flush()
        return
    import queue
    q = queue.SimpleQueue()
    lock = threading.Lock()

    def work():
        r = Responder(sock, app, base, lock)
        while True:
            item = q.get()
            if item is None:
                return
            r.handle(*item, thread_flush=True)

    pool = [threading.Thread(target=work, name=f"wsgi-{i}", daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    for data, frames in reader.batches():
        for rid, off, size, bodylen in frames:
            q.put((rid, data, off, size, bodylen))
    for _ in pool:
        q.put(None)
    for t in pool:
        t.join()


def main(argv):
    # argv: app, threads, processes (the worker count), then --pythonpath
    # entries. The socket is at fd $CORRAL_WSGI_FD.
    app_spec, threads, processes = argv[0], int(argv[1]), int(argv[2])
    fd = int(os.environ.pop("CORRAL_WSGI_FD"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=fd)
    # The Go worker owns the stops; a terminal's ^C to the process group
    # must not raise KeyboardInterrupt in the app.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR2, signal.SIGWINCH, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(s, signal.SIG_IGN)
    # SIGABRT (the Go side's --timeout) dumps every thread's stack to
    # stderr, the error log, and then the process dies of it.
    faulthandler.enable(file=sys.stderr, all_threads=True)
    # sys.path: the --pythonpath folders in order, then the working
    # directory, as Gunicorn orders them.
    for p in reversed([p for p in argv[3:] if p] + [os.getcwd()]):
        p = os.path.abspath(p)
        if p in sys.path:
            sys.path.remove(p)
        sys.path.insert(0, p)
    try:
        app = load_app(app_spec)
    except BaseException as e:  # SystemExit and all: the boot failed
        if not isinstance(e, BootError):
            traceback.print_exception(e, file=sys.stderr)
        line = boot_error_line(e).encode("utf-8", "replace")
        sock.sendall(_OUT.pack(_OUT.size + len(line), 0, KIND_ERROR) + line)
        return 3
    base = {
        "wsgi.version": (1, 0),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": threads > 1,
        "wsgi.multiprocess": processes > 1,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "SERVER_SOFTWARE": "corral",
    }
    version = sys.version.split()[0].encode()
    sock.sendall(_OUT.pack(_OUT.size + len(version), 0, KIND_READY) + version)
    try:
        serve(sock, app, base, threads)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
