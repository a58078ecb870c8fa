"""Layout by screen width, which the server never learns: CSS media queries on keyed containers.

- ``wide(name)`` / ``phone(name)``: containers shown only above / at most ``PHONE_MAX_PX`` wide, for a
  chart with a desktop and a phone variant (both are sent; the browser shows one).
- ``phone_order(name, n)``: a container that a phone shows at position ``n`` of the page (CSS flex
  ``order``), e.g. the overview's ranking before its headline numbers.

Streamlit gives a keyed container the class ``st-key-<key>``; Streamlit itself stacks columns below
640 px, the same breakpoint.
"""

from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

PHONE_MAX_PX = 640

_CSS = f"""
<style>
@media (max-width: {PHONE_MAX_PX}px) {{
  div[class*="st-key-wide-only-"] {{ display: none !important; }}
{"".join(f"  div.st-key-phone-order-{n}, div:has(> div.st-key-phone-order-{n}) {{ order: {n}; }}{chr(10)}" for n in range(1, 6))}}}
@media (min-width: {PHONE_MAX_PX + 1}px) {{
  div[class*="st-key-phone-only-"] {{ display: none !important; }}
}}
</style>
"""


def style() -> None:
    """The media queries; once per page run (a style-only ``st.html`` takes no space)."""
    st.html(_CSS)


def wide(name: str) -> DeltaGenerator:
    return st.container(key=f"wide-only-{name}")


def phone(name: str) -> DeltaGenerator:
    return st.container(key=f"phone-only-{name}")


def phone_order(n: int) -> DeltaGenerator:
    """A container a phone shows at position ``n`` (1-5) among the page's top-level blocks; blocks
    without one come first, in page order."""
    if not 1 <= n <= 5:
        raise ValueError(f"phone order must be 1-5, not {n}")
    return st.container(key=f"phone-order-{n}")
