# --------------------------------------------------------------------------- site's builtins

CREDITS = """\
    Thanks to CWI, CNRI, BeOpen.com, Zope Corporation and a cast of thousands
    for supporting Python development.  See www.python.org for more information."""


def install_site_builtins() -> None:
    """Adds what `site` adds to builtins (the guest runs with -S, without `site`).

    `exit`, `quit`, `help`, `copyright`, `credits` and `license`, made as `site` makes them
    from the small frozen `_sitebuiltins`; `help(...)` imports `pydoc` only when called.
    """
    if hasattr(builtins, "exit"):  # `site` ran after all: keep its objects
        return
    try:
        import _sitebuiltins
    except ImportError:  # pragma: no cover - every CPython 3.4+ has it
        return
    eof = "Ctrl-Z plus Return" if sys.platform == "win32" else "Ctrl-D (i.e. EOF)"
    builtins.quit = _sitebuiltins.Quitter("quit", eof)
    builtins.exit = _sitebuiltins.Quitter("exit", eof)
    builtins.help = _sitebuiltins._Helper()
    printer = _sitebuiltins._Printer
    builtins.copyright = site_printer(printer, "copyright", sys.copyright)
    builtins.credits = site_printer(printer, "credits", CREDITS)
    here = getattr(sys, "_stdlib_dir", None)
    builtins.license = site_printer(
        printer,
        "license",
        "See https://www.python.org/psf/license/",
        ("LICENSE.txt", "LICENSE") if here else (),
        (f"{here}/..", here, ".") if here else (),
    )


def site_printer(cls: type, name: str, data: str, files: tuple = (), dirs: tuple = ()) -> object:
    """`_sitebuiltins._Printer(name, data, files, dirs)`, without the `import os` its
    `__init__` does only to join the paths (`os` is not loaded at start-up)."""
    if _os.__name__ != "posix" or not hasattr(cls, "_Printer__setup"):
        return cls(name, data, files, dirs)
    printer = cls.__new__(cls)
    printer._Printer__name = name
    printer._Printer__data = data
    printer._Printer__lines = None
    printer._Printer__filenames = [
        (folder if folder.endswith("/") else folder + "/") + filename  # os.path.join
        for folder in dirs
        for filename in files
    ]
    return printer
