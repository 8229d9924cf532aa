"""The README tests' command runner (tests/command_server.py): a forked ``python -m`` behaves as the
same command run by bash (argv, cwd, sys.path, __main__, output, threads, atexit, exit codes), and
only commands whose words bash would expand the same way are forked."""
import os
import sys

import pytest

from tests.command_server import CommandRunner, python_module_command

PROBE = '''
import atexit, json, os, sys, threading, time

atexit.register(lambda: print("atexit ran"))
threading.Thread(target=lambda: (time.sleep(0.2), print("thread joined"))).start()
print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "path0": sys.path[0], "name": __name__,
                  "main": sys.modules["__main__"].__file__, "imported_here": "probe" in sys.modules}))
print("to stderr", file=sys.stderr)
mode = sys.argv[1]
if mode == "exit3":
    sys.exit(3)
if mode == "exit_message":
    sys.exit("a message")
if mode == "raise":
    raise ValueError("boom")
'''


@pytest.mark.parametrize("command, expected", [
    ("python -m a.b --x 1", ("a.b", ["--x", "1"])),
    ('python -m a --config_file $C --class_indices "0,1"',
     ("a", ["--config_file", "c/d.yaml", "--class_indices", "0,1"])),
    ("python -m a --config_file ${C}", ("a", ["--config_file", "c/d.yaml"])),
    ("python -m a --f $HOME/x", None),  # not one of the section's variables
    ("python -m a > log.txt", None),
    ("python -m a | tee log", None),
    ("python -m a ~/x", None),
    ("python -m a *.jpg", None),
    ("python -m a '$C'", None),
    ("python -m a $(pwd)", None),
    ("X=1 python -m a", None),
    ("python a.py", None),
    ("python -m a\npython -m b", None),  # two commands to bash
    ("cat > f <<'CSV'\na,b\nCSV", None),
])
def test_only_plain_python_m_commands_are_forked(command, expected):
    assert python_module_command(["C=c/d.yaml"], command) == expected


def test_forked_command_behaves_as_under_bash(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    with CommandRunner(tmp_path, env, preload=["json"]) as runner:
        for mode, code, last_error_line in [("ok", 0, "to stderr"), ("exit3", 3, "to stderr"),
                                            ("exit_message", 1, "a message"), ("raise", 1, "ValueError: boom")]:
            command = f"python -m probe {mode} --config_file $C"
            forked, bash = runner.run(["C=c.yaml"], command), runner.run(["C=c.yaml"], command, fork=False)
            assert forked.forked and not bash.forked
            assert forked.returncode == bash.returncode == code, (mode, forked.stderr, bash.stderr)
            assert forked.stdout == bash.stdout, mode
            assert forked.stderr.splitlines()[-1] == bash.stderr.splitlines()[-1] == last_error_line, mode
            assert '"argv": ["%s", "%s", "--config_file", "c.yaml"]' % (tmp_path / "probe.py", mode) in forked.stdout
            assert f'"cwd": "{tmp_path}", "path0": "{tmp_path}", "name": "__main__"' in forked.stdout
            assert '"imported_here": false' in forked.stdout  # the module ran as __main__, as with python -m
            assert forked.stdout.endswith("thread joined\natexit ran\n"), forked.stdout


def test_a_dead_server_is_reported_with_its_log(tmp_path):
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    with CommandRunner(tmp_path, env, preload=["no_such_module_for_the_server"]) as runner:
        with pytest.raises(RuntimeError, match="(?s)command server died.*no_such_module_for_the_server"):
            runner.run([], "python -m probe")
