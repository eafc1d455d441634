"""Session documents over the API: the AWS-owned ones and the account's own, with versions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ...aws import arns
from ...aws.errors import (
    DocumentAlreadyExists,
    DuplicateDocumentContent,
    InvalidDocumentOperation,
    InvalidDocumentVersion,
    ValidationException,
)
from .. import documents as docs
from .. import validation as v
from ..state import Call
from ..storage.models import Document, DocumentVersion
from . import ssm
from .common import merge_tags, parse_tags, tag_list
from .errors import InvalidDocument, InvalidFilterKey

NAME_PATTERN = r"^[a-zA-Z0-9_\-.:/]{3,128}$"
CREATE_NAME_PATTERN = r"^[a-zA-Z0-9_\-.]{3,128}$"
RESERVED_PREFIXES = ("aws-", "amazon", "amzn", "ssm-")
# Session Manager's preferences: built in, until the account writes its own with
# CreateDocument or UpdateDocument, as with AWS (`aws ssm update-document --name
# SSM-SessionManagerRunShell ...`). Deleting the account's copy brings the built-in back.
PREFERENCES = docs.DEFAULT_SESSION_DOCUMENT
AWS_OWNER = "Amazon"
AWS_CREATED = datetime(2019, 1, 1, tzinfo=UTC)
VERSION_PATTERN = r"^([$]LATEST|[$]DEFAULT|^[1-9][0-9]*$)$"


@dataclass(frozen=True)
class LoadedDocument:
    name: str
    owner: str
    content: str
    parsed: dict[str, Any]
    version: int
    latest_version: int
    default_version: int
    document_format: str
    created_date: datetime
    tags: dict[str, Any]
    version_name: str | None = None

    @property
    def aws_owned(self) -> bool:
        return self.owner == AWS_OWNER

    def arn(self, call: Call) -> str:
        return arns.document(call.region, call.account, self.name, aws_owned=self.aws_owned)


def _standard(name: str) -> LoadedDocument | None:
    parsed = docs.STANDARD_DOCUMENTS.get(name)
    if parsed is None:
        return None
    return LoadedDocument(
        name=name,
        owner=AWS_OWNER,
        content=json.dumps(parsed, indent=2),
        parsed=parsed,
        version=1,
        latest_version=1,
        default_version=1,
        document_format="JSON",
        created_date=AWS_CREATED,
        tags={},
    )


def _pick_version(row: Document, version: str | None) -> int:
    if version in (None, "$DEFAULT"):
        return row.default_version
    if version == "$LATEST":
        return row.latest_version
    assert version is not None
    return int(version)


async def load_document(
    db: AsyncSession, name: str, version: str | None = None, version_name: str | None = None
) -> LoadedDocument:
    """A document by name (and version); raises InvalidDocument when there is none. The
    account's own preferences document, once created, stands in for the built-in one."""
    standard = _standard(name)
    row = await db.get(Document, name) if standard is None or name == PREFERENCES else None
    if standard is not None and row is None:
        if version not in (None, "$DEFAULT", "$LATEST", "1") or version_name:
            raise InvalidDocumentVersion(f"The document version is not valid for {name}.")
        return standard
    if row is None:
        raise InvalidDocument(f"Document with name {name} does not exist.")
    query = select(DocumentVersion).where(DocumentVersion.name == name)
    if version_name:
        query = query.where(DocumentVersion.version_name == version_name)
    if version or not version_name:
        query = query.where(DocumentVersion.version == _pick_version(row, version))
    found = (await db.scalars(query)).first()
    if found is None:
        raise InvalidDocumentVersion(f"The document version is not valid for {name}.")
    return LoadedDocument(
        name=name,
        owner=row.owner,
        content=found.content,
        parsed=docs.parse_session_document(found.content, row.document_format),
        version=found.version,
        latest_version=row.latest_version,
        default_version=row.default_version,
        document_format=row.document_format,
        created_date=found.created_date,
        tags=row.tags,
        version_name=found.version_name,
    )


def describe(doc: LoadedDocument) -> dict[str, Any]:
    view: dict[str, Any] = {
        "Hash": docs.document_hash(doc.content),
        "HashType": "Sha256",
        "Name": doc.name,
        "Owner": doc.owner,
        "CreatedDate": doc.created_date,
        "Status": "Active",
        "DocumentVersion": str(doc.version),
        "Description": doc.parsed.get("description", ""),
        "Parameters": docs.describe_parameters(doc.parsed),
        "PlatformTypes": ["Windows", "Linux", "MacOS"],
        "DocumentType": "Session",
        "SchemaVersion": doc.parsed.get("schemaVersion", "1.0"),
        "LatestVersion": str(doc.latest_version),
        "DefaultVersion": str(doc.default_version),
        "DocumentFormat": doc.document_format,
        "Tags": tag_list(doc.tags),
    }
    if doc.version_name:
        view["VersionName"] = doc.version_name
    return view


def _identifier(doc: LoadedDocument) -> dict[str, Any]:
    return {
        "Name": doc.name,
        "CreatedDate": doc.created_date,
        "Owner": doc.owner,
        "PlatformTypes": ["Windows", "Linux", "MacOS"],
        "DocumentVersion": str(doc.default_version),
        "DocumentType": "Session",
        "SchemaVersion": doc.parsed.get("schemaVersion", "1.0"),
        "DocumentFormat": doc.document_format,
        "Tags": tag_list(doc.tags),
    }


def _content_params(params: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    content = v.string(params, "Content", required=True, min_len=1) or ""
    fmt = v.string(params, "DocumentFormat", choices=["JSON", "YAML", "TEXT"], default="JSON")
    assert fmt is not None
    return content, fmt, docs.parse_session_document(content, fmt)


@ssm.operation("CreateDocument")
async def create_document(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = v.string(params, "Name", required=True, pattern=CREATE_NAME_PATTERN) or ""
    doc_type = v.string(params, "DocumentType", default="Command")
    if doc_type != "Session":
        raise ValidationException(
            f"DocumentType {doc_type} is not supported: Hatchway stores Session documents only"
        )
    if name.lower().startswith(RESERVED_PREFIXES) and name != PREFERENCES:
        raise ValidationException(f"The document name {name} uses a reserved prefix")
    version_name = v.string(params, "VersionName", pattern=r"^[a-zA-Z0-9_\-.]{1,128}$")
    content, fmt, _ = _content_params(params)
    tags = merge_tags({}, parse_tags(params))
    principal = await call.authorize(
        "ssm:CreateDocument", arns.document(call.region, call.account, name, aws_owned=False)
    )
    async with call.state.db() as db, db.begin():
        if await db.get(Document, name) is not None:
            raise DocumentAlreadyExists(f"Document with name {name} already exists.")
        db.add(_new_document(name, principal.account, fmt, call.now, tags))
        await db.flush()
        db.add(_version_row(name, 1, content, version_name, call.now))
    async with call.state.db() as db:
        return {"DocumentDescription": describe(await load_document(db, name))}


def _new_document(name: str, owner: str, fmt: str, now: datetime, tags: dict[str, Any]) -> Document:
    return Document(
        name=name,
        owner=owner,
        document_type="Session",
        document_format=fmt,
        created_date=now,
        default_version=1,
        latest_version=1,
        tags=tags,
    )


def _version_row(
    name: str, version: int, content: str, version_name: str | None, now: datetime
) -> DocumentVersion:
    return DocumentVersion(
        name=name,
        version=version,
        version_name=version_name,
        content=content,
        content_hash=docs.document_hash(content),
        created_date=now,
    )


async def _own_document(
    db: AsyncSession, name: str, operation: str, call: Call | None = None
) -> Document:
    """The account's document ``name``. An update of the preferences document before the
    account has its own (``call`` given) first copies the built-in one as version 1."""
    if name in docs.STANDARD_DOCUMENTS and name != PREFERENCES:
        raise InvalidDocumentOperation(f"You cannot {operation} the AWS-owned document {name}.")
    row = await db.get(Document, name)
    if row is None and name == PREFERENCES and call is not None:
        row = _new_document(name, call.account, "JSON", call.now, {})
        db.add(row)
        await db.flush()
        standard = _standard(name)
        assert standard is not None
        db.add(_version_row(name, 1, standard.content, None, call.now))
    if row is None:
        raise InvalidDocument(f"Document with name {name} does not exist.")
    return row


@ssm.operation("UpdateDocument")
async def update_document(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = v.string(params, "Name", required=True, pattern=NAME_PATTERN) or ""
    base = v.string(params, "DocumentVersion", pattern=VERSION_PATTERN, default="$LATEST")
    version_name = v.string(params, "VersionName", pattern=r"^[a-zA-Z0-9_\-.]{1,128}$")
    content, fmt, _ = _content_params(params)
    await call.authorize(
        "ssm:UpdateDocument", arns.document(call.region, call.account, name, aws_owned=False)
    )
    async with call.state.db() as db, db.begin():
        row = await _own_document(db, name, "update", call)
        if base != "$LATEST" and _pick_version(row, base) != row.latest_version:
            raise InvalidDocumentVersion(
                f"Updates must be based on the latest version ({row.latest_version})."
            )
        digest = docs.document_hash(content)
        existing = await db.scalars(
            select(DocumentVersion.content_hash).where(DocumentVersion.name == name)
        )
        if digest in set(existing):
            raise DuplicateDocumentContent(
                "The content of the document is the same as that of an existing version."
            )
        row.latest_version += 1
        row.document_format = fmt
        db.add(_version_row(name, row.latest_version, content, version_name, call.now))
        latest = str(row.latest_version)
    async with call.state.db() as db:
        return {"DocumentDescription": describe(await load_document(db, name, latest))}


@ssm.operation("UpdateDocumentDefaultVersion")
async def update_document_default_version(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = v.string(params, "Name", required=True, pattern=NAME_PATTERN) or ""
    version = v.string(params, "DocumentVersion", required=True, pattern=r"^[1-9][0-9]*$") or "1"
    await call.authorize(
        "ssm:UpdateDocumentDefaultVersion",
        arns.document(call.region, call.account, name, aws_owned=False),
    )
    async with call.state.db() as db, db.begin():
        row = await _own_document(db, name, "update")
        if int(version) > row.latest_version:
            raise InvalidDocumentVersion(f"Version {version} of {name} does not exist.")
        row.default_version = int(version)
    return {"Description": {"Name": name, "DefaultVersion": version}}


@ssm.operation("GetDocument")
async def get_document(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = v.string(params, "Name", required=True, pattern=NAME_PATTERN) or ""
    version = v.string(params, "DocumentVersion", pattern=VERSION_PATTERN)
    version_name = v.string(params, "VersionName")
    fmt = v.string(params, "DocumentFormat", choices=["JSON", "YAML", "TEXT"])
    async with call.state.db() as db:
        doc = await load_document(db, name, version, version_name)
    await call.authorize("ssm:GetDocument", doc.arn(call))
    content = doc.content
    if fmt == "JSON" and doc.document_format != "JSON":
        content = json.dumps(doc.parsed, indent=2)
    result = {
        "Name": doc.name,
        "CreatedDate": doc.created_date,
        "DocumentVersion": str(doc.version),
        "Status": "Active",
        "Content": content,
        "DocumentType": "Session",
        "DocumentFormat": fmt or doc.document_format,
    }
    if doc.version_name:
        result["VersionName"] = doc.version_name
    return result


@ssm.operation("DescribeDocument")
async def describe_document(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = v.string(params, "Name", required=True, pattern=NAME_PATTERN) or ""
    version = v.string(params, "DocumentVersion", pattern=VERSION_PATTERN)
    async with call.state.db() as db:
        doc = await load_document(db, name, version, v.string(params, "VersionName"))
    await call.authorize("ssm:DescribeDocument", doc.arn(call))
    return {"Document": describe(doc)}


@ssm.operation("DeleteDocument")
async def delete_document(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    name = v.string(params, "Name", required=True, pattern=NAME_PATTERN) or ""
    version = v.string(params, "DocumentVersion", pattern=r"^[1-9][0-9]*$")
    await call.authorize(
        "ssm:DeleteDocument", arns.document(call.region, call.account, name, aws_owned=False)
    )
    async with call.state.db() as db, db.begin():
        row = await _own_document(db, name, "delete")
        if version is None:
            await db.delete(row)
            return {}
        if int(version) == row.default_version:
            raise InvalidDocumentOperation("You cannot delete the default version of a document.")
        found = await db.get(DocumentVersion, (name, int(version)))
        if found is None:
            raise InvalidDocumentVersion(f"Version {version} of {name} does not exist.")
        await db.delete(found)
    return {}


def _list_filters(params: dict[str, Any]) -> list[tuple[str, list[str]]]:
    filters: list[tuple[str, list[str]]] = []
    for item in v.obj_list(params, "DocumentFilterList"):
        key = v.string(item, "key", required=True) or ""
        filters.append((key, [v.string(item, "value", required=True) or ""]))
    for item in v.obj_list(params, "Filters"):
        key = v.string(item, "Key", required=True, min_len=1, max_len=128) or ""
        filters.append((key, v.string_list(item, "Values")))
    for key, _ in filters:
        if key not in ("Name", "Owner", "DocumentType", "SearchKeyword", "PlatformTypes"):
            if not key.startswith("tag:"):
                raise InvalidFilterKey(f"The filter key {key} is not valid.")
    return filters


def _listed(doc: LoadedDocument, key: str, values: list[str], account: str) -> bool:
    if key == "Name":
        return doc.name in values
    if key == "Owner":
        wanted = {val.lower() for val in values}
        if "all" in wanted or "public" in wanted:
            return True
        return (
            ("self" in wanted and not doc.aws_owned)
            or ("amazon" in wanted and doc.aws_owned)
            or doc.owner in values
        )
    if key == "DocumentType":
        return "Session" in values
    if key == "SearchKeyword":
        return any(val.lower() in doc.name.lower() for val in values)
    if key == "PlatformTypes":
        return bool({"Windows", "Linux", "MacOS"} & set(values))
    return str(doc.tags.get(key[4:], "\0")) in values


@ssm.operation("ListDocuments")
async def list_documents(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    await call.authorize("ssm:ListDocuments", "*")
    max_results = v.integer(params, "MaxResults", minimum=1, maximum=50, default=50) or 50
    token = v.string(params, "NextToken")
    filters = _list_filters(params)
    async with call.state.db() as db:
        names = [row.name for row in await db.scalars(select(Document))]
        standard = (_standard(name) for name in docs.STANDARD_DOCUMENTS if name not in names)
        everything = [d for d in standard if d is not None]
        everything += [await load_document(db, name) for name in names]
    shown = sorted(
        (d for d in everything if all(_listed(d, k, vals, call.account) for k, vals in filters)),
        key=lambda d: d.name,
    )
    return call.state.paginator.respond(
        "ListDocuments",
        shown,
        lambda d: d.name,
        max_results,
        token,
        "DocumentIdentifiers",
        _identifier,
    )
