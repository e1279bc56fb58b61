"""Reading space files (JSON, YAML) strictly: what a plain ``json.loads``/``yaml.safe_load``
lets through silently, or takes minutes on, is refused with one clear ``ValueError``.

* A key given twice in one mapping (``{"width": ..., "width": ...}``): the plain loaders keep
  the last one silently; here the message names the key. YAML merge keys (``<<: *base``) may
  still be overridden by an explicit key, as YAML intends.
* Nesting too deep for Python (a RecursionError inside the parser): refused.
* YAML aliases that expand into more than :data:`jaxtune.limits.MAX_ALIAS_EXPANSION` nodes (an
  "alias bomb": 418 bytes of nested ``*anchors`` stand for hundreds of millions of values): the
  expanded size is counted on the composed node graph, in time linear in the file, before
  anything is built.
* YAML exponents without a dot (``1e-4``) are floats, as YAML 1.2 reads them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jaxtune import limits

__all__ = ["load_json", "load_yaml", "yaml_loader"]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(
                f"the key {key!r} is given twice in one object (the last would silently win); "
                "give each name and each field once."
            )
        result[key] = value
    return result


def load_json(text: str) -> Any:
    """``json.loads`` that refuses duplicate keys and too-deep nesting.

    Raises:
      ValueError: invalid JSON (``json.JSONDecodeError``), a duplicate key (named), nesting
        too deep, or an integer too long to read.
    """
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as error:
        raise ValueError(f"it is not valid JSON: {error}") from error
    except RecursionError:
        raise ValueError("it is nested too deeply to read; flatten it.") from None


def _expanded_size(root: Any, yaml: Any) -> tuple[int, int]:
    """``(nodes with every alias expanded, distinct nodes)``, counted without expanding
    (memoized, iterative); raises ``ValueError`` for a recursive alias."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        ident = id(node)
        if isinstance(node, yaml.MappingNode):
            children = [item for pair in node.value for item in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        if children_done:
            on_path.discard(ident)
            sizes[ident] = 1 + sum(sizes[id(child)] for child in children)
            continue
        if ident in sizes:
            continue
        on_path.add(ident)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise ValueError("it holds a recursive alias (an anchor used inside itself).")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)], len(sizes)


def yaml_loader() -> tuple[Any, type]:
    """``(yaml, Loader)``: PyYAML and a strict ``SafeLoader`` subclass (module docstring).

    Raises:
      ImportError: PyYAML is not installed (saying how to install it).
    """
    try:
        import yaml
    except ImportError as error:
        raise ImportError(
            "reading a YAML space needs PyYAML; install it with `pip install pyyaml` "
            "(or `pip install jaxtune[yaml]`), or write the space as JSON."
        ) from error

    class Loader(yaml.SafeLoader):
        """SafeLoader: no duplicate keys, capped alias expansion, ``1e-4`` read as a float."""

        def compose_document(self) -> Any:
            node = super().compose_document()
            expanded, distinct = _expanded_size(node, yaml)
            if expanded - distinct > limits.MAX_ALIAS_EXPANSION:
                raise ValueError(
                    f"its aliases expand to {expanded} values from {distinct} written ones, "
                    f"more than {limits.MAX_ALIAS_EXPANSION} added; write the values out or use "
                    "fewer nested aliases."
                )
            return node

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        duplicate = key in seen
                        seen.add(key)
                    except TypeError:  # an unhashable key: SafeLoader refuses it itself
                        continue
                    if duplicate:
                        raise yaml.constructor.ConstructorError(
                            None, None,
                            f"the key {key!r} is given twice in one mapping (the last would "
                            "silently win); give each name and each field once",
                            key_node.start_mark,
                        )
            return super().construct_mapping(node, deep=deep)

    float_pattern = (
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)"
        r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)"
        r"|\.(?:nan|NaN|NAN))$"
    )
    # add_implicit_resolver copies the parent's table first, so SafeLoader is left untouched.
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float", re.compile(float_pattern), list("-+0123456789.")
    )
    return yaml, Loader


def load_yaml(text: str) -> Any:
    """Reads one YAML document with :func:`yaml_loader`'s strict loader.

    Raises:
      ValueError: invalid YAML, a duplicate key (named), an alias bomb, nesting too deep.
      ImportError: PyYAML is not installed.
    """
    yaml, loader = yaml_loader()
    try:
        return yaml.load(text, Loader=loader)  # a SafeLoader subclass: no objects
    except yaml.YAMLError as error:
        raise ValueError(f"it is not valid YAML: {error}") from error
    except RecursionError:
        raise ValueError("it is nested too deeply to read; flatten it.") from None
