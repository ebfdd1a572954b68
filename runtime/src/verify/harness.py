# The verification harness: runs one program (a solution followed by its test) and reports a
# structured verdict. The report is one line on file descriptor 3, a pipe only sdc reads, tagged
# with a nonce read from stdin before the program runs: printing cannot forge it, and a program
# that exits early leaves no report ("no result"). Code running in this interpreter could still
# find the descriptor and the nonce by introspection; the sandbox, not this file, is the boundary.
import os
import sys


def main():
    nonce = sys.stdin.readline().strip()
    sys.stdin.close()
    # A private, non-inheritable copy of the channel; the well-known 3 is closed.
    channel = os.dup(3)
    os.close(3)
    path, entry, call_check = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    uid = sys.argv[4] if len(sys.argv) > 4 else "-"
    if uid != "-":
        # Run by root: become the run's own unprivileged uid before any code under test runs.
        os.setgroups([])
        os.setgid(int(uid))
        os.setuid(int(uid))
    import json
    import traceback

    def report(outcome, exception="", message=""):
        line = "%s %s\n" % (nonce, json.dumps({"outcome": outcome, "exception": exception, "message": message[-4000:]}))
        data = line.encode("utf-8")
        while data:
            data = data[os.write(channel, data):]

    def excerpt(exc):
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        # Frames of the harness itself say nothing about the program.
        kept = [l for l in lines if 'harness.py"' not in l]
        return "".join(kept[-12:])

    with open(path, encoding="utf-8") as f:
        source = f.read()
    try:
        code = compile(source, "solution.py", "exec")
    except SyntaxError as e:
        report("syntax_error", type(e).__name__, excerpt(e))
        return
    namespace = {"__name__": "__main__", "__file__": "solution.py"}
    try:
        exec(code, namespace)
        if call_check:
            check = namespace.get("check")
            candidate = namespace.get(entry)
            if check is None:
                report("no_check", "", "the test defines no `check(candidate)` function")
                return
            if candidate is None:
                report("exception", "NameError", "the solution defines no `%s`" % entry)
                return
            check(candidate)
    except AssertionError as e:
        report("assertion_failed", "AssertionError", excerpt(e))
        return
    except (ImportError, ModuleNotFoundError) as e:
        # An extension module that cannot be mapped under RLIMIT_AS is out of memory, not missing.
        text = str(e)
        if "failed to map segment" in text or "Cannot allocate memory" in text:
            report("memory", type(e).__name__, excerpt(e))
        else:
            report("import_error", type(e).__name__, excerpt(e))
        return
    except SyntaxError as e:
        report("syntax_error", type(e).__name__, excerpt(e))
        return
    except MemoryError as e:
        report("memory", "MemoryError", excerpt(e))
        return
    except SystemExit as e:
        report("exited", "SystemExit", "the program exited (code %r) before its test completed" % (e.code,))
        return
    except BaseException as e:
        report("exception", type(e).__name__, excerpt(e))
        return
    report("passed")


main()
