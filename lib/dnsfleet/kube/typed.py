"""Typed decoding of the two big lists (pods, nodes): only the fields the projections read.

A pod as the API returns it is 5-10 KB of JSON, most of it ``managedFields`` (a deep tree of tiny
objects), env, volumes and probes. Parsing it whole into dicts and dropping most of it cost the scan
~4x the time of fetching the bytes and ~30 KB of peak memory per pod (bench/README.md). ``msgspec``
decodes straight into the structs below and skips every other field without building it.

The API server answers in protobuf when asked (``kube.proto``, cheaper to encode and to skip); the
page functions here take either encoding, recognising protobuf by its magic prefix.

``pods_page(data)`` / ``nodes_page(data)`` / ``metadata_page(data)`` return ``(items, continue_token)`` where items are plain
dicts holding only the declared fields that were present: what ``project_pod`` / ``project_node`` (and
the kube-system notes) read, with the same meaning as the full objects.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from dnsfleet.kube import proto


class _S(msgspec.Struct, omit_defaults=True):
    """Every field optional; absent fields stay absent in ``to_builtins``."""


class Ref(_S):
    kind: str | None = None
    name: str | None = None
    controller: bool | None = None


class Meta(_S):
    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    ownerReferences: list[Ref] | None = None


class Option(_S):
    name: str | None = None
    value: str | None = None


class DnsConfig(_S):
    nameservers: list[str] | None = None
    searches: list[str] | None = None
    options: list[Option] | None = None


class Container(_S):
    image: str | None = None


class PodSpec(_S):
    nodeName: str | None = None
    hostNetwork: bool | None = None
    dnsPolicy: str | None = None
    dnsConfig: DnsConfig | None = None
    containers: list[Container] | None = None


class Condition(_S):
    type: str | None = None
    status: str | None = None


class PodStatus(_S):
    phase: str | None = None
    conditions: list[Condition] | None = None


class Pod(_S):
    metadata: Meta | None = None
    spec: PodSpec | None = None
    status: PodStatus | None = None


class NodeInfo(_S):
    kernelVersion: str | None = None
    osImage: str | None = None
    containerRuntimeVersion: str | None = None
    kubeletVersion: str | None = None


class Address(_S):
    type: str | None = None
    address: str | None = None


class NodeStatus(_S):
    nodeInfo: NodeInfo | None = None
    conditions: list[Condition] | None = None
    addresses: list[Address] | None = None


class NodeMeta(_S):
    name: str | None = None
    labels: dict[str, str] | None = None


class Node(_S):
    metadata: NodeMeta | None = None
    status: NodeStatus | None = None


class ListMeta(_S):
    continue_: str | None = msgspec.field(default=None, name="continue")


class PodList(_S):
    metadata: ListMeta | None = None
    items: list[Pod] | None = None


class NodeList(_S):
    metadata: ListMeta | None = None
    items: list[Node] | None = None


_POD_LIST = msgspec.json.Decoder(PodList)
_NODE_LIST = msgspec.json.Decoder(NodeList)


class ShapeError(ValueError):
    """JSON that is not a Kubernetes list object."""


DecodeError = (msgspec.DecodeError, msgspec.ValidationError, proto.ProtoDecodeError, ShapeError)


def _page(decoder: msgspec.json.Decoder, data: bytes) -> tuple[list[dict[str, Any]], str | None]:
    doc = decoder.decode(data)
    items = msgspec.to_builtins(doc.items) if doc.items else []
    token = doc.metadata.continue_ if doc.metadata is not None else None
    return items, token or None


def pods_page(data: bytes, strings: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a PodList. Raises one of ``DecodeError`` on bytes that are not such a list.
    Protobuf pages come back already projected (``proto.PodRow``), repeated strings kept once in
    ``strings``."""
    if proto.is_protobuf(data):
        return proto.pods_page(data, strings)
    return _page(_POD_LIST, data)


def nodes_page(data: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a NodeList. Raises one of ``DecodeError`` on bytes that are not such a list."""
    if proto.is_protobuf(data):
        return proto.nodes_page(data)
    return _page(_NODE_LIST, data)


def generic_page(data: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """Any JSON list page, read defensively: its items that are objects (whole) and its continue
    token. Raises ``ShapeError`` on anything else."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("items", []), list):
        raise ShapeError("not a list of the expected shape")
    items = [i for i in doc.get("items") or [] if isinstance(i, dict)]
    meta = doc.get("metadata")
    token = meta.get("continue") if isinstance(meta, dict) else None
    return items, (token if isinstance(token, str) and token else None)


def metadata_page(data: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a PartialObjectMetadataList (whole items when JSON: they are small). Raises one of
    ``DecodeError`` on bytes that are not such a list."""
    if proto.is_protobuf(data):
        return proto.metadata_page(data)
    return generic_page(data)
