"""The config base every application shares: frozen dataclasses, validated on creation, with named presets.

A config is a frozen dataclass whose fields carry their help text and their constraints
(``field(default, help, minimum=..., choices=...)``). Every instance is checked when it is made, so
``SegConfig(iters=0)``, ``cfg.replace(batch_size="abc")`` and ``--set iters=-5`` all fail at once with a
message that names the field, the expected and the received value. Values given as strings (from the
command line) are converted to the field's type. ``to_dict``/``from_dict`` round-trip through JSON
(``config.json`` in every run folder), and :class:`Presets` holds the named recipes, tiny ones included.

:class:`HamOptions` is the one spelling of the Hamburger's options (as on :class:`hamlib.NMF2D`: ``S``,
``R``, ``train_steps``, ``eval_steps``, ``grad``, ``inv_t``, ``beta``, plus ``eval_seed``) that every
application config passes explicitly to the models it builds.
"""
from __future__ import annotations

import ast
import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple, Type, TypeVar

__all__ = ["Config", "HamConfig", "field", "Presets", "HamOptions", "GRAD_MODES", "MD_KINDS"]

C = TypeVar("C", bound="Config")
MD_KINDS = ("nmf", "vq", "cd")
GRAD_MODES = ("one-step", "bptt", "implicit")


def field(default: Any, help: str, *, minimum: Optional[float] = None, above: Optional[float] = None,
          choices: Optional[Tuple[Any, ...]] = None, runtime: bool = False) -> Any:
    """A config field with its help text and constraints.

    Args:
        default: the default value (a tuple for sequences; configs are immutable).
        help: one line for ``--help`` and the docs.
        minimum: smallest allowed value (inclusive). above: the value must be strictly greater.
        choices: the allowed values.
        runtime: the field changes where or how fast a run executes, not what it computes (e.g. the data
            folder or the number of loader workers), so a run may resume with a different value.
    """
    meta = {"help": help, "minimum": minimum, "above": above, "choices": choices, "runtime": runtime}
    return dataclasses.field(default=default, metadata=meta)


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp)).replace("NoneType", "None")
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        return f"tuple of {_type_name(args[0])}" if args and args[-1] is Ellipsis else \
            f"tuple ({', '.join(_type_name(a) for a in args)})"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """``value`` converted to the annotated type ``tp``; ValueError naming the field when it cannot be."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(name, inner[0], value)
    if isinstance(value, str) and (origin in (tuple, list) or tp in (tuple, list, dict) or origin is dict):
        text = value.strip()
        try:
            value = ast.literal_eval(text if text[:1] in "([{" else f"({text},)")
        except (ValueError, SyntaxError):
            raise ValueError(f"{name} must be a {_type_name(tp)} such as 1,2 or (1, 2); got {value!r}") from None
    if origin is tuple or tp is tuple:
        if not isinstance(value, (tuple, list)):
            value = (value,)
        if args and args[-1] is Ellipsis:
            return tuple(_coerce(name, args[0], v) for v in value)
        if args:
            if len(value) != len(args):
                raise ValueError(f"{name} must have {len(args)} values; got {value!r}")
            return tuple(_coerce(name, a, v) for a, v in zip(args, value))
        return tuple(value)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a dict; got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"{name} must be true or false; got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str, float)):
            raise ValueError(f"{name} must be an integer; got {value!r}")
        try:
            out = int(value.strip()) if isinstance(value, str) else int(value)
        except ValueError:
            raise ValueError(f"{name} must be an integer; got {value!r}") from None
        if isinstance(value, float) and out != value:
            raise ValueError(f"{name} must be an integer; got {value!r}")
        return out
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"{name} must be a number; got {value!r}")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number; got {value!r}") from None
        if not math.isfinite(out):
            raise ValueError(f"{name} must be finite; got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string; got {value!r}")
        return value
    return value


@dataclass(frozen=True)
class Config:
    """Base of every application config: validated, immutable, JSON round-trip, help text per field.

    Subclasses are ``@dataclass(frozen=True)`` with fields made by :func:`field`. Override
    :meth:`check` for rules that tie several fields together (call ``super().check()`` first).
    """

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            v = _coerce(f.name, hints[f.name], getattr(self, f.name))
            m = f.metadata
            if v is not None and not isinstance(v, (bool, str, tuple, dict)):
                if m.get("minimum") is not None and v < m["minimum"]:
                    raise ValueError(f"{f.name} must be >= {m['minimum']}; got {v!r}")
                if m.get("above") is not None and not v > m["above"]:
                    raise ValueError(f"{f.name} must be > {m['above']}; got {v!r}")
            if m.get("choices") is not None and v not in m["choices"]:
                raise ValueError(f"{f.name} must be one of {tuple(m['choices'])}; got {v!r}")
            object.__setattr__(self, f.name, v)
        self.check()

    def check(self) -> None:
        """Cross-field rules; raise ValueError naming the fields. The base has none."""

    @classmethod
    def field_names(cls) -> Tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def runtime_fields(cls) -> Tuple[str, ...]:
        """Fields a run may change when it resumes (they do not change what is computed)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("runtime"))

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied and validated.

        Raises:
            ValueError: an unknown field (the message lists the valid ones) or an invalid value.
        """
        bad = sorted(set(changes) - set(self.field_names()))
        if bad:
            raise ValueError(f"unknown config field(s) {bad} for {type(self).__name__}; valid fields: "
                             f"{', '.join(self.field_names())}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-ready values (tuples become lists)."""
        def plain(v: Any) -> Any:
            if isinstance(v, (tuple, list)):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: Type[C], data: Mapping[str, Any]) -> C:
        """The config stored by :meth:`to_dict` (e.g. a run's ``config.json``).

        Raises:
            ValueError: ``data`` has keys that are not fields of this config, or invalid values.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a {cls.__name__} must be read from a dict; got {type(data).__name__}")
        bad = sorted(set(data) - set(cls.field_names()))
        if bad:
            raise ValueError(f"unknown config field(s) {bad} for {cls.__name__} (written by another version or "
                             f"application?); valid fields: {', '.join(cls.field_names())}")
        return cls(**data)

    def diff(self, other: "Config", *, ignore: Tuple[str, ...] = ()) -> Dict[str, Tuple[Any, Any]]:
        """Fields whose values differ: ``{name: (self's, other's)}``."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b.get(k)) for k in a if k not in ignore and a[k] != b.get(k)}

    @classmethod
    def fields_help(cls) -> str:
        """One line per field: name, type, default and help (used by ``--help``)."""
        hints = typing.get_type_hints(cls)
        lines = []
        for f in dataclasses.fields(cls):
            tp = _type_name(hints[f.name]).replace("NoneType", "None")
            choices = f.metadata.get("choices")
            extra = f" (one of {', '.join(map(str, choices))})" if choices and " | " not in f.metadata["help"] else ""
            if f.metadata.get("runtime"):
                extra += " [may change when a run resumes]"
            lines.append(f"  {f.name} ({tp}, default {f.default!r}): {f.metadata.get('help', '')}{extra}")
        return "\n".join(lines)


class Presets(Mapping[str, C]):
    """Named configs of one application (``tiny`` ones included), with a one-line description each.

    Example::

        PRESETS = Presets(SegConfig, {"tiny": (SegConfig(), "synthetic shapes, CPU, a minute")})
        cfg = PRESETS.make("tiny", iters=20)
    """

    def __init__(self, cls: Type[C], presets: Mapping[str, Tuple[C, str]]) -> None:
        for name, (cfg, _) in presets.items():
            if not isinstance(cfg, cls):
                raise TypeError(f"preset {name!r} must be a {cls.__name__}; got {type(cfg).__name__}")
        self.cls = cls
        self._cfgs = {k: v[0] for k, v in presets.items()}
        self.docs = {k: v[1] for k, v in presets.items()}

    def __getitem__(self, name: str) -> C:
        if name not in self._cfgs:
            raise ValueError(f"preset must be one of {tuple(self._cfgs)}; got {name!r}")
        return self._cfgs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cfgs)

    def __len__(self) -> int:
        return len(self._cfgs)

    def make(self, name: str, **overrides: Any) -> C:
        """Preset ``name`` with ``overrides`` applied (validated)."""
        return self[name].replace(**overrides)

    def help(self) -> str:
        return "\n".join(f"  {k}: {d}" for k, d in self.docs.items())


@dataclass(frozen=True)
class HamOptions:
    """The options of a Hamburger's ham, spelled as on :class:`hamlib.NMF2D` (Geng et al., ICLR 2021).

    Args:
        md (str): the ham, ``"nmf"``, ``"vq"`` or ``"cd"``. Default: ``"nmf"``.
        S (int): heads. Default: 1.
        R (int, optional): rank r; ``None`` lets the model choose (HamGAN: d/8, the paper's ratio).
        train_steps (int): K in training. Default: 6. eval_steps (int): K at evaluation. Default: 7.
        grad (str): ``"one-step"``, ``"bptt"`` or ``"implicit"``. Default: ``"one-step"``.
        inv_t (float, optional): softmax temperature of VQ/CD (not NMF); ``None``: the ham's default.
        beta (float, optional): ridge term of CD; ``None``: the ham's default.
        eval_seed (int, optional): seed of the initial bases in eval mode (deterministic predictions).
    """
    md: str = "nmf"
    S: int = 1
    R: Optional[int] = None
    train_steps: int = 6
    eval_steps: int = 7
    grad: str = "one-step"
    inv_t: Optional[float] = None
    beta: Optional[float] = None
    eval_seed: Optional[int] = 0

    def __post_init__(self) -> None:
        if self.md not in MD_KINDS:
            raise ValueError(f"md must be one of {MD_KINDS}; got {self.md!r}")
        if self.grad not in GRAD_MODES:
            raise ValueError(f"grad must be one of {GRAD_MODES}; got {self.grad!r}")
        if self.md == "nmf" and self.inv_t is not None:
            raise ValueError(f"inv_t applies to md='vq' and md='cd' only; got inv_t={self.inv_t} with md='nmf'")
        if self.md != "cd" and self.beta is not None:
            raise ValueError(f"beta applies to md='cd' only; got beta={self.beta} with md={self.md!r}")

    @classmethod
    def from_config(cls, cfg: Any) -> "HamOptions":
        """The ham options of an application config that has fields of the same names."""
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})

    def kwargs(self, R: Optional[int] = None) -> Dict[str, Any]:
        """Keyword arguments of :class:`hamlib.Hamburger`'s ham (``md`` excluded); ``R`` fills a ``None`` rank."""
        rank = self.R if self.R is not None else R
        if rank is None:
            raise ValueError("R is None and no default rank was given")
        kw: Dict[str, Any] = dict(S=self.S, R=rank, train_steps=self.train_steps, eval_steps=self.eval_steps,
                                  grad=self.grad, eval_seed=self.eval_seed)
        if self.inv_t is not None:
            kw["inv_t"] = self.inv_t
        if self.beta is not None:
            kw["beta"] = self.beta
        return kw


@dataclass(frozen=True)
class HamConfig(Config):
    """Config base of the applications that build a Hamburger: the ham fields, spelled as on :class:`HamOptions`.

    Subclasses may redeclare a field to change its default (the order stays the same).
    """
    md: str = field("nmf", "the ham: nmf | vq | cd", choices=MD_KINDS)
    S: int = field(1, "ham heads S", minimum=1)
    R: Optional[int] = field(16, "rank r of the ham (None: the model's default)", minimum=1)
    train_steps: int = field(6, "K, ham iterations in training", minimum=0)
    eval_steps: int = field(7, "K, ham iterations at evaluation", minimum=0)
    grad: str = field("one-step", "gradient of the ham: one-step | bptt | implicit", choices=GRAD_MODES)
    inv_t: Optional[float] = field(None, "softmax temperature of vq/cd (None: the ham's default)", above=0)
    beta: Optional[float] = field(None, "ridge term of cd (None: the ham's default)", above=0)
    eval_seed: Optional[int] = field(0, "seed of the ham's initial bases at evaluation (None: random)", minimum=0)

    def check(self) -> None:
        super().check()
        self.ham()  # the ham rules (inv_t not for nmf, beta only for cd)

    def ham(self) -> HamOptions:
        """The ham options this config describes."""
        return HamOptions.from_config(self)
