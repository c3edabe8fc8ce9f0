# --------------------------------------------------------------------------- JSON
# The frame codec sits directly on `_json`, the C accelerator behind the `json` module, with
# the settings of `json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))` and
# `json.JSONDecoder()`: the same bytes out and the same values in, without importing `json`
# (which imports `re`, `enum`, `functools`, ...).

JSON_SPACE = " \t\n\r"  # json.decoder.WHITESPACE


def json_error(message: str, text: str, position: int) -> ValueError:
    """A ValueError worded like json.JSONDecodeError's."""
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    return ValueError(f"{message}: line {line} column {column} (char {position})")


def not_serializable(value: object) -> object:
    """json.JSONEncoder.default."""
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


try:
    import _json

    _make_encoder = _json.make_encoder
    # json.encoder.encode_basestring: escapes `"`, `\` and control characters; everything
    # else (non-ASCII) is kept, as with ensure_ascii=False.
    encode_json_string = _json.encode_basestring

    class DecoderSettings:
        """The attributes `_json.make_scanner` reads: a default json.JSONDecoder's."""

        strict = True
        object_hook = None
        object_pairs_hook = None
        array_hook = None  # read since CPython 3.15: without it, the fallback below is used
        parse_float = float
        parse_int = int
        parse_constant = {
            "-Infinity": float("-inf"),
            "Infinity": float("inf"),
            "NaN": float("nan"),
        }.__getitem__
        memo: dict = {}

    _scan_once = _json.make_scanner(DecoderSettings())

    def encode_json(value: object) -> str:
        """json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode(value)."""
        if isinstance(value, str):
            return encode_json_string(value)
        encoder = _make_encoder(
            {}, not_serializable, encode_json_string, None, ":", ",", False, False, True
        )
        return "".join(encoder(value, 0))

    def encode_json_strict(value: object) -> str:
        """encode_json with allow_nan=False: NaN and infinities raise ValueError.

        For frames carrying user values: the host's JSON parser rejects them, and a frame it
        cannot parse ends the session."""
        encoder = _make_encoder(
            {}, not_serializable, encode_json_string, None, ":", ",", False, False, False
        )
        return "".join(encoder(value, 0))

    def decode_json(text: str) -> object:
        """json.JSONDecoder().decode(text); errors are ValueErrors, as there."""
        start = len(text) - len(text.lstrip(JSON_SPACE))
        try:
            value, end = _scan_once(text, start)
        except StopIteration as exc:
            raise json_error("Expecting value", text, exc.value) from None
        if end != len(text.rstrip(JSON_SPACE)):  # a value never ends with white space
            extra = len(text) - len(text[end:].lstrip(JSON_SPACE))
            raise json_error("Extra data", text, extra)
        return value

except (ImportError, AttributeError):  # pragma: no cover - a build without the accelerator
    import json

    encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    encode_json_strict = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode
    encode_json_string = json.encoder.encode_basestring
    decode_json = json.JSONDecoder().decode


class BadFrame(Exception):
    """A host frame this runtime cannot act on (it is reported on fd 2 and skipped)."""


def parse_frame(payload: bytes) -> dict:
    """A host frame's JSON object."""
    try:
        frame = decode_json(payload.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise BadFrame(f"not UTF-8 JSON ({exc})") from None
    if not isinstance(frame, dict):
        raise BadFrame(f"unexpected frame type {None!r}")
    return frame


def diagnose(message: str) -> None:
    """Writes a one-line diagnostic to fd 2 (the host treats it as stray stderr)."""
    line = f"mcp-runtime: {message[:2000]}\n".encode("utf-8", "backslashreplace")
    try:
        while line:
            line = line[_write(2, line) :]
    except OSError:
        pass
