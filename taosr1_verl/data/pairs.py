"""The one in-memory record every data path produces: a labelled (query, item) pair.

Readers (real files) and the synthetic generator both yield :class:`Pair`; the builders turn pairs into
verl/TRL parquet. ``level`` is always a level of the pair's label schema (validated at read time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class QuerySpec:
    """What a synthetic query asks for (real queries have none: their labels come from people)."""

    kind: str
    """``category``, ``attribute``, ``negation``, ``alternative``, ``price`` or ``question``."""
    category: str
    required: tuple[tuple[str, str], ...] = ()
    """``(attribute, value)`` the item must have, e.g. ``(("colour", "blue"),)``."""
    excluded: tuple[tuple[str, str], ...] = ()
    """``(attribute, value)`` the item must not have ("without leather")."""
    max_price: int | None = None
    alt_brand: str | None = None
    """"alternative to <brand>": the brand the user wants an alternative to."""

    def to_json(self) -> str:
        return json.dumps(
            {"kind": self.kind, "category": self.category, "required": [list(x) for x in self.required],
             "excluded": [list(x) for x in self.excluded], "max_price": self.max_price, "alt_brand": self.alt_brand},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> QuerySpec:
        d = json.loads(text)
        return cls(kind=d["kind"], category=d["category"],
                   required=tuple((str(a), str(v)) for a, v in d.get("required", ())),
                   excluded=tuple((str(a), str(v)) for a, v in d.get("excluded", ())),
                   max_price=d.get("max_price"), alt_brand=d.get("alt_brand"))


@dataclass(frozen=True, slots=True)
class Pair:
    """One labelled query-item pair.

    Example:
        >>> p = Pair(pair_id="q1:i7", index=0, query="blue sofa", title="Nordvik blue sofa",
        ...          attributes={"colour": "blue"}, description="", level=4)
        >>> p.query_id == "" and p.level
        4
    """

    pair_id: str
    """Stable id, unique in a dataset (``<query_id>:<item_id>`` for real data)."""
    index: int
    """Stable unique int: the source row number (0-based data row) or the synthetic ordinal. Becomes
    ``extra_info.index`` in verl datasets."""
    query: str
    title: str
    attributes: dict[str, str] = field(default_factory=dict)
    description: str = ""
    level: int = 0
    """Gold level of the schema (``taosr1``: 4 Excellent, 3 Related, 2 Mismatch, 1 Irrelevant)."""
    query_id: str = ""
    item_id: str = ""
    query_kind: str = ""
    """Synthetic query kind, or ``""`` for real data."""
    category: str = ""
    brand: str = ""
    price: float | None = None
    rules_used: tuple[str, ...] = ()
    """Ids of the rule-KB rules that fired (synthetic only)."""
    spec: QuerySpec | None = None
    """What the synthetic query asks for (``None`` for real data)."""
    source: str = ""
    """Where the pair came from: ``synthetic``, ``esci``, ``wands`` or a file name."""

    def to_record(self) -> dict[str, Any]:
        """A flat, parquet-friendly dict (``attributes`` and ``spec`` as JSON strings)."""
        return {
            "pair_id": self.pair_id, "index": self.index, "query_id": self.query_id, "query": self.query,
            "item_id": self.item_id, "title": self.title,
            "attributes": json.dumps(self.attributes, ensure_ascii=False, separators=(",", ":")),
            "description": self.description, "level": self.level, "query_kind": self.query_kind,
            "category": self.category, "brand": self.brand, "price": self.price,
            "rules_used": list(self.rules_used),
            "spec": self.spec.to_json() if self.spec is not None else "", "source": self.source,
        }

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Pair:
        """Inverse of :meth:`to_record`."""
        attrs = r.get("attributes") or "{}"
        spec = r.get("spec") or ""
        price = r.get("price")
        return cls(
            pair_id=str(r["pair_id"]), index=int(r["index"]), query=r["query"], title=r["title"],
            attributes=json.loads(attrs) if isinstance(attrs, str) else dict(attrs),
            description=r.get("description") or "", level=int(r["level"]), query_id=r.get("query_id") or "",
            item_id=r.get("item_id") or "", query_kind=r.get("query_kind") or "", category=r.get("category") or "",
            brand=r.get("brand") or "", price=None if price is None else float(price),
            rules_used=tuple(r.get("rules_used") or ()), spec=QuerySpec.from_json(spec) if spec else None,
            source=r.get("source") or "",
        )
