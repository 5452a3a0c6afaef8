"""A corpus every Python install carries: the standard library's docstrings.

The quickstart indexes real, varied English text without any data of ours or any download.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import sys
import warnings

from .types import Document

#: Modules that do something on import (open windows, print, start servers) or are platform-only.
_SKIP = {
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "ensurepip", "lib2to3",
    "pydoc_data", "test", "msilib", "winreg", "winsound", "msvcrt", "nt", "_winapi", "__main__",
    "xxsubtype", "xxlimited", "xxlimited_35", "distutils", "venv", "curses", "readline", "site",
}  # fmt: skip

EXAMPLE_QUERIES = [
    "parse command line arguments and options",
    "compress a file with gzip",
    "read rows from a CSV file",
    "send an email message through an SMTP server",
    "run a function in a background thread",
    "match text with a regular expression",
]


def _public_members(module) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_"):
            continue
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", None) == module.__name__:
            out.append((name, obj))
    return out


def stdlib_documents(limit: int = 1500, min_chars: int = 60) -> list[Document]:
    """Module, class and function docstrings of the standard library, in a stable order.

    Modules are taken round-robin (a few entries from each in turn) so that a limited corpus
    still covers many topics instead of exhausting the first modules alphabetically.
    """
    per_module: list[list[Document]] = []
    for modname in sorted(getattr(sys, "stdlib_module_names", ())):
        if modname.startswith("_") or modname in _SKIP:
            continue
        try:
            with (
                warnings.catch_warnings(),
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                warnings.simplefilter("ignore")
                module = importlib.import_module(modname)
        except BaseException:
            continue
        docs = []
        doc = inspect.getdoc(module)
        if doc and len(doc) >= min_chars:
            docs.append(
                Document(
                    id=modname, text=doc, title=f"module {modname}", metadata={"module": modname, "kind": "module"}
                )
            )
        for name, obj in _public_members(module):
            doc = inspect.getdoc(obj)
            if not doc or len(doc) < min_chars:
                continue
            kind = "class" if inspect.isclass(obj) else "function"
            docs.append(
                Document(
                    id=f"{modname}.{name}",
                    text=doc,
                    title=f"{kind} {modname}.{name}",
                    metadata={"module": modname, "kind": kind},
                )
            )
        if docs:
            per_module.append(docs)
    out: list[Document] = []
    depth = 0
    while len(out) < limit and any(depth < len(d) for d in per_module):
        for docs in per_module:
            if depth < len(docs):
                out.append(docs[depth])
                if len(out) >= limit:
                    break
        depth += 1
    return out
