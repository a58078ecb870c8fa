"""Resolver rules R1-R11: image inference, overrides, and which options each resolver honours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfleet.rules.resolver import (
    REFERENCE_S,
    MappingError,
    cost_phrase,
    image_rules,
    infer_resolver,
    load_mapping,
    loss_factor,
    lost_query_cost,
    option_honoured,
    option_mitigates,
    option_table,
    resolver_table,
)
from dnsfleet.schema import RESOLVERS


@pytest.mark.parametrize(
    ("image", "resolver"),
    [
        ("alpine:3.18", "musl"),
        ("docker.io/library/alpine@sha256:abc", "musl"),
        ("nginx:1.25-alpine", "musl"),
        ("python:3.12-alpine3.19", "musl"),
        ("gcr.io/distroless/static-debian12:nonroot", "unknown"),  # static musl Rust/C use it too
        ("gcr.io/distroless/static", "unknown"),
        ("eclipse-temurin:21", "glibc"),  # JVM -> getaddrinfo of its Ubuntu base
        ("eclipse-temurin:21-jre-alpine", "musl"),
        ("amazoncorretto:17", "glibc"),
        ("amazoncorretto:17-alpine3.19", "musl"),
        ("mcr.microsoft.com/dotnet/aspnet:8.0", "glibc"),  # .NET -> getaddrinfo of its Debian base
        ("mcr.microsoft.com/dotnet/runtime:8.0-alpine", "musl"),
        ("gcr.io/distroless/base-debian12", "glibc"),
        ("gcr.io/distroless/base-nossl-debian12", "glibc"),
        ("debian:12-slim", "glibc"),
        ("ubuntu:22.04", "glibc"),
        ("registry.access.redhat.com/ubi9/ubi-minimal:9.3", "glibc"),
        ("python:3.12-slim", "glibc"),
        ("eclipse-temurin:21-jre-jammy", "glibc"),
        ("nginx:1.25-bookworm", "glibc"),
        ("nginx:1.25", "unknown"),
        ("ghcr.io/acme/checkout:1.14.2", "unknown"),
        ("golang:1.22", "unknown"),  # a Go *toolchain* image says nothing about the binary's resolver
        ("", "unknown"),
    ],
)
def test_image_inference(image: str, resolver: str) -> None:
    assert infer_resolver(image)[0] == resolver


def test_annotation_overrides_image_and_mapping(tmp_path: Path) -> None:
    m = tmp_path / "map.csv"
    m.write_text("pattern,resolver\nghcr\\.io/acme/,go\nalpine,glibc\n")
    mapping = load_mapping(m)
    assert infer_resolver("ghcr.io/acme/api:1", None, mapping) == ("go", "mapping")
    assert infer_resolver("alpine:3.18", None, mapping) == (
        "glibc",
        "mapping",
    )  # user mapping wins over rules
    assert infer_resolver("alpine:3.18", "musl", mapping) == ("musl", "annotation")
    assert infer_resolver("alpine:3.18", "not-a-resolver")[0] == "musl"  # bad annotation is ignored


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("pattern,resolver\nfoo,klingon\n", "line 2"),
        ("pattern,resolver\n(unclosed,glibc\n", "bad pattern"),
        ("pattern,resolver\n,glibc\n", "need 'pattern'"),
    ],
)
def test_bad_mapping_file_names_the_problem(tmp_path: Path, content: str, message: str) -> None:
    m = tmp_path / "map.csv"
    m.write_text(content)
    with pytest.raises(MappingError, match=message):
        load_mapping(m)


def test_missing_mapping_file() -> None:
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping("/nonexistent/map.csv")


@pytest.mark.parametrize("option", ["single-request", "single-request-reopen", "use-vc", "no-aaaa"])
def test_musl_ignores_race_options(option: str) -> None:
    assert option_honoured("musl", option) == "no"
    assert option_mitigates("musl", option) == "no"


def test_glibc_options_that_stop_the_pair() -> None:
    for opt in ("single-request", "single-request-reopen", "use-vc"):
        assert option_mitigates("glibc", opt) == "yes"
    assert option_mitigates("glibc", "ndots") == "no"
    assert option_mitigates("glibc", "no-aaaa") == "unknown"  # needs glibc >= 2.36 (R4)


def test_every_rule_row_has_a_source_and_known_resolver() -> None:
    assert set(resolver_table()) == set(RESOLVERS)
    for (resolver, _opt), row in option_table().items():
        assert resolver in RESOLVERS and row["source"].strip()
        assert row["honoured"] in ("yes", "no", "unknown")
    for row in resolver_table().values():
        assert row["source"].strip() and row["parallel_pair"] in ("yes", "no", "unknown")


def test_unlisted_option_is_unknown_not_safe() -> None:
    assert option_honoured("unknown", "single-request-reopen") == "unknown"
    assert option_mitigates("glibc", "some-future-option") == "unknown"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.one_of(st.none(), st.text(max_size=20)))
def test_property_inference_never_crashes(image: str, annotation: str | None) -> None:
    resolver, source = infer_resolver(image, annotation)
    assert resolver in RESOLVERS and source


def test_image_rules_cite_public_sources() -> None:
    for rule in image_rules():
        assert "http" in rule.source and "§" not in rule.source, rule.rule
    for row in resolver_table().values():
        assert "§" not in row["source"]
    for row in option_table().values():
        assert "http" in row["source"] and "§" not in row["source"]


def test_distroless_static_names_why_it_is_unknown() -> None:
    resolver, rule = infer_resolver("gcr.io/distroless/static-debian12")
    assert (resolver, rule) == ("unknown", "IMG-DISTROLESS-STATIC")
    src = next(r.source for r in image_rules() if r.rule == rule)
    assert "Rust" in src and "musl" in src


def test_glibc_is_not_scored_above_musl_by_its_timeout() -> None:
    glibc, musl = lost_query_cost("glibc", 5.0), lost_query_cost("musl", 2.5)  # the defaults
    assert glibc.stall_s > musl.stall_s  # one hit costs glibc more ...
    assert glibc.after_loss == "sequential" and musl.after_loss == "parallel"  # ... but glibc adapts
    assert glibc.horizon_s == musl.horizon_s == 5.0 and glibc.factor == musl.factor == 1.0
    assert "once per resolver state" in glibc.text and "at every hit" in musl.text


@pytest.mark.parametrize(
    ("resolver", "stall", "horizon", "factor"),
    [
        ("glibc", 2.0, 2.0, 0.4),  # timeout:2 -> one 2 s stall, then sequential
        ("musl", 1.0, 2.0, 0.4),  # timeout:2 attempts:2 -> 1 s at each of the two hits
        ("musl", 5.0, 10.0, 1.0),  # attempts:1 -> capped
        ("jvm", 3.0, 6.0, 1.0),  # libc unknown: adaptation unknown, counted at every hit (worst case)
        ("unknown", None, None, 1.0),  # no stall known: worst case
    ],
)
def test_lost_query_cost_model(
    resolver: str, stall: float | None, horizon: float | None, factor: float
) -> None:
    c = lost_query_cost(resolver, stall)
    assert c.horizon_s == horizon and c.factor == pytest.approx(factor)
    assert 0.0 <= c.factor <= 1.0


def test_vectorised_cost_matches_the_scalar_model() -> None:
    res = pd.Series(["glibc", "musl", "go", "jvm", "unknown", "musl"], dtype="string")
    stall = np.array([5.0, 2.5, 5.0, np.nan, np.nan, 1.0])
    got = loss_factor(res, stall)
    want = [lost_query_cost(r, None if np.isnan(s) else s).factor for r, s in zip(res, stall, strict=True)]
    assert got.tolist() == pytest.approx(want)
    text = cost_phrase(res, pd.Series(stall))
    assert text[0].startswith("a lost query costs 5.0 s once per resolver state")
    assert text[1].startswith("a lost query costs 2.5 s at every hit") and "5.0 s over the first 2" in text[1]
    assert "?" in text[3]
    assert REFERENCE_S == 5.0


def test_risk_scores_glibc_and_musl_alike_with_defaults() -> None:
    from dnsfleet.engine import analyze
    from tests.builders import cluster, node, pod, snapshot

    pods = [pod("a-0", "node-a", "python:3.12-slim"), pod("b-0", "node-a", "python:3.12-alpine")]
    a = analyze(snapshot(cluster("c", nodes=[node("node-a")], pods=pods)))
    pts = a.workloads.set_index("resolver")["resolver_pts"]
    assert pts["glibc"] == pts["musl"] == 25.0
    why = a.workloads.set_index("resolver")["why"]
    assert "at every hit" in why["musl"] and "once per resolver state" in why["glibc"]
