"""Run shell commands as a user types them, without paying Python's start-up for every ``python -m``.

Why: the README tests run a dozen ``python -m <module> ...`` commands; each fresh interpreter spends
about 4.5 of its 5-6 seconds importing torch, scipy.stats, sklearn, matplotlib and pandas. Here one
server process (started once per test, with the test's working directory and environment, through
the ``python`` the environment's PATH names) imports those *third-party* libraries once and then
forks one child per command. Each child is still a fresh process for the command: it chdirs, sets
``sys.argv`` and ``sys.path[0]`` as ``python -m`` does, sends fd 0/1/2 to /dev/null and two capture
files, imports the project's code itself (the server never imports project code and never runs a
torch op, so no thread pool or project state exists when it forks), runs the module with
``runpy.run_module(..., run_name="__main__", alter_sys=True)``, maps ``SystemExit``/exceptions to
the exit code as the interpreter does, waits for its threads, runs the atexit handlers, flushes and
``os._exit``\\ s. No state passes from one command to the next.

Only a plain ``python -m MODULE ARGS`` (after expanding the ``NAME=value`` lines before it, words
split with :mod:`shlex`) is forked; anything else a shell would interpret (redirections, pipes,
globs, ``~``, heredocs, built-ins, other variables) goes through ``bash -c`` as before.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Imported once by the server: third-party only (checked: nothing from the working directory).
PRELOAD = ["numpy", "torch", "scipy.stats", "sklearn.manifold", "sklearn.metrics", "matplotlib",
           "matplotlib.pyplot", "pandas", "h5py", "PIL.Image", "yaml", "pydantic", "tqdm"]
SAFE_WORDS = re.compile(r"[\w \t./,:=+@%\"'-]*")  # nothing else a shell treats specially (no newline either)
VARIABLE = re.compile(r"\$(?:(\w+)|\{(\w+)\})")
PLAIN_VALUE = re.compile(r"[\w./,:=+@%-]+")


def python_module_command(assignments, command):
    """``(module, args)`` when ``command`` (after the ``NAME=value`` lines ``assignments``) is a plain
    ``python -m MODULE ARGS`` whose words bash would expand exactly as substitution + shlex does; else None."""
    values = {}
    for line in assignments:
        name, _, value = line.partition("=")
        if not PLAIN_VALUE.fullmatch(value):
            return None
        values[name] = value
    if "'" in command and "$" in command:  # no expansion inside single quotes: leave it to bash
        return None

    def expand(match):
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(name)
        return values[name]

    try:
        expanded = VARIABLE.sub(expand, command)
    except KeyError:  # a variable of the environment or an unset one: bash's business
        return None
    if not SAFE_WORDS.fullmatch(expanded):
        return None
    try:
        words = shlex.split(expanded)
    except ValueError:
        return None
    if len(words) < 3 or words[:2] != ["python", "-m"] or not re.fullmatch(r"[\w.]+", words[2]):
        return None
    return words[2], words[3:]


class CommandRunner:
    """Runs commands in ``cwd`` with ``env``: plain ``python -m`` ones forked from a server (see the
    module's docstring), the rest with ``bash -c``. Use as a context manager."""

    def __init__(self, cwd, env, preload=PRELOAD):
        self.cwd, self.env = str(cwd), dict(env)
        self.python = shutil.which("python", path=self.env.get("PATH"))
        self.scratch = Path(tempfile.mkdtemp(prefix="command_server_"))
        self.server = None
        self.count = 0
        if self.python is not None:  # started now: its imports overlap whatever the test does first
            self.server_log = open(self.scratch / "server.log", "wb")
            self.server = subprocess.Popen([self.python, __file__, *preload], cwd=self.cwd, env=self.env,
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.server_log)

    def run(self, assignments, command, fork=True):
        """``subprocess.CompletedProcess`` of ``command`` run after the shell lines ``assignments``;
        ``.forked`` says which way it ran (``fork=False``: bash in any case)."""
        plain = python_module_command(assignments, command) if fork and self.server is not None else None
        if plain is None:
            done = subprocess.run(["bash", "-c", "\n".join([*assignments, command])], cwd=self.cwd, env=self.env,
                                  capture_output=True, text=True)
            done.forked = False
            return done
        module, args = plain
        self.count += 1
        out, err = self.scratch / f"{self.count}.out", self.scratch / f"{self.count}.err"
        reply = self._ask({"module": module, "args": args, "cwd": self.cwd, "stdout": str(out), "stderr": str(err)})
        done = subprocess.CompletedProcess(command, reply["returncode"], out.read_text(errors="replace"),
                                           err.read_text(errors="replace"))
        done.forked = True
        return done

    def _ask(self, request):
        try:
            self.server.stdin.write((json.dumps(request) + "\n").encode())
            self.server.stdin.flush()
        except BrokenPipeError:  # it died: said below, with its log
            pass
        line = self.server.stdout.readline()
        if not line:
            self.server.wait()
            raise RuntimeError(f"the command server died (exit {self.server.returncode}):\n"
                               f"{(self.scratch / 'server.log').read_text(errors='replace')[-3000:]}")
        return json.loads(line)

    def close(self):
        if self.server is not None:
            self.server.stdin.close()  # the server ends at end of input
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
            self.server.stdout.close()
            self.server_log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------------------------------
# The server: run as ``python tests/command_server.py MODULE...`` (what it preloads) in the commands'
# working directory.

def _serve():
    import atexit
    import runpy
    import threading
    import traceback

    del sys.path[0]  # this file's folder: nothing is imported from the tests or the working directory
    requests, replies = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # stray prints of the server go to its log, never into the replies
    for name in sys.argv[1:]:
        __import__(name)
    cwd = os.getcwd()
    shadowed = sorted(name for name in {module.split(".")[0] for module in sys.modules}
                      if os.path.exists(os.path.join(cwd, name)) or os.path.exists(os.path.join(cwd, name + ".py")))
    assert not shadowed, f"preloaded modules that `python -m` in {cwd} would import from there: {shadowed}"
    from_cwd = sorted(name for name, module in list(sys.modules.items())  # e.g. through PYTHONPATH
                      if (getattr(module, "__file__", None) or "").startswith(
                          (os.path.join(cwd, name.split(".")[0]) + os.sep, os.path.join(cwd, name + ".py"))))
    assert not from_cwd, f"the server imported code of the working directory: {from_cwd[:10]}"

    for line in requests:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                requests.close()
                replies.close()
                os.chdir(request["cwd"])
                for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
                    os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
                sys.argv = ["-m", *request["args"]]  # argv[0] becomes the module's file, as with python -m
                sys.path[0:0] = [os.getcwd()]  # what python -m puts first
                import numpy
                numpy.random.seed()  # the legacy global generator seeded afresh, as in a new process
                try:
                    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
                    code = 0
                except SystemExit as stop:  # as the interpreter maps it
                    if stop.code is None:
                        code = 0
                    elif isinstance(stop.code, int):
                        code = stop.code & 0xFF
                    else:
                        print(stop.code, file=sys.stderr)
                        code = 1
                except BaseException:
                    sys.excepthook(*sys.exc_info())
                    code = 1
                threading._shutdown()  # the interpreter's shutdown: join the non-daemon threads,
                atexit._run_exitfuncs()  # then the atexit handlers
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        _, status = os.waitpid(pid, 0)
        replies.write((json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n").encode())
        replies.flush()


if __name__ == "__main__":
    _serve()
