"""Text that leaves dnsfleet for a terminal or a spreadsheet, made inert: the one place for both.

Cluster, node and workload names, scan reasons and server messages come from kubeconfigs, API servers
and snapshot files, so they are untrusted:

- ``terminal(text)`` removes what a terminal would execute rather than show: C0 control characters
  (ESC starts colour, cursor-movement, title-setting and hyperlink sequences; BEL, backspace and a lone
  carriage return rewrite what is on screen), DEL, C1 controls (U+0080-U+009F, including the 8-bit CSI)
  and the Unicode bidirectional overrides and isolates that reorder what is displayed. Newlines, tabs
  and CR LF line ends stay. ``SafeStream`` applies it to every write of a text stream; the CLI wraps
  ``sys.stdout`` and ``sys.stderr`` with it.
- ``csv_bytes(df)`` is the one CSV writer: every CSV dnsfleet emits (the reports, ``-o csv``, the kernel
  upgrade plan, in the CLI and on the dashboard) goes through it. A text cell that a spreadsheet would
  run as a formula (starting with ``= + - @``, tab, CR or LF) is prefixed with ``'`` (OWASP's CSV
  injection advice), whatever the column's dtype (object, pandas ``string`` or pandas 3's ``str``).
  UTF-8 with a byte-order mark (so Excel detects the encoding) and CRLF line ends (RFC 4180).
- ``markdown(text)`` is untrusted text for a markdown renderer (the dashboard's ``st.error``,
  ``st.header``, ``st.markdown``...): it renders as exactly that text, one line, no link, image,
  emphasis, heading, list, colour directive or LaTeX; ``markdown_inline`` escapes a piece of a line
  (the dashboard links rule ids between such pieces).
"""

from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")

# C0 controls except TAB and LF, a CR not followed by LF, DEL, C1 controls, bidi embeddings/overrides
# (U+202A-U+202E) and isolates (U+2066-U+2069).
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]|\r(?!\n)")


def terminal(text: object) -> str:
    """``text`` as a string a terminal shows literally (see the module docstring)."""
    return _UNSAFE.sub("", str(text))


def one_line(text: object) -> str:
    """``terminal(text)`` with every run of whitespace (newlines too) folded into one space."""
    return " ".join(terminal(text).split())


class SafeStream(io.TextIOBase):
    """A text stream that writes ``terminal(s)`` to ``raw``. ``isatty``, ``fileno`` and ``encoding`` are
    the raw stream's, so callers still see whether a person is watching."""

    def __init__(self, raw: TextIO) -> None:
        super().__init__()
        self.raw = raw

    def write(self, s: str) -> int:
        self.raw.write(terminal(s))
        return len(s)

    def flush(self) -> None:
        self.raw.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.raw, "isatty", lambda: False)())

    def fileno(self) -> int:
        return self.raw.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.raw, "encoding", None) or "utf-8"


def unwrap(stream: TextIO) -> TextIO:
    """The stream under a ``SafeStream`` (for a renderer that writes its own escape sequences and
    passes every untrusted string through ``terminal`` itself), else ``stream``."""
    return stream.raw if isinstance(stream, SafeStream) else stream


def neutralise(value: Any) -> Any:
    """A text cell made inert in spreadsheets (CSV injection); other values unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_bytes(df: pd.DataFrame, float_format: str | None = "%.6g") -> bytes:
    """``df`` as CSV bytes: every text cell neutralised, UTF-8 with BOM, CRLF, no index."""
    safe = df.copy()
    for c in safe.columns:
        if not _numeric(safe[c]):
            safe[c] = safe[c].astype(object).map(neutralise)
    buf = io.StringIO()
    safe.to_csv(buf, index=False, lineterminator="\r\n", float_format=float_format)
    return buf.getvalue().encode("utf-8-sig")


def _numeric(s: pd.Series) -> bool:
    import pandas as pd

    return (
        pd.api.types.is_numeric_dtype(s.dtype)
        or pd.api.types.is_bool_dtype(s.dtype)
        or isinstance(s.dtype, pd.DatetimeTZDtype)
        or pd.api.types.is_datetime64_any_dtype(s.dtype)
    )


# --- untrusted text in markdown ----------------------------------------------------------------------

# Characters that start markdown (or Streamlit's extensions: :color[..], $LaTeX$) anywhere in a line;
# what starts a block only at the start (heading, setext, list); what GFM turns into a link by itself.
_MD_INLINE = re.compile(r"([\\`*_\[\]<>~$|])")
_MD_BLOCK_START = re.compile(r"^([#=+-])|^(\d+)([.)])")
_AUTOLINK = re.compile(r"(?i)(?<=:)//|(?<=www)\.|@")


def markdown_inline(text: object) -> str:
    """A piece of one line of untrusted text, escaped for markdown (no whitespace folding)."""
    s = _MD_INLINE.sub(r"\\\1", terminal(text))
    return _AUTOLINK.sub(lambda m: "".join("\\" + ch for ch in m.group(0)), s)


def markdown(text: object) -> str:
    """Untrusted text as markdown that renders as exactly that text, on one line (see the module
    docstring)."""
    return markdown_line_start(markdown_inline(one_line(text)))


def markdown_line_start(s: str) -> str:
    """``s`` (already escaped inline) with what would open a block at the start of a line escaped:
    a heading, a setext underline or a list item."""
    return _MD_BLOCK_START.sub(
        lambda m: "\\" + m.group(1) if m.group(1) else m.group(2) + "\\" + m.group(3), s
    )
