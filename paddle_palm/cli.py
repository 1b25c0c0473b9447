"""The command line: what every command shares.

Each command (``palm-train``, ``palm-eval``, ... in :mod:`paddle_palm.commands`)
starts through :func:`start`, the one place that prepares the process before
Paddle is imported: SIGINT/SIGTERM handling (Ctrl-C while Paddle is imported
is one line too), the warning filter and the environment defaults that keep
Paddle quiet.  Importing this module changes nothing in the process.

:func:`run` is the one place where our own errors become a one-line message on
stderr and a non-zero exit code, so no tool ever shows a traceback for bad
input; it checks the installed Paddle and numpy first
(:func:`paddle_palm.compat.check_environment`) and turns SIGINT and SIGTERM into
one line and exit code 130 / 143 (workers included, never a hang).  Argument
types such as :func:`positive_int` give argparse clear messages for out-of-range
numbers; the resource options (``--threads``, ``--num-workers``, ``--batch-size``,
``--image-size``) have upper bounds too.  The option groups that several
commands share (:func:`add_model_options`, :func:`add_loading_options`,
:func:`add_runtime_options`) are declared here once, with their help texts.
"""

import argparse
import atexit
import logging
import math
import os
import signal
import sys
import threading
import warnings

from paddle_palm import compat
from paddle_palm.errors import ConfigError, PalmError

#: Exit code for bad input or a failed run (argparse itself uses 2 for bad arguments).
EXIT_FAILURE = 1
#: Exit codes after SIGINT (Ctrl-C) and SIGTERM: 128 + the signal number, as a shell reports them.
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM
#: Seconds the process may take to unwind after a signal before it ends regardless (never a hang).
SIGNAL_GRACE_SECONDS = 10.0

_SIGNAL_MESSAGES = {signal.SIGINT: "error: interrupted", signal.SIGTERM: "error: terminated"}


class Stopped(BaseException):
    """Raised in the main thread by SIGINT or SIGTERM (a BaseException, like KeyboardInterrupt).

    Like KeyboardInterrupt it passes through ``except Exception``, so ``finally`` blocks and
    context managers run (locks released, temporary files removed) on the way out.
    """

    def __init__(self, signum):
        super().__init__(_SIGNAL_MESSAGES[signum])
        self.signum = signum


class _SignalState:
    main_pid = None
    stopping = False
    hard_exit = False
    in_main = False
    signum = None
    redeliver = False
    stderr_fd = None
    reported = threading.Lock()


def _finish(signum):
    """Print the one line for ``signum`` (once per process) and end the process at once."""
    if _SignalState.reported.acquire(blocking=False):
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        fd = _SignalState.stderr_fd if _SignalState.stderr_fd is not None else 2
        os.write(fd, (_SIGNAL_MESSAGES[signum] + "\n").encode())
    os._exit(128 + signum)


def _clear_progress_bars():
    """Wipe the progress bars shown on stderr, so that the signal's line starts a clean line.

    A bar's own ``close`` runs while the tool unwinds, when stderr already goes to /dev/null:
    without this the line would be written after the last drawn bar.
    """
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is None:
        return
    for bar in list(getattr(tqdm_module.tqdm, "_instances", ())):
        if not getattr(bar, "disable", True):
            try:
                bar.clear(nolock=True)  # the handler runs in the main thread, between two of its writes
            except Exception:  # noqa: BLE001  a bar that cannot be cleared leaves a line, nothing worse
                pass


def _silence_stderr():
    """Send what libraries print while the process unwinds to /dev/null; keep the real stderr for our line.

    Paddle prints its own lines when an import or a worker is interrupted (from Python and
    from C++, straight to file descriptor 2): after a signal only our one line is wanted.
    """
    try:
        _clear_progress_bars()
        sys.stderr.flush()
        _SignalState.stderr_fd = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass


def _on_signal(signum, frame):
    if os.getpid() != _SignalState.main_pid:
        # A forked DataLoader worker inherits this handler.  Ctrl-C reaches the whole process
        # group: the worker stays quiet (only the tool reports) and SIGTERM ends it silently.
        if signum == signal.SIGTERM:
            os._exit(128 + signum)
        return
    if _SignalState.redeliver:
        _SignalState.redeliver = False
        raise Stopped(signum)
    if _SignalState.stopping or (_SignalState.hard_exit and not _SignalState.in_main):
        # A second signal while unwinding, or one before the tool's work began or after it
        # ended (nothing to clean up): end now.
        _finish(signum)
    _SignalState.stopping = True
    _SignalState.signum = signum
    # Paddle's DataLoader logs the end of its workers as a warning: expected now, and not our one line.
    logging.disable(logging.CRITICAL)
    # Paddle's DataLoader turns the end of a worker into an error raised from its SIGCHLD handler;
    # while stopping, a worker that ends is expected.
    signal.signal(signal.SIGCHLD, lambda *_: None)
    if _SignalState.hard_exit:
        _silence_stderr()
        # Never a hang: if unwinding is stuck (in C++, in a join), end after a grace period.
        timer = threading.Timer(SIGNAL_GRACE_SECONDS, _finish, (signum,))
        timer.daemon = True
        timer.start()
    raise Stopped(signum)


def raise_if_stopped():
    """Raise :class:`Stopped` again if a signal arrived and the tool is still at work.

    Libraries catch everything in places (Paddle's DataLoader has bare ``except:`` clauses in
    its shutdown; Python drops exceptions raised in ``__del__`` and at-fork handlers), so the
    Stopped raised by the signal can be swallowed and the work go on.  The loops call this at
    every batch: the tool then unwinds from a known place (lock released, partial files removed).
    """
    if _SignalState.stopping and _SignalState.in_main and os.getpid() == _SignalState.main_pid:
        raise Stopped(_SignalState.signum or signal.SIGINT)


class _HandlersAfterPaddle:
    """Import hook: put our SIGINT/SIGTERM handlers back once ``import paddle`` has run.

    Importing Paddle installs C++ handlers for SIGTERM (and others) that print a
    "FatalError" block and abort; the tools import Paddle lazily, after :func:`run`
    installed its handlers.
    """

    def find_spec(self, name, path=None, target=None):
        if name not in ("paddle", "paddle.base.core"):
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        loader_exec = spec.loader.exec_module

        def exec_module(module):
            loader_exec(module)
            if name == "paddle.base.core":
                # The C++ handlers come with core.init_glog (glog's failure handler, which ends
                # the process on SIGTERM without our line), a second before ``import paddle``
                # ends: put ours back right after it (Paddle 2.6.2 to 3.3.1 call it from
                # paddle/base/__init__.py).
                init_glog = getattr(module, "init_glog", None)
                if init_glog is not None:
                    def init_glog_then_handlers(*args, **kwargs):
                        result = init_glog(*args, **kwargs)
                        _install_handlers()
                        return result

                    module.init_glog = init_glog_then_handlers
                return
            _install_handlers()

        spec.loader.exec_module = exec_module
        return spec


def _install_handlers():
    if threading.current_thread() is not threading.main_thread() or os.getpid() != _SignalState.main_pid:
        return {}
    return {signum: signal.signal(signum, _on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}


def _quiet_while_stopping(previous):
    def hook(args):
        if args.exc_type is not None and issubclass(args.exc_type, Stopped):
            # The signal's Stopped was raised inside a callback whose exceptions Python drops (a
            # ``__del__``, an at-fork handler such as logging's, a garbage-collection callback):
            # raise it again at the main thread's next step, so that the tool still unwinds.
            _redeliver(args.exc_value.signum if args.exc_value is not None else signal.SIGINT)
            return
        if not _SignalState.stopping:
            previous(args)
    return hook


def _redeliver(signum):
    if os.getpid() != _SignalState.main_pid:
        return
    _SignalState.redeliver = True
    # From another thread and a moment later: raised here, the handler would run inside this hook,
    # whose exceptions Python drops as well.
    timer = threading.Timer(0.01, signal.pthread_kill, (threading.main_thread().ident, signum))
    timer.daemon = True
    timer.start()


def handle_signals_early():
    """Install :func:`run`'s SIGINT/SIGTERM handling now, before a tool's own imports.

    :func:`start` calls it first thing, so that Ctrl-C while Python imports Paddle (seconds)
    also ends with one line and exit code 130, not a KeyboardInterrupt traceback.
    """
    _SignalState.main_pid = os.getpid()
    _SignalState.hard_exit = True
    _install_handlers()
    if "paddle" not in sys.modules and not any(isinstance(f, _HandlersAfterPaddle) for f in sys.meta_path):
        sys.meta_path.insert(0, _HandlersAfterPaddle())


#: Environment defaults of the commands that use Paddle: its C++ log shows errors only (a value
#: already set wins, so GLOG_minloglevel=0 still shows everything).
QUIET_PADDLE = {"GLOG_minloglevel": "2"}


def start(main, environ=None):
    """Run a command's ``main`` as a program: the entry of every console script and ``tools/*.py``.

    Prepares the process before anything imports Paddle, then calls :func:`run` (which never
    returns): SIGINT/SIGTERM handling (:func:`handle_signals_early`); Paddle's warning on import
    that ccache (a compiler cache for C++ extensions) is missing, irrelevant here, is hidden; the
    variables of ``environ`` are set unless already set.

    Args:
        main: the command's ``main(argv)``.
        environ: environment defaults, e.g. :data:`QUIET_PADDLE`.
    """
    handle_signals_early()
    warnings.filterwarnings("ignore", message=".*ccache.*")
    for name, value in (environ or {}).items():
        os.environ.setdefault(name, value)
    run(main)


def run(main, argv=None, hard_exit=None):
    """Call ``main(argv)`` and turn our errors into ``error: ...`` and exit code 1.

    SIGINT and SIGTERM end the tool with one line (``error: interrupted`` /
    ``error: terminated``) and exit code 130 / 143: the main thread unwinds (files
    being written are removed, the last complete checkpoint stays), then the
    process ends.  Threads and worker processes print nothing meanwhile.

    Args:
        main: a function taking the argument list and returning an exit code or None.
        argv: the arguments (``sys.argv[1:]`` when None).
        hard_exit: after a signal, end the process with ``os._exit`` (no interpreter
            shutdown, which can wait forever on a worker's queue) and end it after
            :data:`SIGNAL_GRACE_SECONDS` if unwinding is stuck.  Default: True when
            ``argv`` is None (a real command line), False when called from Python.

    Returns:
        Never: it calls ``sys.exit``; with ``hard_exit``, ``os._exit`` after a signal, and after
        the exit functions when the work is done (:func:`_exit_after_work`).
    """
    _SignalState.main_pid = os.getpid()
    _SignalState.stopping = False
    _SignalState.signum = None
    _SignalState.hard_exit = argv is None if hard_exit is None else bool(hard_exit)
    handlers = _install_handlers()
    finder = next((f for f in sys.meta_path if isinstance(f, _HandlersAfterPaddle)), _HandlersAfterPaddle())
    if "paddle" not in sys.modules and finder not in sys.meta_path:
        sys.meta_path.insert(0, finder)
    hooks = (threading.excepthook, sys.unraisablehook)
    threading.excepthook = _quiet_while_stopping(hooks[0])
    sys.unraisablehook = _quiet_while_stopping(hooks[1])
    try:
        _SignalState.in_main = True
        compat.check_environment()  # a Paddle/numpy pair that cannot work: one line, before Paddle crashes
        code = main(argv)
    except BaseException as exc:  # noqa: B036  every way out is decided here, in one place
        if isinstance(exc, SystemExit) and not _SignalState.stopping:
            if not _SignalState.hard_exit or not isinstance(exc.code, (int, type(None))):
                raise
            code = exc.code  # e.g. argparse's usage error: ended like any other
        if _SignalState.stopping or isinstance(exc, (Stopped, KeyboardInterrupt)):
            # Also when a library turned our Stopped into its own error (paddle's import does).
            code = _stopped(_SignalState.signum or signal.SIGINT)
        elif isinstance(exc, PalmError):
            print(f"error: {one_line(exc)}", file=sys.stderr)
            code = EXIT_FAILURE
        elif isinstance(exc, MemoryError):
            print("error: out of memory; try a smaller --batch-size or --image-size", file=sys.stderr)
            code = EXIT_FAILURE
        elif isinstance(exc, OSError):
            # Permission denied, disk full, read-only folder: name the file, no traceback.
            print(f"error: {describe_os_error(exc)}", file=sys.stderr)
            code = EXIT_FAILURE
        else:
            raise
    finally:
        _SignalState.in_main = False
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
        if not _SignalState.hard_exit:  # a command line keeps them: a signal while exiting is one line too
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        threading.excepthook, sys.unraisablehook = hooks
    if _SignalState.hard_exit:
        _exit_after_work(code or 0)
    sys.exit(code or 0)


def _exit_after_work(code):
    """End a command line with ``code`` once its work is done, our signal handlers still in place.

    Python's own shutdown puts SIGINT and SIGTERM back to their defaults before it tears down
    the modules (Paddle's take a noticeable moment), so a signal then killed the process
    without a line.  Instead: wait for the threads a normal exit waits for, run the exit
    functions (logging's flush among them), flush the standard streams and end; a signal
    meanwhile ends it with its one line.
    """
    if not isinstance(code, int):
        return  # sys.exit prints a message code: leave that to Python
    main_thread = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main_thread and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(code)


def _stopped(signum):
    _SignalState.stopping = True
    logging.disable(logging.CRITICAL)
    if _SignalState.hard_exit:
        _finish(signum)
    print(_SIGNAL_MESSAGES[signum], file=sys.stderr)
    return 128 + signum


def describe_os_error(exc):
    """One line for an OSError, naming the file it concerns (disk full, permission denied, ...)."""
    name = getattr(exc, "filename", None)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason}: {name}" if name else reason


def one_line(exc):
    """The message of ``exc`` on a single line."""
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _number(kind, minimum=None, maximum=None, inclusive_min=True):
    def parse(text):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if kind is float and not math.isfinite(value):  # NaN, inf, 1e400
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if minimum is not None and (value < minimum if inclusive_min else value <= minimum):
            bound = f">= {minimum}" if inclusive_min else f"> {minimum}"
            raise argparse.ArgumentTypeError(f"expected a value {bound}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"expected a value <= {maximum}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


positive_int = _number(int, minimum=1)
non_negative_int = _number(int, minimum=0)
positive_float = _number(float, minimum=0.0, inclusive_min=False)
non_negative_float = _number(float, minimum=0.0)
probability = _number(float, minimum=0.0, maximum=1.0)


def threshold_rule(text):
    """``--threshold-rule``: youden, sensitivity:S, specificity:S or fixed:T (paddle_palm.operating_point)."""
    from paddle_palm.operating_point import RULE_HELP, parse_threshold_rule

    try:
        return str(parse_threshold_rule(text))
    except PalmError:
        raise argparse.ArgumentTypeError(f"expected {RULE_HELP}, got {text!r}") from None


def refer_band(text):
    """``--refer-band``: half the width of the "refer to a specialist" band, in [0, 0.5)."""
    value = _number(float, minimum=0.0)(text)
    if value >= 0.5:
        raise argparse.ArgumentTypeError(f"expected a value below 0.5, got {text}")
    return value


def add_screening_options(group):
    """Add ``--tta`` and ``--refer-band`` (how a trained model is used for screening) to ``group``."""
    group.add_argument("--tta", action="store_true",
                       help="test-time augmentation: average each image's PM probability with its mirror image's")
    group.add_argument("--refer-band", type=refer_band, metavar="W",
                       help="answer 'refer to a specialist' when the PM probability lies within W of the "
                            "threshold (e.g. 0.1); eval reports accuracy on the images it decides and the share "
                            "it refers")
    return group

# Resource flags: bounded far above any sensible value and below what makes a library abort or
# exhaust the machine (--threads 100000 aborts inside OpenMP).
#: Most CPU math threads (``--threads``); the same bound as paddle_palm.runtime.MAX_THREADS.
MAX_THREADS = 256
#: Most data-loading worker processes (``--num-workers``).
MAX_WORKERS = 64
#: Largest batch (``--batch-size``) and image side in pixels (``--image-size``).
MAX_BATCH_SIZE = 4096
MAX_IMAGE_SIZE = 4096
thread_count = _number(int, minimum=1, maximum=MAX_THREADS)
worker_count = _number(int, minimum=0, maximum=MAX_WORKERS)
batch_size = _number(int, minimum=1, maximum=MAX_BATCH_SIZE)
image_side = _number(int, minimum=1, maximum=MAX_IMAGE_SIZE)
#: At most this many images in a drawn grid (``--grid-max``).
grid_count = _number(int, minimum=1, maximum=1000)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error: ``<prog>: error: <message>`` and exit code 2.

    The stock parser prints the whole usage block before the error; on bad input
    our tools print one line that says what was wrong (``--help`` shows usage).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see --help)\n")


# ---------------------------------------------------------------------------- shared option groups

#: What ``--preprocess`` A and B mean (the two ways the course's programs prepare an image).
PREPROCESS_HELP = ("A: OpenCV's BGR order, stretched to the square input, values in [-1, 1] (the course's "
                   "readers); B: RGB, scaled into a black square keeping the aspect ratio, values in [-1, 1] "
                   "(the SqueezeNet programs); either followed by +clahe (local contrast equalisation) or +graham "
                   "(local mean colour subtracted) enhances the resized image, e.g. B+clahe")


def preprocess_name(text):
    """argparse type of ``--preprocess``: ``A``, ``B``, or either with an enhancement (``B+clahe``)."""
    from paddle_palm.data.transforms import check_method

    try:
        return check_method(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: Where eval, export and predict (with ``--weights``) find the settings not given on the command line.
SETTINGS_FROM_RUN = ("Settings not given are read from config.yaml beside the weights (written by tools/train.py), "
                     "else they are the architecture's default recipe (tools/train.py --help lists them).")


def add_model_options(parser, *, source="weights", settings=True, exported=False, title="model"):
    """Add the model-selection group: which trained model, and the settings it runs with.

    Args:
        parser: the command's parser.
        source: ``"weights"``: ``--weights`` is required (eval, export); ``"either"``: exactly
            one of ``--weights`` and ``--inference-model`` (predict); ``"both"``: either or both
            (the app, whose Grad-CAM needs the weights of an exported model).
        settings: add ``--num-classes``, ``--image-size`` and ``--preprocess`` (they describe
            a checkpoint; an exported model records its own).
        exported: the settings are the ones written into an exported model (export).
        title: the group's title in ``--help``.

    Returns:
        the argument group, for the command's own model options.
    """
    group = parser.add_argument_group(title)
    weights_help = "trained weights: a .pdparams file, its prefix, or a run folder (its best_model.pdparams first)"
    export_help = "folder written by tools/export.py (the network, its weights and preprocess.json)"
    if source == "either":
        which = group.add_mutually_exclusive_group(required=True)
        which.add_argument("--weights", metavar="FILE", help=weights_help)
        which.add_argument("--inference-model", metavar="DIR", help=export_help)
    elif source == "both":
        group.add_argument("--inference-model", metavar="DIR", help=export_help)
        group.add_argument("--weights", metavar="FILE",
                           help=weights_help + "; with --inference-model: used for Grad-CAM only and must be the "
                           "exported weights")
    else:
        group.add_argument("--weights", metavar="FILE", required=True, help=weights_help)
    with_weights = "with --weights: " if source != "weights" else ""
    group.add_argument("--arch", metavar="NAME",
                       help=f"{with_weights}architecture, e.g. resnet50 or squeezenet1_1 (default: from config.yaml "
                       "beside the weights)")
    run_default = "the run's config.yaml"
    if settings:
        group.add_argument("--num-classes", type=positive_int, metavar="N",
                           help=f"{with_weights}outputs of the network: 1 (one PM logit, sigmoid) or 2 (two classes, "
                           f"softmax) (default: {run_default})")
        side = "fixed in the exported model" if exported else "the images are resized to it"
        group.add_argument("--image-size", type=image_side, metavar="N",
                           help=f"{with_weights}side in pixels of the square input, {side} (default: {run_default})")
        recorded = "recorded for the exported model; " if exported else ""
        group.add_argument("--preprocess", type=preprocess_name, metavar="METHOD",
                           help=f"{with_weights}{recorded}{PREPROCESS_HELP} (default: {run_default})")
    defaults = {"weights": "the run's", "either": "the run's or the export's", "both": "the run's or the export's"}
    group.add_argument("--threshold", type=probability, metavar="P",
                       help=("PM decision threshold recorded for the exported model: " if exported else "")
                       + f"PM when pm_probability >= P (default: {defaults[source]}, else 0.5)")
    return group


def add_loading_options(group, *, batch_size_default, workers=True):
    """Add ``--batch-size`` (images per forward pass) and ``--num-workers`` to ``group``."""
    group.add_argument("--batch-size", type=batch_size, default=batch_size_default, metavar="N",
                       help=f"images per forward pass, at most {MAX_BATCH_SIZE} (default: %(default)s)")
    if workers:
        group.add_argument("--num-workers", type=worker_count, default=0, metavar="N",
                           help=f"data-loading worker processes, at most {MAX_WORKERS} (default: %(default)s: "
                           "the images are read in the main process)")


def add_runtime_options(group, *, devices=("auto", "cpu", "gpu"), device_default="auto", device_help=None,
                        threads_help="CPU math threads"):
    """Add ``--device`` and ``--threads`` to ``group`` (a parser or an argument group)."""
    group.add_argument("--device", choices=devices, default=device_default,
                       help=device_help or "where the model runs: auto (a GPU when Paddle has one), cpu or gpu "
                       "(default: %(default)s)")
    group.add_argument("--threads", type=thread_count, metavar="N",
                       help=f"{threads_help}, at most {MAX_THREADS} (default: every core available)")
