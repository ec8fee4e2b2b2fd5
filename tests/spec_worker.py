"""A child process that checks spec texts the way `cnnspec analyze` does, under a memory limit.

Started by tests/test_fuzz.py. Each stdin line is a JSON request {"text": ..., "suffix": ".yaml"};
each stdout line answers with the outcome: "ok", "error" (a CnnspecError, with its rendered text
and whether every diagnostic has a location) or "crash" (anything else, with the traceback).
The address-space limit (argv[1] bytes) turns a memory blow-up into a MemoryError, so that a
hostile input cannot take the machine down with it.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import traceback
import warnings
from pathlib import Path


def check(text: str, suffix: str, folder: Path) -> dict[str, object]:
    from cnnspec.analysis import analyze_file
    from cnnspec.errors import CnnspecError, SpecError

    path = folder / f"fuzzed{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        analyze_file(path)
    except SpecError as error:
        located = all(d.location is not None for d in error.diagnostics) and bool(error.diagnostics)
        return {"outcome": "error", "located": located, "text": error.render()}
    except CnnspecError as error:
        return {"outcome": "error", "located": False, "text": str(error)}
    except BaseException:  # noqa: BLE001 - the point is to report every other outcome
        return {"outcome": "crash", "text": traceback.format_exc()}
    return {"outcome": "ok"}


def main() -> None:
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("ignore")  # unread-layer warnings are legitimate outcomes
    import cnnspec.analysis  # noqa: F401 - imported once, before the first request

    with tempfile.TemporaryDirectory() as folder:
        print(json.dumps({"outcome": "ready"}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            print(json.dumps(check(request["text"], request["suffix"], Path(folder))), flush=True)


if __name__ == "__main__":
    main()
