"""Resolver rules R1-R11: image inference, overrides, and which options each resolver honours."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsfleet.rules.resolver import (
    MappingError,
    infer_resolver,
    load_mapping,
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
        ("gcr.io/distroless/static-debian12:nonroot", "go"),
        ("gcr.io/distroless/static", "go"),
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
