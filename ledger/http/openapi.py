"""The OpenAPI document's request and answer schemas, generated from the pydantic models
``ledger append`` validates with (``ledger.commands``): one definition of each command.

The routes read their bodies themselves (to bound them and to parse them strictly, as
``ledger append`` does), so FastAPI cannot infer the request schemas; ``install`` adds the
commands' models to the document's components and the routes refer to them.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ledger.commands.by_type import COMMAND_TYPES

REF = "#/components/schemas/{model}"
UNGUARDED = frozenset(("/v1/webhooks/stripe",))  # authenticated by its signature


class ErrorModel(BaseModel):
    code: str
    message: str
    field: str | None = None


class ResultModel(BaseModel):
    """A command's result, as ``ledger append`` answers it."""

    status: Literal["accepted", "duplicate", "rejected", "rolled_back"]
    position: int | None = None
    error: ErrorModel | None = None


class LineResultModel(ResultModel):
    line: int


class AccessModel(BaseModel):
    allowed: bool
    access_type: str | None
    expires_at: str | None


def _command_schema() -> dict[str, Any]:
    names = {model.__name__: kind for kind, model in COMMAND_TYPES.items()}
    return {
        "oneOf": [{"$ref": REF.format(model=name)} for name in names],
        "discriminator": {
            "propertyName": "type",
            "mapping": {kind: REF.format(model=name) for name, kind in names.items()},
        },
    }


def command_body() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _command_schema()}},
        }
    }


def batch_body() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": _command_schema()}},
                "application/x-ndjson": {
                    "schema": {"type": "string", "description": "one command object a line"}
                },
            },
        }
    }


def _result(description: str) -> dict[str, Any]:
    return {"model": ResultModel, "description": description}


COMMAND_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: _result("duplicate: already applied, nothing written"),
    201: _result("accepted, with the log position of its last event"),
    401: _result("no valid bearer token"),
    403: _result("no_access"),
    404: _result("not_found"),
    409: _result("conflict or invalid_state"),
    413: _result("too_large: the body passes its bound"),
    422: _result("validation_error, naming the field and the rule"),
    503: _result("overloaded or unavailable: try again after Retry-After"),
}
BATCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": list[LineResultModel], "description": "one result per command"},
    401: COMMAND_RESPONSES[401],
    413: COMMAND_RESPONSES[413],
    422: _result("the body is not a JSON array nor JSON Lines"),
    503: COMMAND_RESPONSES[503],
}
ACCESS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": AccessModel, "description": "the player's answer"},
    401: COMMAND_RESPONSES[401],
}


def install(app: FastAPI) -> None:
    """The app's document, with every command model among its components."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            _, defs = models_json_schema(
                [(model, "validation") for model in COMMAND_TYPES.values()], ref_template=REF
            )
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(defs["$defs"])
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path, operations in schema["paths"].items():
                if path.startswith("/v1/") and path not in UNGUARDED:
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
