"""Print the third-party requirements of the project with the given extras, one a line, from
pyproject.toml alone (no source needed). The images install these first, in a layer of their
own, so that a code change rebuilds only the small layer that installs the project itself.

    python requirements.py pyproject.toml ray,dedup,storage,service
"""

import re
import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    project = tomllib.load(open(pyproject, "rb"))["project"]
    name, optional = project["name"], project.get("optional-dependencies", {})
    out, seen, todo = list(project.get("dependencies", [])), set(), list(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        if extra not in optional:
            sys.exit(f"requirements.py: unknown extra {extra!r}")
        seen.add(extra)
        for req in optional[extra]:
            m = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", req.strip())
            if m:  # a self-reference such as assay[peers,dedup]
                todo.extend(e.strip() for e in m.group(1).split(","))
            else:
                out.append(req)
    return sorted(set(out), key=str.lower)


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], [e for e in sys.argv[2].split(",") if e])))
