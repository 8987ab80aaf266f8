"""flask-smorest's Blueprint, with a webargs parser that builds each argument schema once."""

import functools

import flask_smorest
from marshmallow import Schema
from webargs.flaskparser import FlaskParser


class _Parser(FlaskParser):
    # webargs builds a new instance of a schema class on every request, and with it every
    # nested schema (field copies included: 5 % of a create's CPU in py-spy). Schemas keep no
    # state between loads, so one instance per class serves every request and thread.
    def _get_schema(self, argmap, req):
        if isinstance(argmap, type) and issubclass(argmap, Schema):
            return shared_schema(argmap)
        return super()._get_schema(argmap, req)


@functools.cache
def shared_schema(schema: type[Schema]) -> Schema:
    """The one instance of a schema class that every request loads with."""
    return schema()


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = _Parser()
