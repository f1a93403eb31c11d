"""The expression grammar: what can be said about a shape, in each dataset's style.

RefCOCO phrases are short (~3.5 words) and may use position and relations; RefCOCO+ uses
appearance words only; RefCOCOg says the same facts in longer sentences (~8 words);
gRefCOCO adds multi-target groups ("all red shapes") and no-target descriptions. Every
phrase comes flagged with whether it picks out its target alone in the scene, and with
its meaning (:mod:`nemo_hf.data.meaning`): what it states, in a form a program evaluates.

>>> import numpy as np
>>> from nemo_hf.synthetic.scenes import make_scene
>>> text = SceneText(make_scene(np.random.default_rng(1), (320, 240), 0, None), np.random.default_rng(1))
>>> phrase = PHRASES["refcoco"](text, 0)[0]
>>> phrase.words == (text.shapes[0].category.name,), phrase.alone, phrase.meaning["category"] == phrase.words[0]
(True, True, True)
>>> render(("the", "red", "circle"), 7, np.random.default_rng(0), long=False)["sent"]
'the red circle'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from nemo_hf.data.meaning import SceneObject, make_landmark, make_meaning
from nemo_hf.synthetic.scenes import CATEGORIES, PALETTE, SIZE_WORDS, Scene

Words = tuple[str, ...]
Meaning = dict[str, Any]


class Phrase(NamedTuple):
    """One way to refer: its words, whether it fits its target alone, and what it states."""

    words: Words
    alone: bool
    meaning: Meaning


_COMBOS: tuple[tuple[str, ...], ...] = (
    ("category",),
    ("colour", "category"),
    ("size", "category"),
    ("size", "colour", "category"),
)
_FULL = ("size", "colour", "category")
_SENTENCES_PER_REF = (1, 2, 3, 4)
_SENTENCES_PROBS = (0.1, 0.25, 0.35, 0.3)  # mean 2.85, RefCOCO's sentences per ref
_PICTURE_WORDS = ("image", "picture", "photo")
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
"""How sentences count alike shapes; larger groups go uncounted."""


class SceneText:
    """What can be said about the shapes of one scene, and which shapes each phrase fits."""

    def __init__(self, scene: Scene, rng: np.random.Generator):
        self.scene = scene
        self.shapes = scene.shapes
        self.rng = rng

    @property
    def frame(self) -> tuple[int, int]:
        """``(width, height)``: the frame positions are judged in."""
        return (self.scene.width, self.scene.height)

    def objects(self) -> list[SceneObject]:
        """The shapes as the meaning evaluator sees them."""
        return [SceneObject(s.category.name, s.colour, s.size, s.cx, s.cy) for s in self.shapes]

    def stated(self, i: int, attrs: Sequence[str]) -> dict[str, str]:
        """What saying ``attrs`` of shape ``i`` states (no random draw: the words are drawn apart)."""
        shape = self.shapes[i]
        return {attr: shape.category.name if attr == "category" else getattr(shape, attr) for attr in attrs}

    def meaning(self, i: int, attrs: Sequence[str], **more: Any) -> Meaning:
        """The meaning of ``attrs`` of shape ``i`` plus the ``more`` fields (position, relation)."""
        return make_meaning(**self.stated(i, attrs), **more)

    def value(self, i: int, attr: str) -> Any:
        shape = self.shapes[i]
        return shape.category.id if attr == "category" else getattr(shape, attr)

    def members(self, i: int, attrs: Sequence[str]) -> list[int]:
        """Shapes that share the attributes of shape ``i`` (``i`` included)."""
        return [j for j in range(len(self.shapes)) if all(self.value(j, a) == self.value(i, a) for a in attrs)]

    def words(self, i: int, attrs: Sequence[str]) -> Words:
        shape = self.shapes[i]
        out = []
        for attr in attrs:
            if attr == "size":
                options = SIZE_WORDS[shape.size]
                out.append(options[int(self.rng.integers(len(options)))])
            elif attr == "colour":
                out.append(shape.colour)
            else:
                out.append(shape.category.name)
        return tuple(out)

    def column(self, i: int) -> str:
        x = self.shapes[i].cx / self.scene.width
        return "left" if x < 1 / 3 else "right" if x > 2 / 3 else "middle"

    def row(self, i: int) -> str:
        y = self.shapes[i].cy / self.scene.height
        return "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else "middle"

    def relation(self, i: int, j: int) -> str | None:
        """Where shape ``i`` lies from shape ``j``, when one direction clearly dominates."""
        dx = self.shapes[i].cx - self.shapes[j].cx
        dy = self.shapes[i].cy - self.shapes[j].cy
        if abs(dx) > 1.3 * abs(dy):
            return "left" if dx < 0 else "right"
        if abs(dy) > 1.3 * abs(dx):
            return "above" if dy < 0 else "below"
        return None

    def extremes(self, i: int, group: list[int]) -> list[str]:
        """Superlatives (leftmost, …) that hold for ``i`` within ``group`` by a clear margin."""
        others = [j for j in group if j != i]
        if not others:
            return []
        me = self.shapes[i]
        mx, my = 0.03 * self.scene.width, 0.03 * self.scene.height
        xs = [self.shapes[j].cx for j in others]
        ys = [self.shapes[j].cy for j in others]
        found = []
        if me.cx < min(xs) - mx:
            found.append("leftmost")
        if me.cx > max(xs) + mx:
            found.append("rightmost")
        if me.cy < min(ys) - my:
            found.append("topmost")
        if me.cy > max(ys) + my:
            found.append("lowest")
        return found

    def landmarks(self, i: int) -> list[tuple[int, tuple[str, ...], Words]]:
        """Shapes of another category that a short appearance phrase picks out, with its attributes."""
        found = []
        for j, shape in enumerate(self.shapes):
            if shape.category.id == self.shapes[i].category.id:
                continue
            for attrs in _COMBOS[:2]:
                if self.members(j, attrs) == [j]:
                    found.append((j, attrs, self.words(j, attrs)))
                    break
        return found

    def relation_meaning(self, relation: str, j: int, attrs: Sequence[str]) -> dict[str, Any]:
        """The ``relation`` field of a meaning: ``relation`` of shape ``j`` described by ``attrs``."""
        return {"direction": relation, "landmark": make_landmark(**self.stated(j, attrs))}


def _relation_words(relation: str) -> Words:
    return (relation, "of") if relation in ("left", "right") else (relation,)


def _refcoco_phrases(text: SceneText, i: int) -> list[Phrase]:
    """Short phrases (RefCOCO style, ~3.5 words), each flagged whether it fits only ``i``."""
    phrases = [Phrase(text.words(i, attrs), text.members(i, attrs) == [i], text.meaning(i, attrs)) for attrs in _COMBOS]
    column, row = text.column(i), text.row(i)
    for attrs in _COMBOS[:2]:
        group = text.members(i, attrs)
        noun = text.words(i, attrs)
        if column != "middle":
            alone = [j for j in group if text.column(j) == column] == [i]
            meaning = text.meaning(i, attrs, column=column)
            phrases += [Phrase((column, *noun), alone, meaning), Phrase((*noun, "on", "the", column), alone, meaning)]
        if row != "middle":
            alone = [j for j in group if text.row(j) == row] == [i]
            meaning = text.meaning(i, attrs, row=row)
            phrases += [Phrase((row, *noun), alone, meaning), Phrase((*noun, "at", "the", row), alone, meaning)]
        if column != "middle" and row != "middle":
            alone = [j for j in group if (text.row(j), text.column(j)) == (row, column)] == [i]
            phrases.append(Phrase((row, column, *noun), alone, text.meaning(i, attrs, row=row, column=column)))
        phrases += [Phrase((word, *noun), True, text.meaning(i, attrs, extreme=word))
                    for word in text.extremes(i, group)]  # fmt: skip
        for j, landmark_attrs, landmark in text.landmarks(i):
            relation = text.relation(i, j)
            if relation is None:
                continue
            alone = [k for k in group if text.relation(k, j) == relation] == [i]
            article = ("the",) if text.rng.random() < 0.5 else ()
            meaning = text.meaning(i, attrs, relation=text.relation_meaning(relation, j, landmark_attrs))
            phrases.append(Phrase((*noun, *_relation_words(relation), *article, *landmark), alone, meaning))
    return phrases


def _refcoco_plus_phrases(text: SceneText, i: int) -> list[Phrase]:
    """Appearance only: RefCOCO+ forbids every location word."""
    phrases = []
    for attrs in _COMBOS:
        words = text.words(i, attrs)
        alone = text.members(i, attrs) == [i]
        meaning = text.meaning(i, attrs)
        phrases.append(Phrase(words, alone, meaning))
        phrases.append(Phrase(("the", *words), alone, meaning))
    for attrs in (("colour",), ("size", "colour")):
        alone = text.members(i, attrs) == [i]
        for noun in ("one", "shape"):
            phrases.append(Phrase((*text.words(i, attrs), noun), alone, text.meaning(i, attrs)))
    return phrases


def _refcocog_phrases(text: SceneText, i: int) -> list[Phrase]:
    """Longer sentences (RefCOCOg style, ~8 words) built from the same facts."""
    shape = text.shapes[i]
    full_group = text.members(i, _FULL)
    column, row = text.column(i), text.row(i)
    picture = _PICTURE_WORDS[int(text.rng.integers(len(_PICTURE_WORDS)))]
    size_word = SIZE_WORDS[shape.size][0] if shape.size != "medium" else "medium sized"
    words = ("the", shape.category.name, "which", "is", shape.colour, "and", *size_word.split())
    phrases = [Phrase(words, full_group == [i], text.meaning(i, _FULL))]
    for j, landmark_attrs, landmark in text.landmarks(i):
        relation = text.relation(i, j)
        if relation is not None:
            alone = [k for k in full_group if text.relation(k, j) == relation] == [i]
            words = ("the", *text.words(i, _FULL), "that", "is", *_relation_words(relation), "the", *landmark)
            meaning = text.meaning(i, _FULL, relation=text.relation_meaning(relation, j, landmark_attrs))
            phrases.append(Phrase(words, alone, meaning))
    colour_group = text.members(i, ("colour", "category"))
    if column != "middle":
        alone = [j for j in colour_group if text.column(j) == column] == [i]
        words = ("a", *text.words(i, ("colour", "category")), "on", "the", column, "side")
        phrases.append(Phrase(words, alone, text.meaning(i, ("colour", "category"), column=column)))
    if row != "middle":
        alone = [j for j in full_group if text.row(j) == row] == [i]
        words = ("there", "is", "a", *text.words(i, _FULL), "at", "the", row)
        phrases.append(Phrase(words, alone, text.meaning(i, _FULL, row=row)))
    if column != "middle" and row != "middle":
        alone = [j for j in full_group if (text.row(j), text.column(j)) == (row, column)] == [i]
        words = ("the", *text.words(i, _FULL), "in", "the", row, column, "corner")
        phrases.append(Phrase(words, alone, text.meaning(i, _FULL, row=row, column=column)))
    for word in text.extremes(i, colour_group):
        words = ("the", word, *text.words(i, ("colour", "category")), "in", "the", picture)
        phrases.append(Phrase(words, True, text.meaning(i, ("colour", "category"), extreme=word)))
    return phrases


# phrases of one-object refs, per dataset (gRefCOCO's one-object refs use RefCOCO's)
PHRASES: dict[str, Callable[[SceneText, int], list[Phrase]]] = {
    "refcoco": _refcoco_phrases,
    "refcoco+": _refcoco_plus_phrases,
    "refcocog": _refcocog_phrases,
}


def most_specific(text: SceneText, i: int, dataset: str) -> Phrase:
    """The fullest appearance description, said when no phrase fits the target alone."""
    words = text.words(i, _FULL)
    words = ("the", *words, "in", "the", "picture") if dataset == "refcocog" else words
    return Phrase(words, text.members(i, _FULL) == [i], text.meaning(i, _FULL))


def pick(phrases: list[Phrase], fallback: Phrase, rng: np.random.Generator) -> list[Phrase]:
    """1–4 distinct phrases that fit only the target; the fallback when none does."""
    first: dict[Words, Phrase] = {}
    for phrase in phrases:
        if phrase.alone:
            first.setdefault(phrase.words, phrase)  # the same words state the same thing
    pool = list(first.values()) or [fallback]
    count = int(rng.choice(_SENTENCES_PER_REF, p=_SENTENCES_PROBS))
    return [pool[j] for j in rng.permutation(len(pool))[:count]]


def _group_phrases(text: SceneText, group: str | None) -> list[tuple[list[int], list[Phrase]]]:
    """Multi-target groups (all shapes of a category / colour / both) with ways to say them."""
    shapes = text.shapes
    groups: dict[tuple[int, ...], list[Phrase]] = {}

    def add(members: list[int], variants: list[Words], meaning: Meaning) -> None:
        if len(members) >= 2 and all(group is None or shapes[j].category.group == group for j in members):
            groups.setdefault(tuple(members), []).extend(Phrase(v, True, meaning) for v in variants)

    for category in {s.category.id: s.category for s in shapes}.values():
        members = [j for j, s in enumerate(shapes) if s.category.id == category.id]
        number = NUMBER_WORDS.get(len(members), "")
        variants = [("all", category.plural), ("all", "the", category.plural), ("every", category.name)]
        variants += [("the", number, category.plural)] + ([("both", category.plural)] if len(members) == 2 else [])
        add(members, variants, make_meaning(category=category.name))
        for colour in dict.fromkeys(shapes[j].colour for j in members):
            same = [j for j in members if shapes[j].colour == colour]
            count = NUMBER_WORDS.get(len(same), "")
            variants = [("the", count, colour, category.plural), ("all", colour, category.plural)]
            add(same, variants, make_meaning(category=category.name, colour=colour))
    for colour in dict.fromkeys(s.colour for s in shapes):
        members = [j for j, s in enumerate(shapes) if s.colour == colour]
        variants = [("all", colour, "shapes"), ("the", colour, "ones"), ("every", colour, "shape")]
        variants += [("both", colour, "shapes")] if len(members) == 2 else []
        add(members, variants, make_meaning(colour=colour))
    return [(list(members), variants) for members, variants in sorted(groups.items())]


def _absent_phrases(text: SceneText, group: str | None) -> list[Phrase]:
    """Descriptions of a shape that is not in the image: a present category, a missing colour."""
    rng = text.rng
    present = sorted({s.category.id for s in text.shapes})
    allowed = [c for c in CATEGORIES if group is None or c.group == group]
    near = [c for c in allowed if c.id in present]
    pool = near if near and rng.random() < 0.8 else allowed
    category = pool[int(rng.integers(len(pool)))]
    used = {s.colour for s in text.shapes if s.category.id == category.id}
    colours = [c for c in PALETTE if c not in used]
    colour = colours[int(rng.integers(len(colours)))]
    picture = _PICTURE_WORDS[int(rng.integers(len(_PICTURE_WORDS)))]
    meaning = make_meaning(category=category.name, colour=colour)
    variants = [
        ("the", colour, category.name),
        (colour, category.name),
        ("a", colour, category.name),
        ("the", colour, category.name, "in", "the", picture),
    ]
    return [Phrase(words, True, meaning) for words in variants]


def gref_refs(
    text: SceneText, referred: list[int], group: str | None, multi: bool, no_target: bool
) -> list[tuple[list[int], list[Phrase]]]:
    """gRefCOCO refs of one image: (target shape indices, sentences); no targets = no-target ref.

    One ref per referred shape, then one multi-target ref if ``multi`` (and the scene has a
    group of two or more) and one no-target ref if ``no_target``. A multi-target phrase's
    meaning fits exactly its targets; a no-target phrase's fits nothing in the image.
    """
    rng = text.rng
    refs = [([j], pick(_refcoco_phrases(text, j), most_specific(text, j, "grefcoco"), rng)) for j in referred]
    groups = _group_phrases(text, group)
    if multi and groups:
        members, variants = groups[int(rng.integers(len(groups)))]
        refs.append((members, pick(variants, variants[0], rng)))
    if no_target:
        variants = _absent_phrases(text, group)
        refs.append(([], pick(variants, variants[0], rng)))
    return refs


def render(words: Words, sent_id: int, rng: np.random.Generator, long: bool) -> dict[str, Any]:
    """A refer sentence entry: ``raw`` as typed (capitals, punctuation), ``sent``/``tokens`` normalised."""
    raw = " ".join(words)
    if rng.random() < (0.5 if long else 0.3):
        raw = raw[0].upper() + raw[1:]
    ending = rng.random()
    if ending < (0.4 if long else 0.15):
        raw += "."
    elif ending > 0.97:
        raw += "!"
    return {"tokens": list(words), "raw": raw, "sent_id": sent_id, "sent": " ".join(words)}
