"""A golden pixel slice of the bundled checkpoint: a dependency upgrade that changes frames fails.

diffusers pins `expected_slice` values of its pipelines the same way. The slice belongs to the
weights it was recorded on (`checkpoint_fingerprint`); when the bundled checkpoint is retrained on
purpose, record the new slice with `python -m tests.tasks.render.test_golden_slice`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CHECKPOINT = Path(__file__).resolve().parents[3] / "checkpoints" / "t2v-tiny"
PROMPT = "a red ball rolling on green grass"
SEED = 7
STEPS = 4
RECORDED_ON = "a20e642fb8ceb0ba"
# frames[-1, -3:, -3:] (RGB) and frames[0, :3, :3, red] of `render_slice()`, at the product's
# sampling defaults (re-recorded when noise_warp 0.8 became the default: the slice also pins the
# optical flow the warp reads).
EXPECTED_LAST_CORNER = np.array(
    [
        [[87, 116, 57], [85, 115, 58], [92, 118, 65]],
        [[90, 120, 60], [89, 120, 60], [97, 123, 70]],
        [[90, 121, 66], [89, 119, 67], [96, 120, 74]],
    ]
)
EXPECTED_FIRST_RED = np.array([[173, 176, 176], [175, 177, 175], [178, 180, 177]])
TOLERANCE = 2  # uint8 levels: thread counts may move a value by one rounding step


def guide(frames: int, height: int, width: int) -> np.ndarray:
    """A fixed structure guide in [-1, 1]: a ground-like ramp with a moving ripple."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    ripple = [np.clip(0.8 * yy + 0.3 * np.sin(3 * xx + 0.4 * t), -1, 1) for t in range(frames)]
    return np.stack(ripple).astype(np.float32)


def render_slice() -> tuple[str, np.ndarray]:
    """The bundled checkpoint's weights fingerprint and its frames for the fixed guide."""
    from story.tasks.provenance.checkpoint_identity import checkpoint_fingerprint
    from story.tasks.render.synthesize import load_t2v, synthesize

    model = load_t2v(CHECKPOINT, device="cpu").eval()
    cfg = model.config
    frames = synthesize(
        model, PROMPT, guide(cfg.frames, cfg.height, cfg.width), seed=SEED, steps=STEPS
    )
    return checkpoint_fingerprint(CHECKPOINT), frames


@pytest.mark.skipif(not CHECKPOINT.is_dir(), reason="no bundled checkpoint")
def test_bundled_checkpoint_renders_the_pinned_pixels() -> None:
    fingerprint, frames = render_slice()
    assert fingerprint == RECORDED_ON, (
        f"checkpoints/t2v-tiny changed ({fingerprint}, slice recorded on {RECORDED_ON}): "
        "record its slice with `python -m tests.tasks.render.test_golden_slice`"
    )
    assert frames.shape == (8, 32, 32, 3) and frames.dtype == np.uint8
    last = frames[-1, -3:, -3:].astype(int)
    first = frames[0, :3, :3, 0].astype(int)
    assert np.abs(last - EXPECTED_LAST_CORNER).max() <= TOLERANCE, last.tolist()
    assert np.abs(first - EXPECTED_FIRST_RED).max() <= TOLERANCE, first.tolist()


if __name__ == "__main__":
    recorded, video = render_slice()
    print(f'RECORDED_ON = "{recorded}"')
    print("EXPECTED_LAST_CORNER = np.array(", video[-1, -3:, -3:].tolist(), ")")
    print("EXPECTED_FIRST_RED = np.array(", video[0, :3, :3, 0].tolist(), ")")
