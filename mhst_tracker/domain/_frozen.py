"""Fast positional constructors for the engine's frozen, slotted dataclasses.

A frozen dataclass's generated ``__init__`` sets each field through
``object.__setattr__``, which is about twice as slow as writing the slot directly. The
clock builds a few state objects per referral it evaluates, so it uses these constructors
instead: they take every field positionally, in declaration order, and run no
``__post_init__`` (the classes they are used for have none). The instances are ordinary
frozen dataclass instances. The state objects stay dataclasses because orjson, the store's
JSON serialiser, writes a dataclass as the object of its fields (a ``StageState`` as its
``to_dict`` shape); the per-message objects (``Event``, the store's ``Origin`` and
``IncomingEvent``), which are never serialised that way, are msgspec ``Struct`` classes,
cheaper still to build.
"""

from collections.abc import Callable
from dataclasses import fields
from typing import Any


def frozen_constructor(cls: type[Any]) -> Callable[..., Any]:
    """A function ``(field1, field2, ...) -> cls`` that fills the slots of a new instance."""
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__ that the constructor would skip")
    names = [field.name for field in fields(cls)]
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    namespace.update({f"set_{name}": vars(cls)[name].__set__ for name in names})
    body = "".join(f"    set_{name}(instance, {name})\n" for name in names)
    source = f"def make({', '.join(names)}):\n    instance = new(cls)\n{body}    return instance\n"
    exec(source, namespace)  # the dataclasses module builds its __init__ the same way
    constructor: Callable[..., Any] = namespace["make"]
    return constructor
