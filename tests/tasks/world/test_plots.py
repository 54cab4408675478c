"""Evaluation plots: queries name what changes the depth, prompts a look unlike the clip's."""

from __future__ import annotations

import numpy as np

from story.tasks.world import miniworld, plots


def test_query_names_shape_motion_and_camera_but_no_look() -> None:
    for seed in range(20):
        query = plots.query_text("cube", "bouncing", "pan_left", seed)
        found = miniworld.attributes_from_caption(query)
        assert found == {"shape": "cube", "motion": "bouncing", "camera": "pan_left"}


def test_restyled_look_differs_from_the_clip_in_colour_texture_and_ground() -> None:
    clip = miniworld.attributes(miniworld.sample_scene(5))
    for seed in range(50):
        look = plots.restyled(clip, seed)
        assert all(look[k] != clip[k] for k in plots.LOOK)
        assert look["colour"] not in miniworld.CLASHES[look["background"]]
        assert {k: look[k] for k in ("shape", "motion", "camera")} == {
            k: clip[k] for k in ("shape", "motion", "camera")
        }
        prompt = plots.prompt_text(look, seed)
        assert miniworld.attributes_from_caption(prompt) == look


def test_relooked_background_only_and_another_take_keep_what_they_should() -> None:
    spec = miniworld.sample_scene(11, frames=4, height=32, width=32, n_objects=2)
    look = plots.restyled(miniworld.attributes(spec), 1)
    relooked = miniworld.render(plots.with_look(spec, look))
    assert miniworld.attributes(relooked.spec) == {**miniworld.attributes(spec), **look}
    original = miniworld.render(spec)
    np.testing.assert_array_equal(relooked.masks == 1, original.masks == 1)
    empty = miniworld.render(plots.without_objects(spec))
    assert not empty.masks.any() and empty.spec.camera == spec.camera
    take = plots.another_take(spec, 3)
    assert miniworld.attributes(take) == miniworld.attributes(spec)
    assert take.objects[0].x != spec.objects[0].x
