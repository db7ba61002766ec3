"""The API paths of schema-subset.json: routing, PVE's JSONSchema parameter checks, typed GET answers."""

import json
import re
from pathlib import Path
from urllib.parse import unquote

from enva_lab.api_lab.errors import param_error

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "pve-api" / "schema-subset.json"
# Endpoints the published subset lacks (written from PVE's source; see its _comment).
ADDITIONS_FILE = SCHEMA_FILE.with_name("schema-additions.json")


class Schema:
    """The API paths of schema-subset.json, with PVE's JSONSchema parameter validation."""

    def __init__(self, path=SCHEMA_FILE):
        self.paths = json.loads(Path(path).read_text(encoding="utf-8"))
        if path == SCHEMA_FILE:
            additions = json.loads(ADDITIONS_FILE.read_text(encoding="utf-8"))
            self.paths.update((key, value) for key, value in additions.items() if key.startswith("/"))
        self._routes = []
        for template in self.paths:
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
            self._routes.append((re.compile("^%s$" % regex), template))
        # Literal paths win over templated ones (as PVE's router matches them first).
        self._routes.sort(key=lambda route: route[1].count("{"))

    def route(self, path):
        """``(template, uri params)`` for a request path below /api2/json, or None."""
        for regex, template in self._routes:
            match = regex.match(path)
            if match:
                return template, {key: unquote(value) for key, value in match.groupdict().items()}
        return None

    @staticmethod
    def property_schema(properties, name):
        if name in properties:
            return properties[name]
        match = re.match(r"^([a-z]+)(\d+)$", name)
        if match and "%s[n]" % match.group(1) in properties:
            return properties["%s[n]" % match.group(1)]
        return None

    def validate(self, definition, params):
        """The params converted to their types, or ApiError(400) with PVE's message per parameter."""
        schema = definition.get("parameters", {})
        properties = schema.get("properties", {})
        errors, values = {}, {}
        for name, prop in properties.items():
            if name not in params and "[n]" not in name and not prop.get("optional"):
                errors[name] = "property is missing and it is not optional"
        for name, raw in params.items():
            prop = self.property_schema(properties, name)
            if prop is None:
                if not schema.get("additionalProperties", 1):
                    errors[name] = "property is not defined in schema and the schema does not allow additional properties"
                    continue
                values[name] = raw
                continue
            error, value = check_value(prop, raw)
            if error:
                errors[name] = error
            else:
                values[name] = value
        if errors:
            raise param_error(errors)
        return values


_BOOLEAN = {"1": 1, "true": 1, "yes": 1, "on": 1, "0": 0, "false": 0, "no": 0, "off": 0}
_NODE_NAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
_CONFIG_ID = re.compile(r"^[a-z][a-z0-9_]*\d*$")


def _perl_pattern(pattern):
    return pattern.replace("(?^:", "(?:")


def check_value(prop, raw):
    """``(error or None, value)`` for one parameter, in the order and words of PVE::JSONSchema::check_prop."""
    kind = prop.get("type", "string")
    value = raw
    if kind == "boolean":
        if str(raw).lower() not in _BOOLEAN:
            return "type check ('boolean') failed - got '%s'" % raw, None
        return None, _BOOLEAN[str(raw).lower()]
    if kind == "integer":
        if not re.match(r"^[+-]?\d+$", str(raw)):
            return "type check ('integer') failed - got '%s'" % raw, None
        value = int(raw)
    elif kind == "number":
        try:
            value = float(raw)
        except ValueError:
            return "type check ('number') failed - got '%s'" % raw, None
    fmt = prop.get("format")
    if fmt == "pve-node" and not _NODE_NAME.match(str(raw)):
        return "invalid format - value does not look like a valid node name", None
    if fmt == "pve-configid-list":
        for item in re.split(r"[,;\s]+", str(raw).strip()):
            if item and not _CONFIG_ID.match(item):
                return "invalid format - invalid configuration ID '%s'" % item, None
    pattern = prop.get("pattern")
    if pattern and isinstance(raw, str):
        try:
            if not re.fullmatch(_perl_pattern(pattern), raw):
                return "value does not match the regex pattern", None
        except re.error:
            pass
    if "maxLength" in prop and len(str(raw)) > prop["maxLength"]:
        return "value may only be %s characters long" % prop["maxLength"], None
    if "minLength" in prop and len(str(raw)) < prop["minLength"]:
        return "value must be at least %s characters long" % prop["minLength"], None
    if kind in ("integer", "number"):
        if "maximum" in prop and value > prop["maximum"]:
            return "value must have a maximum value of %s" % prop["maximum"], None
        if "minimum" in prop and value < prop["minimum"]:
            return "value must have a minimum value of %s" % prop["minimum"], None
    if "enum" in prop and str(raw) not in [str(item) for item in prop["enum"]]:
        return "value '%s' does not have a value in the enumeration '%s'" % (raw, ", ".join(map(str, prop["enum"]))), None
    return None, value


def typed_config(values, properties):
    """Config values as PVE's GET returns them: integers, numbers and booleans as JSON numbers."""
    typed, raw_lxc = {}, []
    for key, value in values.items():
        if key.startswith("lxc."):
            raw_lxc.append([key, value])
            continue
        prop = Schema.property_schema(properties, key) or {}
        kind = prop.get("type")
        try:
            if kind in ("integer", "boolean"):
                typed[key] = int(value)
            elif kind == "number":
                number = float(value)
                typed[key] = int(number) if number.is_integer() else number
            else:
                typed[key] = value
        except ValueError:
            typed[key] = value
    if raw_lxc:
        typed["lxc"] = raw_lxc
    return typed
