"""Loss recipes by name: a model family names its recipe (``recipe = "standard"``) and the
session looks it up here.

The built-in recipes are listed here, so the base classes in :mod:`ganvas.losses.recipe` and
:mod:`ganvas.losses.standard` never import their subclasses; a recipe defined elsewhere (a
family of your own) joins with :func:`register_recipe`.
"""

from __future__ import annotations

import difflib

from ganvas.errors import GanvasError
from ganvas.losses.fastgan import FastGANRecipe
from ganvas.losses.projected import ProjectedRecipe
from ganvas.losses.recipe import LossRecipe
from ganvas.losses.standard import StandardRecipe
from ganvas.losses.stylegan2 import StyleGAN2Recipe

_RECIPES: dict[str, type[LossRecipe]] = {
    recipe.name: recipe
    for recipe in (StandardRecipe, StyleGAN2Recipe, FastGANRecipe, ProjectedRecipe)}


def register_recipe(recipe: type[LossRecipe]) -> type[LossRecipe]:
    """Make ``recipe`` findable by its ``name`` (usable as a class decorator)."""
    _RECIPES[recipe.name] = recipe
    return recipe


def get_recipe(name: str) -> type[LossRecipe]:
    try:
        return _RECIPES[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), _RECIPES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise GanvasError(f"loss recipe {name!r} is not known{hint}") from None
