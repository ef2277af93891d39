#!/usr/bin/env python3
# pip requirement: pydantic-ocsf==3.0.0
# (tested with pydantic 2.14.4; the package bundles OCSF 1.0.0-1.7.0 and needs no network)
"""Validate OCSF events, one JSON object a line, against their OCSF class.

Usage: ocsf_validate.py [--strict] [FILE]      (no FILE, or "-": standard input)

Each line is validated against the class named by its `class_uid`, at the
schema version named by its `metadata.version`, with the models of the PyPI
package pydantic-ocsf. Blank lines are skipped. For every invalid line one line
is printed to standard output: `LINE: CLASS (CLASS_UID) vVERSION: MESSAGE`.

Exit status: 0 every event valid, 1 at least one invalid, 2 usage error (bad
arguments, unreadable file, pydantic-ocsf missing).

Where pydantic-ocsf departs from the OCSF schema, the schema wins; before any
model is built the bundled schema is corrected as the OCSF compiler reads it:

* OCSF 1.0-1.3 define the classification and occurrence attributes of the
  base event (activity_id, category_uid, class_uid, type_uid, time, ...) in
  includes/*.json, which pydantic-ocsf drops; they are put back (from the
  ocsf-schema includes of those versions).
* An attribute's enum is the union of the dictionary's enum, the enums of the
  classes/objects it inherits from, and its own (own captions win). pydantic-ocsf
  replaces the shared values with the class's own, so e.g. status_id 1 (Success)
  of a Network Remediation Activity would be refused although OCSF defines it.
* An attribute a class redefines without a `requirement` keeps the one it
  inherits (pydantic-ocsf drops it, so activity_id of the finding and
  remediation classes would become optional).
* A required attribute must be present in the event itself. pydantic-ocsf fills
  some in before it checks (type_uid, category_uid, class_uid from the class;
  an `_id` from its label, e.g. connection_info.direction_id from direction),
  so an event that omits them would pass; OCSF requires them on the wire.
* Profiles named in `metadata.profiles`: pydantic-ocsf has no profiles, so the
  attributes of the cloud, osint, host and container profiles are checked here
  (required ones present, objects validated with their object models).

Values are checked with pydantic's strict JSON mode: a string where OCSF says
integer (e.g. "time": "1718000000000") is invalid. With --strict, attributes
the class or object does not define are reported too (OCSF puts such data in
`unmapped`); attributes of declared profiles are allowed at the top level.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

REQUIREMENT = "pydantic-ocsf==3.0.0"

# Profile attributes, from ocsf-schema profiles/*.json (identical in 1.3.0 and
# 1.7.0 for these): attribute -> (requirement, object name or None, is_array).
PROFILE_ATTRIBUTES: dict[str, dict[str, tuple[str, str | None, bool]]] = {
    "cloud": {"cloud": ("required", "cloud", False), "api": ("optional", "api", False)},
    "osint": {"osint": ("required", "osint", True)},
    "host": {"device": ("recommended", "device", False), "actor": ("optional", "actor", False)},
    "container": {
        "container": ("recommended", "container", False),
        "namespace_pid": ("recommended", None, False),
    },
}
# Profiles whose attributes are only allowed by name (their values are not checked).
PROFILE_NAMES_ONLY: dict[str, set[str]] = {
    "security_control": {
        "action", "action_id", "attacks", "authorizations", "confidence", "confidence_id",
        "confidence_score", "disposition", "disposition_id", "firewall_rule", "is_alert",
        "malware", "malware_scan_info", "policy", "risk_details", "risk_level",
        "risk_level_id", "risk_score",
    },
    "incident": {
        "assignee", "assignee_group", "impact", "impact_id", "impact_score",
        "is_suspected_breach", "priority", "priority_id", "src_url", "ticket", "tickets",
        "verdict", "verdict_id",
    },
}


# includes/classification.json and includes/occurrence.json of ocsf-schema 1.1.0-1.3.0
# (1.0.0 differs only in declaring no enum for activity_id); from 1.4.0 on these
# attributes are written in base_event itself.
INCLUDES: dict[str, dict[str, dict[str, Any]]] = {
    "includes/classification.json": {
        "activity_name": {"requirement": "optional"},
        "activity_id": {
            "requirement": "required",
            "enum": {"0": {"caption": "Unknown"}, "99": {"caption": "Other"}},
        },
        "category_name": {"requirement": "optional"},
        "category_uid": {"requirement": "required"},
        "class_name": {"requirement": "optional"},
        "class_uid": {"requirement": "required"},
        "type_name": {"requirement": "optional"},
        "type_uid": {"requirement": "required"},
    },
    "includes/occurrence.json": {
        "count": {"requirement": "optional"},
        "duration": {"requirement": "optional"},
        "end_time": {"requirement": "optional"},
        "start_time": {"requirement": "optional"},
        "time": {"requirement": "required"},
        "timezone_offset": {"requirement": "recommended"},
    },
}


class Usage(Exception):
    """A usage error: exit status 2."""


def _ancestors(table: dict[str, Any], spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The specs `spec` extends, nearest first."""
    chain = []
    seen = set()
    parent = spec.get("extends")
    while parent and parent not in seen and parent in table:
        seen.add(parent)
        chain.append(table[parent])
        parent = table[parent].get("extends")
    return chain


def correct_schema(schema: dict[str, Any]) -> None:
    """Merge enums and inherited requirements back, in place (see module doc)."""
    dictionary = schema.get("dictionary", {}).get("attributes", {})
    for kind in ("events", "objects"):
        for spec in schema.get(kind, {}).values():
            attributes = spec.get("attributes", {})
            included = attributes.get("$include") or []
            for path in [included] if isinstance(included, str) else included:
                for name, attr in INCLUDES.get(path, {}).items():
                    attributes.setdefault(name, json.loads(json.dumps(attr)))
    for kind in ("events", "objects"):
        table = schema.get(kind, {})
        # Compute every correction from the uncorrected specs, then apply.
        corrections = []
        for spec in table.values():
            parents = _ancestors(table, spec)
            for name, attr in spec.get("attributes", {}).items():
                if name.startswith("$") or not isinstance(attr, dict):
                    continue
                inherited = [
                    p["attributes"][name]
                    for p in parents
                    if isinstance(p.get("attributes", {}).get(name), dict)
                ]
                requirement = None
                if "requirement" not in attr:
                    requirement = next(
                        (p["requirement"] for p in inherited if "requirement" in p), None
                    )
                enum = None
                if "enum" in attr:
                    enum = {}
                    for source in [dictionary.get(name, {}), *reversed(inherited), attr]:
                        enum.update(source.get("enum") or {})
                corrections.append((attr, requirement, enum))
        for attr, requirement, enum in corrections:
            if requirement is not None:
                attr["requirement"] = requirement
            if enum is not None:
                attr["enum"] = enum


def _attributes(table: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """A class's or object's attributes with the inherited ones (own win)."""
    merged: dict[str, Any] = {}
    for s in [*reversed(_ancestors(table, spec)), spec]:
        for name, attr in s.get("attributes", {}).items():
            if not name.startswith("$") and isinstance(attr, dict):
                merged[name] = {**merged.get(name, {}), **attr}
    return merged


def missing_required(
    schema: dict[str, Any], table: dict[str, Any], spec: dict[str, Any], raw: Any, path: str
) -> list[str]:
    """Required attributes absent from the raw event, at any depth."""
    if not isinstance(raw, dict):
        return []  # the model reports the wrong type
    dictionary = schema.get("dictionary", {}).get("attributes", {})
    objects = schema.get("objects", {})
    found = []
    for name, attr in _attributes(table, spec).items():
        if name not in raw:
            if attr.get("requirement") == "required":
                found.append(f"{path}{name}: required attribute missing")
            continue
        kind = attr.get("type") or dictionary.get(name, {}).get("type")
        if kind == "object" or kind not in objects:
            continue
        is_array = attr.get("is_array", dictionary.get(name, {}).get("is_array", False))
        items = raw[name] if is_array and isinstance(raw[name], list) else [raw[name]]
        for i, item in enumerate(items):
            sub = f"{path}{name}[{i}]." if is_array else f"{path}{name}."
            found.extend(missing_required(schema, objects, objects[kind], item, sub))
    return found


class Validator:
    def __init__(self, strict: bool) -> None:
        try:
            from ocsf._schema_loader import get_schema_loader
        except ImportError as err:
            raise Usage(f"pydantic-ocsf is not installed ({err}); pip install {REQUIREMENT}")
        self.strict = strict
        self.loader = get_schema_loader()
        self.versions = self.loader.get_available_versions()
        self.modules: dict[str, Any] = {}
        self.schemas: dict[str, dict[str, Any]] = {}
        self.classes: dict[str, dict[int, str]] = {}

    def module(self, version: str) -> Any:
        if version not in self.modules:
            schema = self.loader.load_schema(version)  # the cached dict the models are built from
            correct_schema(schema)
            self.schemas[version] = schema
            self.classes[version] = self._class_table(schema)
            self.modules[version] = importlib.import_module("ocsf.v" + version.replace(".", "_"))
        return self.modules[version]

    @staticmethod
    def _class_table(schema: dict[str, Any]) -> dict[int, str]:
        """class_uid -> event name: category uid * 1000 + the class's uid in its category."""
        categories = {
            name: meta["uid"]
            for name, meta in schema.get("categories_meta", {}).get("attributes", {}).items()
        }
        events = schema.get("events", {})
        table = {}
        for name, spec in events.items():
            if spec.get("uid") is None:
                continue
            category = None
            for s in [spec, *_ancestors(events, spec)]:
                if s.get("category"):
                    category = s["category"]
                    break
            if category in categories:
                table[categories[category] * 1000 + spec["uid"]] = name
        return table

    def validate(self, line: str) -> str | None:
        """None when the line is a valid event, else the message to print."""
        try:
            event = json.loads(line)
        except json.JSONDecodeError as err:
            return f"not JSON: {err}"
        if not isinstance(event, dict):
            return "not a JSON object"
        metadata = event.get("metadata")
        version = metadata.get("version") if isinstance(metadata, dict) else None
        if not isinstance(version, str):
            return "metadata.version: missing (it names the OCSF version to validate against)"
        if version not in self.versions:
            return (
                f"metadata.version: OCSF {version!r} is not shipped by {REQUIREMENT} "
                f"(available: {', '.join(self.versions)})"
            )
        module = self.module(version)
        class_uid = event.get("class_uid")
        if type(class_uid) is not int:
            return f"class_uid: missing or not an integer: {class_uid!r}"
        name = self.classes[version].get(class_uid)
        if name is None:
            return f"class_uid: {class_uid} is no event class of OCSF {version}"
        model_name = "".join(part.capitalize() for part in name.split("_"))
        model = getattr(module.events, model_name)
        prefix = f"{model_name} ({class_uid}) v{version}: "
        problems: list[str] = []
        instance = None
        try:
            instance = model.model_validate_json(line, strict=True)
        except Exception as err:  # pydantic.ValidationError, or a model-building fault
            problems.extend(_describe(err))
        schema = self.schemas[version]
        problems.extend(missing_required(schema, schema["events"], schema["events"][name], event, ""))
        problems.extend(self._profiles(module, event))
        if self.strict and instance is not None:
            allowed = self._profile_names(event)
            problems.extend(
                f"{path}: attribute not defined by the class (put it in unmapped)"
                for path in _unknown(instance, "", allowed)
            )
        problems = _dedupe(problems)
        return prefix + "; ".join(problems) if problems else None

    def _profiles(self, module: Any, event: dict[str, Any]) -> list[str]:
        profiles = event.get("metadata", {}).get("profiles") or []
        if not isinstance(profiles, list):
            return []  # pydantic reports the type
        problems = []
        for profile in profiles:
            for attr, (requirement, obj, is_array) in PROFILE_ATTRIBUTES.get(profile, {}).items():
                if attr not in event:
                    if requirement == "required":
                        problems.append(f"{attr}: required by the {profile} profile")
                    continue
                if obj is None:
                    continue
                values = event[attr]
                if is_array:
                    if not isinstance(values, list):
                        problems.append(f"{attr}: should be an array")
                        continue
                else:
                    values = [values]
                model = getattr(module.objects, "".join(p.capitalize() for p in obj.split("_")))
                schema = self.schemas[event["metadata"]["version"]]
                for i, value in enumerate(values):
                    path = f"{attr}[{i}]" if is_array else attr
                    problems.extend(
                        missing_required(
                            schema, schema["objects"], schema["objects"][obj], value, path + "."
                        )
                    )
                    try:
                        model.model_validate_json(json.dumps(value), strict=True)
                    except Exception as err:
                        problems.extend(f"{path}.{p}" for p in _describe(err))
        return problems

    @staticmethod
    def _profile_names(event: dict[str, Any]) -> set[str]:
        names: set[str] = set()
        for profile in event.get("metadata", {}).get("profiles") or []:
            names |= set(PROFILE_ATTRIBUTES.get(profile, {}))
            names |= PROFILE_NAMES_ONLY.get(profile, set())
            if profile == "datetime":
                names.add("*_dt")
        return names


def _dedupe(problems: list[str]) -> list[str]:
    """Drop repeats, and the model's "Field required" where the raw check said so."""
    missing = {p.split(": ", 1)[0] for p in problems if p.endswith(": required attribute missing")}
    out: list[str] = []
    for p in problems:
        path, _, msg = p.partition(": ")
        if msg == "Field required" and path in missing:
            continue
        if p not in out:
            out.append(p)
    return out


def _describe(err: Exception) -> list[str]:
    errors = getattr(err, "errors", None)
    if not callable(errors):
        return [f"{type(err).__name__}: {err}"]
    out = []
    for e in errors():
        loc = ".".join(str(p) for p in e.get("loc", ()))
        out.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return out


def _unknown(instance: Any, path: str, allowed_top: set[str]) -> list[str]:
    from pydantic import BaseModel

    found = []
    extra = instance.model_extra or {}
    for key in extra:
        if not path and (key in allowed_top or ("*_dt" in allowed_top and key.endswith("_dt"))):
            continue
        found.append(path + key)
    for name, field in type(instance).model_fields.items():
        value = getattr(instance, name, None)
        key = field.alias or name
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            # `Object` is OCSF's free-form object (unmapped, data): anything goes.
            if isinstance(item, BaseModel) and type(item).__name__ != "Object":
                sub = f"{path}{key}[{i}]." if isinstance(value, list) else f"{path}{key}."
                found.extend(_unknown(item, sub, set()))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Validate OCSF JSON lines (one event a line) with pydantic-ocsf."
    )
    parser.add_argument("file", nargs="?", default="-", help="JSON lines file; - or none: stdin")
    parser.add_argument(
        "--strict", action="store_true", help="also report attributes the class does not define"
    )
    args = parser.parse_args(argv)  # exits 2 on bad arguments
    try:
        validator = Validator(args.strict)
        if args.file == "-":
            lines = sys.stdin.read().splitlines()
        else:
            try:
                with open(args.file, encoding="utf-8") as f:
                    lines = f.read().splitlines()
            except (OSError, UnicodeDecodeError) as err:
                raise Usage(f"cannot read {args.file}: {err}")
    except Usage as err:
        print(f"ocsf_validate: {err}", file=sys.stderr)
        return 2
    invalid = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        message = validator.validate(line)
        if message is not None:
            invalid += 1
            print(f"{number}: {message}")
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
