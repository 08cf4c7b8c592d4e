#!/usr/bin/python3
"""Validate JSON documents against a JSON Schema 2020-12 with Debian's python3-jsonschema.

    validate-json-schema.py SCHEMA DOC.json...

Prints "ok: DOC" or each error with its JSON path, and exits 1 if any document is invalid,
2 if the validator cannot run (missing module, bad schema). "format" keywords are checked
where the installed checkers support them; the schema pins times down with a pattern anyway.
"""
import json
import sys

try:
    from jsonschema import Draft202012Validator, FormatChecker
except ImportError as e:  # the test must fail, not skip, without its validator
    print(f"validate-json-schema: {e}: install python3-jsonschema", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        schema = json.load(f)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    bad = 0
    for path in argv[2:]:
        with open(path) as f:
            doc = json.load(f)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        for e in errors:
            where = "/".join(str(p) for p in e.absolute_path)
            print(f"invalid: {path}: /{where}: {e.message}")
        if errors:
            bad += 1
        else:
            print(f"ok: {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
