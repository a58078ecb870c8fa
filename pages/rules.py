"""Rules: every rule id the dashboard shows (K, P, R, D, M) with what it says, the messages that cite it
and the public source behind it, generated from the rule registry (``rules/data/codes.csv``).

Links elsewhere open this page as ``rules?rule=K8`` (or ``K1-K3,R11``): the rules named come first."""

import re

import streamlit as st

from dashboard import views
from dnsfleet.rules.codes import Code


def template(c: Code) -> str:
    """A message template as a reader sees it: ``{kernel}`` becomes ‹kernel›."""
    return re.sub(r"\{(\w+)\}", r"‹\1›", c.message)


def section(s: views.RuleSection, expanded: bool) -> None:
    with st.expander(f"**{s.rule}**: {s.title}", expanded=expanded, key=s.anchor):
        for c in s.codes:
            st.markdown(
                f"**{views.md_escape(c.code)}** ({views.md_escape(c.title)})  \n"
                f"Says: “{views.linked_markdown(template(c))}”  \n"
                f"Source: {views.linked_source(c.source)}"
            )


st.title("Rules")
st.caption(
    "Every rule id dnsfleet shows beside a score, a reason or a fix, generated from its rule registry. "
    "K: kernel races, P: DNS service path, R: resolvers, D: evidence and detection, M: mitigations. "
    "‹name› marks what is filled in per cluster, node or workload."
)
sections = views.rule_sections()
wanted = views.expand_rules(st.query_params.get_all("rule"))
if wanted:
    st.subheader("You followed a link to " + ", ".join(wanted))
    for s in sections:
        if s.rule in wanted:
            section(s, expanded=True)
    st.subheader("All rules")
for s in sections:
    if s.rule not in wanted:
        section(s, expanded=False)
