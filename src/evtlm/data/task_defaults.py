"""The recipe as the text stages must see it: `text_recipe` resolves every task-dependent default
(the formulation, item tokens, the copy path, history features, the verbalizer's item form).
Training, evaluation and prediction all read their recipe through here (`evtlm.data.prepare`
re-exports it). It only rewrites a recipe: it must not read events, build text or load a tokenizer.
"""

from __future__ import annotations

from evtlm.recipe import Recipe


def text_recipe(recipe: Recipe) -> Recipe:
    """The recipe as the text stages must see it, with every task-dependent default resolved.

    - ``task.formulation: auto`` becomes ``stream`` for next_action and for next_item with item
      tokens, ``example`` otherwise; ``model.item_tokens: null`` becomes true for next_item
      unless the formulation is ``example``; ``model.copy_path: null`` becomes true for next_item
      streams, ``model.history_features: null`` for next_action and purchase streams.
    - With item tokens, items are written as their own tokens (``verbalize.item: token``) and the
      "added it to cart" shortcut is off: the item token is always in the text, where the copy
      path and attention can find it.

    Training, evaluation and prediction all go through here, so their prompts cannot drift apart.

    >>> r = text_recipe(Recipe.model_validate({"task": {"name": "next_item"}}))
    >>> r.verbalize.item, r.task.formulation, r.model.copy_path
    ('token', 'stream', True)
    >>> text_recipe(Recipe.model_validate({"task": {"name": "purchase"}})).task.formulation
    'example'
    """
    task, model = recipe.task, recipe.model
    item_tokens = model.item_tokens
    if item_tokens is None:
        item_tokens = task.name == "next_item" and task.formulation != "example"
    formulation = task.formulation
    if formulation == "auto":
        formulation = "stream" if task.name == "next_action" or (task.name == "next_item" and item_tokens) else "example"
    if formulation == "stream" and (task.name not in ("next_item", "next_action", "purchase")
                                    or (task.name == "next_item" and not item_tokens)):
        from evtlm.errors import RecipeError

        raise RecipeError(f"task.formulation=stream does not apply to task {task.name}"
                          + (" without model.item_tokens" if task.name == "next_item" else ""),
                          where="task.formulation", fix="use task.formulation=example (or auto)"
                          + (", or model.item_tokens=true" if task.name == "next_item" else ""))
    copy = model.copy_path if model.copy_path is not None else (task.name == "next_item" and formulation == "stream")
    feats = model.history_features if model.history_features is not None else (
        task.name in ("next_action", "purchase") and formulation == "stream")
    update: dict = {}
    if (formulation, item_tokens, copy, feats) != (task.formulation, model.item_tokens, model.copy_path, model.history_features):
        update["task"] = task.model_copy(update={"formulation": formulation})
        update["model"] = model.model_copy(update={"item_tokens": item_tokens, "copy_path": copy, "history_features": feats})
    if item_tokens and (recipe.verbalize.item != "token" or recipe.verbalize.repeat_shortcut):
        update["verbalize"] = recipe.verbalize.model_copy(update={"item": "token", "repeat_shortcut": False})
    return recipe.model_copy(update=update) if update else recipe
