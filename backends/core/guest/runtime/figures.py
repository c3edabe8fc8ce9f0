# --------------------------------------------------------------------------- matplotlib figures
#
# Plots come back as images, as notebook users expect: `plt.show()` and any figure still
# open when a run ends are saved as PNG files under `/workspace/out/`, which the run's
# result sends back like every file there (as image content, under the same caps). Nothing
# here runs until user code imports matplotlib: `ImportHooks` calls `prepare_matplotlib`
# just before it loads, and `track_saved_figures` once `matplotlib.figure` has loaded. A
# session that starts with matplotlib loaded already (from a WASI snapshot, where it was
# imported before this runtime existed) gets the same at `hello`: `adopt_loaded_matplotlib`.

FIGURES_BACKEND = "mcp_figures"  # a matplotlib backend module made here, never a file
MATPLOTLIB_CONFIG_DIR = "/tmp/matplotlib"  # writable, private to the session
# A font cache the backend built ahead of time (read-only, where there is one): copied into
# the config dir so the first plot of a session does not scan every font.
MATPLOTLIB_PREBUILT_CACHE = "/usr/share/mcp-sandbox/matplotlib"
FIGURE_DPI = 100


def prepare_matplotlib(module_name: str) -> None:
    """Before matplotlib loads: a writable config dir with the prebuilt font cache, and this
    module's figure backend, unless the user's environment already chose either."""
    import os

    environ = os.environ
    if "MPLCONFIGDIR" not in environ:
        try:
            os.makedirs(MATPLOTLIB_CONFIG_DIR, exist_ok=True)
            copy_prebuilt_font_cache(os, MATPLOTLIB_CONFIG_DIR)
            environ["MPLCONFIGDIR"] = MATPLOTLIB_CONFIG_DIR
        except OSError as exc:  # no writable /tmp: matplotlib finds its own way
            diagnose(f"no matplotlib config dir at {MATPLOTLIB_CONFIG_DIR}: {exc!r}")
    if "MPLBACKEND" not in environ:
        environ["MPLBACKEND"] = f"module://{FIGURES_BACKEND}"


def adopt_loaded_matplotlib() -> None:
    """At `hello`, when matplotlib loaded before this runtime did (so its import hooks never
    fired): what they would have done. Its config dir is made (a snapshot's is in a `/tmp`
    of its own), and the figure backend chosen unless the environment names one. The
    environment itself is left as it is, empty to the code as in any other session.
    Nothing at all when matplotlib is not loaded.
    """
    matplotlib = sys.modules.get("matplotlib")
    if matplotlib is None:
        return
    import os

    config_dir = matplotlib.get_configdir()
    try:
        os.makedirs(config_dir, exist_ok=True)
        copy_prebuilt_font_cache(os, config_dir)
    except OSError as exc:  # no writable /tmp: matplotlib finds its own way
        diagnose(f"no matplotlib config dir at {config_dir}: {exc!r}")
    if "MPLBACKEND" not in os.environ:
        matplotlib.use(f"module://{FIGURES_BACKEND}")
    figure = sys.modules.get("matplotlib.figure")
    if figure is not None:  # loaded, so the hook that would patch it never fires
        track_saved_figures(figure)


def copy_prebuilt_font_cache(os: ModuleType, config_dir: str) -> None:
    try:
        names = os.listdir(MATPLOTLIB_PREBUILT_CACHE)
    except OSError:
        return
    for name in names:
        if not (name.startswith("fontlist-") and name.endswith(".json")):
            continue
        target = f"{config_dir}/{name}"
        if os.path.exists(target):
            continue
        with open(f"{MATPLOTLIB_PREBUILT_CACHE}/{name}", "rb") as source:
            data = source.read()
        with open(target, "wb") as sink:
            sink.write(data)


class FiguresBackendLoader:
    """Makes the `mcp_figures` module when matplotlib asks for its backend (by then
    matplotlib has loaded): Agg's canvas, and `show()` that sends the open figures back."""

    @staticmethod
    def spec() -> object:
        from importlib.machinery import ModuleSpec

        return ModuleSpec(FIGURES_BACKEND, FiguresBackendLoader())

    def create_module(self, spec: object) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        from matplotlib.backend_bases import FigureManagerBase
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        def show(*args: object, **kwargs: object) -> None:
            """Saves every open figure under /workspace/out/ (so it comes back as an
            image) and closes it."""
            send_open_figures(everything=True)

        module.__doc__ = "Figures drawn with Agg and returned as images."
        module.FigureCanvas = FigureCanvasAgg
        module.FigureManager = FigureManagerBase
        module.show = show


class FigureNames:
    """Numbers the PNG files of a session's figures: figure-1.png, figure-2.png, ..."""

    count = 0

    @classmethod
    def next_path(cls) -> str:
        while True:
            cls.count += 1
            path = f"{OUT_DIR}/figure-{cls.count}.png"
            try:
                _os.stat(path)
            except OSError:
                return path


def send_open_figures(everything: bool) -> None:
    """Saves open pyplot figures as PNG under /workspace/out/ and closes them.

    `everything=False` (the end of a run) skips figures the code already saved under
    /workspace/out/ itself, which come back as those files.
    """
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    numbers = pyplot.get_fignums()
    if not numbers:  # the usual end of a run: no file system call at all
        return
    try:
        _os.stat(OUT_DIR)
    except OSError:  # no /workspace: nowhere to put them
        return
    for number in numbers:
        figure = pyplot.figure(number)
        if everything or not getattr(figure, "_mcp_saved_to_out", False):
            figure.savefig(FigureNames.next_path(), format="png", dpi=FIGURE_DPI)
        pyplot.close(figure)


def track_saved_figures(module: ModuleType) -> None:
    """Marks a figure saved under /workspace/out/ by the code, so the end of the run does
    not send it a second time."""
    figure_class = module.Figure
    savefig = figure_class.savefig

    def savefig_tracked(self: object, fname: object, *args: object, **kwargs: object) -> object:
        result = savefig(self, fname, *args, **kwargs)
        try:
            path = _os.fspath(fname)
        except TypeError:  # a file object
            return result
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        if not path.startswith("/"):
            path = f"{_os.getcwd()}/{path}"
        if path.startswith(f"{OUT_DIR}/"):
            self._mcp_saved_to_out = True
        return result

    savefig_tracked.__doc__ = savefig.__doc__
    savefig_tracked.__wrapped__ = savefig
    figure_class.savefig = savefig_tracked
